"""Shared fixtures: small Keras models with known properties, and the PAIR `saliency` shim."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer tests (still run in CI)")


@pytest.fixture
def toy_cnn():
    """8x8x3 -> Conv2D(4, tanh) -> GAP -> Dense(3) logits: smooth, so completeness is tight."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])


def make_smooth_cnn(size=16, channels=3, classes=10, seed=0):
    """Conv-tanh -> AvgPool -> Conv-softplus -> GAP -> Dense-tanh -> Dense logits."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((size, size, channels)),
        keras.layers.Conv2D(8, 3, padding="same", activation="tanh"),
        keras.layers.AveragePooling2D(2),
        keras.layers.Conv2D(8, 3, padding="same", activation="softplus"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(16, activation="tanh"),
        keras.layers.Dense(classes),
    ])


@pytest.fixture
def smooth_cnn():
    return make_smooth_cnn()


def make_linear_model(weights, bias=0.0):
    """F(x) = x . w + b per output (Dense without activation); returns (model, W [d, C])."""
    w = np.asarray(weights, np.float32)
    if w.ndim == 1:
        w = w[:, None]
    d, c = w.shape
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(c)])
    model.layers[-1].set_weights([w, np.full((c,), bias, np.float32)])
    return model, w


@pytest.fixture
def rng():
    return np.random.default_rng(0)
