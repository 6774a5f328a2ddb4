"""PIC (SIC / AIC) parity with PAIR `saliency.metrics.pic` on the same image, saliency and pred_func."""

import keras
import numpy as np
import pytest
from saliency.metrics import pic as pair_pic  # noqa: E402

from tf_pathattr.metrics.pic import (  # noqa: E402
    DEFAULT_THRESHOLDS,
    ComputePicMetricError,
    aggregate_pic_results,
    compute_pic_metric,
    create_blurred_image,
    estimate_image_entropy,
    generate_random_mask,
    pic,
    pic_curve,
)
from tf_pathattr.testing import reference  # noqa: F401  (numpy-2.4 shims before importing saliency.metrics)


def smooth_image(rng, h=32, w=32, c=3):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [np.sin(6 * xx + rng.uniform(0, 3)) * np.cos(5 * yy + rng.uniform(0, 3)) for _ in range(c)]
    img = 127.5 + 100 * np.stack(chans, -1) + 20 * rng.normal(size=(h, w, c))
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img if c > 1 else img[:, :, 0]


def similarity_pred(original):
    """A deterministic 'model': exp(-mean |img - original| / 20), per image of the batch."""
    ref = original.astype(np.float64)

    def pred(batch):
        b = np.asarray(batch, np.float64)
        return [float(np.exp(-np.mean(np.abs(im - ref)) / 20.0)) for im in b]

    return pred


@pytest.mark.parametrize("channels", [3, 1])
def test_parity_with_pair_compute_pic_metric(channels):
    rng = np.random.default_rng(0)
    for trial in range(2):
        img = smooth_image(rng, h=24, w=28, c=channels)
        h, w = img.shape[:2]
        sal = rng.random((h, w)) + (np.arange(h * w).reshape(h, w) % 7 == 0)  # some structure + ties-free noise
        mask = generate_random_mask(h, w, 0.01, seed=trial)
        assert mask.sum() == int(0.01 * h * w)
        pred = similarity_pred(img)
        ref = pair_pic.compute_pic_metric(
            img=img,
            saliency_map=sal,
            random_mask=mask,
            pred_func=pred,
            saliency_thresholds=list(DEFAULT_THRESHOLDS),
            min_pred_value=0.5,
            keep_monotonous=trial == 0,
            num_data_points=1000,
        )
        ours = compute_pic_metric(
            img,
            sal,
            mask,
            pred,
            DEFAULT_THRESHOLDS,
            min_pred_value=0.5,
            keep_monotonous=trial == 0,
            num_data_points=1000,
        )
        assert abs(ours.auc - ref.auc) < 1e-3
        assert ours.auc == pytest.approx(ref.auc, abs=1e-12)  # in fact exact up to float rounding
        np.testing.assert_allclose(ours.x, ref.curve_x, atol=1e-12)
        np.testing.assert_allclose(ours.y, ref.curve_y, atol=1e-12)
        np.testing.assert_allclose(ours.predictions, ref.predictions, atol=1e-12)
        assert ours.thresholds == ref.thresholds
        for a, b in zip(ours.blurred_images, ref.blurred_images[:-1]):
            np.testing.assert_array_equal(a, b)
        if channels == 3:
            assert estimate_image_entropy(img) == pair_pic.estimate_image_entropy(img)


def test_bokeh_image_matches_pair_and_keeps_dtype():
    rng = np.random.default_rng(1)
    img = smooth_image(rng)
    keep = rng.random(img.shape[:2]) < 0.1
    ours = create_blurred_image(img, keep)
    np.testing.assert_array_equal(ours, pair_pic.create_blurred_image(img, keep))
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours[keep], img[keep])
    assert create_blurred_image(img, np.ones(img.shape[:2], bool)) is not None
    np.testing.assert_array_equal(create_blurred_image(img, np.ones(img.shape[:2], bool)), img)
    f = img.astype(np.float32) / 255.0
    np.testing.assert_allclose(create_blurred_image(f, keep), pair_pic.create_blurred_image(f, keep), atol=1e-6)


def test_aggregate_parity_median_and_mean():
    rng = np.random.default_rng(2)
    ours, refs = [], []
    for i in range(3):
        img = smooth_image(rng, 16, 16, c=1)
        sal = rng.random(img.shape[:2])
        mask = generate_random_mask(16, 16, seed=i)
        pred = similarity_pred(img)
        ours.append(compute_pic_metric(img, sal, mask, pred, min_pred_value=0.5))
        refs.append(pair_pic.compute_pic_metric(img, sal, mask, pred, list(DEFAULT_THRESHOLDS), min_pred_value=0.5))
    for method in ("median", "mean"):
        a = aggregate_pic_results(ours, method)
        b = pair_pic.aggregate_individual_pic_results(refs, method)
        assert a.auc == pytest.approx(b.auc, abs=1e-12)
        np.testing.assert_allclose(a.y, b.curve_y, atol=1e-12)
    # the AUC of the median curve, not the median of the AUCs
    assert aggregate_pic_results(ours).auc == pytest.approx(np.trapezoid(np.median([r.y for r in ours], 0), ours[0].x))


def test_degenerate_images_raise_like_pair():
    rng = np.random.default_rng(3)
    img = smooth_image(rng, 16, 16)
    sal = rng.random((16, 16))
    mask = generate_random_mask(16, 16, seed=0)
    cases = [
        (lambda b: [0.3] * len(b), 0.5),  # below min_pred_value
        (lambda b: [0.9] * len(b), 0.5),  # blurred prediction not lower
    ]
    for pred, mpv in cases:
        with pytest.raises(pair_pic.ComputePicMetricError):
            pair_pic.compute_pic_metric(img, sal, mask, pred, list(DEFAULT_THRESHOLDS), min_pred_value=mpv)
        with pytest.raises(ComputePicMetricError):
            compute_pic_metric(img, sal, mask, pred, min_pred_value=mpv)
    flat = np.full((16, 16, 3), 128, np.uint8)  # blurred image is not less informative
    pred = similarity_pred(flat)
    with pytest.raises(pair_pic.ComputePicMetricError):
        pair_pic.compute_pic_metric(flat, sal, mask, pred, list(DEFAULT_THRESHOLDS), min_pred_value=0.0)
    with pytest.raises(ComputePicMetricError):
        compute_pic_metric(flat, sal, mask, pred, min_pred_value=0.0)
    with pytest.raises(ValueError, match="uint8"):
        compute_pic_metric(img.astype(np.float32), sal, mask, pred)


def test_monotone_flag_uses_threshold_order():
    # entropies increase with threshold, predictions dip: monotone keeps the running max in threshold order
    ent = [100, 150, 130, 200, 300]  # B0, three thresholds (entropy not monotone), original
    preds = [0.1, 0.6, 0.3, 0.5, 0.9]
    th = (0.1, 0.3, 0.5)
    mono = pic_curve(ent, preds, th, min_pred_value=0.0, keep_monotonous=True)
    raw = pic_curve(ent, preds, th, min_pred_value=0.0, keep_monotonous=False)
    # normalised points: h = (0.25, 0.15, 0.5); s = (0.625, 0.25, 0.5) -> running max (0.625, 0.625, 0.625)
    assert np.interp(0.15, mono.x, mono.y) == pytest.approx(0.625)
    assert np.interp(0.15, raw.x, raw.y) == pytest.approx(0.25)
    assert np.interp(0.5, mono.x, mono.y) == pytest.approx(0.625)


def detail_model(threshold):
    """Class 0 when the image has fine detail: logits (+-10 (mean |Laplacian| - threshold)).

    The bokeh image (linear interpolation) has less detail than the original, so the class flips
    when the salient pixels are removed: every PIC case is scored, none is skipped."""
    lap = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(2, 3, activation="relu", use_bias=False),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    k = np.zeros((3, 3, 3, 2), np.float32)
    for c in range(3):
        k[:, :, c, 0], k[:, :, c, 1] = lap, -lap
    model.layers[0].set_weights([k])
    model.layers[-1].set_weights(
        [np.array([[10.0, -10.0], [10.0, -10.0]], np.float32), np.array([-10 * threshold, 10 * threshold], np.float32)]
    )
    return model


@pytest.mark.slow
@pytest.mark.parametrize("softmax_head", [False, True])
def test_pic_on_model_equals_pair_with_model_pred_func(softmax_head):
    rng = np.random.default_rng(4)
    imgs = np.stack([smooth_image(rng, 16, 16) for _ in range(3)])
    x = imgs.astype(np.float32) / 255.0
    energy = [
        float(
            np.mean(
                np.abs(
                    np.asarray(
                        keras.ops.conv(
                            x[i : i + 1].sum(-1, keepdims=True),
                            np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)[:, :, None, None],
                        )
                    )
                )
            )
        )
        for i in range(3)
    ]
    model = detail_model(0.6 * min(energy))
    if softmax_head:  # the same classifier ending in softmax: scored on its own probabilities
        model = keras.Sequential([model, keras.layers.Softmax()])
    attr = rng.normal(size=x.shape)
    res = pic(model, x, attr, seed=5, min_pred_value=0.5)
    out = np.asarray(model(x))
    cls = out.argmax(1)
    np.testing.assert_array_equal(res.target, cls)
    compared = 0
    for i in range(3):
        mask = generate_random_mask(16, 16, 0.01, seed=[5, i])

        def probs(batch):
            o = np.asarray(model(np.asarray(batch, np.float32) / 255.0), np.float64)
            if softmax_head:
                return o
            e = np.exp(o - o.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)

        def sic(batch, i=i):
            return list(probs(batch)[:, cls[i]])

        def aic(batch, i=i):
            return list((probs(batch).argmax(1) == cls[i]).astype(float))

        sal = np.abs(attr[i].sum(-1))
        for kind, fn in (("sic", sic), ("aic", aic)):
            ref = pair_pic.compute_pic_metric(imgs[i], sal, mask, fn, list(DEFAULT_THRESHOLDS), min_pred_value=0.5)
            assert res.errors[kind][i] is None
            assert res.auc[kind][i] == pytest.approx(ref.auc, abs=1e-4)
            np.testing.assert_allclose(res.curves[kind][i].y, ref.curve_y, atol=1e-4)
            compared += 1
    assert compared == 6


# --- issue 18 item 7: inputs outside value_range are refused, never clipped silently --------------------------


def test_pic_refuses_inputs_outside_value_range_and_agrees_with_uint8_inside_it():
    from tf_pathattr.testing import models as zoo

    model = zoo.smooth_cnn(size=16, classes=3)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (2, 16, 16, 3)).astype(np.float32)  # a [-1, 1] model's images
    attr = rng.normal(size=x.shape)
    opts = dict(seed=0, min_pred_value=0.0, thresholds=(0.0, 0.1, 0.5, 1.0), kind="sic")
    with pytest.raises(ValueError, match=r"outside the default value_range=\(0\.0, 1\.0\).*value_range="):
        pic(model, x, attr, **opts)
    with pytest.raises(ValueError, match=r"value_range=\(-0\.5, 0\.5\)"):
        pic(model, x, attr, value_range=(-0.5, 0.5), **opts)
    right = pic(model, x, attr, value_range=(-1, 1), **opts)
    # the same images as uint8 with the same range: the float path maps to exactly these pixels
    u8 = np.round((x.astype(np.float64) + 1.0) / 2.0 * 255.0).astype(np.uint8)
    same = pic(model, u8, attr, value_range=(-1, 1), **opts)
    assert np.all(np.isfinite(right.auc["sic"]))
    np.testing.assert_allclose(right.auc["sic"], same.auc["sic"], atol=1e-9)
    # half a uint8 step outside the range still rounds into it: accepted
    pic(model, np.clip(x, 0, 1) + np.float32(0.4 / 255.0), attr, **opts)
