import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa


def test_left_plus_right_is_ig(toy_cnn, rng):
    x = rng.random((3, 8, 8, 3)).astype("float32")
    for ratio in (0.0, 0.5, 0.95, 1.0):
        left, right = tpa.split_integrated_gradients(
            toy_cnn, x, 1, ratio=ratio, n_steps=20, rule="riemann_right", internal_batch_size=21
        )
        ig = tpa.integrated_gradients(toy_cnn, x, 1, n_steps=20, rule="riemann_right")
        np.testing.assert_allclose(left.numpy() + right.numpy(), ig, rtol=1e-5, atol=1e-7)


def test_split_point_on_a_known_path():
    # F(z) = sigmoid(10 (z - 0.5)) summed; on the path from 0 to 1 the score crosses the midpoint at alpha = 0.5
    model = lambda z: tf.reduce_sum(tf.sigmoid(10.0 * (z - 0.5)), axis=1)  # noqa: E731
    x = np.ones((1, 3), np.float32)
    left, right, split = tpa.split_integrated_gradients(
        model, x, None, ratio=0.5, n_steps=100, rule="riemann_right", return_split_alpha=True
    )
    assert abs(float(split[0]) - 0.51) < 1e-6  # first right-Riemann node strictly above the midpoint
    # Left = the right-Riemann sum of F'(alpha) over the nodes 0.01 .. 0.50 (exactly), close to F(0.5) - F(0)
    nodes = np.arange(1, 51) / 100.0
    sig = 1 / (1 + np.exp(-10 * (nodes - 0.5)))
    exact_left = np.sum(0.01 * 3 * 10 * sig * (1 - sig))
    np.testing.assert_allclose(float(tf.reduce_sum(left)), exact_left, rtol=1e-5)
    f = lambda a: 3 / (1 + np.exp(-10 * (a - 0.5)))  # noqa: E731
    assert abs(exact_left - (f(0.5) - f(0.0))) < 0.04
    np.testing.assert_allclose(float(tf.reduce_sum(left + right)), f(1.0) - f(0.0), rtol=0.02)


def test_decreasing_path_uses_progress_direction(rng):
    model = lambda z: -tf.reduce_sum(z, axis=1)  # noqa: E731
    x = np.ones((1, 4), np.float32)
    left, right, split = tpa.split_integrated_gradients(
        model, x, None, ratio=0.5, n_steps=10, rule="riemann_right", return_split_alpha=True
    )
    assert abs(float(split[0]) - 0.6) < 1e-6
    np.testing.assert_allclose(tf.reduce_sum(left), -2.0, rtol=1e-5)


def test_errors(toy_cnn):
    x = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="ratio must be in"):
        tpa.split_integrated_gradients(toy_cnn, x, 0, ratio=1.5)
    with pytest.raises(ValueError, match="single baseline"):
        tpa.split_integrated_gradients(toy_cnn, x, 0, baseline=np.zeros((3, 8, 8, 3)))


def test_split_ig_quadrature_option_is_rule(toy_cnn):
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    left, right = tpa.split_integrated_gradients(toy_cnn, x, 1, n_steps=6, rule="riemann_left")
    np.testing.assert_allclose(
        left.numpy() + right.numpy(),
        tpa.integrated_gradients(toy_cnn, x, 1, n_steps=6, rule="riemann_left"),
        rtol=1e-5,
        atol=1e-7,
    )
    with pytest.warns(DeprecationWarning, match="rule="):
        tpa.split_integrated_gradients(toy_cnn, x, 1, n_steps=6, method="riemann_left")
    with pytest.raises(TypeError):
        tpa.split_integrated_gradients(toy_cnn, x, 1, 0.0)
