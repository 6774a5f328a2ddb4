import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa

from conftest import make_linear_model


def test_zero_noise_equals_wrapped_method_and_vargrad_is_zero(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    ig = tpa.integrated_gradients(toy_cnn, x, 1, n_steps=8)
    sg = tpa.noise_tunnel("integrated_gradients", toy_cnn, x, 1, stdevs=0.0, nt_samples=3, n_steps=8)
    np.testing.assert_allclose(sg, ig, rtol=1e-6, atol=1e-8)
    sq = tpa.noise_tunnel("ig", toy_cnn, x, 1, nt_type="smoothgrad_sq", stdevs=0.0, nt_samples=3, n_steps=8)
    np.testing.assert_allclose(sq, ig.numpy() ** 2, rtol=1e-5, atol=1e-10)
    vg = tpa.noise_tunnel("ig", toy_cnn, x, 1, nt_type="vargrad", stdevs=0.0, nt_samples=3, n_steps=8)
    assert np.max(np.abs(vg)) < 1e-10


def test_injected_noise_matches_numpy(rng):
    model, w = make_linear_model(rng.normal(size=(4, 2)))
    x = rng.normal(size=(3, 4)).astype("float32")
    eps = rng.normal(size=(5, 3, 4)).astype("float32")
    sigma = 0.2 * (x.max(1) - x.min(1))
    noisy = x[None] + eps * sigma[None, :, None]
    # gradient x input of a linear model: w * (x + eps)
    per = noisy * w[:, 1]
    for nt_type, expected in [("smoothgrad", per.mean(0)), ("smoothgrad_sq", (per ** 2).mean(0)),
                              ("vargrad", per.var(0))]:
        out = tpa.noise_tunnel("gradients", model, x, 1, nt_type=nt_type, nt_samples=5, stdevs=0.2, noise=eps,
                               multiply_by_inputs=True, nt_samples_batch_size=2)
        np.testing.assert_allclose(out, expected, rtol=2e-5, atol=1e-6)


def test_vargrad_non_negative_and_seeded(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    a = tpa.noise_tunnel("ig", toy_cnn, x, None, nt_type="vargrad", nt_samples=6, seed=4, n_steps=8)
    assert float(tf.reduce_min(a)) >= 0.0
    b = tpa.noise_tunnel("ig", toy_cnn, x, None, nt_type="vargrad", nt_samples=6, seed=4, n_steps=8,
                         nt_samples_batch_size=4)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)
    c = tpa.noise_tunnel("ig", toy_cnn, x, None, nt_type="vargrad", nt_samples=6, seed=5, n_steps=8)
    assert np.max(np.abs(a.numpy() - c.numpy())) > 0


def test_smoothgrad_completeness(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    eps = rng.normal(size=(4, 2, 8, 8, 3)).astype("float32")
    sg, delta = tpa.noise_tunnel("ig", toy_cnn, x, 2, nt_samples=4, noise=eps, stdevs=0.1, n_steps=32,
                                 return_convergence_delta=True)
    sigma = 0.1 * (x.reshape(2, -1).max(1) - x.reshape(2, -1).min(1))
    f_noisy = np.mean([toy_cnn(x + eps[j] * sigma[:, None, None, None]).numpy()[:, 2] for j in range(4)], axis=0)
    f_base = toy_cnn(np.zeros_like(x)).numpy()[:, 2]
    np.testing.assert_allclose(sg.numpy().reshape(2, -1).sum(1), f_noisy - f_base, atol=1e-5)
    assert np.max(np.abs(delta)) < 1e-5


def test_predicted_target_is_resolved_on_clean_inputs(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    pred = np.argmax(toy_cnn(x).numpy(), 1)
    a = tpa.noise_tunnel("ig", toy_cnn, x, None, nt_samples=3, seed=1, stdevs=0.5, n_steps=8)
    b = tpa.noise_tunnel("ig", toy_cnn, x, pred, nt_samples=3, seed=1, stdevs=0.5, n_steps=8)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_per_example_baseline_is_tiled(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    base = rng.random((2, 8, 8, 3)).astype("float32")
    a = tpa.noise_tunnel("ig", toy_cnn, x, 0, stdevs=0.0, nt_samples=2, baseline=base, n_steps=8)
    np.testing.assert_allclose(a, tpa.integrated_gradients(toy_cnn, x, 0, baseline=base, n_steps=8), rtol=1e-6)


def test_by_name_through_attribute(toy_cnn, rng):
    x = rng.random((1, 8, 8, 3)).astype("float32")
    a = tpa.attribute(toy_cnn, x, 0, method="noise_tunnel", base_method="gradients", nt_samples=3, seed=2)
    b = tpa.noise_tunnel("gradients", toy_cnn, x, 0, nt_samples=3, seed=2)
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("kwargs, match", [
    (dict(nt_type="median"), "nt_type must be one of"),
    (dict(nt_samples=0), "nt_samples must be >= 1"),
    (dict(stdevs=-1.0), "stdevs must be"),
    (dict(nt_type="vargrad", return_convergence_delta=True), "only defined for nt_type='smoothgrad'"),
    (dict(noise=np.zeros((2, 1, 8, 8, 3))), "noise must have shape"),
])
def test_errors(toy_cnn, kwargs, match):
    x = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match=match):
        tpa.noise_tunnel("ig", toy_cnn, x, 0, **kwargs)
    with pytest.raises(ValueError, match="unknown method"):
        tpa.noise_tunnel("nope", toy_cnn, x, 0)
