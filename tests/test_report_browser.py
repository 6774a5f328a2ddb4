"""The report page in a real browser: headless Chromium runs its script (Debian's ``chromium``).

The page keeps its state in the URL fragment (``#methods=...&sort=...&example=...``), so each state
is loaded directly and read back with ``--dump-dom`` (the DOM after the script ran) or drawn with
``--screenshot``. Skipped when Chromium is not installed, unless ``TF_PATHATTR_REQUIRE_CHROMIUM=1``
(CI: ``.ci/run`` installs it and sets that, so the tests cannot be skipped there).
``TF_PATHATTR_UPDATE_SCREENSHOTS=1`` also copies the demo's screenshot to ``docs/report.png``.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo

REPO = Path(__file__).resolve().parents[1]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("TF_PATHATTR_REQUIRE_CHROMIUM") == "1":
        pytest.fail("TF_PATHATTR_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI installs it and runs these tests")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = _chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(url, *flags, timeout=120):
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}"]
        cmd += ["--no-first-run", "--disable-extensions", "--allow-file-access-from-files", *flags, url]
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, HOME=str(profile))
        )
        assert res.returncode == 0, res.stderr[-2000:]
        return res

    return run


def dump(browser, path, fragment=""):
    return browser(path.resolve().as_uri() + fragment, "--dump-dom", "--virtual-time-budget=3000").stdout


def shot(browser, path, out, fragment="", size="1200,900"):
    browser(path.resolve().as_uri() + fragment, f"--screenshot={out}", f"--window-size={size}")
    with Image.open(out) as im:
        return np.asarray(im.convert("RGB"), np.int16)


def visible_methods(dom, name):
    """(shown, hidden) counts of the elements of method ``name``."""
    tags = re.findall(rf'<(?:td|th|tr)[^>]*data-method="{re.escape(name)}"[^>]*>', dom)
    hidden = [t for t in tags if re.search(r"\shidden(=|\s|>)", t)]
    return len(tags) - len(hidden), len(hidden)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    model, _ = zoo.linear_model(np.random.default_rng(0).normal(size=(5, 3)))
    x = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    out = tmp_path_factory.mktemp("report") / "r.html"
    return tpa.report(
        model,
        x,
        methods=["gradients", "ig"],
        labels=[f"<b>L{i}</b>" for i in range(3)],
        out=out,
        fast=True,
        progress=False,
    )


def test_script_runs_and_the_method_toggle_changes_what_is_shown(browser, page):
    dom = dump(browser, page)
    assert 'data-ready="1"' in dom  # the script ran to the end
    assert re.search(r'<body[^>]*data-shown="gradients,integrated_gradients"', dom)
    for name in ("gradients", "integrated_gradients"):
        shown, hidden = visible_methods(dom, name)
        assert hidden == 0 and shown == 3 + 1 + 1  # 3 example cells, the column title, the table row
    dom = dump(browser, page, "#methods=gradients")
    assert re.search(r'<body[^>]*data-shown="gradients"', dom)
    assert visible_methods(dom, "gradients") == (5, 0)
    assert visible_methods(dom, "integrated_gradients") == (0, 5)
    assert re.search(r'<input[^>]*data-toggle="integrated_gradients"', dom)
    assert not re.search(r'<input(?=[^>]*data-toggle="integrated_gradients")[^>]*checked', dom)
    # the class names are text in the browser's DOM, never elements
    assert "&lt;b&gt;L" in dom and "<b>L" not in dom


def test_sort_and_enlarge_through_the_fragment(browser, page):
    dom = dump(browser, page, "#sort=method&dir=desc&example=1")
    assert re.search(r'<body[^>]*data-sort="method:desc"', dom)
    from tf_pathattr.methods.registry import short_name as _short_name

    by_short = sorted(["gradients", "integrated_gradients"], key=_short_name)  # the column shows short names
    assert re.findall(r'<tr data-method="([^"]+)"', dom) == by_short[::-1]
    assert re.search(r'<body[^>]*data-example="1"', dom)
    modal = re.search(r'<div id="modal"[^>]*>(.*?)</div>\s*<script', dom, re.S)
    assert modal and "<figure>" in modal.group(1) and "example 1" in modal.group(1)
    dom = dump(browser, page, "#sort=method&dir=asc")
    assert re.findall(r'<tr data-method="([^"]+)"', dom) == by_short


@pytest.mark.slow
def test_screenshots_are_not_blank_and_differ_by_toggle_state(browser, page, tmp_path):
    both = shot(browser, page, tmp_path / "both.png")
    one = shot(browser, page, tmp_path / "one.png", "#methods=gradients")
    assert (both.sum(axis=-1) < 600).mean() > 0.02  # ink on the page, not a white sheet
    assert np.abs(both - one).sum(axis=-1).astype(bool).mean() > 0.001


@pytest.mark.slow
def test_demo_report_screenshot(browser, quick_demo, tmp_path):
    """The demo writes report.html; Chromium draws it (docs/report.png with TF_PATHATTR_UPDATE_SCREENSHOTS=1)."""
    res, demo, _ = quick_demo
    assert res.returncode == 0, res.stderr[-3000:]
    report = demo / "report.html"
    assert report.exists() and report.stat().st_size < 5 * 1024 * 1024
    dom = dump(browser, report)
    assert 'data-ready="1"' in dom and "integrated_gradients" in dom
    pixels = shot(browser, report, tmp_path / "report.png", size="1400,1800")
    assert (pixels.sum(axis=-1) < 600).mean() > 0.02
    if os.environ.get("TF_PATHATTR_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(tmp_path / "report.png", REPO / "docs" / "report.png")
