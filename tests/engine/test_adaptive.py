"""n_steps="auto": nested Clenshaw–Curtis tables, the per-example tolerance, budget reporting, masking
of finished examples, and equality of the compact (per-row target) and grouped (callable target) paths."""

import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.engine.adaptive import clenshaw_curtis, fejer2, levels_for_budget, nested_tables
from tf_pathattr.testing import models as zoo

ig = tpa.integrated_gradients


@pytest.mark.parametrize("n", [2, 4, 8, 16, 64])
def test_clenshaw_curtis_exact_to_degree_n(n):
    a, w = clenshaw_curtis(n)
    assert np.all(w > 0) and abs(w.sum() - 1) < 1e-14 and np.all(np.diff(a) > 0)
    for p in range(n + 1):
        assert abs((w * a**p).sum() - 1 / (p + 1)) < 1e-13, p
    if n <= 4:  # and not beyond (degree n + 1 is exact by symmetry for even n)
        assert abs((w * a ** (n + 2)).sum() - 1 / (n + 3)) > 1e-4


@pytest.mark.parametrize("n", [4, 8, 16, 64])
def test_fejer2_exact_to_degree_n_minus_1_without_end_points(n):
    a, w = fejer2(n)
    assert len(a) == n - 1 and a[0] > 0 and a[-1] < 1
    assert np.all(w > 0) and abs(w.sum() - 1) < 1e-14 and np.all(np.diff(a) > 0)
    for p in range(n):
        assert abs((w * a**p).sum() - 1 / (p + 1)) < 1e-13, p
    np.testing.assert_allclose(a, clenshaw_curtis(n)[0][1:-1], atol=1e-15)  # the interior CC nodes


def test_nested_tables_reuse_every_node():
    t = nested_tables(4)
    assert list(t["nodes"]) == [3, 7, 15, 31] and list(t["gen_count"]) == [3, 4, 8, 16]
    assert len(t["alpha"]) == 31 and len(np.unique(np.round(t["alpha"], 14))) == 31
    for lev in range(4):
        used = np.flatnonzero(t["weights"][lev])
        assert len(used) == t["nodes"][lev] and used.max() < t["gen_start"][lev] + t["gen_count"][lev]
        a, w = fejer2(4 * 2**lev)
        order = np.argsort(t["alpha"][used])
        np.testing.assert_allclose(t["alpha"][used][order], a, atol=1e-15)
        np.testing.assert_allclose(t["weights"][lev][used][order], w, atol=1e-15)
    assert levels_for_budget(1023) == 9 and levels_for_budget(32) == 4 and levels_for_budget(30) == 3
    with pytest.raises(ValueError, match="max_steps"):
        levels_for_budget(2)


def steep(z):
    """F = sum tanh(z)^2: the larger |x|, the sharper the integrand near the baseline."""
    return tf.reduce_sum(tf.tanh(z) ** 2, axis=1, keepdims=True)


X_STEEP = np.array([[0.5, 0.2], [2.0, 1.0], [8.0, -3.0], [30.0, 1.0]], np.float32)


@pytest.mark.parametrize("ibs", [256, 3])
def test_tolerance_met_and_finished_examples_stop(ibs):
    attr, delta, det = ig(
        steep,
        X_STEEP,
        None,
        n_steps="auto",
        return_convergence_delta=True,
        return_details=True,
        internal_batch_size=ibs,
    )
    f = steep(X_STEEP).numpy()[:, 0]
    assert det["converged"].all()
    assert np.all(np.abs(delta.numpy()) <= 1e-3 * np.abs(f))
    steps = det["n_steps"]
    assert steps[0] < steps[-1]  # per-example refinement: the gentle example stops early ...
    assert det["evaluations"] == steps.sum()  # ... and costs nothing afterwards
    closed = np.tanh(X_STEEP) ** 2  # additive model: IG_i = F_i(x_i) - F_i(0)
    np.testing.assert_allclose(attr.numpy(), closed, atol=2e-3 * np.abs(closed).max())
    # the delta reported is the real one
    np.testing.assert_allclose(delta.numpy(), attr.numpy().sum(1) - f, atol=1e-6)


def test_budget_hit_is_reported():
    x = np.array([[0.3, 0.1], [60.0, 40.0]], np.float32)
    attr, det = ig(steep, x, None, n_steps="auto", rtol=1e-7, max_steps=17, return_details=True)
    assert det["converged"][1] == np.False_ and det["n_steps"][1] == 15 and det["rounds"] == 3
    f = steep(x).numpy()[:, 0]
    np.testing.assert_allclose(det["delta"].numpy(), attr.numpy().sum(1) - f, atol=1e-5)


def test_callable_target_and_xla_agree_with_compact():
    model = zoo.smooth_cnn(8, classes=4)
    x = (4.0 * np.random.default_rng(1).random((3, 8, 8, 3))).astype(np.float32)
    a, d1 = ig(model, x, [1, 2, 3], n_steps="auto", rtol=1e-4, return_details=True)
    b, d2 = ig(
        model,
        x,
        lambda o: (
            tf.gather(o, [1, 2, 3], axis=1, batch_dims=0)[:, 0] * 0
            + tf.reduce_sum(o * tf.one_hot([1, 2, 3], 4), axis=1)
        ),
        n_steps="auto",
        rtol=1e-4,
        return_details=True,
        internal_batch_size=6,
    )
    c, d3 = ig(
        model, x, [1, 2, 3], n_steps="auto", rtol=1e-4, return_details=True, jit_compile=True, internal_batch_size=16
    )
    np.testing.assert_array_equal(d1["n_steps"], d2["n_steps"])
    np.testing.assert_array_equal(d1["n_steps"], d3["n_steps"])
    scale = np.abs(a.numpy()).max()
    assert np.abs(a.numpy() - b.numpy()).max() <= 1e-5 * scale
    assert np.abs(a.numpy() - c.numpy()).max() <= 1e-5 * scale


def test_several_baselines_and_batch_equals_single():
    model = zoo.smooth_cnn(8, classes=4)
    x = (3.0 * np.random.default_rng(2).random((2, 8, 8, 3))).astype(np.float32)
    bases = np.stack([np.zeros_like(x), np.full_like(x, 0.5)])
    both, det = ig(model, x, 1, baseline=bases, n_steps="auto", return_details=True)
    one0 = ig(model, x, 1, baseline=bases[0], n_steps="auto")
    one1 = ig(model, x, 1, baseline=bases[1], n_steps="auto")
    np.testing.assert_allclose(both.numpy(), (one0.numpy() + one1.numpy()) / 2, atol=1e-6)
    single = ig(model, x[1:], 1, baseline=bases[:, 1:], n_steps="auto")
    np.testing.assert_allclose(single.numpy()[0], both.numpy()[1], atol=1e-6)


def test_local_attributions_and_errors():
    a = ig(steep, X_STEEP, None, n_steps="auto").numpy()
    loc = ig(steep, X_STEEP, None, n_steps="auto", multiply_by_inputs=False).numpy()
    np.testing.assert_allclose(loc * X_STEEP, a, rtol=1e-6)
    with pytest.raises(ValueError, match="n_steps"):
        ig(steep, X_STEEP, None, n_steps="adaptive")
    with pytest.raises(ValueError, match="rtol"):
        ig(steep, X_STEEP, None, n_steps="auto", rtol=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        ig(steep, X_STEEP, None, n_steps="auto", max_steps=2)


def test_fixed_steps_details():
    attr, det = ig(steep, X_STEEP, None, n_steps=16, return_details=True)
    assert list(det["n_steps"]) == [16] * 4
    np.testing.assert_allclose(det["delta"].numpy(), attr.numpy().sum(1) - steep(X_STEEP).numpy()[:, 0], atol=1e-5)


def test_layer_attribution_uses_grouped_rows():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((5,), dtype="int32")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4, name="emb")(inp))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Dense(8, activation="tanh")(h)))
    ids = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 1]], np.int32)
    auto, det = ig(model, ids, 1, layer="emb", n_steps="auto", rtol=1e-5, return_details=True)
    fixed = ig(model, ids, 1, layer="emb", n_steps=64)
    assert det["converged"].all()
    np.testing.assert_allclose(auto.numpy(), fixed.numpy(), atol=1e-5 * np.abs(fixed.numpy()).max())


def _cancelling(x):
    """relu(x1 - .5) - relu(x2 - .5): F(x) = F(0) = 0 at x = (1, 1), IG = (0.5, -0.5) exactly."""
    return tf.nn.relu(x[:, 0:1] - 0.5) - tf.nn.relu(x[:, 1:2] - 0.5)


@pytest.mark.parametrize("rtol", [1e-2, 1e-3])
def test_cancelling_errors_do_not_stop_the_refinement(rtol):
    """Issue 18 item 3: every level's sum is exact here (F(x) - F(x') = 0 and both features' errors
    cancel), so a sum-only rule stopped at 3 nodes with (0.33, -0.33) and said converged. The rule
    bounds the per-feature change between nested levels relative to the attribution's L1 norm; the
    result is then within the tolerance of the closed form, or reported as not converged."""
    x = np.array([[1.0, 1.0]], np.float32)
    closed = np.array([[0.5, -0.5]])
    attr, det = ig(_cancelling, x, 0, n_steps="auto", rtol=rtol, return_details=True)
    assert det["n_steps"][0] > 3
    err = np.abs(attr.numpy() - closed).sum()  # L1 error; ||IG||_1 = 1
    if det["converged"][0]:
        assert err <= rtol, (err, det)
    else:
        assert det["n_steps"][0] == 1023  # the whole budget spent, and said so
    assert rtol == 1e-3 or det["converged"][0]  # a loose tolerance is met within the budget


def test_tolerance_does_not_collapse_when_the_output_does_not_change():
    """F(x) = F(x') with nonzero attributions: the tolerance scales with the attributions, not with
    |F(x) - F(x')| = 0 (which needed an exact zero delta)."""

    def smooth(x):  # tanh(x1)^2 - tanh(x2)^2: F(x) = F(0) = 0 at x1 = x2, IG = (t^2, -t^2)
        return tf.tanh(x[:, 0:1]) ** 2 - tf.tanh(x[:, 1:2]) ** 2

    x = np.array([[1.5, 1.5]], np.float32)
    t2 = np.tanh(1.5) ** 2
    attr, det = ig(smooth, x, 0, n_steps="auto", rtol=1e-3, return_details=True)
    assert det["converged"][0] and det["n_steps"][0] < 1023
    np.testing.assert_allclose(attr.numpy(), [[t2, -t2]], atol=1e-3 * 2 * t2)
