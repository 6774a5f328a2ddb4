"""MEB ablation (metrics.md section 5): seeds, end points, hand-computed curve on a linear model."""

import numpy as np
import pytest
import tensorflow as tf

from tf_pathattr.metrics import meb_ablation
from tf_pathattr.testing import models as zoo


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def linear_classifier(d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, classes)).astype(np.float32)
    b = rng.normal(size=classes).astype(np.float32)
    model, _ = zoo.linear_model(w, b)
    return model, w.astype(np.float64), b.astype(np.float64)


def test_seed_determinism_and_end_points():
    model, w, b = linear_classifier()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    kw = dict(low=-2.0, high=2.0, order="both", n_draws=5)
    r1 = meb_ablation(model, x, attr, seed=3, **kw)
    r2 = meb_ablation(model, x, attr, seed=3, **kw)
    r3 = meb_ablation(model, x, attr, seed=4, **kw)
    for o in ("morf", "lerf"):
        np.testing.assert_array_equal(r1.curves[o], r2.curves[o])
        assert not np.allclose(r1.curves[o], r3.curves[o])
    cls = (x @ w + b).argmax(1)
    clean = softmax(x @ w + b)[np.arange(4), cls]
    np.testing.assert_allclose(r1.curves["morf"][:, 0], clean, atol=1e-6)
    np.testing.assert_allclose(r1.curves["lerf"][:, 0], clean, atol=1e-6)
    # q = 1: the score of pure MEB samples, identical for MoRF and LeRF; draws keyed by (seed, r)
    np.testing.assert_array_equal(r1.curves["morf"][:, -1], r1.curves["lerf"][:, -1])
    noise = np.stack([-2.0 + 4.0 * tf.random.stateless_uniform(x.shape, seed=[3, r]).numpy() for r in range(5)])
    pure = np.mean([softmax(nz @ w + b)[np.arange(4), cls] for nz in noise], axis=0)
    np.testing.assert_allclose(r1.curves["morf"][:, -1], pure, atol=1e-5)
    np.testing.assert_allclose(r1.gap, r1.auc["lerf"] - r1.auc["morf"])
    np.testing.assert_allclose(r1.auc["morf"], np.trapezoid(r1.curves["morf"], r1.fractions, axis=1))


def test_curve_matches_numpy_restatement_with_preprocess():
    model, w, b = linear_classifier(d=5, classes=2, seed=2)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    attr[2] = 1.0  # ties: lower index first
    mu, sd = 127.5, 60.0

    def preprocess(raw):
        return (raw - mu) / sd

    fr = np.array([0.0, 0.2, 0.4, 0.6, 1.0])
    r = meb_ablation(
        model,
        x,
        attr,
        target=1,
        low=0.0,
        high=255.0,
        preprocess=preprocess,
        fractions=fr,
        order="morf",
        n_draws=3,
        seed=9,
        score="logit",
    )
    noise = np.stack([preprocess(255.0 * tf.random.stateless_uniform(x.shape, seed=[9, k]).numpy()) for k in range(3)])
    for i in range(3):
        order = sorted(range(5), key=lambda j: (-abs(attr[i, j]), j))
        expect = []
        for q in fr:
            k = int(round(q * 5))
            vals = []
            for nz in noise:
                cur = x[i].astype(np.float64).copy()
                cur[order[:k]] = nz[i, order[:k]]
                vals.append(cur @ w[:, 1] + b[1])
            expect.append(np.mean(vals))
        np.testing.assert_allclose(r.curves["morf"][i], expect, atol=1e-4)
    assert r.gap is None


def test_images_replace_whole_pixels(toy_cnn):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    r = meb_ablation(toy_cnn, x, attr, low=0.0, high=1.0, n_draws=2, seed=0, order="lerf", score="accuracy")
    assert r.curves["lerf"].shape == (2, 11)
    np.testing.assert_array_equal(r.curves["lerf"][:, 0], 1.0)  # predicted class at q = 0
    assert set(np.unique(r.curves["lerf"] * 2)) <= {0.0, 1.0, 2.0}


def test_errors(toy_cnn):
    x = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="order"):
        meb_ablation(toy_cnn, x, x, low=0, high=1, order="random")
    with pytest.raises(ValueError, match="high > low"):
        meb_ablation(toy_cnn, x, x, low=1, high=1)
    with pytest.raises(ValueError, match="fractions"):
        meb_ablation(toy_cnn, x, x, low=0, high=1, fractions=[0.5, 0.2])
    with pytest.raises(ValueError, match="n_draws"):
        meb_ablation(toy_cnn, x, x, low=0, high=1, n_draws=0)
