"""Baseline recipes other than the Maximum Entropy Baseline (see test_baselines.py for MEB)."""

import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.baselines import gaussian_blur, gaussian_kernel_1d


def test_constant_and_zeros_shapes():
    x = tf.zeros((2, 4, 4, 3))
    assert tpa.baselines.zeros().draw(x).shape == (1, 1, 4, 4, 3)
    c = tpa.baselines.constant(np.array([0.1, 0.2, 0.3])).draw(x)
    np.testing.assert_allclose(c[0, 0, 2, 1], [0.1, 0.2, 0.3], rtol=1e-6)


def test_gaussian_noise_is_seeded_and_centered_on_x(rng):
    x = tf.constant(rng.random((2, 16, 16, 3)).astype("float32"))
    b1 = tpa.baselines.gaussian_noise(0.1, n=4, seed=3).draw(x)
    b2 = tpa.baselines.gaussian_noise(0.1, n=4, seed=3).draw(x)
    np.testing.assert_array_equal(b1, b2)
    assert b1.shape == (4, 2, 16, 16, 3)
    assert abs(float(tf.math.reduce_std(b1 - x[None])) - 0.1) < 0.01
    clipped = tpa.baselines.gaussian_noise(0.5, seed=1, clip=(0.0, 1.0)).draw(x)
    assert float(tf.reduce_min(clipped)) >= 0 and float(tf.reduce_max(clipped)) <= 1


def test_blur_matches_scipy_reflect_mode(rng):
    from scipy.ndimage import gaussian_filter

    img = rng.random((1, 20, 24, 3)).astype("float32")
    ours = gaussian_blur(img, 2.0).numpy()[0]
    ref = gaussian_filter(img[0].astype(np.float64), sigma=[2.0, 2.0, 0], mode="mirror")
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(gaussian_kernel_1d(2.0).sum(), 1.0)
    assert tpa.baselines.blurred(2.0).draw(img).shape == (1, 1, 20, 24, 3)
    with pytest.raises(ValueError, match="too large"):
        gaussian_blur(img, 10.0)


def test_from_data_all_and_sampled(rng):
    bg = rng.random((5, 3)).astype("float32")
    x = tf.zeros((2, 3))
    all_ = tpa.baselines.from_data(bg).draw(x)
    assert all_.shape == (5, 1, 3)
    s1 = tpa.baselines.from_data(bg, n=8, seed=2).draw(x)
    s2 = tpa.baselines.from_data(bg, n=8, seed=2).draw(x)
    np.testing.assert_array_equal(s1, s2)
    assert all(any(np.allclose(row, b) for b in bg) for row in s1.numpy()[:, 0])
    with pytest.raises(ValueError, match="background examples have shape"):
        tpa.baselines.from_data(bg).draw(tf.zeros((2, 4)))


def test_preprocess_is_applied(rng):
    x = tf.zeros((2, 3))
    b = tpa.baselines.constant(255.0, preprocess=lambda z: z / 255.0).draw(x)
    np.testing.assert_allclose(b, 1.0)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: tpa.baselines.uniform(1.0, 0.0), "high > low"),
        (lambda: tpa.baselines.gaussian_noise(-1.0), "stddev"),
        (lambda: tpa.baselines.blurred(-2.0), "sigma"),
        (lambda: tpa.baselines.from_data(np.zeros((0, 3))), "non-empty"),
        (lambda: tpa.baselines.uniform(0, 1, n=0), "n must be >= 1"),
    ],
)
def test_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
