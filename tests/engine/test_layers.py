"""Attribution to a layer's output (``layer=``): embeddings of integer-token text models."""
import keras
import numpy as np
import pytest

import tf_pathattr as tpa


def text_model(seed=0, vocab=30, length=7, dim=5):
    keras.utils.set_random_seed(seed)
    ids = keras.Input((length,), dtype="int32", name="ids")
    mask = keras.Input((length,), name="mask")
    emb = keras.layers.Embedding(vocab, dim, name="embedding")(ids)
    h = keras.layers.Dense(8, activation="tanh")(emb)
    h = h * keras.ops.expand_dims(mask, -1)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(h))
    return keras.Model([ids, mask], out)


def test_embedding_ig_is_complete_and_matches_an_embedding_input_model(rng):
    model = text_model()
    ids = rng.integers(1, 30, size=(2, 7)).astype("int32")
    mask = np.ones((2, 7), np.float32)
    mask[1, 5:] = 0
    attr, delta = tpa.integrated_gradients(model, [ids, mask], 1, layer="embedding", n_steps=32,
                                           return_convergence_delta=True)
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
    attr, delta = tpa.integrated_gradients(model, [ids, mask], 0, layer="embedding", baseline=pad,
                                           return_convergence_delta=True)
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
    (fn,) = [f for (_, f) in eng.CACHE._items.values()]
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
    tail_layers = [keras.layers.Dense(6, activation="tanh"), keras.layers.GlobalAveragePooling1D(),
                   keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(3)]
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


@pytest.mark.parametrize("name", ["blur_integrated_gradients", "xrai", "noise_tunnel", "smoothgrad"])
def test_methods_that_cannot_take_layer_say_why(name):
    from tf_pathattr.methods import registry

    spec = registry.get(name)
    assert isinstance(spec.layer, str)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    x = np.random.default_rng(0).random((1, 8, 8, 1)).astype("float32")
    with pytest.raises(ValueError, match="layer") as info:
        tpa.attribute(model, x, 0, method=name, layer="conv2d", **spec.options_for(x))
    assert spec.layer in str(info.value)


def test_registry_declares_layer_support_truthfully():
    from tf_pathattr.methods import registry

    for name in ("integrated_gradients", "expected_gradients", "gradients", "split_integrated_gradients",
                 "guided_integrated_gradients", "integrated_decision_gradients", "ig2", "smooth_taylor"):
        assert registry.get(name).layer is True, name
