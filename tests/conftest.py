"""Shared fixtures (models from the shipped zoo, tf_pathattr.testing.models) and the --run-slow option."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tf_pathattr.testing import models as zoo  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run the tests marked slow (CI does: `pytest --run-slow --durations=25`)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer tests, skipped unless --run-slow (CI runs them)")


def _slow_list():
    """Node ids from tests/slow_tests.txt (written by tools/mark_slow.py from measured durations)."""
    path = Path(__file__).with_name("slow_tests.txt")
    if not path.exists():
        return set()
    lines = (line.partition("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {line for line in lines if line}


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` the tests listed in tests/slow_tests.txt (a function id covers all its parametrizations),
    then skip ``slow`` tests unless ``--run-slow``: the default ``pytest`` is the fast loop (under 5 minutes on
    2 cores); ``pytest --run-slow`` runs everything. ``-m slow`` selects the slow tests explicitly and runs them."""
    listed = _slow_list()
    for item in items:
        if item.nodeid in listed or item.nodeid.split("[", 1)[0] in listed:
            item.add_marker(pytest.mark.slow)
    if config.getoption("--run-slow") or "slow" in (config.getoption("-m") or ""):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def toy_cnn():
    """8x8x3 -> Conv2D(4, tanh) -> GAP -> Dense(3) logits: smooth, so completeness is tight."""
    return zoo.toy_cnn()


@pytest.fixture
def smooth_cnn():
    return zoo.smooth_cnn()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """``tf-pathattr demo --quick`` run once as a user runs it (a fresh interpreter, no TF_CPP_MIN_LOG_LEVEL),
    shared by the tests that check its picture, table and report: ``(completed process, out folder, cache)``."""
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), TF_PATHATTR_CACHE=str(root / "cache"))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    res = subprocess.run(
        [sys.executable, "-m", "tf_pathattr.cli", "demo", "--out", str(root / "demo"), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return res, root / "demo", root / "cache"
