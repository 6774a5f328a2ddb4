"""Deletion / insertion curves against hand-computed curves (metrics.md section 1)."""

import keras
import numpy as np
import pytest
import scipy.ndimage

from tf_pathattr.metrics import deletion, insertion
from tf_pathattr.metrics.deletion_insertion import gaussian_kernel_rise, step_counts
from tf_pathattr.testing import models as zoo


def pixel_weight_model(weights_hw, channels, n_out=2):
    """Logit 0 = sum_{h,w,c} W[h,w] x[h,w,c] / C; logit 1 = its negative (a linear image model)."""
    h, w = weights_hw.shape
    model = keras.Sequential([keras.Input((h, w, channels)), keras.layers.Flatten(), keras.layers.Dense(n_out)])
    per = np.repeat(weights_hw.reshape(h, w, 1), channels, axis=2).reshape(-1) / channels
    kernel = np.stack([per, -per], axis=1)[:, :n_out].astype(np.float32)
    model.layers[-1].set_weights([kernel, np.zeros(n_out, np.float32)])
    return model


def test_fraction_present_model_gives_linear_curve_and_auc_half():
    # score = fraction of original (all-ones) pixels still present -> linear curve, AUC 0.5
    h = w = 6
    model = pixel_weight_model(np.full((h, w), 1.0 / (h * w)), channels=3)
    x = np.ones((2, h, w, 3), np.float32)
    rng = np.random.default_rng(0)
    attr = rng.random((2, h, w, 3))
    d = deletion(model, x, attr, target=0, score="logit", substrate="constant", substrate_value=0.0)
    assert d.curves.shape == (2, h + 1)  # default: one image row (w pixels) per step
    np.testing.assert_allclose(d.curves, np.tile(1.0 - np.arange(h + 1) / h, (2, 1)), atol=1e-6)
    np.testing.assert_allclose(d.auc, 0.5, atol=1e-6)
    ins = insertion(model, x, attr, target=0, score="logit", substrate="constant", substrate_value=0.0)
    np.testing.assert_allclose(ins.curves, np.tile(np.arange(h + 1) / h, (2, 1)), atol=1e-6)
    np.testing.assert_allclose(ins.auc, 0.5, atol=1e-6)
    np.testing.assert_allclose(d.fractions, np.arange(h + 1) / h)


def test_curve_follows_saliency_order_with_deterministic_ties():
    h, w = 4, 5
    rng = np.random.default_rng(1)
    wts = rng.normal(size=(h, w))
    model = pixel_weight_model(wts, channels=2)
    x = rng.random((3, h, w, 2)).astype(np.float32)
    attr = rng.normal(size=(3, h, w, 2))
    attr[1] = 0.7  # all ties: order = flat index
    attr[2, :, :, 1] = -attr[2, :, :, 0] + 1e-3 * rng.normal(size=(h, w))  # channels cancel: |sum| is tiny
    pps = 3
    d = deletion(model, x, attr, target=0, score="logit", pixels_per_step=pps, substrate_value=0.25)
    counts = step_counts(h * w, pixels_per_step=pps)
    assert counts[-1] == h * w and len(counts) == -(-h * w // pps) + 1
    for b in range(3):
        sal = np.abs(attr[b].sum(-1)).reshape(-1)
        # independent order: sort by (-saliency, index)
        order = sorted(range(h * w), key=lambda i: (-sal[i], i))
        xb = x[b].mean(-1).reshape(-1).astype(np.float64)
        expect = []
        for k in counts:
            cur = xb.copy()
            cur[order[:k]] = 0.25
            expect.append(cur @ wts.reshape(-1))
        np.testing.assert_allclose(d.curves[b], expect, atol=1e-5)
    # batch_size only changes how many points go into one model call
    d2 = deletion(model, x, attr, target=0, score="logit", pixels_per_step=pps, substrate_value=0.25, batch_size=4)
    np.testing.assert_allclose(d2.curves, d.curves, atol=1e-6)


def test_curves_on_a_cnn_match_an_independent_restatement(smooth_cnn):
    """Curve values (not only AUCs recomputed from the function's own curves): every point rebuilt in
    numpy (pixel order by |sum_c a|, zero substrate / scipy blur start), scored by the model's softmax."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    counts = np.rint(np.arange(11) * 256 / 10).astype(int)
    k = gaussian_kernel_rise(11, 5.0)

    def probs(v):
        lo = np.asarray(smooth_cnn(np.asarray(v, np.float32)), np.float64)
        e = np.exp(lo - lo.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    cls = probs(x).argmax(1)
    for fn in (deletion, insertion):
        r = fn(smooth_cnn, x, attr, n_steps=10)
        assert r.curves.shape == (3, 11)
        for b in range(3):
            sal = np.abs(attr[b].sum(-1)).reshape(-1)
            order = sorted(range(256), key=lambda i: (-sal[i], i))
            blurred = np.stack(
                [scipy.ndimage.convolve(x[b, :, :, c].astype(np.float64), k, mode="constant") for c in range(3)], -1
            ).reshape(256, 3)
            pts = []
            for n in counts:
                changed = np.zeros(256, bool)
                changed[order[:n]] = True
                flat = x[b].reshape(256, 3).astype(np.float64)
                if fn is deletion:
                    img = np.where(changed[:, None], 0.0, flat)
                else:
                    img = np.where(changed[:, None], flat, blurred)
                pts.append(img.reshape(16, 16, 3))
            expect = probs(np.stack(pts))[:, cls[b]]
            np.testing.assert_allclose(r.curves[b], expect, atol=2e-5)
            assert r.auc[b] == pytest.approx(np.trapezoid(expect, dx=0.1), abs=2e-5)


def test_softmax_score_of_predicted_class(smooth_cnn):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    r = deletion(smooth_cnn, x, attr, n_steps=4)
    logits = smooth_cnn.predict(x, verbose=0).astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_array_equal(r.target, logits.argmax(1))
    np.testing.assert_allclose(r.curves[:, 0], p[np.arange(2), logits.argmax(1)], atol=1e-5)
    # fully deleted point = the substrate image (zeros)
    l0 = smooth_cnn.predict(np.zeros_like(x), verbose=0).astype(np.float64)
    p0 = np.exp(l0 - l0.max(1, keepdims=True))
    p0 /= p0.sum(1, keepdims=True)
    np.testing.assert_allclose(r.curves[:, -1], p0[np.arange(2), logits.argmax(1)], atol=1e-5)


def test_insertion_blur_start_matches_rise_kernel():
    # RISE kernel: gaussian_filter of an 11x11 delta (reflect mode folds the tails back: sums to 1)
    k = gaussian_kernel_rise(11, 5.0)
    assert k.shape == (11, 11) and k.sum() == pytest.approx(1.0)
    h = w = 12
    rng = np.random.default_rng(4)
    wts = rng.normal(size=(h, w))
    model = pixel_weight_model(wts, channels=3)
    x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    r = insertion(model, x, attr, target=0, score="logit")
    for b in range(2):
        # zero-padded per-channel convolution (kernel symmetric, so correlation == convolution)
        blurred = np.stack(
            [scipy.ndimage.convolve(x[b, :, :, c].astype(np.float64), k, mode="constant", cval=0.0) for c in range(3)],
            -1,
        )
        assert r.curves[b, 0] == pytest.approx(float(blurred.mean(-1).reshape(-1) @ wts.reshape(-1)), abs=1e-4)
        assert r.curves[b, -1] == pytest.approx(
            float(x[b].astype(np.float64).mean(-1).reshape(-1) @ wts.reshape(-1)), abs=1e-4
        )


def test_tabular_one_feature_per_step_and_maximum_entropy_substrate():
    w = np.array([3.0, -1.0, 0.5, 2.0])
    model, _ = zoo.linear_model(w)
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    attr = np.array([[0.1, -5.0, 0.2, 1.0]])  # order by |a|: 1, 3, 2, 0
    d = deletion(model, x, attr, score="logit")
    np.testing.assert_allclose(d.curves[0], [10.5, 12.5, 4.5, 3.0, 0.0], atol=1e-5)
    m1 = deletion(model, x, attr, score="logit", substrate="maximum_entropy", value_range=(-1, 1), seed=7)
    m2 = deletion(model, x, attr, score="logit", substrate="maximum_entropy", value_range=(-1, 1), seed=7)
    m3 = deletion(model, x, attr, score="logit", substrate="maximum_entropy", value_range=(-1, 1), seed=8)
    np.testing.assert_array_equal(m1.curves, m2.curves)
    assert not np.allclose(m1.curves, m3.curves)
    # the end point is the model on the noise, which lies in the box: |f| <= sum |w|
    assert abs(m1.curves[0, -1]) <= np.abs(w).sum()


def test_all_zero_attributions_are_flagged_invalid(toy_cnn):
    x = np.random.default_rng(5).normal(size=(2, 8, 8, 3)).astype(np.float32)
    attr = np.zeros_like(x)
    attr[0, 0, 0, 0] = 1.0
    r = deletion(toy_cnn, x, attr)
    np.testing.assert_array_equal(r.valid, [True, False])
    assert r.mean_auc == pytest.approx(r.auc[0])
    assert r["auc"] is r.auc


def test_errors(toy_cnn):
    x = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="attributions"):
        deletion(toy_cnn, x, np.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match="substrate"):
        deletion(toy_cnn, x, x, substrate="noise")
    with pytest.raises(ValueError, match="score"):
        insertion(toy_cnn, x, x, score="prob")
    with pytest.raises(ValueError, match="value_range"):
        deletion(toy_cnn, x, x, substrate="maximum_entropy")
    with pytest.raises(ValueError, match="not both"):
        deletion(toy_cnn, x, x, n_steps=3, pixels_per_step=2)
    tab = zoo.dense_head(3, classes=2)
    with pytest.raises(ValueError, match="blur"):
        insertion(tab, np.zeros((1, 3), np.float32), np.ones((1, 3)))
