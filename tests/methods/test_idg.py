"""Integrated Decision Gradients: allocation vectors, exact identities, linear closed form, guards, the Q1
regression, normalisation, and parity of ``reference_compat`` with a numpy re-statement of the released
algorithm (specs/idg.md sections 2, 4 and 5)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pathattr.methods.idg import allocate, integrated_decision_gradients, place
from tf_pathattr.testing import models as zoo

ROWS = [
    # coarse logits, counts (reference), reference alphas, weights, segment-placement alphas
    (
        [0, 0.5, 3, 4.5, 4.8, 4.9],
        [0, 1, 3, 1, 1, 0],
        [0, 0.2, 0.2667, 0.3333, 0.4, 0.6],
        [0.2, 0.0667, 0.0667, 0.0667, 0.2, 0.2],
        [0, 0.2, 0.2667, 0.3333, 0.4, 0.6],
    ),
    (
        [0, 0.1, 0.25, 2, 4, 4.2],
        [0, 0, 1, 2, 2, 1],
        [0, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.2, 0.1, 0.1, 0.1, 0.1, 0.2],
        [0.2, 0.4, 0.5, 0.6, 0.7, 0.8],
    ),
]


# ------------------------------------------------------------------------------ numpy re-statement (spec section 2)


def released_idg_numpy(forward, grad, x, xb, steps):
    """The released IDG algorithm, restated from specs/idg.md section 2 with plain loops.

    ``forward(points) -> [n]`` logits and ``grad(points) -> (logits [n], grads [n, *S])`` for a stack
    of single-example points. Returns the attribution map of one example.
    """
    n_coarse = m = steps
    a = np.linspace(0, 1, n_coarse).astype(np.float32)
    dx = x - xb
    logits = forward(np.stack([xb + aj * dx for aj in a]))
    step = float(a[1] - a[0])
    slopes = np.zeros(n_coarse)
    for j in range(1, n_coarse):
        slopes[j] = (logits[j] - logits[j - 1]) / step
    norm = (slopes - slopes.min()) / (slopes.max() - slopes.min())
    norm[0] = 0.0
    f = m * norm / norm.sum()
    counts = f.astype(int)
    remainder = m - counts.sum()
    key = np.where(counts != 0, -1.0, f)
    order = np.argsort(key, kind="stable")[::-1]  # descending, ties from the highest index
    counts[order[:remainder]] = 1
    alphas, widths = [], []
    t = 0.0
    for nj in counts:
        if nj == 0:
            continue
        for r in range(nj):
            alphas.append(t + r * step / nj)
            widths.append(step / nj)
        t += step
    alphas = np.array(alphas)
    fk, gk = grad(np.stack([xb + ak * dx for ak in alphas.astype(np.float32)]))
    s = np.zeros(m)
    for k in range(1, m):
        s[k] = (fk[k] - fk[k - 1]) / (alphas[k] - alphas[k - 1])
    total = sum(gk[k] * s[k] * widths[k] for k in range(m))
    return dx * total / m, counts, alphas


def model_oracles(model, target):
    @tf.function
    def grad(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            f = model(z, training=False)[:, target]
        return f, tape.gradient(f, z)

    def fwd(points):
        return np.asarray(model(tf.constant(points, tf.float32), training=False))[:, target].astype(np.float64)

    def grd(points):
        f, g = grad(tf.constant(points, tf.float32))
        return f.numpy().astype(np.float64), g.numpy().astype(np.float64)

    return fwd, grd


def sigmoid_path_model(c):
    """1-D model F(z) = 10 sigmoid(30 (z - c)); with x = 1 and baseline 0 the path is F(alpha)."""
    return lambda z: 10.0 * tf.sigmoid(30.0 * (z - c))


# ------------------------------------------------------------------------------ allocation and placement


@pytest.mark.parametrize("row", ROWS)
def test_worked_allocation_vectors_reference_mode(row):
    logits, counts, ref_alpha, ref_w, seg_alpha = row
    logits = np.asarray(logits, np.float32)
    entries = np.concatenate([[0.0], np.diff(logits) / 0.2]).astype(np.float32)[None]
    got_counts, _ = allocate(tf.constant(entries), 6, reference=True)
    np.testing.assert_array_equal(got_counts.numpy()[0], counts)
    alpha, w = place(got_counts, 6, 0.2, "reference", first_left=1)
    np.testing.assert_allclose(alpha.numpy()[0], ref_alpha, atol=1e-4)
    np.testing.assert_allclose(w.numpy()[0], ref_w, atol=1e-4)
    alpha_seg, _ = place(got_counts, 6, 0.2, "segment", first_left=1)
    np.testing.assert_allclose(alpha_seg.numpy()[0], seg_alpha, atol=1e-4)


def test_default_normalisation_keeps_the_implicit_zero():
    # row 1 without the sentinel: the 0.5-slope segment keeps mass (min-max over real segments would zero it)
    seg = (np.diff(np.asarray(ROWS[0][0], np.float32)) / 0.2)[None]
    _, f = allocate(tf.constant(seg), 6)
    assert f.numpy()[0, -1] > 0.1


@pytest.mark.parametrize("m,n", [(50, 50), (7, 20), (100, 10), (6, 6), (1, 5), (33, 2)])
def test_counts_sum_to_budget_and_alphas_are_sorted(m, n):
    rng = np.random.default_rng(m * 100 + n)
    seg = rng.normal(size=(8, n - 1)).astype(np.float32)
    seg[0] = 1.0  # uniform slope
    seg[1] = -2.0  # decreasing: guard
    seg[2] = 0.0  # constant: guard
    counts, _ = allocate(tf.constant(seg), m)
    np.testing.assert_array_equal(counts.numpy().sum(1), m)
    assert (counts.numpy() >= 0).all()
    if m >= n - 1:  # uniform slope and the guard give a uniform allocation
        for b in range(3):
            assert counts.numpy()[b].min() >= m // (n - 1)
            assert counts.numpy()[b].max() <= m // (n - 1) + 1
    for placement in ("segment", "reference"):
        for point in ("left", "mid"):
            alpha, w = place(counts, m, 1.0 / (n - 1), placement, point)
            a, w = alpha.numpy(), w.numpy()
            assert (np.diff(a, axis=1) > 0).all()
            assert a.min() >= 0 and a.max() <= 1
            assert (w > 0).all() and (w.sum(1) <= 1 + 1e-6).all()


# ------------------------------------------------------------------------------ identities and axioms


def test_exact_identity_sum_equals_weighted_squared_slopes(smooth_cnn):
    x = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
    attr, det = integrated_decision_gradients(
        smooth_cnn, x, [1, 4, 7], n_steps=20, return_details=True, internal_batch_size=21
    )
    lhs = attr.numpy().reshape(3, -1).sum(1)
    rhs = (det["weights"].numpy() * det["importance"].numpy() ** 2).sum(1)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)
    assert (lhs > 0).all()
    np.testing.assert_array_equal(det["counts"].numpy().sum(1), 20)
    assert (det["weights"].numpy().sum(1) <= 1 + 1e-6).all()  # empty segments contribute nothing


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_linear_model_gives_delta_f_times_ig(sign):
    theta = np.array([0.5, -1.0, 2.0, 0.25], np.float32) * sign
    model, w = zoo.linear_model(theta, bias=0.3)
    x = np.array([[1.0, 0.5, 0.8, -2.0], [0.2, -0.4, 1.0, 1.0]], np.float32)
    xb = np.array([0.1, 0.2, -0.3, 0.0], np.float32)
    attr, det = integrated_decision_gradients(model, x, 0, baseline=xb, n_steps=50, return_details=True)
    dx = x - xb
    c = dx @ theta
    expected = c[:, None] * dx * theta[None]  # (F(x) - F(x')) * IG
    np.testing.assert_allclose(attr.numpy(), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_allclose(det["weights"].numpy().sum(1), 1.0, atol=1e-6)


def test_no_nan_on_constant_model_and_decreasing_path():
    x = np.random.default_rng(1).random((2, 5)).astype(np.float32)
    constant = lambda z: 0.0 * z[:, :1] + 1.5  # noqa: E731
    a, det = integrated_decision_gradients(constant, x, 0, n_steps=10, return_details=True)
    assert np.isfinite(a.numpy()).all() and np.abs(a.numpy()).max() == 0
    np.testing.assert_array_equal(det["counts"].numpy(), np.array([[2] + [1] * 8] * 2))
    decreasing = lambda z: -5.0 * tf.sigmoid(tf.reduce_sum(z, axis=1, keepdims=True))  # noqa: E731
    for compat in (False, True):
        a = integrated_decision_gradients(decreasing, x, 0, n_steps=10, reference_compat=compat)
        assert np.isfinite(a.numpy()).all()
        assert np.abs(a.numpy()).max() > 0


def test_dummy_feature_gets_zero():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)])
    k, b = model.layers[0].get_weights()
    k[2] = 0.0  # feature 2 never reaches the output
    model.layers[0].set_weights([k, b])
    x = np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32)
    for compat in (False, True):
        a = integrated_decision_gradients(model, x, 1, n_steps=16, reference_compat=compat).numpy()
        assert np.array_equal(a[:, 2], np.zeros(3))
        assert np.abs(a).max() > 0


def test_normalize_completeness(smooth_cnn):
    x = np.random.default_rng(4).random((2, 16, 16, 3)).astype(np.float32)
    a = integrated_decision_gradients(smooth_cnn, x, 3, n_steps=16, normalize="completeness")
    f = smooth_cnn(x).numpy()[:, 3] - smooth_cnn(np.zeros_like(x)).numpy()[:, 3]
    np.testing.assert_allclose(a.numpy().reshape(2, -1).sum(1), f, rtol=1e-5, atol=1e-6)


def test_chunking_does_not_change_the_result_in_reference_mode(smooth_cnn):
    """The default mode is covered by tests/test_contract.py (every method)."""
    x = np.random.default_rng(5).random((2, 16, 16, 3)).astype(np.float32)
    for compat in (True,):
        a1 = integrated_decision_gradients(
            smooth_cnn, x, 2, n_steps=12, reference_compat=compat, internal_batch_size=2
        ).numpy()
        a5 = integrated_decision_gradients(
            smooth_cnn, x, 2, n_steps=12, reference_compat=compat, internal_batch_size=10
        ).numpy()
        assert np.abs(a1 - a5).max() <= 1e-5 * np.abs(a1).max()


# ------------------------------------------------------------------------------ quirk Q1 and quadrature


@pytest.mark.parametrize(
    "c,ref_cover,seg_cover",
    [(0.15, (0.0, 0.37), (0.0, 0.37)), (0.5, (0.0, 0.39), (0.29, 0.69)), (0.8, (0.0, 0.39), (0.59, 1.0))],
)
def test_q1_regression_sigmoid_path(c, ref_cover, seg_cover):
    """Coverage [min alpha, max alpha] of the 50 samples for F(alpha) = 10 sigmoid(30 (alpha - c)) (spec Q1).

    The tolerance is one coarse step (1/49): at c = 0.5 the segments [14, 15]/49 and [34, 35]/49 have
    mathematically equal slopes, so the last remainder slot is decided by float rounding.
    """
    x = np.ones((1, 1), np.float32)
    model = sigmoid_path_model(c)
    for kw, cover in (
        (dict(reference_compat=True), ref_cover),
        (dict(placement="reference"), ref_cover),
        (dict(placement="segment"), seg_cover),
    ):
        _, det = integrated_decision_gradients(model, x, 0, n_steps=50, return_details=True, **kw)
        a = det["alphas"].numpy()[0]
        assert abs(a.min() - cover[0]) <= 1 / 49 + 1e-6, (kw, a.min())
        assert abs(a.max() - cover[1]) <= 1 / 49 + 1e-6, (kw, a.max())
        if "placement" in kw and kw["placement"] == "segment" and c > 0.3:  # samples sit on the decision region
            slope_at = 300 * np.exp(-30 * np.abs(a - c))  # ~ F'(alpha) up to a factor <= 4
            assert slope_at.min() > 300 * np.exp(-30 * 0.22)


def test_quadrature_converges_to_integral_of_squared_slope():
    c = 0.4
    sig = lambda u: 1.0 / (1.0 + np.exp(-u))  # noqa: E731
    s0, s1 = sig(30 * (0 - c)), sig(30 * (1 - c))
    exact = 300.0**2 / 30.0 * ((s1**2 / 2 - s1**3 / 3) - (s0**2 / 2 - s0**3 / 3))  # int F'^2
    x = np.ones((1, 1), np.float32)
    errors = []
    for m in (10, 40, 160):
        a = integrated_decision_gradients(sigmoid_path_model(c), x, 0, n_steps=m, sample_point="mid")
        errors.append(abs(float(a.numpy().sum()) - exact) / exact)
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 1e-3, errors


# ------------------------------------------------------------------------------ parity with the released algorithm


def test_reference_compat_matches_numpy_restatement():
    model = zoo.smooth_cnn(8, classes=5, seed=1)
    x = np.random.default_rng(6).random((2, 8, 8, 3)).astype(np.float32)
    xb = np.full((8, 8, 3), 0.1, np.float32)
    steps = 20
    ours, det = integrated_decision_gradients(
        model, x, [1, 3], baseline=xb, n_steps=steps, reference_compat=True, return_details=True, internal_batch_size=10
    )
    for b, target in enumerate([1, 3]):
        fwd, grd = model_oracles(model, target)
        ref, counts, alphas = released_idg_numpy(fwd, grd, x[b].astype(np.float64), xb.astype(np.float64), steps)
        np.testing.assert_array_equal(det["counts"].numpy()[b], counts)
        np.testing.assert_allclose(det["alphas"].numpy()[b], alphas, atol=1e-6)
        err = np.abs(ours.numpy()[b] - ref).max() / np.abs(ref).max()
        assert err < 1e-5, err
    # the bug-free default differs from the reference (placement, importance, scale)
    default = integrated_decision_gradients(model, x, [1, 3], baseline=xb, n_steps=steps).numpy()
    assert not np.allclose(default, ours.numpy(), rtol=1e-2)


# ------------------------------------------------------------------------------ errors


def test_bad_arguments_raise_clear_errors(smooth_cnn):
    x = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="n_coarse == n_steps"):
        integrated_decision_gradients(smooth_cnn, x, n_steps=10, n_coarse=20, reference_compat=True)
    with pytest.raises(ValueError, match="importance"):
        integrated_decision_gradients(smooth_cnn, x, importance="abs")
    with pytest.raises(ValueError, match="placement"):
        integrated_decision_gradients(smooth_cnn, x, placement="middle")
    with pytest.raises(ValueError, match="normalize"):
        integrated_decision_gradients(smooth_cnn, x, normalize="sum")
    with pytest.raises(ValueError, match="n_coarse"):
        integrated_decision_gradients(smooth_cnn, x, n_steps=1)
    with pytest.raises(ValueError, match="one baseline"):
        integrated_decision_gradients(smooth_cnn, x, baseline=np.zeros((3, 1, 16, 16, 3), np.float32))
    with pytest.raises(TypeError, match="n_steps"):
        integrated_decision_gradients(smooth_cnn, x, n_steps=2.5)


def test_jit_compile_and_alias_dispatch(smooth_cnn):
    import tf_pathattr as tpa

    x = np.random.default_rng(7).random((2, 16, 16, 3)).astype(np.float32)
    for compat in (True,):  # the default mode: tests/test_contract.py test_xla_equals_eager
        a = integrated_decision_gradients(smooth_cnn, x, 2, n_steps=10, reference_compat=compat).numpy()
        aj = integrated_decision_gradients(
            smooth_cnn, x, 2, n_steps=10, reference_compat=compat, jit_compile=True
        ).numpy()
        assert np.abs(a - aj).max() <= 1e-4 * np.abs(a).max()
    a2 = tpa.attribute(smooth_cnn, x, 2, method="idg", n_steps=10).numpy()
    np.testing.assert_array_equal(a2, integrated_decision_gradients(smooth_cnn, x, 2, n_steps=10).numpy())


def test_plan_body_runs_on_new_inputs(smooth_cnn):
    """The planned body depends on the inputs only through flat_x (export / callback embedding)."""
    x = np.random.default_rng(9).random((2, 16, 16, 3)).astype(np.float32)
    x_new = np.random.default_rng(10).random((2, 16, 16, 3)).astype(np.float32)
    plan = integrated_decision_gradients.plan(smooth_cnn, x, 1, n_steps=10)
    out = tf.function(plan.python_fn)([tf.constant(x_new)], plan.problem.target.indices, *plan.extra_args)
    expected = integrated_decision_gradients(smooth_cnn, x_new, 1, n_steps=10).numpy()
    np.testing.assert_allclose(out[0][0].numpy(), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def _decreasing_tail_logits(n_paths, n, seed):
    """Coarse logits that are flat, then decrease: the minimum slope is the last segments'."""
    rng = np.random.default_rng(seed)
    c = np.zeros((n_paths, n), np.float32)
    for i in range(n_paths):
        k = rng.integers(2, n - 1)
        c[i, k:] = -np.cumsum(rng.random(n - k).astype(np.float32) * 0.02)
        c[i] += rng.normal()
    return c


def test_allocation_is_the_same_eager_and_under_xla():
    # issue 9 defect 5: XLA evaluated S_j - min S as -1e-8 for the minimum slope, floor made it a count of -1
    import tf_pathattr.methods.idg as idg_module

    c = tf.constant(_decreasing_tail_logits(300, 10, 0))
    for compat in (False, True):

        def f(c):
            if hasattr(idg_module, "allocate_from_logits"):
                return idg_module.allocate_from_logits(c, 10, compat)
            seg = (c[:, 1:] - c[:, :-1]) / (1.0 / 9)  # the pre-fix computation
            if compat:
                seg = tf.concat([tf.zeros_like(seg[:, :1]), seg], axis=1)
            return allocate(seg, 10, reference=compat)[0]

        eager = f(c).numpy()
        xla = tf.function(f, jit_compile=True)(c).numpy()
        assert eager.min() >= 0 and xla.min() >= 0
        np.testing.assert_array_equal(xla, eager)


def test_relu_model_attributions_agree_eager_and_xla():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(3),
        ]
    )
    w, b = model.layers[0].get_weights()
    model.layers[0].set_weights([w, b - 0.8])  # dead units: flat logit segments along the path
    x = np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32) * 2
    a, da = integrated_decision_gradients(model, x, 0, n_steps=10, return_details=True)
    b, db = integrated_decision_gradients(model, x, 0, n_steps=10, return_details=True, jit_compile=True)
    np.testing.assert_array_equal(db["counts"].numpy(), da["counts"].numpy())
    scale = np.maximum(np.abs(a.numpy()).max(axis=1, keepdims=True), 1e-6)
    assert np.max(np.abs(a.numpy() - b.numpy()) / scale) < 1e-4
