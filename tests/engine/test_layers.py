"""Attribution to a layer's output (``layer=``): embeddings of integer-token text models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.engine import layers as eng_layers
from tf_pathattr.testing import models as zoo


def text_model(seed=0):
    """The zoo's masked two-input text model (ids [B, 7] in 0..29, mask), Embedding(30, 5) named "embedding"."""
    return zoo.masked_text_model(vocab=30, length=7, dim=5, seed=seed)


def test_embedding_ig_is_complete_and_matches_an_embedding_input_model(rng):
    model = text_model()
    ids = rng.integers(1, 30, size=(2, 7)).astype("int32")
    mask = np.ones((2, 7), np.float32)
    mask[1, 5:] = 0
    attr, delta = tpa.integrated_gradients(
        model, [ids, mask], 1, layer="embedding", n_steps=32, return_convergence_delta=True
    )
    assert attr.shape == (2, 7, 5)
    assert np.max(np.abs(delta)) < 1e-5
    # the same computation on a model that takes embeddings directly (independent construction)
    table = model.get_layer("embedding").get_weights()[0]
    emb = table[ids]
    e_in, m_in = keras.Input((7, 5)), keras.Input((7,))
    dense1 = [lay for lay in model.layers if isinstance(lay, keras.layers.Dense)][0]
    dense2 = [lay for lay in model.layers if isinstance(lay, keras.layers.Dense)][1]
    h = dense1(e_in) * keras.ops.expand_dims(m_in, -1)
    emb_model = keras.Model([e_in, m_in], dense2(keras.layers.GlobalAveragePooling1D()(h)))
    # the mask is not on the path: its baseline is the mask itself
    ref = tpa.integrated_gradients(emb_model, [emb, mask], 1, n_steps=32, baseline=[0.0, mask])[0]
    np.testing.assert_allclose(attr, ref, rtol=1e-5, atol=1e-7)
    # masked positions change nothing and get exactly zero
    np.testing.assert_array_equal(attr.numpy()[1, 5:], 0.0)


def test_padding_baseline_via_layer_activations(rng):
    model = text_model()
    ids = rng.integers(1, 30, size=(2, 7)).astype("int32")
    mask = np.ones((2, 7), np.float32)
    pad = tpa.layer_activations(model, "embedding", [np.zeros_like(ids), mask])
    attr, delta = tpa.integrated_gradients(
        model, [ids, mask], 0, layer="embedding", baseline=pad, return_convergence_delta=True
    )
    f_x = model([ids, mask]).numpy()[:, 0]
    f_pad = model([np.zeros_like(ids), mask]).numpy()[:, 0]
    np.testing.assert_allclose(attr.numpy().reshape(2, -1).sum(1), f_x - f_pad, atol=1e-5)


def test_layer_methods_and_no_retrace(rng):
    model = text_model()
    ids = rng.integers(1, 30, size=(3, 7)).astype("int32")
    mask = np.ones((3, 7), np.float32)
    g = tpa.gradients(model, [ids, mask], 2, layer=model.get_layer("embedding"))
    assert g.shape == (3, 7, 5)
    from tf_pathattr.engine import gradients as eng

    eng.CACHE.clear()
    a = tpa.integrated_gradients(model, [ids, mask], 2, layer="embedding", n_steps=8)
    ids2 = rng.integers(1, 30, size=(3, 7)).astype("int32")
    b = tpa.integrated_gradients(model, [ids2, mask], 2, layer="embedding", n_steps=8)
    (fn,) = [f for key, (_, f) in eng.CACHE._items.items() if key[1] == "integrated_gradients"]
    assert fn.experimental_get_tracing_count() == 1
    assert np.max(np.abs(a.numpy() - b.numpy())) > 1e-6  # the new token ids were really used
    ref = tpa.integrated_gradients(model, [ids2, mask], 2, layer="embedding", n_steps=8, internal_batch_size=5)
    np.testing.assert_allclose(b, ref, rtol=1e-5, atol=1e-7)


def test_errors(rng):
    model = text_model()
    ids = rng.integers(1, 30, size=(2, 7)).astype("int32")
    mask = np.ones((2, 7), np.float32)
    with pytest.raises(TypeError, match="integer dtype .*layer="):
        tpa.integrated_gradients(model, [ids, mask], 0)
    with pytest.raises(ValueError, match="no layer of that name"):
        tpa.integrated_gradients(model, [ids, mask], 0, layer="nope")
    with pytest.raises(TypeError, match="layer must be"):
        tpa.integrated_gradients(model, [ids, mask], 0, layer=3)


# ---------------------------------------------------------------------------------------------
# layer= on every gradient method (issue 9 defect 8): attribution to the embedding output equals the
# method's input attribution of the model's tail evaluated at the embeddings


def _split_text_model(seed=0, vocab=30, length=6, dim=4):
    """ids -> Embedding -> tail; returns (full model, tail model on embeddings), sharing the tail's layers."""
    keras.utils.set_random_seed(seed)
    tail_layers = [
        keras.layers.Dense(6, activation="tanh"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(5, activation="tanh"),
        keras.layers.Dense(3),
    ]
    ids = keras.Input((length,), dtype="int32")
    h = keras.layers.Embedding(vocab, dim, name="embedding")(ids)
    e_in = keras.Input((length, dim))
    t = e_in
    for lay in tail_layers:
        h, t = lay(h), lay(t)
    return keras.Model(ids, h), keras.Model(e_in, t)


LAYER_CASES = {
    "guided_integrated_gradients": dict(n_steps=6),
    "integrated_decision_gradients": dict(n_steps=6),
    "smooth_taylor": dict(n_roots=5, noise_scale=0.3, seed=4),
    "ig2": dict(step_size=0.1, n_steps=4),
    "expected_gradients": dict(n_samples=5, seed=1),
    "split_integrated_gradients": dict(n_steps=6),
}


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_attribution_equals_the_tail_models_input_attribution(name, rng):
    model, tail = _split_text_model()
    ids = rng.integers(1, 30, size=(2, 6)).astype("int32")
    emb = tpa.layer_activations(model, "embedding", ids).numpy()
    opts = dict(LAYER_CASES[name])
    if name == "ig2":
        opts["references"] = rng.normal(size=(2, 6, 4)).astype("float32")  # in the layer's output space
    if name == "expected_gradients":
        opts["background"] = rng.normal(size=(3, 6, 4)).astype("float32")
    got = tpa.attribute(model, ids, 1, method=name, layer="embedding", **opts)
    ref = tpa.attribute(tail, emb, 1, method=name, **opts)
    if name == "split_integrated_gradients":
        got, ref = got[0], ref[0]
    assert got.shape == (2, 6, 4)
    assert np.abs(ref.numpy()).max() > 0
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * np.abs(ref.numpy()).max())


def _methods_refusing_layer():
    from tf_pathattr.methods import registry

    return [s.name for s in registry.specs() if isinstance(s.layer, str)]


@pytest.mark.parametrize("name", _methods_refusing_layer())
def test_methods_that_cannot_take_layer_say_why(name):
    from tf_pathattr.methods import registry

    spec = registry.get(name)
    assert isinstance(spec.layer, str)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    x = np.random.default_rng(0).random((1, 8, 8, 1)).astype("float32")
    with pytest.raises(ValueError, match="layer") as info:
        tpa.attribute(model, x, 0, method=name, layer="conv2d", **spec.options_for(x))
    assert spec.layer in str(info.value)


def test_registry_declares_layer_support_truthfully():
    from tf_pathattr.methods import registry

    for name in (
        "integrated_gradients",
        "expected_gradients",
        "gradients",
        "split_integrated_gradients",
        "guided_integrated_gradients",
        "integrated_decision_gradients",
        "ig2",
        "smooth_taylor",
    ):
        assert registry.get(name).layer is True, name


def shared_dense_model(seed=0):
    """x -> shared(x) -> tanh -> shared(.) -> sum: one Dense called twice."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((4,))
    shared = keras.layers.Dense(4, activation="tanh", name="shared")
    h = shared(x)
    out = keras.layers.Dense(2, name="head")(shared(h * 2.0))
    return keras.Model(x, out)


def test_call_index_selects_one_call_of_a_shared_layer(rng):
    model = shared_dense_model()
    x = rng.normal(size=(3, 4)).astype("float32")
    with pytest.raises(ValueError, match=r"ran 2 times.*layer=\('shared', call_index\)"):
        tpa.integrated_gradients(model, x, 0, layer="shared")
    with pytest.raises(ValueError, match="ran 2 time"):
        tpa.integrated_gradients(model, x, 0, layer=("shared", 2))
    with pytest.raises(TypeError, match="call_index must be an int"):
        tpa.integrated_gradients(model, x, 0, layer=("shared", -1))
    shared, head = model.get_layer("shared"), model.get_layer("head")
    h1 = shared(x).numpy()
    h2 = shared(h1 * 2.0).numpy()
    for k, act in ((0, h1), (1, h2)):
        np.testing.assert_allclose(tpa.layer_activations(model, ("shared", k), x), act, rtol=1e-6)
        attr, delta = tpa.integrated_gradients(
            model, x, 0, layer=("shared", k), n_steps=32, return_convergence_delta=True
        )
        assert np.max(np.abs(delta)) < 1e-4
        # independent model from the selected call's output onwards
        z = keras.Input((4,))
        rest = head(shared(z * 2.0)) if k == 0 else head(z)
        ref = tpa.integrated_gradients(keras.Model(z, rest), act, 0, n_steps=32)
        np.testing.assert_allclose(attr, ref, rtol=1e-5, atol=1e-6)
    a0 = tpa.integrated_gradients(model, x, 0, layer=("shared", 0), n_steps=8)
    a1 = tpa.integrated_gradients(model, x, 0, layer=("shared", 1), n_steps=8)
    assert np.max(np.abs(a0.numpy() - a1.numpy())) > 1e-4  # two traces, not one cached for both


def tied_lm(seed=0, vocab=20, dim=6):
    """A causal-LM-shaped model whose embedding also computes the logits (reverse=True)."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((5,), dtype="int32")
    emb = keras.layers.ReversibleEmbedding(vocab, dim, tie_weights=True, name="token_embedding")
    h = keras.layers.Dense(dim, activation="tanh")(emb(ids))
    h = keras.layers.LayerNormalization()(h)
    return keras.Model(ids, emb(h, reverse=True)), emb


def test_tied_embedding_lookup_is_replaced_and_the_projection_is_not(rng):
    model, emb = tied_lm()
    ids = rng.integers(1, 20, size=(2, 5)).astype("int32")
    lookup = tf.gather(emb.embeddings, ids)
    np.testing.assert_array_equal(tpa.layer_activations(model, "token_embedding", ids), lookup)
    own = model(ids).numpy()
    # the engine's forward at the path end point reproduces the model's own logits
    from tf_pathattr.engine import gradients as eng

    def score(out):
        return out[:, -1, 3]

    problem = eng.prepare(model, ids, score, layer="token_embedding")
    assert problem.layer_call == 0
    np.testing.assert_allclose(problem.forward([lookup]), own, atol=1e-6)
    np.testing.assert_allclose(tf.function(lambda p: problem.forward([p]))(lookup), own, atol=1e-6)
    # a different lookup output changes the logits only through the lookup (weights untouched)
    moved = problem.forward([lookup * 0.0]).numpy()
    assert np.max(np.abs(moved - own)) > 1e-3
    pad = tf.gather(emb.embeddings, np.zeros_like(ids))
    attr, delta = tpa.integrated_gradients(
        model, ids, score, layer="token_embedding", baseline=pad, n_steps=64, return_convergence_delta=True
    )
    f_x = score(own)
    f_pad = score(model(np.zeros_like(ids)).numpy())
    np.testing.assert_allclose(attr.numpy().reshape(2, -1).sum(1), f_x - f_pad, rtol=1e-3, atol=1e-5)
    # the reverse call can be chosen explicitly (its output is the logits)
    np.testing.assert_allclose(tpa.layer_activations(model, ("token_embedding", 1), ids), own, atol=1e-6)


def test_layer_probe_is_cached_and_holds_the_model_weakly(rng):
    import gc
    import weakref

    from tf_pathattr.engine import gradients as eng

    model = text_model()
    ids = rng.integers(1, 30, size=(2, 7)).astype("int32")
    mask = np.ones((2, 7), np.float32)
    lay = model.get_layer("embedding")
    acts, k, first, out = eng.layer_probe(model, lay, None, [tf.constant(ids), tf.constant(mask)])
    assert k == 0
    np.testing.assert_array_equal(first, ids)
    np.testing.assert_allclose(acts, lay(ids), rtol=1e-6)
    np.testing.assert_allclose(out, model([ids, mask]), rtol=1e-5, atol=1e-6)
    eng.layer_probe(model, lay, None, [tf.constant(ids + 1), tf.constant(mask)])
    probes = [f for key, (_, f) in eng.CACHE._items.items() if key[1] == "layer_probe" and _() is model]
    assert len(probes) == 1 and probes[0].function.experimental_get_tracing_count() == 1
    assert probes[0].call_index == 0  # resolved while tracing, kept with the cached function
    ref = weakref.ref(model)
    del model, probes
    gc.collect()
    assert ref() is None


def test_layer_probe_without_outputs_gives_the_same_activations_and_the_outputs_shape(rng):
    # issue 21: tpa.text needs the logits' values only to find the greedy next token; otherwise it asks
    # the probe for the outputs' shapes, and the probe runs a function that returns no outputs (TF prunes
    # the model's ops after the layer)
    from tf_pathattr.engine import gradients as eng

    model = text_model()
    lay = model.get_layer("embedding")
    inputs = [tf.constant(rng.integers(1, 30, size=(2, 7)).astype("int32")), tf.constant(np.ones((2, 7), "float32"))]
    acts, k, first, out = eng.layer_probe(model, lay, None, inputs)
    for _ in range(2):
        acts2, k2, first2, spec = eng.layer_probe(model, lay, None, inputs, outputs=False)
        assert k2 == k and isinstance(spec, tf.TensorSpec)
        assert tuple(spec.shape) == tuple(out.shape) and spec.dtype == out.dtype
        np.testing.assert_array_equal(acts2, acts)
        np.testing.assert_array_equal(first2, first)
    (probe,) = [f for key, (_, f) in eng.CACHE._items.items() if key[1] == "layer_probe" and _() is model]
    assert probe.activations_function.experimental_get_tracing_count() == 1
    assert probe.function.experimental_get_tracing_count() == 1
    # a fresh signature asked without outputs first: one trace, which records the outputs' shape
    fresh = [tf.constant(rng.integers(1, 30, size=(3, 7)).astype("int32")), tf.constant(np.ones((3, 7), "float32"))]
    acts3, _, _, spec3 = eng.layer_probe(model, lay, None, fresh, outputs=False)
    assert tuple(spec3.shape) == (3,) + tuple(out.shape[1:])
    np.testing.assert_allclose(acts3, lay(fresh[0]), rtol=1e-6)
    (probe3,) = [
        f for key, (_, f) in eng.CACHE._items.items() if key[1] == "layer_probe" and _() is model and f is not probe
    ]
    assert probe3.function.experimental_get_tracing_count() == 0
    assert probe3.activations_function.experimental_get_tracing_count() == 1


def test_call_index_errors_list_each_call_in_execution_order_with_its_input(rng):
    """issue 18 item 8: ``layer=(layer, call_index)`` counts calls in execution order; an index out of
    range (and a shared layer without one) shows which input each call took."""
    model = shared_dense_model()
    x = rng.normal(size=(3, 4)).astype(np.float32)
    listing = (
        r"call 0: input from 'input_layer\w*', float32 \[3, 4\]; call 1: input from 'multiply\w*', float32 \[3, 4\]"
    )
    with pytest.raises(ValueError, match=r"call_index 0\.\.1, counted in execution order\): " + listing):
        tpa.integrated_gradients(model, x, 0, layer=("shared", 2))
    with pytest.raises(ValueError, match=r"counted in execution order: " + listing):
        tpa.layer_activations(model, "shared", x)
    with pytest.raises(ValueError, match=listing):
        tpa.layer_activations(model, ("shared", 5), x)


# --------------------------------------------------------------------------------------------------
# patched_call: the one way a layer's call is patched (taps, replaced outputs, replaced inputs)


def _dense(units=2):
    keras.utils.set_random_seed(0)
    layer = keras.layers.Dense(units)
    layer.build((None, 3))
    return layer


def test_patched_call_wraps_the_call_and_restores_the_bound_method():
    layer = _dense()
    x = np.ones((1, 3), np.float32)
    plain = layer(x).numpy()
    with eng_layers.patched_call(layer, lambda call: lambda *a, **k: call(*a, **k) * 2.0) as same:
        assert same is layer
        np.testing.assert_allclose(layer(x).numpy(), 2.0 * plain)
    assert "call" not in layer.__dict__  # the bound method is back, no instance attribute left behind
    np.testing.assert_allclose(layer(x).numpy(), plain)


def test_patched_call_restores_when_the_block_raises():
    layer = _dense()
    with pytest.raises(RuntimeError, match="inside"):
        with eng_layers.patched_call(layer, lambda call: lambda *a, **k: 0.0):
            raise RuntimeError("inside")
    assert "call" not in layer.__dict__
    assert layer(np.ones((1, 3), np.float32)).shape == (1, 2)


def test_patched_calls_nest_and_unwind_in_order():
    layer = _dense()
    x = np.ones((1, 3), np.float32)
    plain = layer(x).numpy()
    with eng_layers.patched_call(layer, lambda call: lambda *a, **k: call(*a, **k) + 1.0):
        outer = layer.__dict__["call"]
        with eng_layers.patched_call(layer, lambda call: lambda *a, **k: call(*a, **k) * 10.0):
            np.testing.assert_allclose(layer(x).numpy(), (plain + 1.0) * 10.0)
        assert layer.__dict__["call"] is outer  # the inner block restores the outer patch, not the method
        np.testing.assert_allclose(layer(x).numpy(), plain + 1.0)
    assert "call" not in layer.__dict__


def test_on_call_changes_only_the_selected_call_counted_per_block():
    layer = _dense()
    x = np.ones((1, 3), np.float32)
    plain = layer(x).numpy()
    seen = []

    def selected(call, *args, **kwargs):
        seen.append(len(seen))
        return call(*args, **kwargs) * 0.0

    for _ in range(2):  # the count starts again at 0 in each block
        with eng_layers.patched_call(layer, eng_layers.on_call(1, selected)):
            outs = [layer(x).numpy() for _ in range(3)]
        np.testing.assert_allclose(outs[0], plain)
        np.testing.assert_allclose(outs[1], 0.0)
        np.testing.assert_allclose(outs[2], plain)
    assert seen == [0, 1]


def test_replaced_input_feeds_the_selected_call_and_yields_its_output():
    keras.utils.set_random_seed(0)
    emb = keras.layers.Embedding(10, 3)
    ids = np.array([[1, 2]], np.int32)
    other = np.array([[7, 8]], np.int32)
    with eng_layers.replaced_input(emb, 0, tf.constant(other)) as outputs:
        got = emb(ids).numpy()
    table = emb.embeddings.numpy()
    np.testing.assert_allclose(got, table[other])  # the layer saw the replacement ids, not its real input
    np.testing.assert_allclose(outputs[0].numpy(), table[other])
    np.testing.assert_allclose(emb(ids).numpy(), table[ids])  # restored


def test_layer_tap_and_replaced_output_restore_when_the_model_raises():
    layer = _dense()
    for block in (eng_layers.LayerTap(layer), eng_layers.replaced_output(layer, tf.zeros((1, 2)))):
        with pytest.raises(ValueError, match="boom"):
            with block:
                raise ValueError("boom")
        assert "call" not in layer.__dict__
