"""MuFidelity: closed forms (metrics_faithfulness.md 3.6), the cell map against TF's nearest resize, and a
numpy re-statement of xplique's published algorithm (xplique itself pins an older TensorFlow)."""

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from tf_pathattr.metrics import mu_fidelity
from tf_pathattr.metrics.mu_fidelity import grid_cells

SUBSETS = [{0}, {1}, {2}, {3}, {0, 1}, {2, 3}, {0, 3}, {1, 2, 3}]


def removed_from(subsets, d=4):
    return np.array([[[i in s for i in range(d)] for s in subsets]])


def test_linear_model_with_matching_baseline_gives_one():
    w = np.array([0.5, -1.0, 2.0, 1.5], np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.layers[-1].set_weights([w[:, None], np.zeros(1, np.float32)])
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    rem = removed_from(SUBSETS)
    for corr in ("pearson", "spearman"):
        r = mu_fidelity(model, x, w * x, removed=rem, correlation=corr)
        assert r.mu_fidelity[0] == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(r.drops, r.attribution_sums, atol=1e-5)  # drop = removed mass exactly
        assert mu_fidelity(model, x, -w * x, removed=rem, correlation=corr).mu_fidelity[0] == pytest.approx(
            -1.0, abs=1e-6
        )


def test_pearson_differs_from_spearman_on_a_square():
    def f(v):
        return tf.reduce_sum(v, axis=-1) ** 2

    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    phi = np.array([[10.0, 20.0, 30.0, 40.0]])
    rem = removed_from(SUBSETS)
    p = mu_fidelity(f, x, phi, removed=rem)
    s = mu_fidelity(f, x, phi, removed=rem, correlation="spearman")
    np.testing.assert_allclose(p.drops[0], [19, 36, 51, 64, 51, 91, 75, 99], atol=1e-4)
    np.testing.assert_allclose(p.attribution_sums[0], [10, 20, 30, 40, 30, 70, 50, 90])
    assert p.mu_fidelity[0] == pytest.approx(0.972659, abs=1e-6)
    assert s.mu_fidelity[0] == pytest.approx(1.0, abs=1e-12)
    assert scipy.stats.pearsonr(p.drops[0], p.attribution_sums[0])[0] == pytest.approx(0.972659, abs=1e-6)


@pytest.mark.parametrize(
    "h, sizes",
    [
        (28, [3, 3, 3, 3, 4, 3, 3, 3, 3]),
        (32, [4, 3, 4, 3, 4, 3, 4, 3, 4]),
        (64, [7, 7, 7, 7, 8, 7, 7, 7, 7]),
        (224, [25, 25, 25, 25, 24, 25, 25, 25, 25]),
    ],
)
def test_cell_map_is_tf_nearest_resize(h, sizes):
    cells = np.arange(9, dtype=np.float32).reshape(1, 9, 1, 1) * np.ones((1, 9, 9, 1), np.float32)
    resized = tf.image.resize(cells, (h, h), method="nearest").numpy()[0, :, 0, 0].astype(int)
    np.testing.assert_array_equal(grid_cells(h, 9), resized)
    np.testing.assert_array_equal(np.bincount(grid_cells(h, 9)), sizes)


def xplique_restatement(model, x, phi, removed, grid, baseline, target):
    """xplique's MuFidelity written out: mask = resize(cell keep grid, nearest), x~ = x*mask + (1-mask)*base,
    drop = f(x) - f(x~) with f = output . one_hot(target), attr = sum(phi * (1 - mask)), Spearman per input."""
    b, h, w, c = x.shape
    out = []
    for i in range(b):
        keep = (~removed[i]).astype(np.float32).reshape(-1, grid, grid, 1)
        mask = tf.image.resize(keep, (h, w), method="nearest").numpy()  # [n, h, w, 1]
        xt = x[i][None] * mask + (1 - mask) * baseline
        f0 = np.asarray(model(x[i : i + 1]))[0, target[i]]
        ft = np.asarray(model(xt.astype(np.float32)))[:, target[i]]
        attrs = (phi[i][None] * (1 - mask)).reshape(len(xt), -1).sum(1)
        out.append(scipy.stats.spearmanr(f0 - ft, attrs)[0])
    return np.asarray(out)


def test_xplique_restatement_on_a_cnn(smooth_cnn):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    phi = rng.normal(size=x.shape)
    target = np.array([3, 7])
    r = mu_fidelity(smooth_cnn, x, phi, target, nb_samples=40, correlation="spearman", seed=1)
    assert r.removed.shape == (2, 40, 81)
    assert 0.1 < r.removed.mean() < 0.3  # Bernoulli(0.2) per cell
    ref = xplique_restatement(smooth_cnn, x, phi, r.removed, 9, 0.0, target)
    np.testing.assert_allclose(r.mu_fidelity, ref, atol=1e-6)
    # the same draws whatever else is in the batch
    alone = mu_fidelity(smooth_cnn, x[:1], phi[:1], target[:1], nb_samples=40, correlation="spearman", seed=1)
    np.testing.assert_array_equal(alone.removed[0], r.removed[0])


def test_exact_subsets_and_per_pixel_maps(smooth_cnn):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 16, 16, 3)).astype(np.float32)
    phi = rng.normal(size=x.shape)
    r = mu_fidelity(smooth_cnn, x, phi, subset="exact", nb_samples=10)
    np.testing.assert_array_equal(r.removed.sum(-1), 16)  # round(0.2 * 81)
    r2 = mu_fidelity(smooth_cnn, x, phi.sum(-1), subset="exact", nb_samples=10)
    np.testing.assert_allclose(r2.mu_fidelity, r.mu_fidelity, atol=1e-9)
