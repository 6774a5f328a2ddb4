"""ROAD: the noisy linear imputer against worked vectors (metrics_faithfulness.md 4.6) and a dense numpy
re-statement of its equations; the removal protocol; accuracy curves on a model."""

import keras
import numpy as np
import pytest

from tf_pathattr.metrics import road
from tf_pathattr.metrics.road import noisy_linear_imputation, road_masks


def dense_imputation(img, keep):
    """The equations of the paper / released imputer solved densely, one unknown at a time in a loop."""
    h, w = keep.shape
    unknown = [(i, j) for i in range(h) for j in range(w) if not keep[i, j]]
    pos = {p: k for k, p in enumerate(unknown)}
    a = np.zeros((len(unknown), len(unknown)))
    rhs = np.zeros((len(unknown),) + img.shape[2:])
    for k, (i, j) in enumerate(unknown):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if (di, dj) == (0, 0) or not (0 <= i + di < h and 0 <= j + dj < w):
                    continue
                wt = 1 / 6 if di == 0 or dj == 0 else 1 / 12
                a[k, k] -= wt
                q = (i + di, j + dj)
                if q in pos:
                    a[k, pos[q]] += wt
                else:
                    rhs[k] -= wt * img[q]
    sol = np.linalg.solve(a, rhs)
    out = img.astype(np.float64).copy()
    for k, p in enumerate(unknown):
        out[p] = sol[k]
    return out


def test_worked_vectors():
    img = np.array([[0, 1, 4], [9, 16, 25], [36, 49, 64]], np.float64)
    keep = np.ones((3, 3), bool)
    keep[1, 1] = False
    assert noisy_linear_imputation(img, keep, 0.0)[1, 1] == pytest.approx(22.666667, abs=1e-6)
    keep = np.ones((3, 3), bool)
    keep[0, 0] = False
    assert noisy_linear_imputation(img, keep, 0.0)[0, 0] == pytest.approx(7.2, abs=1e-9)
    img4 = np.array([[1, 2, 3, 4], [2, 5, 1, 0], [3, 1, 4, 1], [0, 2, 2, 6]], np.float64)
    keep = np.ones((4, 4), bool)
    keep[1, 1] = keep[1, 2] = False
    out = noisy_linear_imputation(img4, keep, 0.0)
    np.testing.assert_allclose([out[1, 1], out[1, 2]], [2.114286, 2.185714], atol=1e-6)
    rgb = np.stack([img4, 2 * img4, img4 + 1], -1)
    out = noisy_linear_imputation(rgb, keep, 0.0)
    np.testing.assert_allclose(out[1, 1], [2.114286, 4.228571, 3.114286], atol=1e-6)
    np.testing.assert_allclose(out[1, 2], [2.185714, 4.371429, 3.185714], atol=1e-6)


def test_linear_ramp_border_and_constant():
    i, j = np.mgrid[0:6, 0:6]
    ramp = 2 * i - 0.5 * j + 1.0
    keep = np.ones((6, 6), bool)
    keep[2:4, 1:5] = False
    np.testing.assert_allclose(noisy_linear_imputation(ramp, keep, 0.0), ramp, atol=1e-12)
    keep = np.ones((6, 6), bool)
    keep[0, 2] = False
    assert noisy_linear_imputation(ramp, keep, 0.0)[0, 2] == pytest.approx(1.0)  # true value 0: one-sided
    const = np.full((6, 6, 2), 3.5)
    keep = np.random.default_rng(0).random((6, 6)) < 0.2
    keep[0, 0] = True
    np.testing.assert_allclose(noisy_linear_imputation(const, keep, 0.0), const, atol=1e-12)


def test_matches_dense_restatement_and_noise_statistics():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(9, 7, 3))
    keep = rng.random((9, 7)) < 0.4
    ours = noisy_linear_imputation(img, keep, 0.0)
    np.testing.assert_allclose(ours, dense_imputation(img, keep), atol=1e-10)
    np.testing.assert_array_equal(ours[keep], img[keep])
    big = rng.normal(size=(40, 40, 3))
    keep = rng.random((40, 40)) < 0.5
    clean = noisy_linear_imputation(big, keep, 0.0)
    noisy = noisy_linear_imputation(big, keep, 0.01, np.random.default_rng(2))
    res = (noisy - clean)[~keep]
    assert abs(res.mean()) < 1e-3 and res.std() == pytest.approx(0.01, rel=0.05)
    np.testing.assert_array_equal(noisy[keep], big[keep])
    with pytest.raises(ValueError, match="every pixel"):
        noisy_linear_imputation(img, np.zeros((9, 7), bool), 0.0)


def test_removal_counts_orders_and_nesting():
    rng = np.random.default_rng(3)
    umap = rng.normal(size=(2, 6, 5))
    fr = (0.1, 0.2, 0.3, 0.5, 0.9)
    morf = road_masks(umap, fr, "morf", seed=0)
    lerf = road_masks(umap, fr, "lerf", seed=0)
    for j, p in enumerate(fr):
        np.testing.assert_array_equal(morf[j].reshape(2, -1).sum(1), int(np.floor(30 * p)))
        np.testing.assert_array_equal(lerf[j].reshape(2, -1).sum(1), int(np.floor(30 * p)))
    assert np.all(morf[:-1] <= morf[1:]) and np.all(lerf[:-1] <= lerf[1:])  # nested
    for i in range(2):  # MoRF takes the largest signed sums, LeRF the smallest
        k = int(np.floor(30 * 0.2))
        order = np.argsort(-umap[i].reshape(-1), kind="stable")
        assert set(np.flatnonzero(morf[1, i].reshape(-1))) == set(order[:k])
        assert set(np.flatnonzero(lerf[1, i].reshape(-1))) == set(order[-k:])


def test_road_curves_on_a_model(smooth_cnn):
    rng = np.random.default_rng(4)
    x = rng.random((3, 16, 16, 3)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    fr = (0.2, 0.5, 0.9)
    r = road(smooth_cnn, x, attr, order="both", fractions=fr, seed=5)
    pred = np.asarray(smooth_cnn(x)).argmax(1)
    np.testing.assert_array_equal(r.labels, pred)
    assert r.clean_accuracy == 1.0
    # restatement: impute with the same keys, run the model, compare with the predicted class
    for o, oi in (("morf", 0), ("lerf", 1)):
        masks = road_masks(attr.sum(-1), fr, o, seed=5)
        for j in range(len(fr)):
            imgs = np.stack(
                [
                    noisy_linear_imputation(x[i], ~masks[j, i], 0.01, np.random.default_rng([5, i, j, oi]))
                    for i in range(3)
                ]
            ).astype(np.float32)
            out = np.asarray(smooth_cnn(imgs), np.float64)
            np.testing.assert_array_equal(r.correct[o][:, j], (out.argmax(1) == pred).astype(float))
            p = np.exp(out - out.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            np.testing.assert_allclose(r.probability[o][:, j], p[np.arange(3), pred], atol=1e-5)
        assert r.area[o] == pytest.approx(np.trapezoid(r.accuracy[o], fr) / 0.7)
    assert r.gap == pytest.approx(r.area["lerf"] - r.area["morf"])


def test_road_transform_and_labels():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    rng = np.random.default_rng(6)
    x = rng.random((2, 8, 8, 1)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    r = road(model, x, attr, labels=[0, 1], fractions=(0.5,), transform=lambda v: (v - 0.5) / 0.25, seed=0)
    np.testing.assert_array_equal(r.labels, [0, 1])
    with pytest.raises(ValueError, match="fractions"):
        road(model, x, attr, fractions=(0.0, 1.0))
