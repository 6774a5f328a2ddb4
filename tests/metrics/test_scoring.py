"""The shared scoring rule and unit layouts (issue #10): each test names the defect it pins down."""

import keras
import numpy as np
import pytest

from tf_pathattr.metrics import deletion, insertion, meb_ablation, pic


def linear_image_model(h, w, c, n_out, seed=0, activation=None, channels_first=False):
    """Flatten -> Dense(n_out, activation): logits (or probabilities) linear in the pixels."""
    rng = np.random.default_rng(seed)
    shape = (c, h, w) if channels_first else (h, w, c)
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(n_out, activation=activation)]
    )
    kern = rng.normal(size=(h * w * c, n_out)).astype(np.float32) * 0.5
    model.layers[-1].set_weights([kern, np.zeros(n_out, np.float32)])
    return model, kern


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def expected_deletion(x, attr, forward, steps_counts, sub=0.0):
    """Independent restatement: per example, delete pixels (all channels) by decreasing |sum_c a|."""
    out = []
    for b in range(x.shape[0]):
        sal = np.abs(attr[b].sum(-1)).reshape(-1) if attr.ndim == 4 else np.abs(attr[b]).reshape(-1)
        order = sorted(range(sal.size), key=lambda i: (-sal[i], i))
        row = []
        for k in steps_counts:
            cur = x[b].reshape(sal.size, -1).copy() if x.ndim == 4 else x[b].reshape(sal.size, 1).copy()
            cur[order[:k]] = sub
            row.append(forward(cur.reshape(x[b].shape)[None])[0])
        out.append(row)
    return np.asarray(out)


# --- defect 1: a softmax-output model was softmaxed again -----------------------------------------------


def test_softmax_output_model_is_scored_on_its_probabilities():
    model, kern = linear_image_model(4, 4, 2, 7, activation="softmax")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 4, 2)).astype(np.float32) * 3
    attr = rng.normal(size=x.shape)
    r = deletion(model, x, attr, n_steps=4)
    probs = np_softmax(x.reshape(2, -1).astype(np.float64) @ kern)
    cls = probs.argmax(1)
    np.testing.assert_allclose(r.curves[:, 0], probs[np.arange(2), cls], atol=1e-5)  # not softmax(probs)
    assert r.score == "probability" and r.extra["outputs"] == "probabilities" and r.extra["detected_by"] == "layer"
    from tf_pathattr.metrics._scoring import output_activation

    assert output_activation(model) == "softmax"

    def f(v, b):
        return np_softmax(v.reshape(1, -1).astype(np.float64) @ kern)[0, cls[b]]

    counts = np.rint(np.arange(5) * 16 / 4).astype(int)
    exp = np.stack(
        [expected_deletion(x[b : b + 1], attr[b : b + 1], lambda v, b=b: [f(v, b)], counts)[0] for b in range(2)]
    )
    np.testing.assert_allclose(r.curves, exp, atol=1e-5)
    # the same model without its softmax gives the same curve under the default score
    logits = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Flatten(), keras.layers.Dense(7)])
    logits.layers[-1].set_weights(model.layers[-1].get_weights())
    np.testing.assert_allclose(deletion(logits, x, attr, n_steps=4).curves, r.curves, atol=1e-6)
    with pytest.raises(ValueError, match="logit"):
        deletion(model, x, attr, n_steps=4, score="logit")
    np.testing.assert_allclose(deletion(model, x, attr, n_steps=4, score="output").curves, r.curves, atol=1e-6)


def test_probabilities_from_a_plain_callable_are_detected_from_the_values():
    model, kern = linear_image_model(3, 3, 1, 4, activation="softmax")

    def fn(v):
        return model(v, training=False)

    x = np.random.default_rng(1).normal(size=(3, 3, 3, 1)).astype(np.float32)
    attr = np.random.default_rng(2).normal(size=x.shape)
    r = deletion(fn, x, attr, n_steps=3)
    assert r.extra["detected_by"] == "values" and r.extra["outputs"] == "probabilities"
    np.testing.assert_allclose(r.curves, deletion(model, x, attr, n_steps=3).curves, atol=1e-6)


# --- defect 2: a [B] output got a softmax across the rows -------------------------------------------------


def test_rank1_output_is_one_score_per_example_independent_of_the_batch():
    rng = np.random.default_rng(3)
    wts = rng.normal(size=(5,)).astype(np.float32)

    def fn(v):  # [B] logits
        return keras.ops.sum(v * wts, axis=-1)

    x = rng.normal(size=(3, 5)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    # a callable's one unit is read as the user says (issue 18 item 5): here a logit
    r = deletion(fn, x, attr, score="logit")
    alone = deletion(fn, x[1:2], attr[1:2], score="logit")
    np.testing.assert_allclose(r.curves[1], alone.curves[0], atol=1e-6)
    z = x.astype(np.float64) @ wts
    np.testing.assert_allclose(r.curves[:, 0], z, atol=1e-5)


# --- defect 3: callable targets ---------------------------------------------------------------------------


def test_callable_target_accuracy_is_refused_and_probability_applies_it_to_probabilities():
    model, kern = linear_image_model(4, 4, 1, 3)
    x = np.random.default_rng(4).normal(size=(2, 4, 4, 1)).astype(np.float32)
    attr = np.random.default_rng(5).normal(size=x.shape)

    def pick2(out):
        return out[:, 2]

    with pytest.raises(ValueError, match="accuracy.*callable"):
        deletion(model, x, attr, pick2, score="accuracy")
    r = deletion(model, x, attr, pick2, n_steps=4)
    assert r.target is None
    np.testing.assert_allclose(r.curves, deletion(model, x, attr, 2, n_steps=4).curves, atol=1e-6)
    p = pic(model, np.clip(x * 0.2 + 0.5, 0, 1), attr, pick2, kind="sic", seed=0, min_pred_value=0.0)
    p_int = pic(model, np.clip(x * 0.2 + 0.5, 0, 1), attr, 2, kind="sic", seed=0, min_pred_value=0.0)
    assert p.target is None
    np.testing.assert_allclose(p.auc["sic"], p_int.auc["sic"], atol=1e-9, equal_nan=True)
    with pytest.raises(ValueError, match="kind='sic'"):
        pic(model, np.clip(x * 0.2 + 0.5, 0, 1), attr, pick2, seed=0)


def test_multi_output_model_with_callable_target_uses_its_value():
    inp = keras.Input((3,))
    a = keras.layers.Dense(2, name="a")(inp)
    b = keras.layers.Dense(1, name="b")(inp)
    model = keras.Model(inp, [a, b])
    x = np.random.default_rng(6).normal(size=(2, 3)).astype(np.float32)
    attr = np.random.default_rng(7).normal(size=x.shape)

    def second(out):
        return out[1][:, 0]

    r = deletion(model, x, attr, second)
    assert r.score == "output"
    np.testing.assert_allclose(r.curves[:, 0], np.asarray(model(x)[1])[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="score='output'"):
        deletion(model, x, attr, second, score="probability")


# --- defect 4: a single-logit model always had accuracy 1 -------------------------------------------------


def test_single_logit_accuracy_compares_decisions():
    w = np.array([1.0, 1.0, 1.0, -0.5], np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.layers[-1].set_weights([w[:, None], np.array([-1.0], np.float32)])
    x = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]], np.float32)  # z = 2 (positive), -1.5 (negative)
    attr = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    r = deletion(model, x, attr, score="accuracy")
    # row 0: deleting features 0, 1 drops z to 1 - 1 = 0 -> still positive (z >= 0), then -1 -> flips
    np.testing.assert_array_equal(r.curves[0], [1, 1, 1, 0, 0])
    # row 1: z = -1.5, deleting feature 3 -> z = -1 (still negative), the rest are already zero
    np.testing.assert_array_equal(r.curves[1], [1, 1, 1, 1, 1])
    p = deletion(model, x, attr)  # probability of the unit: sigmoid(z)
    np.testing.assert_allclose(p.curves[0, :3], 1 / (1 + np.exp(-np.array([2.0, 1.0, 0.0]))), atol=1e-6)


# --- defect 5: PIC flagged nothing for constant / all-zero maps -------------------------------------------


def test_pic_flags_constant_and_zero_maps_and_leaves_them_out_of_the_aggregate(toy_cnn):
    rng = np.random.default_rng(8)
    x = rng.random((3, 8, 8, 3)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    attr[1] = 0.0
    attr[2] = 0.3
    r = pic(toy_cnn, x, attr, seed=0, min_pred_value=0.0)
    np.testing.assert_array_equal(r.valid, [True, False, False])
    d = deletion(toy_cnn, x, attr)
    np.testing.assert_array_equal(d.valid, [True, False, False])
    for k in ("sic", "aic"):
        agg = r.aggregate[k]
        if r.curves[k][0] is None:
            assert agg is None
        else:
            assert agg.auc == pytest.approx(r.curves[k][0].auc)


# --- defect 6: grayscale [B, H, W] images were treated as sequences ---------------------------------------


def test_grayscale_images_are_pixel_units_and_rank3_needs_units():
    h, w = 3, 4
    rng = np.random.default_rng(9)
    wts = rng.normal(size=(h * w,)).astype(np.float32)
    model = keras.Sequential([keras.Input((h, w)), keras.layers.Flatten(), keras.layers.Dense(1)])
    model.layers[-1].set_weights([wts[:, None], np.zeros(1, np.float32)])
    x = rng.normal(size=(2, h, w)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    with pytest.raises(ValueError, match="units"):
        deletion(model, x, attr, score="logit")
    r = deletion(model, x, attr, score="logit", units="pixels", pixels_per_step=1)
    exp = expected_deletion(x, attr, lambda v: [float(v.reshape(-1) @ wts)], range(h * w + 1))
    np.testing.assert_allclose(r.curves, exp, atol=1e-5)
    # as a sequence: one unit per row, ranked by |row sum| (the old reading), which differs
    t = deletion(model, x, attr, score="logit", units="tokens")
    assert t.curves.shape == (2, h + 1)


# --- defect 7: PIC refused uint8 images --------------------------------------------------------------------


def test_pic_takes_uint8_images(toy_cnn):
    rng = np.random.default_rng(10)
    u8 = rng.integers(0, 256, size=(2, 8, 8, 3)).astype(np.uint8)
    attr = rng.normal(size=u8.shape)
    as_u8 = pic(toy_cnn, u8, attr, seed=1, min_pred_value=0.0, value_range=(0.0, 1.0))
    as_float = pic(toy_cnn, u8.astype(np.float32) / 255.0, attr, seed=1, min_pred_value=0.0)
    for k in ("sic", "aic"):
        np.testing.assert_allclose(as_u8.auc[k], as_float.auc[k], atol=1e-9, equal_nan=True)
    raw = pic(toy_cnn, u8, attr, seed=1, min_pred_value=0.0)  # default (0, 255): the model sees 0..255
    assert raw.auc["sic"].shape == (2,)


# --- defect 8: [B, H, W] maps (XRAI) and channels-first images --------------------------------------------


def test_per_pixel_maps_and_channels_first_inputs(smooth_cnn):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    full = deletion(smooth_cnn, x, attr, n_steps=8)
    per_pixel = deletion(smooth_cnn, x, attr.sum(-1), n_steps=8)
    np.testing.assert_allclose(per_pixel.curves, full.curves, atol=1e-6)
    ins = insertion(smooth_cnn, x, attr.sum(-1), n_steps=8)
    np.testing.assert_allclose(ins.curves, insertion(smooth_cnn, x, attr, n_steps=8).curves, atol=1e-6)
    # the same model reading channels-first inputs
    cf = keras.Sequential([keras.Input((3, 16, 16)), keras.layers.Permute((2, 3, 1)), smooth_cnn])
    xt, at = x.transpose(0, 3, 1, 2), attr.transpose(0, 3, 1, 2)
    for fn in (deletion, insertion):
        a = fn(cf, xt, at, n_steps=8, data_format="channels_first")
        b = fn(smooth_cnn, x, attr, n_steps=8)
        np.testing.assert_allclose(a.curves, b.curves, atol=1e-5)
    m1 = meb_ablation(cf, xt, at, low=-1, high=1, n_draws=2, data_format="channels_first", seed=0)
    assert m1.curves["morf"].shape == (2, 11)
    p1 = pic(cf, np.clip(xt * 0.2 + 0.5, 0, 1), at, data_format="channels_first", seed=0, min_pred_value=0.0)
    p2 = pic(smooth_cnn, np.clip(x * 0.2 + 0.5, 0, 1), attr, seed=0, min_pred_value=0.0)
    np.testing.assert_allclose(p1.auc["sic"], p2.auc["sic"], atol=1e-6, equal_nan=True)


def test_xrai_maps_are_accepted(toy_cnn):
    import tf_pathattr as tpa

    rng = np.random.default_rng(12)
    x = rng.random((1, 8, 8, 3)).astype(np.float32)
    seg = [np.zeros((8, 8), bool) for _ in range(2)]
    seg[0][:4] = True
    seg[1][4:] = True
    m = tpa.xrai(toy_cnn, x, segments=seg, min_pixel_diff=1, n_steps=8)
    assert tuple(m.shape) == (1, 8, 8)
    r = deletion(toy_cnn, x, m, n_steps=4)
    assert r.curves.shape == (1, 5) and np.all(np.isfinite(r.curves))


def test_aupc_and_total_variation_follow_the_rules(smooth_cnn):
    from tf_pathattr.metrics import aupc, total_variation

    rng = np.random.default_rng(13)
    x = rng.random((2, 16, 16, 3)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    opts = dict(window=4, n_regions=3, n_candidates=4, seed=0)
    v, c = aupc(smooth_cnn, x, attr, **opts)
    cf = keras.Sequential([keras.Input((3, 16, 16)), keras.layers.Permute((2, 3, 1)), smooth_cnn])
    v2, c2 = aupc(cf, x.transpose(0, 3, 1, 2), attr.transpose(0, 3, 1, 2), data_format="channels_first", **opts)
    np.testing.assert_allclose(c2, c, atol=1e-5)
    soft = keras.Sequential([smooth_cnn, keras.layers.Softmax()])
    with pytest.raises(ValueError, match="logit"):
        aupc(soft, x, attr, **opts)
    p, _ = aupc(soft, x, attr, score="probability", **opts)
    assert np.all(np.isfinite(p))
    big = rng.normal(size=(1, 40, 40, 3))
    np.testing.assert_allclose(
        total_variation(big.transpose(0, 3, 1, 2), data_format="channels_first")[0], total_variation(big)[0]
    )


# --- issue 18 item 5: one-unit outputs behind shape-only layers; never decided by a batch's values ------------


def _one_unit_model(activation=None, tail="reshape"):
    """``Dense(1, activation)`` followed by shape-only layers (``Reshape(())`` or ``Activation('linear')``
    then ``Flatten`` then ``Reshape(())``): the output activation is the Dense's."""
    inp = keras.Input((3,))
    h = keras.layers.Dense(1, activation=activation)(inp)
    if tail == "chain":
        h = keras.layers.Activation("linear")(h)
        h = keras.layers.Identity()(h)
        h = keras.layers.Flatten()(h)
    out = keras.layers.Reshape(())(h)
    model = keras.Model(inp, out)
    model.layers[1].set_weights([np.array([[1.0], [-1.0], [0.5]], np.float32), np.zeros(1, np.float32)])
    return model


# z = x0 - x1 + 0.5 x2: the small batch gives z in [0, 1], the large one z outside
X_SMALL = np.array([[0.5, 0.25, 0.1], [0.9, 0.8, 0.6]], np.float32)
X_LARGE = X_SMALL * 8.0


@pytest.mark.parametrize("tail", ["reshape", "chain"])
def test_one_unit_logit_behind_shape_only_layers_is_scored_the_same_whatever_its_values(tail):
    model = _one_unit_model(tail=tail)
    from tf_pathattr.metrics._scoring import output_activation

    assert output_activation(model) == "none"
    attr = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    for x in (X_SMALL, X_LARGE):
        z = x.astype(np.float64) @ np.array([1.0, -1.0, 0.5])
        r = deletion(model, x, attr, n_steps=3)
        assert r.extra["outputs"] == "logits" and r.extra["detected_by"] == "layer"
        np.testing.assert_allclose(r.curves[:, 0], 1 / (1 + np.exp(-z)), atol=1e-6)
    assert np.all((X_SMALL @ np.array([1.0, -1.0, 0.5]) >= 0) & (X_SMALL @ np.array([1.0, -1.0, 0.5]) <= 1))


def test_one_unit_sigmoid_and_softmax_behind_shape_only_layers_are_probabilities():
    from tf_pathattr.metrics._scoring import output_activation

    model = _one_unit_model("sigmoid", tail="chain")
    assert output_activation(model) == "sigmoid"
    attr = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    r = deletion(model, X_LARGE, attr, n_steps=3)
    assert r.extra["outputs"] == "probabilities"
    np.testing.assert_allclose(r.curves[:, 0], np.asarray(model(X_LARGE)), atol=1e-6)  # not sigmoid(p)
    # a softmax head followed by Activation("linear") is still read as probabilities (not softmaxed again)
    soft = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="softmax"), keras.layers.Activation("linear")]
    )
    assert output_activation(soft) == "softmax"
    r = deletion(soft, X_LARGE, attr, n_steps=3)
    probs = np.asarray(soft(X_LARGE))
    np.testing.assert_allclose(r.curves[:, 0], probs[np.arange(2), probs.argmax(1)], atol=1e-6)


def test_one_unit_callable_is_read_as_the_user_says_never_from_the_batch():
    model = _one_unit_model()

    def fn(v):  # a plain callable: nothing declares what its unit is
        return model(v)

    attr = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    for x in (X_SMALL, X_LARGE):  # the same answer for both batches: refused without score=
        with pytest.raises(ValueError, match="score='output'.*score='logit'"):
            deletion(fn, x, attr, n_steps=3)
        for score in ("probability", "accuracy"):
            with pytest.raises(ValueError, match="score="):
                deletion(fn, x, attr, n_steps=3, score=score)
        z = x.astype(np.float64) @ np.array([1.0, -1.0, 0.5])
        for score in ("logit", "output"):
            r = deletion(fn, x, attr, n_steps=3, score=score)
            assert r.extra["detected_by"] == "score"
            np.testing.assert_allclose(r.curves[:, 0], z, atol=1e-5)


# --- issue 18 item 8: forward-only metrics take uint8 images (as float pixel values) -------------------------


def test_forward_only_metrics_read_uint8_images_as_float_pixels_and_refuse_ids_for_the_right_reason():
    from tf_pathattr.metrics import aupc, infidelity, mu_fidelity
    from tf_pathattr.testing import models as zoo

    model = zoo.smooth_cnn(size=8, classes=3)
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    as_float = u8.astype(np.float32)
    attr = rng.normal(size=u8.shape)
    runs = {
        "deletion": lambda x: deletion(model, x, attr, n_steps=4).curves,
        "insertion": lambda x: insertion(model, x, attr, n_steps=4).curves,
        "mu_fidelity": lambda x: mu_fidelity(model, x, attr, nb_samples=4, grid_size=2, seed=0).mu_fidelity,
        "infidelity": lambda x: infidelity(model, x, attr, n_perturb_samples=4, seed=0).infidelity,
        "aupc": lambda x: aupc(model, x, attr, window=4, n_regions=2, n_candidates=3, value_range=(0, 255))[1],
    }
    for name, run in runs.items():
        np.testing.assert_allclose(run(u8), run(as_float), rtol=1e-6, atol=1e-6, err_msg=name)
    ids = rng.integers(0, 20, (2, 8, 8, 3)).astype(np.int32)
    with pytest.raises(TypeError, match="int32.*metrics replace, blend and add noise") as info:
        deletion(model, ids, attr, n_steps=4)
    assert "layer=" not in str(info.value)
