"""Guided IG: the f = (2x0 + x1)^2 vectors, reductions to left-Riemann IG, PAIR parity, batching, anchors."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.engine import gradients as eng
from tf_pathattr.methods import guided_ig as gig_mod
from tf_pathattr.testing import models as zoo
from tf_pathattr.testing import reference

gig = tpa.guided_integrated_gradients

# a selection-round cut-off (RuntimeWarning from guided_ig) fails any test that does not expect it
pytestmark = pytest.mark.filterwarnings("error:guided_integrated_gradients:RuntimeWarning")


# ------------------------------------------------------------------------------------------------
# models


def quadratic_model():
    """f(x) = (2 x0 + x1)^2 as a tiny Keras model (analytic gradient [4s, 2s], s = 2 x0 + x1)."""
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(1, use_bias=False),
            keras.layers.Lambda(lambda t: tf.square(t)),
        ]
    )
    model.layers[0].set_weights([np.array([[2.0], [1.0]], np.float32)])
    return model


@pytest.fixture(scope="module")
def quad():
    return quadratic_model()


@pytest.fixture(scope="module")
def cnn():
    return zoo.maxpool_cnn()


@pytest.fixture(scope="module")
def smooth():
    return zoo.smooth_cnn(size=16)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 3)).astype(np.float32)


X3 = np.array([[3.0, 3.0]], np.float32)


def pair_gig(model, image, target, baseline=None, **kw):
    """PAIR saliency's GuidedIG on one image (float64 state, batch-1 float32 gradients)."""
    fn = reference.call_model_function(model, target)
    return reference.saliency.GuidedIG().GetMask(image, fn, x_baseline=baseline, **kw)


# ------------------------------------------------------------------------------------------------
# 1. the analytic vectors (spec section 7)


@pytest.mark.parametrize(
    "kw, expected",
    [
        (dict(n_steps=1000, fraction=0.1, max_dist=1.0), [71.89, 9.02]),
        (dict(n_steps=1000, fraction=0.1, max_dist=0.2), [65.44, 15.47]),
        (dict(n_steps=1000, fraction=0.1, max_dist=0.02), [55.36, 25.56]),
        (dict(), [55.13, 25.46]),  # PAIR defaults T=200, q=0.25, D=0.02
    ],
)
def test_quadratic_vectors(quad, kw, expected):
    attr = gig(quad, X3, 0, parity=True, **kw).numpy()[0].astype(np.float64)
    np.testing.assert_allclose(np.round(attr, 2), expected, rtol=0, atol=1e-9)  # to the printed digits
    # and the same as the released algorithm
    ref = pair_gig(quad, X3[0], 0, **{("x_steps" if k == "n_steps" else k): v for k, v in kw.items()})
    np.testing.assert_allclose(attr, ref, rtol=1e-6)


@pytest.mark.parametrize("kw", [dict(max_dist=0.0), dict(fraction=1.0)])
def test_quadratic_reductions_to_ig(quad, kw):
    # T = 200 left-Riemann IG of f(x) = (2x0 + x1)^2 from 0: x_i w_i 2 * 9 * sum_k (k/T) / T -> [54, 27] (1 - 1/T)
    attr = gig(quad, X3, 0, parity=True, **kw).numpy()[0]
    closed = np.array([54.0, 27.0]) * (1 - 1 / 200)
    np.testing.assert_allclose(attr, closed, rtol=1e-6)
    np.testing.assert_allclose(np.round(attr), [54, 27], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# 2./3. reductions to left-Riemann IG; linear models


@pytest.mark.parametrize("kw", [dict(max_dist=0.0), dict(fraction=1.0), dict(max_dist=0.0, parity=True)])
def test_reduces_to_left_riemann_ig(smooth, images, kw):
    x = images[:2]
    ig = tpa.integrated_gradients(smooth, x, 3, rule="riemann_left", n_steps=20).numpy()
    attr = gig(smooth, x, 3, n_steps=20, **kw).numpy()
    scale = np.abs(ig).max()
    assert np.abs(attr - ig).max() / scale < 1e-5


@pytest.mark.parametrize("kw", [dict(max_dist=1.0, fraction=0.1), dict(), dict(anchors=3, fraction=0.5)])
def test_linear_model_equals_ig(kw):
    model, w = zoo.linear_model(np.linspace(-2, 3, 12))
    x = np.random.default_rng(1).normal(size=(3, 12)).astype(np.float32)
    attr = gig(model, x, 0, n_steps=16, parity=True, **kw).numpy()
    np.testing.assert_allclose(attr, x * w[:, 0], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# 7. parity with PAIR saliency


@pytest.mark.parametrize("max_dist, fraction", [(1.0, 0.25), (1.0, 0.5), (0.02, 0.25), (0.02, 0.5)])
def test_parity_with_pair(cnn, images, max_dist, fraction):
    x, steps, target = images[0], 30, 4
    baseline = np.full_like(x, 0.1)
    ref = pair_gig(cnn, x, target, baseline=baseline, x_steps=steps, fraction=fraction, max_dist=max_dist)
    attr = gig(
        cnn, x[None], target, baseline=baseline, n_steps=steps, fraction=fraction, max_dist=max_dist, parity=True
    ).numpy()[0]
    err = np.abs(attr - ref).max() / np.abs(ref).max()
    assert err < 1e-6, err
    # batch 1: the float64 path is the same, so the only difference is the float32 cast of the output
    cast_floor = np.abs(ref.astype(np.float32) - ref).max() / np.abs(ref).max()
    assert err <= cast_floor + 1e-9, (err, cast_floor)


def test_fast_mode_statistically_close_to_pair(cnn, images):
    x, steps, target = images[1], 30, 2
    ref = pair_gig(cnn, x, target, x_steps=steps)
    attr = gig(cnn, x[None], target, n_steps=steps).numpy()[0]
    assert abs(attr.sum() - ref.sum()) <= 1e-3 * np.abs(ref).sum()
    assert np.corrcoef(attr.ravel(), ref.ravel())[0, 1] > 0.999
    top = lambda a: set(np.argsort(-np.abs(a.ravel()))[:100])  # noqa: E731
    assert len(top(attr) & top(ref)) >= 95


# ------------------------------------------------------------------------------------------------
# 9. batching


def test_batch_equals_single_calls(cnn, images):
    kw = dict(n_steps=20, fraction=0.25, max_dist=0.02, parity=True)
    batched = gig(cnn, images, 7, **kw).numpy()
    singles = np.concatenate([gig(cnn, images[i : i + 1], 7, **kw).numpy() for i in range(len(images))])
    scale = np.abs(singles).max(axis=(1, 2, 3), keepdims=True)
    assert (np.abs(batched - singles) / scale).max() < 1e-6


def test_per_example_targets_and_baselines(cnn, images):
    x = images[:3]
    base = np.random.default_rng(5).uniform(0, 1, x.shape).astype(np.float32)
    batched = gig(cnn, x, [1, 4, 9], baseline=base, n_steps=12, parity=True).numpy()
    for i, t in enumerate([1, 4, 9]):
        single = gig(cnn, x[i : i + 1], t, baseline=base[i : i + 1], n_steps=12, parity=True).numpy()[0]
        np.testing.assert_allclose(batched[i], single, rtol=0, atol=1e-6 * np.abs(single).max())


# ------------------------------------------------------------------------------------------------
# 5. anchors


def test_anchors_zero_is_unbounded(cnn, images):
    kw = dict(n_steps=20, fraction=0.25, parity=True)
    a0 = gig(cnn, images[:2], 3, anchors=0, **kw).numpy()
    unbounded = gig(cnn, images[:2], 3, max_dist=1.0, **kw).numpy()
    np.testing.assert_array_equal(a0, unbounded)


def test_anchors_t_minus_one_is_left_riemann(smooth, images):
    x = images[:2]
    ig = tpa.integrated_gradients(smooth, x, 1, rule="riemann_left", n_steps=16).numpy()
    attr = gig(smooth, x, 1, n_steps=16, anchors=15, parity=True).numpy()
    assert np.abs(attr - ig).max() / np.abs(ig).max() < 1e-5


def _numpy_gig_anchored(grad, x, b, steps, fraction, anchors):
    """Independent numpy statement of GIG(K) (spec section 5) on top of the section-3 algorithm."""
    k1 = anchors + 1
    counts = [steps // k1 + (1 if j < steps % k1 else 0) for j in range(k1)]
    pts = [b] + [b + (x - b) * (k / k1) for k in range(1, k1)] + [x]
    return sum(_numpy_gig(grad, pts[j + 1], pts[j], counts[j], fraction, 1.0) for j in range(k1))


def _numpy_gig(grad, x, b, steps, q, dist):
    """Spec section 3, written out in numpy (float64 state)."""
    x, b = x.astype(np.float64), b.astype(np.float64)
    total = np.abs(x - b).sum()
    z, attr = b.copy(), np.zeros_like(x)
    if total == 0:
        return attr
    for t in range(steps):
        g = grad(z)
        s = g.copy()
        alpha = (t + 1) / steps
        amin, amax = max(alpha - dist, 0.0), min(alpha + dist, 1.0)
        lo, hi = b + (x - b) * amin, b + (x - b) * amax
        goal = total * (1 - (t + 1) / steps)
        while True:
            prev = z.copy()
            with np.errstate(divide="ignore", invalid="ignore"):
                p = np.where(x != b, (z - b) / (x - b), amax)
            z = np.where(p < amin, lo, z)
            cur = np.abs(z - x).sum()
            if math.isclose(cur, goal, rel_tol=1e-9, abs_tol=1e-9):
                attr += (z - prev) * g
                break
            s[z == hi] = np.inf
            tau = np.sort(np.abs(s), axis=None)[int(np.floor((s.size - 1) * q))]
            sel = (np.abs(s) <= tau) & (s != np.inf)
            l_sel = np.abs(z - hi)[sel].sum()
            gamma = (cur - goal) / l_sel if l_sel > 0 else np.inf
            z = z.copy()
            z[sel] = hi[sel] if gamma > 1 else (z + (hi - z) * gamma)[sel]
            attr += (z - prev) * g
            if gamma <= 1:
                break
    return attr


@pytest.mark.parametrize("anchors, steps", [(3, 18), (5, 12)])
def test_anchors_against_numpy_statement(cnn, images, anchors, steps):
    x = images[2]
    cmf = reference.call_model_function(cnn, 6)
    grad = lambda z: cmf.grad(tf.constant(z[None], tf.float32)).numpy()[0].astype(np.float64)  # noqa: E731
    ref = _numpy_gig_anchored(grad, x, np.zeros_like(x), steps, 0.25, anchors)
    attr = gig(cnn, x[None], 6, n_steps=steps, anchors=anchors, parity=True).numpy()[0]
    assert np.abs(attr - ref).max() / np.abs(ref).max() < 1e-6


def test_numpy_statement_matches_pair(quad):
    # the test's own numpy statement reproduces the released code on the analytic model
    cmf = reference.call_model_function(quad, 0)
    grad = lambda z: cmf.grad(tf.constant(z[None], tf.float32)).numpy()[0].astype(np.float64)  # noqa: E731
    ours = _numpy_gig(grad, X3[0], np.zeros(2, np.float32), 200, 0.25, 0.02)
    np.testing.assert_allclose(ours, pair_gig(quad, X3[0], 0), rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# 6. completeness on the smooth (tanh + AvgPool) CNN, every flavour; max-pool models against the package


def section7_cnn(pool, activation, size=64):
    """The spec's section-7 test CNN (15.7k parameters): conv16 -> pool -> conv32 -> pool -> conv32-softplus -> ..."""
    keras.utils.set_random_seed(0)
    pool_layer = keras.layers.AveragePooling2D if pool == "avg" else keras.layers.MaxPooling2D
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(16, 3, padding="same", activation=activation),
            pool_layer(2),
            keras.layers.Conv2D(32, 3, padding="same", activation=activation),
            pool_layer(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="softplus"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(10),
        ]
    )


@pytest.fixture(scope="module")
def image64():
    return np.random.default_rng(0).uniform(0, 1, (64, 64, 3)).astype(np.float32)[None]


# Sum of attributions (target 5, zero baseline, T = 200) measured with PAIR saliency (spec section 6);
# GIG(20) is the spec's reconstruction, measured by the spec author.
SECTION6 = {
    ("max", "relu"): (0.10495, {"d1": 0.0355, "d002": 0.0894, "k20": 0.0820}),
    ("max", "tanh"): (0.12272, {"d1": 0.0610, "d002": 0.1097, "k20": 0.1035}),
    ("avg", "tanh"): (0.14589, {"d1": 0.14613, "d002": 0.14599, "k20": 0.14617}),
}
FLAVOURS = {"d1": dict(max_dist=1.0), "d002": dict(), "k20": dict(anchors=20)}


@pytest.mark.parametrize("parity", [False, True])
def test_completeness_on_avgpool_cnn(image64, parity):
    model = section7_cnn("avg", "tanh")
    f = float(model(image64).numpy()[0, 5] - model(np.zeros_like(image64)).numpy()[0, 5])
    assert abs(f - SECTION6[("avg", "tanh")][0]) < 1e-5  # the same model and image as the spec
    for name, kw in FLAVOURS.items():
        attr, delta = gig(model, image64, 5, return_convergence_delta=True, parity=parity, **kw)
        total = float(attr.numpy().astype(np.float64).sum())
        assert abs(float(delta.numpy()[0]) - (total - f)) < 1e-6
        assert abs(total / f - 1) < 2e-3, (name, total / f)
        assert abs(total - SECTION6[("avg", "tanh")][1][name]) < 1e-5, (name, total)


@pytest.mark.parametrize("pool, activation", [("max", "relu"), ("max", "tanh")])
def test_maxpool_sums_match_the_package(image64, pool, activation):
    # completeness is not a pass/fail criterion on max-pool models (spec section 6): compare with PAIR's sums
    model = section7_cnn(pool, activation)
    f_ref, sums = SECTION6[(pool, activation)]
    f = float(model(image64).numpy()[0, 5] - model(np.zeros_like(image64)).numpy()[0, 5])
    assert abs(f - f_ref) < 1e-5
    for name, kw in FLAVOURS.items():
        total = float(gig(model, image64, 5, parity=True, **kw).numpy().astype(np.float64).sum())
        assert abs(total - sums[name]) <= 5e-5, (name, total)


# ------------------------------------------------------------------------------------------------
# 4. fixed features, zero distance


def test_features_at_baseline_get_exact_zero(cnn, images):
    x = images[:2].copy()
    base = np.full_like(x, 0.5)
    x[:, :5, :, :] = 0.5
    x[1, 9, 9, 1] = 0.5
    for kw in (dict(), dict(max_dist=1.0), dict(anchors=4), dict(parity=True)):
        attr = gig(cnn, x, 2, baseline=base, n_steps=10, **kw).numpy()
        assert np.all(attr[x == base] == 0.0)
        assert np.abs(attr).max() > 0


def test_zero_distance_returns_zeros_without_model_calls():
    calls = tf.Variable(0, dtype=tf.int64)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])

    def model(t):
        calls.assign_add(tf.cast(tf.shape(t)[0], tf.int64))
        return inner(t)

    x = np.ones((3, 4), np.float32)
    gig(model, x + 1, 0, n_steps=5)  # warm the probe and the trace
    before = int(calls.numpy())
    attr = gig(model, x, 0, baseline=x, n_steps=5)
    np.testing.assert_array_equal(attr.numpy(), 0.0)
    # only the mandatory per-call output probe may run (it is cached, so nothing here)
    assert int(calls.numpy()) == before
    # one row at its baseline, one not: the moving row gets its attribution, the other exactly zero
    mixed = np.stack([x[0], x[0] + 1])
    attr = gig(model, mixed, 0, baseline=x[:2], n_steps=5).numpy()
    np.testing.assert_array_equal(attr[0], 0.0)
    assert np.abs(attr[1]).sum() > 0


# ------------------------------------------------------------------------------------------------
# 8. selection rounds and argument checks


@pytest.mark.parametrize("fraction, max_dist", [(0.1, 0.02), (0.25, 0.02), (0.5, 1.0), (0.05, 0.02)])
def test_rounds_within_bound(cnn, images, fraction, max_dist):
    _, diag = gig(cnn, images[:2], 0, n_steps=20, fraction=fraction, max_dist=max_dist, return_details=True)
    assert diag["bound"] == math.ceil(1 / fraction) + 2
    assert 1 <= diag["max_rounds"] <= diag["bound"]
    assert not diag["bound_hit"]


@pytest.mark.parametrize(
    "kw, err",
    [
        (dict(fraction=0.0), ValueError),
        (dict(fraction=-0.1), ValueError),
        (dict(fraction=1.5), ValueError),
        (dict(max_dist=-0.01), ValueError),
        (dict(n_steps=0), ValueError),
        (dict(n_steps=2.5), TypeError),
        (dict(fraction="a"), TypeError),
        (dict(anchors=-1), ValueError),
        (dict(anchors=10, n_steps=10), ValueError),
        (dict(parity=1), TypeError),
        (dict(internal_batch_size=0), ValueError),
        (dict(max_dist=float("nan")), ValueError),
    ],
)
def test_bad_arguments(quad, kw, err):
    with pytest.raises(err, match=next(iter(kw))):
        gig(quad, X3, 0, **kw)


def test_several_baselines_rejected(quad):
    with pytest.raises(ValueError, match="baseline"):
        gig(quad, X3, 0, baseline=np.zeros((3, 1, 2), np.float32))


def test_no_retrace_on_new_inputs_targets_and_max_dist(cnn, images):
    eng.CACHE.clear()
    gig(cnn, images[:2], 1, n_steps=6)
    fns = [fn for _, fn in eng.CACHE._items.values()]
    assert len(fns) == 1
    gig(cnn, images[2:4], [3, 4], n_steps=6)
    gig(cnn, images[4:6] * 0.5, 7, n_steps=6, max_dist=0.3)
    assert len(eng.CACHE._items) == 1
    assert fns[0].experimental_get_tracing_count() == 1


def test_alias_and_dispatch(quad):
    a = tpa.attribute(quad, X3, 0, method="guided_ig", n_steps=10, parity=True).numpy()
    b = tpa.guided_ig(quad, X3, 0, n_steps=10, parity=True).numpy()
    np.testing.assert_array_equal(a, b)
    assert "guided_integrated_gradients" in tpa.METHODS


def test_multi_input_model():
    a_in, b_in = keras.Input((3,)), keras.Input((2,))
    keras.utils.set_random_seed(3)
    h = keras.layers.Concatenate()([a_in, b_in])
    out = keras.layers.Dense(2)(keras.layers.Dense(8, activation="tanh")(h))
    model = keras.Model([a_in, b_in], out)
    rng = np.random.default_rng(2)
    xa, xb = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32)
    attr, delta = gig(model, [xa, xb], 1, n_steps=100, max_dist=1.0, return_convergence_delta=True)
    assert attr[0].shape == xa.shape and attr[1].shape == xb.shape
    # the same as Guided IG on the concatenated input through the same layers
    single_in = keras.Input((5,))
    single = keras.Model(single_in, model.layers[-1](model.layers[-2](single_in)))
    ref = gig(single, np.concatenate([xa, xb], 1), 1, n_steps=100, max_dist=1.0).numpy()
    np.testing.assert_allclose(np.concatenate([attr[0].numpy(), attr[1].numpy()], 1), ref, atol=1e-5)
    f = model([xa, xb]).numpy()[:, 1] - model([xa * 0, xb * 0]).numpy()[:, 1]
    assert np.all(np.abs(delta.numpy()) < 0.02 * np.abs(f) + 1e-4)


@pytest.mark.parametrize("k_frac", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_order_statistic_helpers(k_frac):
    rng = np.random.default_rng(4)
    mag = np.abs(rng.normal(size=(5, 300))).astype(np.float32)
    mag[0, :200] = 0.0  # many ties (ReLU / max-pool zeros)
    mag[1, ::3] = np.inf  # retired features
    mag[2, :] = np.inf
    mag[3, 10:40] = mag[3, 0]  # ties at a non-zero value
    mag[4, 5] = 1e-42  # subnormal
    k = int(np.floor((300 - 1) * k_frac))
    expected = np.quantile(mag.astype(np.float64), k_frac, axis=1, method="lower")
    np.testing.assert_array_equal(np.sort(mag, axis=1)[:, k], expected.astype(np.float32))
    np.testing.assert_array_equal(
        gig_mod._kth_smallest_bisect(tf.constant(mag), k).numpy(), expected.astype(np.float32)
    )
    # as the fast mode runs it: under XLA (its counts are float32 dot products of 0/1 values), any batch
    bisect_xla = tf.function(lambda m: gig_mod._kth_smallest_bisect(m, k), jit_compile=True, autograph=False)
    np.testing.assert_array_equal(bisect_xla(tf.constant(mag)).numpy(), expected.astype(np.float32))
    np.testing.assert_array_equal(bisect_xla(tf.constant(mag[3:4])).numpy(), expected[3:4].astype(np.float32))
    np.testing.assert_array_equal(gig_mod._kth_smallest_topk(tf.constant(mag.astype(np.float64)), k).numpy(), expected)


def test_round_bound_cut_off_is_reported(cnn, images, monkeypatch):
    # force a bound of one round per step: steps that need a second round are cut off and reported
    monkeypatch.setattr(gig_mod, "max_rounds_per_step", lambda fraction: 1)
    eng.CACHE.clear()
    with pytest.warns(RuntimeWarning, match="selection rounds"):
        _, diag = gig(cnn, images[:2], 0, n_steps=10, fraction=0.1, max_dist=0.02, return_details=True)
    assert diag["bound_hit"] and diag["max_rounds"] == 1


def test_details_come_with_the_call_and_no_module_state_is_kept(cnn, images):
    # issue 9 (Build): the round statistics are returned, not kept in module-level mutable state
    assert not hasattr(gig_mod, "LAST_DIAGNOSTICS")
    attr, delta, diag = gig(cnn, images[:2], 0, n_steps=6, return_convergence_delta=True, return_details=True)
    assert attr.shape == images[:2].shape and delta.shape == (2,)
    assert set(diag) == {"max_rounds", "mean_rounds", "bound", "bound_hit"}
    from tf_pathattr.methods import registry

    assert registry.get("guided_ig").details is True
    eng.CACHE.clear()


# ------------------------------------------------------------------------------------------------
# batch = per-example (issue 9 defect 11)


def _maxpool_bn_cnn(seed=0, size=48):
    """A random-weight max-pool / BatchNorm CNN like the emotion CNN of the report (7 classes)."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((size, size, 1)),
            L.Conv2D(32, 3, activation="relu", padding="same"),
            L.BatchNormalization(),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu", padding="same"),
            L.BatchNormalization(),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu", padding="same"),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dense(128, activation="relu"),
            L.Dense(7),
        ]
    )


@pytest.mark.parametrize("parity", [False, True])
def test_no_coupling_between_rows_with_a_batch_invariant_model(parity):
    # the model's input gradients depend (by ~4e-9) on how many rows it is called with (oneDNN picks
    # batch-size-dependent kernels); calling it row by row removes that, and then an example's Guided IG
    # inside a batch is bit-identical to its Guided IG alone: the method itself shares no state across rows
    model = _maxpool_bn_cnn()
    x = np.random.default_rng(0).random((3, 48, 48, 1)).astype(np.float32)

    def rowwise(z):
        return tf.concat([model(z[i : i + 1], training=False) for i in range(z.shape[0])], axis=0)

    batch = gig(rowwise, x, None, n_steps=30, parity=parity).numpy()
    for i in range(3):
        np.testing.assert_array_equal(batch[i], gig(rowwise, x[i : i + 1], None, n_steps=30, parity=parity).numpy()[0])


def test_batch_difference_of_a_plain_model_is_within_the_declared_tolerance():
    from tf_pathattr.methods import registry

    tol = registry.get("guided_integrated_gradients").batch_tolerance
    assert 0.0 < tol < 1.0
    model = _maxpool_bn_cnn()
    x = np.random.default_rng(0).random((3, 48, 48, 1)).astype(np.float32)
    batch = gig(model, x, None, n_steps=50).numpy()
    worst = 0.0
    for i in range(3):
        one = gig(model, x[i : i + 1], None, n_steps=50).numpy()[0]
        worst = max(worst, np.abs(batch[i] - one).max() / np.abs(one).max())
    assert worst <= tol


def test_selection_rounds_compile_once_per_shape_not_per_model():
    # issue 21: the fast mode's XLA-compiled step rounds are a module-level function of tensors only, so a
    # new model of the same input shape adds no trace (and no XLA executable); the former module flag
    # XLA_ROUNDS compiled a new nested function for every model and grew XLA's cache with each one
    assert not hasattr(gig_mod, "XLA_ROUNDS")
    x = np.random.default_rng(0).uniform(0.0, 1.0, (2, 8, 8, 3)).astype(np.float32)
    gig(zoo.toy_cnn(seed=1), x, 0, n_steps=4)
    fns = (gig_mod._step_rounds_xla,)
    counts = [f.experimental_get_tracing_count() for f in fns]
    for seed in (2, 3):
        gig(zoo.toy_cnn(seed=seed), x, 0, n_steps=4)
    assert [f.experimental_get_tracing_count() for f in fns] == counts


def test_fast_rounds_match_the_plain_tf_rounds(cnn, images):
    # the XLA-compiled step rounds compute what the same function computes as plain TF ops
    eng.CACHE.clear()
    fast = gig(cnn, images[:2], 0, n_steps=20).numpy()
    orig = gig_mod._step_rounds_xla
    try:
        gig_mod._step_rounds_xla = gig_mod._step_rounds
        eng.CACHE.clear()
        plain = gig(cnn, images[:2], 0, n_steps=20).numpy()
    finally:
        gig_mod._step_rounds_xla = orig
        eng.CACHE.clear()
    assert np.corrcoef(fast.ravel(), plain.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(fast.sum(axis=(1, 2, 3)), plain.sum(axis=(1, 2, 3)), rtol=1e-3)


@pytest.mark.parametrize("width", [3072, 3071, 27648, 1])
def test_fixed_order_row_sums_do_not_depend_on_the_batch_under_xla(width):
    # issue 21: the fast mode sums each row inside one XLA cluster. XLA's own row reduction picks its
    # vector split by the whole shape (a row of a [16, 3072] matrix summed 1.5e-5 away from the same row
    # alone), which would make an example's path depend on its batch; the fixed-order halving must not
    rng = np.random.default_rng(width)
    v = np.abs(rng.standard_normal((16, width))).astype(np.float32)
    sums = tf.function(gig_mod._row_sums_fixed_order, jit_compile=True, autograph=False)
    full = sums(tf.constant(v)).numpy()
    for rows in (slice(0, 1), slice(3, 6), slice(9, 16)):
        np.testing.assert_array_equal(sums(tf.constant(v[rows])).numpy(), full[rows])
    np.testing.assert_allclose(full, v.astype(np.float64).sum(axis=1), rtol=1e-6)
