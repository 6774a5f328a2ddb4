"""Ground-truth data sets: determinism by seed, ground truth exactness, and trainability."""

import sys
from pathlib import Path

import numpy as np
import pytest

import tf_pathattr as tpa
from tf_pathattr import data


def test_pattern_images_deterministic_and_masks_hold_the_pattern():
    x, y, m = data.pattern_images(40, size=24, seed=3)
    x2, y2, m2 = data.pattern_images(40, size=24, seed=3)
    x3, _, _ = data.pattern_images(40, size=24, seed=4)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(m, m2)
    assert not np.array_equal(x, x3)
    assert x.shape == (40, 24, 24, 1) and x.dtype == np.float32 and m.shape == (40, 24, 24)
    assert x.min() >= 0 and x.max() <= 1 and set(np.unique(y)) <= {0, 1, 2, 3}
    for i in range(40):
        assert m[i].sum() == 25
        rows, cols = np.nonzero(m[i])
        patch = x[i, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1, 0]
        np.testing.assert_array_equal(patch[data.PATTERNS[y[i]] > 0], 1.0)  # the stamp of the class
        # no distractor touches the pattern's footprint (1-pixel margin kept free of bright pixels)
        ring = np.zeros_like(m[i])
        ring[max(rows.min() - 1, 0) : rows.max() + 2, max(cols.min() - 1, 0) : cols.max() + 2] = True
        ring &= ~m[i]
        assert np.all(x[i, ..., 0][ring] < 0.6)
    x3c, _, _ = data.pattern_images(4, seed=0, channels=3)
    assert x3c.shape == (4, 32, 32, 3)
    with pytest.raises(ValueError, match="size"):
        data.pattern_images(2, size=8)


def test_tabular_deterministic_correlation_and_exact_models():
    p1 = data.tabular_gaussian(3000, d=4, rho=0.6, function="additive", seed=1)
    p2 = data.tabular_gaussian(3000, d=4, rho=0.6, function="additive", seed=1)
    np.testing.assert_array_equal(p1.x, p2.x)
    np.testing.assert_array_equal(p1.y, p2.y)
    c = np.corrcoef(p1.x.T)
    assert np.allclose(c[~np.eye(4, dtype=bool)], 0.6, atol=0.05)
    model = p1.keras_model()
    np.testing.assert_allclose(model(p1.x[:50]).numpy()[:, 0], p1.function(p1.x[:50]), rtol=1e-5, atol=1e-5)
    assert set(np.unique(p1.labels)) == {0, 1}
    lin = data.tabular_gaussian(100, d=5, rho=0.3, function="linear", seed=2)
    np.testing.assert_allclose(lin.keras_model()(lin.x).numpy()[:, 0], lin.x @ lin.weights, rtol=1e-5, atol=1e-5)


def test_integrated_gradients_matches_tabular_ground_truth():
    lin = data.tabular_gaussian(8, d=5, rho=0.5, function="linear", seed=0)
    attr = tpa.integrated_gradients(lin.keras_model(), lin.x, n_steps=50).numpy()
    np.testing.assert_allclose(attr, lin.ground_truth(lin.x, 0.0), atol=1e-5)  # float precision
    add = data.tabular_gaussian(8, d=8, rho=0.5, function="additive", seed=0)
    base = np.full(8, 0.3, np.float32)
    attr = tpa.integrated_gradients(add.keras_model(), add.x, baseline=base, n_steps=50).numpy()
    np.testing.assert_allclose(attr, add.ground_truth(add.x, base), atol=1e-4)  # Gauss-Legendre error only


def test_shapley_values():
    lin = data.tabular_gaussian(6, d=4, rho=0.0, function="linear", seed=5, mean=0.5)
    # independent features: conditional Shapley = w_i (x_i - mu_i)
    np.testing.assert_allclose(lin.shapley_conditional(lin.x), lin.weights * (lin.x - 0.5), atol=1e-9)
    cor = data.tabular_gaussian(6, d=4, rho=0.7, function="linear", seed=5)
    phi = cor.shapley_conditional(cor.x)
    np.testing.assert_allclose(phi.sum(1), cor.function(cor.x) - cor.weights @ cor.mean, atol=1e-9)  # efficiency
    assert not np.allclose(phi, cor.weights * cor.x)  # correlation changes the observational values
    add = data.tabular_gaussian(500, d=4, function="additive", seed=6)
    bg = add.x[:400]
    m = add.shapley_marginal(add.x[400:], bg)
    np.testing.assert_allclose(m.sum(1), add.function(add.x[400:]) - add.function(bg).mean(), atol=1e-9)


def test_trigger_tokens():
    ids, labels, masks = data.trigger_tokens(200, length=12, vocab=30, seed=7)
    ids2, labels2, masks2 = data.trigger_tokens(200, length=12, vocab=30, seed=7)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(masks, masks2)
    assert ids.shape == (200, 12) and ids.dtype == np.int32
    np.testing.assert_array_equal(masks, (ids >= 1) & (ids <= 3))
    np.testing.assert_array_equal(labels, masks.any(1).astype(np.int32))
    assert ids.min() >= 1 and ids.max() < 30 and 0.3 < labels.mean() < 0.7


def test_sklearn_loaders():
    x, y = data.load_digits_images()
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert set(np.unique(y)) == set(range(10))
    xb, yb, names = data.load_breast_cancer_standardized()
    assert xb.shape == (569, 30) and len(names) == 30
    np.testing.assert_allclose(xb.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(xb.std(0), 1, atol=1e-4)


def test_quick_training_reaches_stated_accuracy():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import quality

    _, _, _, acc = quality.train_pattern(n_train=1200, n_test=200, epochs=2)
    assert acc >= 0.9  # the pattern CNN (stated in QUALITY.md: 1.000 with the full settings)
    _, _, _, dacc = quality.train_digits(epochs=4)
    assert dacc >= 0.9
    _, _, _, r2 = quality.train_tabular(n_train=4000, epochs=10)
    assert r2 >= 0.75  # MLP on the additive tabular function
