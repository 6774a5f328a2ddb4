"""Integrated Gradients: closed forms, axioms, chunk invariance, PAIR parity, retracing, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.engine import gradients as eng
from tf_pathattr.engine.quadrature import RULES
from tf_pathattr.testing import models as zoo


def power_model(p):
    """f(x) = (2 x0 + x1)^p as a plain callable (also exercises non-Keras models)."""
    w = tf.constant([[2.0], [1.0]])
    return lambda x: tf.pow(tf.matmul(x, w), p)


X3 = np.array([[3.0, 3.0]], np.float32)

# specs/ig.md section 3.1
VECTORS = {
    ("riemann_left", 2, 4): [40.5, 20.25],
    ("riemann_left", 2, 50): [52.92, 26.46],
    ("riemann_left", 3, 4): [318.9375, 159.46875],
    ("riemann_left", 3, 50): [471.5172, 235.7586],
    ("riemann_right", 2, 4): [67.5, 33.75],
    ("riemann_right", 2, 50): [55.08, 27.54],
    ("riemann_right", 3, 4): [683.4375, 341.71875],
    ("riemann_right", 3, 50): [500.6772, 250.3386],
    ("riemann_middle", 2, 4): [54, 27],
    ("riemann_middle", 3, 4): [478.40625, 239.203125],
    ("riemann_middle", 3, 50): [485.9514, 242.9757],
    ("riemann_trapezoid", 2, 4): [54, 27],
    ("riemann_trapezoid", 3, 4): [513, 256.5],
    ("riemann_trapezoid", 3, 50): [486.101208, 243.050604],
    ("pair", 2, 4): [54, 27],
    ("pair", 3, 4): [567, 283.5],
    ("pair", 3, 50): [490.959184, 245.479592],
    ("gausslegendre", 2, 4): [54, 27],
    ("gausslegendre", 3, 4): [486, 243],
    ("gausslegendre", 3, 50): [486, 243],
}


@pytest.mark.parametrize("key", sorted(VECTORS))
def test_closed_form_quadrature_vectors(key):
    rule, p, n = key
    attr = tpa.integrated_gradients(power_model(p), X3, None, n_steps=n, rule=rule)
    np.testing.assert_allclose(attr.numpy()[0], VECTORS[key], rtol=2e-6)


def test_trapezoid_does_not_reproduce_the_captum_bug():
    attr = tpa.integrated_gradients(power_model(2), X3, None, n_steps=4, rule="riemann_trapezoid")
    assert abs(attr.numpy()[0, 0] - 40.5) > 1.0  # (n-1)/n * 54 would be the captum/alibi bias


@pytest.mark.parametrize("rule", RULES)
def test_linear_model_is_exact_under_every_rule(rule, rng):
    model, w = zoo.linear_model(rng.normal(size=(6, 3)), bias=0.3)
    x = rng.normal(size=(4, 6)).astype("float32")
    base = rng.normal(size=(4, 6)).astype("float32")
    attr = tpa.integrated_gradients(model, x, [0, 1, 2, 1], baseline=base, n_steps=5, rule=rule)
    expected = w[:, [0, 1, 2, 1]].T * (x - base)
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_middle", "riemann_trapezoid", "pair"])
def test_quadratic_model_exact_rules(rule, rng):
    a = rng.uniform(0.5, 2.0, size=5).astype("float32")
    model = lambda z: tf.reduce_sum(a * z * z, axis=1)  # noqa: E731
    x = rng.normal(size=(3, 5)).astype("float32")
    attr = tpa.integrated_gradients(model, x, None, n_steps=7, rule=rule)
    np.testing.assert_allclose(attr, a * x * x, rtol=1e-5, atol=1e-6)


def test_completeness_on_smooth_cnn(rng):
    model = zoo.smooth_cnn(size=16)
    x = rng.random((4, 16, 16, 3)).astype("float32")
    attr, delta = tpa.integrated_gradients(model, x, [0, 3, 5, 9], n_steps=64, return_convergence_delta=True)
    f = model(x).numpy()[np.arange(4), [0, 3, 5, 9]]
    f0 = model(np.zeros_like(x)).numpy()[np.arange(4), [0, 3, 5, 9]]
    gap = np.abs(attr.numpy().reshape(4, -1).sum(1) - (f - f0))
    np.testing.assert_allclose(delta.numpy(), attr.numpy().reshape(4, -1).sum(1) - (f - f0), atol=1e-5)
    assert np.all(gap <= 1e-3 * np.abs(f - f0)), gap / np.abs(f - f0)


def test_pair_rule_matches_saliency_package(rng):
    from tf_pathattr.testing import reference

    model = zoo.smooth_cnn(size=16)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    base = rng.random((16, 16, 3)).astype("float32")
    ours = tpa.integrated_gradients(model, x, 4, baseline=base, n_steps=25, rule="pair").numpy()
    for i in range(2):
        ref = reference.saliency.IntegratedGradients().GetMask(
            x[i], reference.call_model_function(model, 4), x_baseline=base, x_steps=25, batch_size=10
        )
        err = np.max(np.abs(ours[i] - ref)) / np.max(np.abs(ref))
        assert err < 1e-5, err


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_right"])
def test_results_do_not_depend_on_internal_batch_size(rule, rng):
    model = zoo.smooth_cnn(size=16)
    x = rng.random((3, 16, 16, 3)).astype("float32")
    results = [
        tpa.integrated_gradients(model, x, 2, n_steps=20, rule=rule, internal_batch_size=ibs).numpy()
        for ibs in (3, 21, 60, None)
    ]
    scale = np.max(np.abs(results[0]))
    for r in results[1:]:
        assert np.max(np.abs(r - results[0])) <= 1e-5 * scale


def test_several_baselines_average(rng, toy_cnn):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    bases = rng.random((3, 8, 8, 3)).astype("float32")
    together, delta = tpa.integrated_gradients(toy_cnn, x, 1, baseline=bases, n_steps=32, return_convergence_delta=True)
    singles = [tpa.integrated_gradients(toy_cnn, x, 1, baseline=b, n_steps=32).numpy() for b in bases]
    np.testing.assert_allclose(together, np.mean(singles, axis=0), rtol=1e-5, atol=1e-7)
    f_x = toy_cnn(x).numpy()[:, 1]
    f_b = toy_cnn(bases).numpy()[:, 1].mean()
    np.testing.assert_allclose(together.numpy().reshape(2, -1).sum(1), f_x - f_b, atol=1e-5)
    assert np.max(np.abs(delta)) < 1e-5
    # per-example stacks [K, B, *S]
    per = rng.random((2, 2, 8, 8, 3)).astype("float32")
    out = tpa.integrated_gradients(toy_cnn, x, 1, baseline=per, n_steps=32)
    ref = np.mean([tpa.integrated_gradients(toy_cnn, x, 1, baseline=per[k], n_steps=32).numpy() for k in range(2)], 0)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-7)


def test_baseline_recipes(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    a = tpa.integrated_gradients(toy_cnn, x, 0, baseline=tpa.baselines.zeros(), n_steps=8)
    np.testing.assert_allclose(a, tpa.integrated_gradients(toy_cnn, x, 0, n_steps=8), rtol=1e-6)
    u = tpa.baselines.uniform(0.0, 1.0, n=3, seed=5)
    draws = u.draw(x)
    ref = np.mean([tpa.integrated_gradients(toy_cnn, x, 0, baseline=draws[k], n_steps=8).numpy() for k in range(3)], 0)
    np.testing.assert_allclose(
        tpa.integrated_gradients(toy_cnn, x, 0, baseline=u, n_steps=8), ref, rtol=1e-5, atol=1e-7
    )
    bg = rng.random((5, 8, 8, 3)).astype("float32")
    d = tpa.integrated_gradients(toy_cnn, x, 0, baseline=tpa.baselines.from_data(bg), n_steps=8)
    np.testing.assert_allclose(d, tpa.integrated_gradients(toy_cnn, x, 0, baseline=bg, n_steps=8), rtol=1e-6)


def test_multiply_by_inputs_false_gives_path_average(rng):
    model, w = zoo.linear_model(rng.normal(size=(4, 2)))
    x = rng.normal(size=(3, 4)).astype("float32")
    local = tpa.integrated_gradients(model, x, 1, multiply_by_inputs=False, n_steps=5)
    np.testing.assert_allclose(local, np.broadcast_to(w[:, 1], (3, 4)), rtol=1e-6)
    with pytest.raises(ValueError, match="multiply_by_inputs"):
        tpa.integrated_gradients(model, x, 1, multiply_by_inputs=False, return_convergence_delta=True)


def test_multi_input_list_and_dict(rng):
    model_l, model = zoo.two_input_models()
    xa, xb = rng.normal(size=(2, 3)).astype("float32"), rng.normal(size=(2, 2)).astype("float32")
    attr, delta = tpa.integrated_gradients(
        model, {"a": xa, "b": xb}, 1, baseline={"a": 0.0, "b": np.ones(2)}, return_convergence_delta=True
    )
    assert set(attr) == {"a", "b"} and attr["a"].shape == (2, 3) and attr["b"].shape == (2, 2)
    assert np.max(np.abs(delta)) < 1e-5
    attr_l = tpa.integrated_gradients(model_l, [xa, xb], 1, baseline=[0.0, np.ones(2)])
    np.testing.assert_allclose(attr_l[0], attr["a"], rtol=1e-6)
    np.testing.assert_allclose(attr_l[1], attr["b"], rtol=1e-6)


def _traced_function(model, key_prefix):
    return [fn for (_, fn) in eng.CACHE._items.values() if True]


def test_no_retrace_for_new_inputs_and_targets(toy_cnn, rng):
    eng.CACHE.clear()
    x = rng.random((3, 8, 8, 3)).astype("float32")
    tpa.integrated_gradients(toy_cnn, x, 0, n_steps=8)
    (ref_fn,) = [fn for (_, fn) in eng.CACHE._items.values()]
    assert ref_fn.experimental_get_tracing_count() == 1
    tpa.integrated_gradients(toy_cnn, rng.random((3, 8, 8, 3)).astype("float32"), 2, n_steps=8)
    tpa.integrated_gradients(toy_cnn, x, [1, 0, 2], n_steps=8, baseline=np.ones((8, 8, 3)))
    assert ref_fn.experimental_get_tracing_count() == 1
    assert len(eng.CACHE._items) == 1
    tpa.integrated_gradients(toy_cnn, x, None, n_steps=8)  # predicted class: another (static) variant
    tpa.integrated_gradients(toy_cnn, x, None, n_steps=8)
    assert len(eng.CACHE._items) == 2
    assert all(fn.experimental_get_tracing_count() == 1 for (_, fn) in eng.CACHE._items.values())


def test_memory_does_not_grow_with_n_steps(rng):
    model = zoo.smooth_cnn(size=32, seed=1)
    x = rng.random((4, 32, 32, 3)).astype("float32")
    peaks = {}
    for n in (64, 2048):
        tpa.integrated_gradients(model, x, 1, n_steps=n, internal_batch_size=32)  # trace + warm up
        tf.config.experimental.reset_memory_stats("CPU:0")
        base = tf.config.experimental.get_memory_info("CPU:0")["current"]
        tpa.integrated_gradients(model, x, 1, n_steps=n, internal_batch_size=32).numpy()
        peaks[n] = tf.config.experimental.get_memory_info("CPU:0")["peak"] - base
    assert peaks[2048] <= 1.10 * peaks[64], peaks


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(baseline=np.zeros((5, 5, 3))), ValueError, "baseline has shape"),
        (dict(rule="simpson"), ValueError, "rule must be one of"),
        (dict(n_steps=0), ValueError, "n_steps must be >= 1"),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size must be >= 1"),
    ],
)
def test_clear_errors(toy_cnn, rng, kwargs, exc, match):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    target = kwargs.pop("target", 0)
    with pytest.raises(exc, match=match):
        tpa.integrated_gradients(toy_cnn, x, target, **kwargs)


def test_attribute_dispatch_and_unknown_method(toy_cnn, rng):
    x = rng.random((1, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        tpa.attribute(toy_cnn, x, 0, method="ig", n_steps=8), tpa.integrated_gradients(toy_cnn, x, 0, n_steps=8)
    )
    assert "integrated_gradients" in tpa.METHODS
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        tpa.attribute(toy_cnn, x, 0, method="nope")


def test_reloaded_savedmodel_serve_and_tfsmlayer(toy_cnn, rng, tmp_path):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    toy_cnn.export(str(tmp_path / "sm"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    ref = tpa.integrated_gradients(toy_cnn, x, 1, n_steps=16)
    np.testing.assert_allclose(tpa.integrated_gradients(loaded.serve, x, 1, n_steps=16), ref, rtol=1e-5, atol=1e-7)
    layer = keras.layers.TFSMLayer(str(tmp_path / "sm"), call_endpoint="serve")
    np.testing.assert_allclose(tpa.integrated_gradients(layer, x, 1, n_steps=16), ref, rtol=1e-5, atol=1e-7)


def test_quadrature_option_is_rule_and_reachable_through_attribute_and_the_tunnel(toy_cnn):
    # issue 9 defect 12: the quadrature option is `rule` (attribute's own `method` names the method)
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    left = tpa.integrated_gradients(toy_cnn, x, 1, n_steps=6, rule="riemann_left").numpy()
    gl = tpa.integrated_gradients(toy_cnn, x, 1, n_steps=6).numpy()
    assert np.abs(left - gl).max() > 1e-6  # the rule matters
    np.testing.assert_array_equal(tpa.attribute(toy_cnn, x, 1, method="ig", n_steps=6, rule="riemann_left"), left)
    nt = tpa.noise_tunnel("ig", toy_cnn, x, 1, stdevs=0.0, nt_samples=2, n_steps=6, rule="riemann_left")
    np.testing.assert_allclose(nt, left, rtol=1e-6, atol=1e-9)
    with pytest.warns(DeprecationWarning, match="method= .*renamed.*rule="):
        old = tpa.integrated_gradients(toy_cnn, x, 1, n_steps=6, method="riemann_left").numpy()
    np.testing.assert_array_equal(old, left)
    with pytest.raises(TypeError, match="both"):
        tpa.integrated_gradients(toy_cnn, x, 1, n_steps=6, method="pair", rule="pair")
    with pytest.raises(ValueError, match="rule must be one of"):
        tpa.integrated_gradients(toy_cnn, x, 1, rule="simpson")


def test_options_after_target_are_keyword_only(toy_cnn):
    x = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(TypeError):
        tpa.integrated_gradients(toy_cnn, x, 1, 0.0)


def test_one_graph_execution_per_call():
    # issue 21: a profile counted two executions per IG call; the second was an eager Fill (the zero
    # baseline), not a graph. An IG call runs its cached tf.function once and nothing else compiled.
    from tensorflow.python.eager import execute as tf_execute

    model = zoo.toy_cnn()
    x = np.random.default_rng(0).uniform(0.0, 1.0, (3, 8, 8, 3)).astype(np.float32)
    for inputs in (x, tf.constant(x)):
        for rule in ("riemann_trapezoid", "gausslegendre"):
            tpa.integrated_gradients(model, inputs, [0, 1, 2], n_steps=16, internal_batch_size=8, rule=rule)
            seen = []
            original = tf_execute.quick_execute, tf_execute.execute

            def recording(op_name, *args, **kwargs):
                seen.append(op_name)
                return original[0](op_name, *args, **kwargs)

            tf_execute.quick_execute = tf_execute.execute = recording  # functions run through execute.execute
            try:
                tpa.integrated_gradients(model, inputs, [0, 1, 2], n_steps=16, internal_batch_size=8, rule=rule)
            finally:
                tf_execute.quick_execute, tf_execute.execute = original
            graphs = [name for name in seen if str(name).startswith("__inference")]
            assert len(graphs) == 1, seen
