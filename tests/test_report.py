"""tpa.report: one self-contained page; figures from the library's metrics; escaping; the command."""

import html
import re
from html.parser import HTMLParser

import numpy as np
import pytest

import tf_pathattr as tpa
from tf_pathattr.metrics.randomization import RandomizationResult
from tf_pathattr.report import MethodRun, ReportData, _html, _run, build, sanity_status, verdict
from tf_pathattr.testing import models as zoo

EVIL = "<script>alert('x')</script>"


class Resources(HTMLParser):
    """Every src / href / url() the page refers to, the tags used, and the visible text."""

    def __init__(self):
        super().__init__()
        self.refs, self.tags, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for key, value in attrs:
            if key in ("src", "href", "xlink:href", "srcset", "data", "action") and value is not None:
                self.refs.append(value)

    def handle_data(self, data):
        self.text.append(data)


def parse(page):
    parser = Resources()
    parser.feed(page)
    return parser


def assert_self_contained(page):
    parser = parse(page)
    for ref in parser.refs:
        assert ref.startswith("data:") or ref.startswith("#"), ref
    assert "link" not in parser.tags and "iframe" not in parser.tags
    assert "@import" not in page
    for url in re.findall(r"url\(([^)]*)\)", page):
        assert url.startswith("#") or url.startswith("data:"), url
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


def method_cells(page, name):
    return re.findall(rf'<td[^>]*data-method="{re.escape(name)}"[^>]*data-caption', page)


def test_tabular_report_is_self_contained_escaped_and_holds_the_library_figures(tmp_path):
    """A linear model: IG is exact (gap 0), the deletion figure equals tpa.metrics.deletion's."""
    model, w = zoo.linear_model(np.random.default_rng(0).normal(size=(5, 3)))
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    labels = ["cat", EVIL, "dog & co"]
    path = tpa.report(
        model, x, methods=["gradients", "ig"], labels=labels, out=tmp_path / "r.html", fast=True, progress=False
    )
    page = path.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert EVIL not in page and html.escape(EVIL) in page
    assert "dog &amp; co" in page
    # every chosen method for every example, and one table row per method
    for name in ("gradients", "integrated_gradients"):
        assert len(method_cells(page, name)) == len(x)
        assert f'<tr data-method="{name}"' in page
        assert f'data-toggle="{name}"' in page
    # the figures are the library's metrics on the same maps
    data = build(model, x, methods=["gradients", "ig"], fast=True, progress=False, sanity_check=False)
    ig = next(r for r in data.runs if r.name == "integrated_gradients")
    grad = next(r for r in data.runs if r.name == "gradients")
    target = np.argmax(np.asarray(model(x)), axis=1)
    np.testing.assert_array_equal(data.classes, target)
    exact = x * w[:, target].T  # IG of a linear model from a zero baseline
    np.testing.assert_allclose(ig.maps, exact, rtol=1e-4, atol=1e-6)
    assert np.nanmax(ig.gap) < 1e-4 and grad.gap is None
    ref = tpa.metrics.deletion(model, x, ig.maps, target)
    np.testing.assert_allclose(ig.deletion, np.where(ref.valid, ref.auc, np.nan))
    row = re.search(r'<tr data-method="integrated_gradients"[^>]*>', page).group(0)
    shown = float(re.search(r'data-v-deletion="([^"]+)"', row).group(1))
    assert shown == pytest.approx(float(np.nanmean(ref.auc[ref.valid])), rel=1e-12)
    assert (
        re.search(r'data-v-gap="([0-9.e-]+)"', row) and float(re.search(r'data-v-gap="([^"]+)"', row).group(1)) < 1e-4
    )
    # the sanity check ran on the linear model: one randomized layer, shown as an SVG plot
    assert "<polyline" in page and "sanity check" in page


def test_methods_none_reads_the_registry():
    from tf_pathattr.methods import registry

    chosen, skipped = _run.choose_methods(None, "tabular")
    for spec in registry.specs():
        if spec.image_only is not False:
            assert spec.name in skipped and skipped[spec.name] == spec.image_only
        elif spec.output == "split":
            assert spec.name in skipped
        else:
            assert spec.name in chosen
    chosen_img, _ = _run.choose_methods(None, "image")
    assert set(chosen) < set(chosen_img) and "xrai" in chosen_img
    chosen_text, skipped_text = _run.choose_methods(None, "text")
    assert all(registry.get(n).layer is True for n in chosen_text)
    assert all(n in skipped_text for n in registry.names() if registry.get(n).layer is not True)
    with pytest.raises(ValueError, match="methods: xrai"):
        _run.choose_methods(["xrai"], "tabular")
    with pytest.raises(ValueError, match="unknown method"):
        _run.choose_methods(["nope"], "image")


def _fake_sanity(final_signed, final_abs):
    sim = {
        "spearman": np.array([[0.9, 0.9], [final_signed] * 2]),
        "spearman_abs": np.array([[1.0, 1.0], [final_abs] * 2]),
    }
    return RandomizationResult(layers=("dense", "conv"), similarity=sim, cascade=True, method="m")


def test_sanity_status_and_verdict_rank_by_mean_rank_and_mark_failures():
    assert sanity_status(None) == "n/a"
    assert sanity_status(_fake_sanity(0.8, 0.9)) == "fail"
    assert sanity_status(_fake_sanity(0.1, 0.9)) == "partial"
    assert sanity_status(_fake_sanity(0.1, 0.2)) == "pass"
    maps = np.zeros((2, 3))
    runs = [
        # A: best deletion and insertion but fails the sanity check; B second; C last
        MethodRun("a", "A", maps=maps, deletion=np.array([0.1, 0.1]), insertion=np.array([0.9, 0.9])),
        MethodRun("b", "B", maps=maps, deletion=np.array([0.2, 0.2]), insertion=np.array([0.8, 0.8])),
        MethodRun("c", "C", maps=maps, deletion=np.array([0.3, 0.3]), insertion=np.array([0.7, 0.7])),
    ]
    runs[0].sanity, runs[1].sanity, runs[2].sanity = _fake_sanity(0.9, 0.9), _fake_sanity(0.0, 0.1), None
    sentence, caveats = verdict(runs, 2)
    assert "A ranks first (mean rank 1.0" in sentence and "then B (2.0), C (3.0)" in sentence
    assert "the best method that passes is B" in sentence
    assert any("Failed the sanity check" in c and "A" in c for c in caveats)
    assert any("Only 2 examples" in c for c in caveats)


def test_page_size_budget_eight_images_six_methods():
    """8 noise images (PNG's worst case) x 6 methods at 224 x 224 stay under 5 MB."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 224, 224, 3)).astype(np.float32)
    runs = [
        MethodRun(f"m{i}", f"m{i}", maps=rng.normal(size=x.shape).astype(np.float32), seconds_per_example=0.1)
        for i in range(6)
    ]
    data = ReportData(
        kind="image",
        x=x,
        display=x,
        classes=np.zeros(8, int),
        probabilities=np.ones(8),
        target=None,
        class_names={0: EVIL},
        runs=runs,
        skipped={},
        model_name="m",
    )
    page = _html.render(data)
    assert len(page.encode("utf-8")) <= 5 * 1024 * 1024
    assert page.count("data:image/png;base64,") == 8 * 7
    assert EVIL not in page


@pytest.mark.slow
def test_image_report_of_the_digits_cnn_has_every_figure(tmp_path):
    import os

    from tf_pathattr import demo

    os.environ.setdefault("TF_PATHATTR_CACHE", str(tmp_path / "cache"))
    model, _, _ = demo.digits_model(quick=True)
    (_, _), (x, _) = demo.load_digits_data()
    data = build(model, x[:4], methods=["gradients", "ig", "xrai"], fast=True, progress=False, sanity_examples=2)
    by = {r.name: r for r in data.runs}
    assert set(by) == {"gradients", "integrated_gradients", "xrai"}
    for r in data.runs:
        assert r.maps is not None and np.isfinite(r.seconds_per_example)
        assert np.isfinite(r.deletion).any() and np.isfinite(r.insertion).any()
        assert r.pic is not None and r.sanity is not None and len(r.sanity.layers) == 3
    assert by["integrated_gradients"].gap is not None and by["xrai"].gap is None
    page = _html.render(data)
    assert_self_contained(page)
    assert page.count("<polyline") >= 3 * 2


@pytest.mark.slow
def test_report_command_through_a_subprocess(tmp_path, capsys):
    import keras
    from test_cli import assert_one_error_line, cli, cli_inprocess

    keras.utils.set_random_seed(0)
    model = zoo.toy_cnn(channels=1)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(size=(3, 8, 8, 1)).astype(np.float32))
    (tmp_path / "labels.txt").write_text(f"zero\n{EVIL}\ntwo\n")
    out = tmp_path / "r.html"
    res = cli(
        "report", "--model", tmp_path / "m.keras", "--input", tmp_path / "x.npy", "--out", out,
        "--methods", "gradients", "ig", "--labels", tmp_path / "labels.txt", "--fast",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"wrote {out}" in res.stdout
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert len(method_cells(page, "gradients")) == 3 and len(method_cells(page, "integrated_gradients")) == 3
    assert EVIL not in page
    model_args = ("report", "--model", tmp_path / "m.keras")
    res = cli_inprocess(capsys, *model_args, "--input", tmp_path / "x.npy", "--out", tmp_path / "r.txt")
    assert_one_error_line(res, "--out: expected an .html file")
    res = cli_inprocess(capsys, *model_args, "--input", tmp_path / "x.npy", "--out", out, "--methods", "nope")
    assert_one_error_line(res, "--methods: unknown method 'nope'")
    res = cli_inprocess(capsys, *model_args, "--input", tmp_path / "missing.npy", "--out", out)
    assert_one_error_line(res, "--input: no such file")
    res = cli_inprocess(capsys, *model_args, "--input", tmp_path / "x.npy", "--out", out, "--labels", tmp_path / "no")
    assert_one_error_line(res, "--labels: cannot read")


def test_text_report_shows_token_heatmaps_for_methods_that_take_layer(tmp_path):
    model = zoo.text_model()
    ids = zoo.ids(3)
    path = tpa.report(
        model, ids, methods=["gradients", "ig"], layer="embedding", out=tmp_path / "t.html", fast=True, progress=False
    )
    page = path.read_text(encoding="utf-8")
    assert_self_contained(page)
    for name in ("gradients", "integrated_gradients"):
        cells = re.findall(rf'<td class="text" data-method="{name}"[^>]*>(.*?)</td>', page, re.S)
        assert len(cells) == 3 and all(c.count("<span style=") == ids.shape[1] for c in cells)
    data = build(model, ids, methods=["ig"], layer="embedding", fast=True, progress=False)
    ig = data.runs[0]
    ref = tpa.text.token_attributions(model, ids, data.target, method="ig", layer="embedding", n_steps=8)
    np.testing.assert_allclose(ig.maps, ref.scores, rtol=1e-5, atol=1e-7)
    assert np.nanmax(ig.gap) < 1e-3
    with pytest.raises(ValueError, match="adversarial_gradient_integration"):  # AGI refuses layer=
        _run.choose_methods(["agi"], "text")
