"""AUTVC (multi-scale average total variation)."""

import numpy as np
import pytest
from skimage.transform import pyramid_gaussian

import tf_pathattr as tpa
from tf_pathattr.metrics.smoothness import average_total_variation, heatmap_normalize, total_variation


def _ref_atv(level, p=1):
    """Numpy restatement: |h|, (h - min)/(p99 - min) clipped, forward differences / (H W)."""
    a = np.abs(level)
    flat = np.sort(a.ravel())
    pos = 0.99 * (flat.size - 1)  # linear-interpolation percentile
    lo_i = int(np.floor(pos))
    p99 = flat[lo_i] + (pos - lo_i) * (flat[min(lo_i + 1, flat.size - 1)] - flat[lo_i])
    a = np.clip((a - flat[0]) / (p99 - flat[0]), 0, 1)
    H, W = a.shape
    sx = sum(abs(a[i, j + 1] - a[i, j]) ** p for i in range(H) for j in range(W - 1))
    sy = sum(abs(a[i + 1, j] - a[i, j]) ** p for i in range(H - 1) for j in range(W))
    return (sx ** (1 / p) + sy ** (1 / p)) / (H * W) if p > 1 else (sx + sy) / (H * W)


def test_atv_closed_form_on_stripes():
    h = np.tile(np.arange(64) % 2, (64, 1)).astype(float) * -3.0  # |h| in {0, 3}, alternating columns
    assert average_total_variation(h) == pytest.approx(64 * 63 / (64 * 64))
    assert average_total_variation(h.T) == pytest.approx(63 / 64)
    assert average_total_variation(np.full((40, 40), 2.5)) == 0.0  # constant: normalised to zeros


def test_autvc_matches_numpy_on_224_map(rng):
    """224^2 -> six levels (224, 150, 100, 67, 45, 30); even count -> the pinned Simpson rule."""
    yy, xx = np.mgrid[0:224, 0:224]
    h = np.sin(xx / 9.0) * np.cos(yy / 13.0) + 0.3 * rng.normal(size=(224, 224))
    attr = np.stack([h, 0.5 * h, -0.25 * h], axis=-1)[None]  # channel sum = 1.25 h
    values, curves = total_variation(attr)
    levels = [lv for lv in pyramid_gaussian(1.25 * h, downscale=1.5) if min(lv.shape) >= 30]
    assert [lv.shape[0] for lv in levels] == [224, 150, 100, 67, 45, 30]
    ref = np.array([_ref_atv(lv) for lv in levels])
    np.testing.assert_allclose(curves[0], ref, rtol=1e-10)
    y = ref
    hand = (y[0] + 4 * y[1] + 2 * y[2] + 4 * y[3] + y[4]) / 3 + (y[4] + y[5]) / 2
    assert values[0] == pytest.approx(hand, rel=1e-12)


def test_autvc_p2_batch_and_channel_sum(rng):
    a = rng.normal(size=(2, 48, 40, 3))
    v3, c3 = total_variation(a, min_size=10, p=2)
    v2, c2 = total_variation(a.sum(-1), min_size=10, p=2)
    np.testing.assert_allclose(v3, v2)
    levels = [lv for lv in pyramid_gaussian(a[1].sum(-1), downscale=1.5) if min(lv.shape) >= 10]
    np.testing.assert_allclose(c3[1], [_ref_atv(lv, p=2) for lv in levels], rtol=1e-10)
    # smoother maps score lower
    smooth = np.tile(np.linspace(0, 1, 40), (48, 1))[None]
    assert total_variation(smooth, min_size=10)[0][0] < total_variation(a, min_size=10)[0].min()
    assert tpa.metrics.total_variation is total_variation
    np.testing.assert_allclose(heatmap_normalize(np.array([[0.0, 1.0], [2.0, -4.0]])).max(), 1.0)


def test_autvc_errors():
    with pytest.raises(ValueError, match="min_size"):
        total_variation(np.zeros((1, 20, 20)))
    with pytest.raises(ValueError, match="shape"):
        total_variation(np.zeros((20, 20)))
    with pytest.raises(ValueError, match="downscale"):
        total_variation(np.zeros((1, 40, 40)), downscale=1.0)
