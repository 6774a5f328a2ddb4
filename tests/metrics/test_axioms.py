"""Completeness gap (metrics.md section 8) on Integrated Gradients and closed forms."""

import numpy as np

import tf_pathattr as tpa
from tf_pathattr.metrics import completeness_gap


def test_linear_model_exact(rng):
    from tf_pathattr.testing import models as zoo

    model, w = zoo.linear_model([[1.0, -2.0], [0.5, 3.0], [2.0, 0.0]], bias=0.3)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    base = rng.normal(size=(3,)).astype(np.float32)
    exact = (x - base) * w[:, 1]
    res = completeness_gap(model, x, exact, target=1, baseline=base)
    np.testing.assert_allclose(res.delta, 0.0, atol=1e-5)
    np.testing.assert_allclose(res.f_x - res.f_ref, exact.sum(1), rtol=1e-5)
    # twice the attribution: delta = F(x) - F(b), relative gap 1
    res2 = completeness_gap(model, x, 2 * exact, target=1, baseline=base)
    np.testing.assert_allclose(res2.delta, exact.sum(1), rtol=1e-5)
    np.testing.assert_allclose(res2.relative, 1.0, rtol=1e-5)
    # reference scores given directly
    res3 = completeness_gap(model, x, exact, target=1, reference_scores=float(base @ w[:, 1] + 0.3))
    np.testing.assert_allclose(res3.delta, 0.0, atol=1e-5)


def test_integrated_gradients_gap_is_small_and_matches_its_delta(smooth_cnn):
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 3)).astype(np.float32)
    attr, delta = tpa.integrated_gradients(smooth_cnn, x, n_steps=32, return_convergence_delta=True)
    res = completeness_gap(smooth_cnn, x, attr)
    np.testing.assert_allclose(res.delta, delta.numpy(), atol=1e-5)
    assert res.median_relative < 1e-3 and res.max_relative < 1e-3
    # a coarse left Riemann sum leaves a visible gap: the metric detects it
    coarse = tpa.integrated_gradients(smooth_cnn, x, n_steps=2, rule="riemann_left")
    assert completeness_gap(smooth_cnn, x, coarse).median_relative > 10 * res.median_relative


def test_several_baselines_use_mean_reference(toy_cnn):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    bases = rng.normal(size=(3, 8, 8, 3)).astype(np.float32)
    attr = tpa.integrated_gradients(toy_cnn, x, target=1, baseline=bases, n_steps=32)
    res = completeness_gap(toy_cnn, x, attr, target=1, baseline=bases)
    f_b = toy_cnn(bases).numpy()[:, 1].mean()
    np.testing.assert_allclose(res.f_ref, f_b, rtol=1e-5)
    assert res.max_relative < 1e-3
