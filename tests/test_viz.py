"""Pixel-level tests of the heatmaps / overlays and the size of the method grid."""

import numpy as np
import pytest
from PIL import Image

from tf_pathattr import viz


def test_signed_heatmap_colours():
    a = np.zeros((2, 3), np.float32)
    a[0, 0], a[0, 1], a[1, 2] = 2.0, -2.0, 1.0  # scale = max |a| at percentile 100
    h = viz.heatmap(a, "signed", percentile=100)
    assert h.shape == (2, 3, 3) and h.dtype == np.float32
    np.testing.assert_allclose(h[0, 0], [1, 0, 0])  # saturated positive: red
    np.testing.assert_allclose(h[0, 1], [0, 0, 1])  # saturated negative: blue
    np.testing.assert_allclose(h[1, 2], [1, 0.5, 0.5])  # half positive
    np.testing.assert_allclose(h[1, 0], [1, 1, 1])  # zero: white


def test_absolute_heatmap_and_channel_sum():
    a = np.zeros((1, 3, 2), np.float32)
    a[0, 0] = [0.5, 0.5]  # channel sum 1 -> v = 1 -> white
    a[0, 1] = [-0.25, 0.0]  # |sum| = 0.25 -> v = 0.25
    h = viz.heatmap(a, "absolute", percentile=100)
    np.testing.assert_allclose(h[0, 0], [1, 1, 1])
    np.testing.assert_allclose(h[0, 1], [0.75, 0, 0], atol=1e-7)
    np.testing.assert_allclose(h[0, 2], [0, 0, 0])


def test_overlay_blend_and_grayscale():
    img = np.full((4, 4, 1), 0.5, np.float32)
    a = np.zeros((4, 4, 1), np.float32)
    a[1, 2, 0] = 3.0
    a[3, 3, 0] = -1.5
    out = viz.overlay(img, a, "signed", alpha=0.6, percentile=100)
    assert out.shape == (4, 4, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [0.5, 0.5, 0.5])  # no attribution: the image itself
    np.testing.assert_allclose(out[1, 2], 0.4 * 0.5 + 0.6 * np.array([1, 0, 0]), atol=1e-6)
    w = 0.6 * 0.5
    np.testing.assert_allclose(out[3, 3], (1 - w) * 0.5 + w * np.array([0.5, 0.5, 1.0]), atol=1e-6)


def test_overlay_rescales_non_unit_images_and_checks_shapes():
    img = np.arange(12, dtype=np.float32).reshape(2, 2, 3) * 20.0  # 0..220 -> min-max scaled
    out = viz.overlay(img, np.zeros((2, 2)), "absolute")
    np.testing.assert_allclose(out.reshape(-1), np.arange(12) / 11.0, atol=1e-6)
    with pytest.raises(ValueError, match="spatial shape"):
        viz.overlay(img, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="kind"):
        viz.overlay(img, np.zeros((2, 2)), kind="rainbow")
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(img, np.zeros((2, 2)), alpha=2)


def test_save_png_round_trip(tmp_path):
    img = np.linspace(0, 1, 5 * 7 * 3).reshape(5, 7, 3)
    p = viz.save_png(img, tmp_path / "sub" / "x.png")
    back = np.asarray(Image.open(p))
    assert back.shape == (5, 7, 3)
    np.testing.assert_array_equal(back, viz.to_uint8(img))


def test_plot_attributions_grid_size(tmp_path, rng):
    images = rng.uniform(size=(3, 8, 8, 1))
    maps = {"a": rng.normal(size=(3, 8, 8, 1)), "b": rng.normal(size=(3, 8, 8, 1))}
    path = tmp_path / "grid.png"
    fig = viz.plot_attributions(images, maps, path=path, cell_inches=1.5, dpi=80)
    assert len(fig.axes) == 3 * 3
    with Image.open(path) as im:
        assert im.size == (3 * 1.5 * 80, 3 * 1.5 * 80)
    # the overlays drawn are the ones overlay() computes
    drawn = fig.axes[1].get_images()[0].get_array()
    np.testing.assert_allclose(np.asarray(drawn), viz.overlay(images[0], maps["a"][0]), atol=1e-6)
    with pytest.raises(ValueError, match="examples"):
        viz.plot_attributions(images, {"a": maps["a"][:2]})


def test_text_html_escapes_tokens_and_colours_by_score():
    tokens = ["<script>alert(1)</script>", "good", "bad", "[PAD]"]
    scores = np.array([0.5, 1.0, -1.0, 7.0])
    mask = np.array([True, True, True, False])
    out = viz.text_html(tokens, scores, mask, title="<b>x</b>")
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&lt;b&gt;x&lt;/b&gt;" in out
    assert "[PAD]" not in out  # hidden tokens are left out
    # the strongest shown token is saturated: +1 -> pure red, -1 -> pure blue, 0.5 -> half red
    assert "rgb(255, 0, 0)" in out and "rgb(0, 0, 255)" in out and "rgb(255, 128, 128)" in out
    np.testing.assert_allclose(viz.token_colours(scores, mask)[3], [1, 1, 1])


def test_text_terminal_plain_and_ansi():
    plain = viz.text_terminal(["a", "b\x1b[2J"], [0.5, -0.25], colour=False)
    assert plain == "a(+0.5) b\\x1b[2J(-0.25)"
    ansi = viz.text_terminal(["a", "b"], [1.0, -1.0])
    assert "\x1b[48;2;255;0;0m" in ansi and "\x1b[48;2;0;0;255m" in ansi
    with pytest.raises(ValueError, match="differ in length"):
        viz.text_html(["a"], [1.0, 2.0])


def test_one_nan_score_gets_its_own_mark_and_does_not_whiten_the_others():
    """issue 18 item 8: a NaN score was in the colour scale (max |score| = NaN), so every token lost its colour."""
    tokens = ["good", "broken", "bad", "half"]
    scores = np.array([1.0, np.nan, -1.0, 0.5])
    out = viz.text_html(tokens, scores)
    # the finite tokens keep the colours they have without the NaN
    assert "rgb(255, 0, 0)" in out and "rgb(0, 0, 255)" in out and "rgb(255, 128, 128)" in out
    assert out == out.replace("rgb(255, 255, 255)", "")  # nothing whitened
    broken = [span for span in out.split("<span") if "broken" in span][0]
    assert "rgb(191, 191, 191)" in broken and "repeating-linear-gradient" in broken
    assert 'title="nan (no score: left out of the colour scale)"' in broken
    colours = viz.token_colours(scores)
    np.testing.assert_allclose(colours[1], viz.NON_FINITE_RGB)
    np.testing.assert_allclose(colours[[0, 2, 3]], viz.token_colours(scores[[0, 2, 3]]))
    assert np.all(np.isfinite(colours))
    # an infinite score is no score either, and a masked NaN stays hidden (white)
    np.testing.assert_allclose(viz.token_colours([2.0, np.inf, -1.0])[[0, 2]], [[1, 0, 0], [0.5, 0.5, 1]])
    np.testing.assert_allclose(viz.token_colours([1.0, np.nan], mask=[True, False])[1], [1, 1, 1])
