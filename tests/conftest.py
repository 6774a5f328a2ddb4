"""Shared fixtures: models from the zoo (tests/models.py), and the PAIR `saliency` shim."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import models as zoo  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer tests (still run in CI)")


# the zoo's builders under the names older tests import
make_smooth_cnn = zoo.smooth_cnn
make_linear_model = zoo.linear_model


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
