"""IG2 (GradPath / GradCF): exact reduction to IG, completeness per reference, path geometry,
dummy features, reference-batch independence and parity with a two-phase re-statement of the
released algorithm (build the whole path, then sum), written here from the spec (ig2.md §1, §5)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo


def make_mlp(d=20, hidden=32, classes=3, seed=0, nested=False):
    """Dense(d -> hidden, softplus) -> Dense(classes): the smooth toy of spec §3."""
    keras.utils.set_random_seed(seed)
    if nested:
        head = keras.Sequential([keras.Input((hidden,)), keras.layers.Dense(classes)])
        return keras.Sequential([keras.Input((d,)), keras.layers.Dense(hidden, activation="softplus"), head])
    return zoo.dense_head(d, classes=classes, hidden=hidden, seed=seed, activation="softplus")


@pytest.fixture
def mlp():
    return make_mlp()


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 20)).astype(np.float32)
    refs = rng.normal(size=(4, 20)).astype(np.float32)
    return x, refs


def hidden(model, z):
    """Penultimate activations (input of the last Dense) of `make_mlp`, computed independently."""
    w, b = model.layers[0].get_weights()
    return np.logaddexp(0.0, np.asarray(z, np.float64) @ w + b)  # softplus


# --------------------------------------------------------------------------------------------
# 1. reduction to IG


def test_reduces_to_ig_with_linear_logits_and_identity_representation():
    rng = np.random.default_rng(0)
    model, w = zoo.linear_model(rng.normal(size=(6, 3)))  # last Dense input == the model input
    x_r = rng.normal(size=(6,)).astype(np.float32)
    dist, k = 2.5, 40
    dirs = rng.normal(size=(3, 6))
    x = (x_r + dist * dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).astype(np.float32)
    step = float(np.linalg.norm(x - x_r, axis=1)[0]) / k
    target = [0, 2, 1]
    attr, det = tpa.ig2(model, x, target, references=x_r[None], step_size=step, n_steps=k, return_details=True)
    ig = tpa.integrated_gradients(model, x, target, baseline=x_r)
    np.testing.assert_allclose(attr.numpy(), ig.numpy(), atol=1e-6)
    closed = w[:, target].T * (x - x_r)
    np.testing.assert_allclose(attr.numpy(), closed, atol=1e-6)
    np.testing.assert_allclose(det["gradcf"].numpy()[:, 0], np.broadcast_to(x_r, x.shape), atol=1e-5)
    # same with an explicit identity callable as the representation
    attr2 = tpa.ig2(model, x, target, references=x_r[None], step_size=step, n_steps=k, representation=lambda z: z)
    np.testing.assert_allclose(attr2.numpy(), ig.numpy(), atol=1e-6)


# --------------------------------------------------------------------------------------------
# 2. completeness per reference


def test_completeness_trapezoid_is_tight(mlp, data):
    x, refs = data
    _, det = tpa.ig2(mlp, x, 0, references=refs, step_size=0.025, n_steps=200, rule="trapezoid", return_details=True)
    df = (det["f_x"][:, None] - det["f_gradcf"]).numpy()
    resid = det["completeness_residual"].numpy()
    assert np.abs(df).max() > 0.2  # non-trivial targets
    assert np.all(np.abs(resid) <= 1e-4 * np.maximum(1.0, np.abs(df))), resid
    # the residual is what it claims: sum of per-reference maps minus f(x) - f(GradCF), with f = logit 0
    f = lambda z: mlp(z.reshape(-1, 20), training=False).numpy()[:, 0]  # noqa: E731
    np.testing.assert_allclose(det["f_x"].numpy(), f(x), atol=1e-5)
    np.testing.assert_allclose(det["f_gradcf"].numpy().ravel(), f(det["gradcf"].numpy()), atol=1e-5)
    total = det["per_reference"].numpy().sum(-1)
    np.testing.assert_allclose(total - df, resid, atol=1e-5)


def test_completeness_official_rule_within_few_percent_and_shrinks_with_step(mlp, data):
    x, refs = data
    errs = []
    for k, eta in ((50, 0.1), (200, 0.025)):  # same path budget K*eta = 5
        attr, det = tpa.ig2(mlp, x, 0, references=refs, step_size=eta, n_steps=k, return_details=True)
        df = (det["f_x"][:, None] - det["f_gradcf"]).numpy()
        resid = det["completeness_residual"].numpy()
        assert np.all(np.abs(resid) <= 0.05 * np.abs(df).max()), (k, eta, resid, df)
        # mean over references: sum(attr) = f(x) - mean_r f(GradCF_r) + mean residual
        np.testing.assert_allclose(attr.numpy().sum(1), df.mean(1) + resid.mean(1), atol=1e-5)
        errs.append(np.abs(resid).mean())
    assert errs[1] < 0.5 * errs[0], errs


def test_completeness_on_cnn_with_default_representation(toy_cnn):
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, size=(2, 8, 8, 3)).astype(np.float32)
    refs = rng.uniform(0, 1, size=(3, 8, 8, 3)).astype(np.float32)
    attr, det = tpa.ig2(
        toy_cnn,
        x,
        None,
        references=refs,
        step_size=0.05,
        n_steps=40,
        clip=(0.0, 1.0),
        rule="trapezoid",
        return_details=True,
    )
    assert attr.shape == x.shape and det["gradcf"].shape == (2, 3, 8, 8, 3)
    df = (det["f_x"][:, None] - det["f_gradcf"]).numpy()
    assert np.all(np.abs(det["completeness_residual"].numpy()) <= 1e-4 * np.maximum(1.0, np.abs(df)))
    g = det["gradcf"].numpy()
    assert g.min() >= 0.0 and g.max() <= 1.0


# --------------------------------------------------------------------------------------------
# 3. path geometry, clipping, counterfactual progress


def test_unclipped_steps_have_length_step_size(mlp, data):
    x, refs = data
    eta = 0.07
    prev = np.broadcast_to(x[:, None], (2, 4, 20))
    for k in (1, 2, 3):
        _, det = tpa.ig2(mlp, x, 0, references=refs, step_size=eta, n_steps=k, return_details=True)
        g = det["gradcf"].numpy()
        np.testing.assert_allclose(np.linalg.norm(g - prev, axis=-1), eta, rtol=1e-5)
        prev = g


def test_clipping_keeps_path_in_box(mlp):
    rng = np.random.default_rng(4)
    x = rng.uniform(-0.4, 0.4, size=(2, 20)).astype(np.float32)
    refs = rng.normal(scale=3.0, size=(3, 20)).astype(np.float32)
    low = np.full((20,), -0.5, np.float32)
    low[:5] = -0.41  # per-feature bounds (tensor clip)
    high = 0.5
    eta = 0.2
    prev = np.broadcast_to(x[:, None], (2, 3, 20))
    for k in (1, 2, 30):
        _, det = tpa.ig2(mlp, x, 0, references=refs, step_size=eta, n_steps=k, clip=(low, high), return_details=True)
        g = det["gradcf"].numpy()
        assert np.all(g >= low - 1e-7) and np.all(g <= high + 1e-7)
        if k <= 2:
            assert np.all(np.linalg.norm(g - prev, axis=-1) <= eta * (1 + 1e-5))
            prev = g
    assert np.any(g == high) or np.any(g == low)  # the box was active
    # completeness still holds (displacement = actual difference of clipped points)
    _, det = tpa.ig2(
        mlp, x, 0, references=refs, step_size=eta, n_steps=30, clip=(low, high), rule="trapezoid", return_details=True
    )
    df = (det["f_x"][:, None] - det["f_gradcf"]).numpy()
    assert np.all(np.abs(det["completeness_residual"].numpy()) <= 1e-4 * np.maximum(1.0, np.abs(df)))


def test_gradcf_is_closer_to_reference_in_representation(mlp, data):
    x, refs = data
    _, det = tpa.ig2(mlp, x, 0, references=refs, step_size=0.025, n_steps=200, return_details=True)
    start, end = det["rep_dist_start"].numpy(), det["rep_dist_end"].numpy()
    assert np.all(end < start)
    # rep_dist is ||f~(z) - f~(x_r)||^2 at the penultimate layer, checked independently
    d0 = ((hidden(mlp, x)[:, None] - hidden(mlp, refs)[None]) ** 2).sum(-1)
    np.testing.assert_allclose(start, d0, rtol=1e-4)
    d1 = ((hidden(mlp, det["gradcf"].numpy().reshape(-1, 20)) - hidden(mlp, np.tile(refs, (2, 1)))) ** 2).sum(-1)
    np.testing.assert_allclose(end.ravel(), d1, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# 4. dummy features, zero gradients


def test_feature_ignored_by_model_gets_zero_and_never_moves(mlp, data):
    x, refs = data
    w, b = mlp.layers[0].get_weights()
    w[7] = 0.0
    mlp.layers[0].set_weights([w, b])
    attr, det = tpa.ig2(mlp, x, 1, references=refs, step_size=0.05, n_steps=60, return_details=True)
    assert np.all(attr.numpy()[:, 7] == 0.0)
    assert np.all(det["per_reference"].numpy()[..., 7] == 0.0)
    assert np.all(det["gradcf"].numpy()[..., 7] == x[:, None, 7])
    assert np.all(attr.numpy()[:, :7] != 0.0)


def test_reference_equal_to_explicand_stops_without_nan(mlp, data):
    x, refs = data
    attr, det = tpa.ig2(
        mlp, x[:1], 0, references=np.stack([x[0], refs[0]]), step_size=0.05, n_steps=10, return_details=True
    )
    assert np.all(np.isfinite(attr.numpy()))
    assert np.all(det["per_reference"].numpy()[0, 0] == 0.0)
    np.testing.assert_array_equal(det["gradcf"].numpy()[0, 0], x[0])


# --------------------------------------------------------------------------------------------
# 5. shapes, batching, independence, options


def test_single_reference_and_reference_batch_independence(mlp, data):
    x, refs = data
    opts = dict(step_size=0.05, n_steps=20)  # budget 1.0 < distance to the optimum: no zig-zag phase
    _, all4 = tpa.ig2(mlp, x, 0, references=refs, return_details=True, **opts)
    for r in (0, 3):
        attr1, one = tpa.ig2(mlp, x, 0, references=refs[r : r + 1], return_details=True, **opts)  # R = 1
        assert attr1.shape == x.shape and one["per_reference"].shape == (2, 1, 20)
        np.testing.assert_allclose(one["per_reference"].numpy()[:, 0], all4["per_reference"].numpy()[:, r], atol=1e-6)
        np.testing.assert_allclose(one["gradcf"].numpy()[:, 0], all4["gradcf"].numpy()[:, r], atol=1e-6)
    # one explicand alone equals the same explicand inside the batch
    _, first = tpa.ig2(mlp, x[:1], 0, references=refs, return_details=True, **opts)
    np.testing.assert_allclose(first["per_reference"].numpy()[0], all4["per_reference"].numpy()[0], atol=1e-6)


def test_mean_over_references_per_explicand_refs_and_max_batch(mlp, data):
    x, refs = data
    opts = dict(step_size=0.05, n_steps=20, return_details=True)
    attr, det = tpa.ig2(mlp, x, [0, 2], references=refs, **opts)
    np.testing.assert_allclose(attr.numpy(), det["per_reference"].numpy().mean(1), atol=1e-6)
    per_ex = np.stack([refs, refs[::-1]])  # [B, R, *S]
    attr_pe, det_pe = tpa.ig2(mlp, x, [0, 2], references=per_ex, **opts)
    np.testing.assert_allclose(det_pe["per_reference"].numpy()[0], det["per_reference"].numpy()[0], atol=1e-6)
    np.testing.assert_allclose(det_pe["per_reference"].numpy()[1], det["per_reference"].numpy()[1, ::-1], atol=1e-6)
    np.testing.assert_allclose(attr_pe.numpy(), attr.numpy(), atol=1e-6)
    attr_mb, det_mb = tpa.ig2(mlp, x, [0, 2], references=refs, internal_batch_size=3, **opts)  # 1 reference per loop
    np.testing.assert_allclose(attr_mb.numpy(), attr.numpy(), atol=1e-6)
    np.testing.assert_allclose(det_mb["gradcf"].numpy(), det["gradcf"].numpy(), atol=1e-6)
    with pytest.warns(DeprecationWarning, match="max_batch= .*internal_batch_size="):
        attr_old = tpa.ig2(mlp, x, [0, 2], references=refs, max_batch=3, **opts)[0]
    np.testing.assert_array_equal(attr_old.numpy(), attr_mb.numpy())


def test_targets_callable_predicted_and_dispatch(mlp, data):
    x, refs = data
    opts = dict(references=refs, step_size=0.05, n_steps=10)
    pred = np.argmax(mlp(x).numpy(), axis=1)
    a_none = tpa.ig2(mlp, x, None, **opts)
    a_int = tpa.ig2(mlp, x, pred.tolist(), **opts)
    a_fn = tpa.ig2(mlp, x, lambda out: tf.gather(out, pred, axis=1, batch_dims=1), **opts)
    a_disp = tpa.attribute(mlp, x, pred.tolist(), method="ig2", **opts)
    np.testing.assert_allclose(a_none.numpy(), a_int.numpy(), atol=1e-6)
    np.testing.assert_allclose(a_fn.numpy(), a_int.numpy(), atol=1e-6)
    np.testing.assert_allclose(a_disp.numpy(), a_int.numpy(), atol=1e-6)
    a_jit = tpa.ig2(mlp, x, pred.tolist(), jit_compile=True, **opts)
    np.testing.assert_allclose(a_jit.numpy(), a_int.numpy(), atol=1e-5)


def test_representation_options_nested_name_and_callable(data):
    x, refs = data
    nested = make_mlp(nested=True)
    flat = make_mlp()
    nested.layers[0].set_weights(flat.layers[0].get_weights())
    nested.layers[1].layers[0].set_weights(flat.layers[1].get_weights())
    opts = dict(references=refs, step_size=0.05, n_steps=15)
    base = tpa.ig2(flat, x, 1, **opts).numpy()
    np.testing.assert_allclose(tpa.ig2(nested, x, 1, **opts).numpy(), base, atol=1e-6)  # last Dense found inside
    inp = keras.Input((20,))  # functional model wrapping the nested Sequential head
    functional = keras.Model(inp, nested.layers[1](nested.layers[0](inp)))
    np.testing.assert_allclose(tpa.ig2(functional, x, 1, **opts).numpy(), base, atol=1e-6)
    name = flat.layers[0].name
    np.testing.assert_allclose(tpa.ig2(flat, x, 1, representation=name, **opts).numpy(), base, atol=1e-6)
    np.testing.assert_allclose(tpa.ig2(flat, x, 1, representation=flat.layers[0], **opts).numpy(), base, atol=1e-6)
    np.testing.assert_allclose(
        tpa.ig2(flat, x, 1, representation=lambda z: flat.layers[0](z), **opts).numpy(), base, atol=1e-6
    )
    # a different representation (the logits) gives a different path
    other = tpa.ig2(flat, x, 1, representation=flat.layers[1], **opts).numpy()
    assert np.abs(other - base).max() > 1e-3


# --------------------------------------------------------------------------------------------
# 6. parity with a two-phase re-statement of the release (spec §1.2-1.4, §5): path first, then sum


def two_phase_release(model, x, refs, target, step_size, steps, clip=None):
    """One explicand, B references as a batch; float64 numpy glue around the model's gradients.

    Phase 1 (GradPath): loss = -MSE(f~(x + delta), f~(refs)) averaged over batch and units;
    delta += step * grad / ||grad|| per row; point = clip(x + delta). Phase 2: sum over j of
    grad f(gamma_j) * (gamma_j - gamma_{j+1}); mean over references.
    """
    rep_model = keras.Model(model.inputs[0], model.layers[-1].input)
    r_ref = rep_model(refs, training=False)
    x_b = np.repeat(x[None].astype(np.float64), len(refs), axis=0)
    path = [x_b.copy()]
    delta = np.zeros_like(x_b)
    for _ in range(steps):
        z = tf.constant(path[-1], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = -tf.reduce_mean(tf.square(rep_model(z, training=False) - r_ref))
        g = tape.gradient(loss, z).numpy().astype(np.float64)
        norm = np.linalg.norm(g.reshape(len(g), -1), axis=1).reshape((-1,) + (1,) * (g.ndim - 1))
        delta = delta + step_size * g / norm
        point = x_b + delta
        if clip is not None:
            point = np.clip(point, clip[0], clip[1])
            delta = point - x_b
        path.append(point)
    total = np.zeros_like(x_b)
    for j in range(steps):
        z = tf.constant(path[j], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(z)
            s = tf.reduce_sum(model(z, training=False)[:, target])
        total += tape.gradient(s, z).numpy() * (path[j] - path[j + 1])
    return total.mean(0), total, path[-1]


@pytest.mark.parametrize("clip", [None, (-0.6, 0.6)])
def test_parity_with_two_phase_release(mlp, clip):
    rng = np.random.default_rng(5)
    x = rng.uniform(-0.5, 0.5, size=(1, 20)).astype(np.float32)
    refs = rng.normal(size=(3, 20)).astype(np.float32)
    eta, k = 0.05, 25  # budget 1.25 < distance to the optimum (before the chaotic phase)
    ref_mean, ref_per, ref_cf = two_phase_release(mlp, x[0], refs, 2, eta, k, clip)
    attr, det = tpa.ig2(mlp, x, 2, references=refs, step_size=eta, n_steps=k, clip=clip, return_details=True)
    np.testing.assert_allclose(det["gradcf"].numpy()[0], ref_cf, atol=2e-6)
    np.testing.assert_allclose(det["per_reference"].numpy()[0], ref_per, atol=2e-6)
    np.testing.assert_allclose(attr.numpy()[0], ref_mean, atol=2e-6)
    assert np.abs(ref_mean).max() > 1e-2


# --------------------------------------------------------------------------------------------
# 7. errors


def test_errors(mlp, data):
    x, refs = data
    with pytest.raises(TypeError, match="step_size"):
        tpa.ig2(mlp, x, 0, references=refs)
    with pytest.raises(TypeError, match="references"):
        tpa.ig2(mlp, x, 0, step_size=0.1)
    with pytest.raises(ValueError, match="references has shape"):
        tpa.ig2(mlp, x, 0, references=refs[:, :5], step_size=0.1)
    with pytest.raises(ValueError, match="references has shape"):
        tpa.ig2(mlp, x, 0, references=np.zeros((3, 4, 20), np.float32), step_size=0.1)  # B mismatch
    with pytest.raises(ValueError, match="rule"):
        tpa.ig2(mlp, x, 0, references=refs, step_size=0.1, rule="left")
    with pytest.raises(ValueError, match="step_size"):
        tpa.ig2(mlp, x, 0, references=refs, step_size=-1.0)
    with pytest.raises(ValueError, match="n_steps"):
        tpa.ig2(mlp, x, 0, references=refs, step_size=0.1, n_steps=0)
    with pytest.raises(ValueError, match="clip"):
        tpa.ig2(mlp, x, 0, references=refs, step_size=0.1, clip=(1.0, -1.0))
    with pytest.raises(ValueError, match="no layer named"):
        tpa.ig2(mlp, x, 0, references=refs, step_size=0.1, representation="nope")
    with pytest.raises(ValueError, match="NaN"):
        tpa.ig2(mlp, x, 0, references=np.full((2, 20), np.nan, np.float32), step_size=0.1)
    conv = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D()])
    with pytest.raises(ValueError, match="Dense"):
        tpa.ig2(
            conv, np.zeros((1, 4, 4, 1), np.float32), 0, references=np.ones((1, 4, 4, 1), np.float32), step_size=0.1
        )


# --------------------------------------------------------------------------------------------
# 8. tracing and the plan (export) protocol


def test_no_retrace_for_new_inputs_targets_step_size_and_plan(mlp, data):
    from tf_pathattr.engine import gradients as eng

    x, refs = data
    eng.CACHE.clear()
    a1 = tpa.ig2(mlp, x, [0, 1], references=refs, step_size=0.05, n_steps=5)
    a2 = tpa.ig2(mlp, x + 0.5, [2, 0], references=refs[::-1], step_size=0.02, n_steps=5)
    assert len(eng.CACHE._items) == 1
    fn = next(iter(eng.CACHE._items.values()))[1]
    assert fn.experimental_get_tracing_count() == 1
    assert np.abs(a1.numpy() - a2.numpy()).max() > 1e-4
    plan = tpa.ig2.plan(mlp, x, [2, 0], references=refs[::-1], step_size=0.02, n_steps=5)
    out = tf.function(plan.python_fn)([tf.constant(x + 0.5)], tf.constant([2, 0], tf.int32), *plan.extra_args)
    np.testing.assert_allclose(out[0][0].numpy(), a2.numpy(), atol=1e-6)
