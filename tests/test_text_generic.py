"""tpa.text on plain Keras text models (no keras-hub needed)."""

import keras
import numpy as np
import pytest

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo


def two_input_model(seed=0):
    """The zoo's masked two-input text model: ids [B, 6] in 0..19 and a mask, Embedding(20, 3) named "emb"."""
    return zoo.masked_text_model(vocab=20, length=6, dim=3, hidden=4, classes=2, seed=seed, embedding_name="emb")


def test_list_inputs_pad_id_positions_and_completeness(rng):
    model = two_input_model()
    ids = rng.integers(1, 20, size=(2, 6)).astype("int32")
    ids[1, 4:] = 0  # padding by pad id 0 (no padding_mask entry in a list input)
    mask = (ids != 0).astype("float32")
    res = tpa.text.token_attributions(model, [ids, mask], 1, n_steps=32, return_convergence_delta=True)
    np.testing.assert_array_equal(res.mask, ids != 0)
    np.testing.assert_array_equal(res.attributions[1, 4:], 0.0)
    table = model.get_layer("emb").embeddings.numpy()
    padded = np.where(res.mask, 0, ids).astype("int32")
    gap = model([ids, mask]).numpy()[:, 1] - model([padded, mask]).numpy()[:, 1]
    np.testing.assert_allclose(res.attributions.reshape(2, -1).sum(1), gap, rtol=1e-4, atol=1e-6)
    assert np.max(np.abs(res.delta)) < 1e-5
    # the baseline was the pad row at the attributed positions: IG on the layer gives the same map
    base = np.where(res.mask[..., None], table[0], table[ids])
    ref = tpa.integrated_gradients(model, [ids, mask], 1, layer="emb", baseline=base, n_steps=32).numpy()
    np.testing.assert_allclose(res.attributions, np.where(res.mask[..., None], ref, 0.0), rtol=1e-5, atol=1e-7)
    # top_k and pairs use only attributed positions
    assert set(res.top_k(2)[1]) <= {0, 1, 2, 3}
    assert len(res.pairs(1)) == 4


def test_embedding_discovery_errors():
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no keras.layers.Embedding"):
        tpa.text.find_token_embedding(dense)
    ids = keras.Input((4,), dtype="int32")
    two = keras.Model(
        ids,
        keras.layers.Add()([keras.layers.Embedding(5, 2, name="a")(ids), keras.layers.Embedding(5, 2, name="b")(ids)]),
    )
    with pytest.raises(ValueError, match=r"2 Embedding layers \['a', 'b'\]"):
        tpa.text.find_token_embedding(two)
    with pytest.raises(ValueError, match="strings: pass preprocessor="):
        tpa.text.token_attributions(two, ["a text"], 0, layer="a")


def test_attributed_option_and_zeros_baseline(rng):
    model = two_input_model()
    ids = rng.integers(1, 20, size=(1, 6)).astype("int32")
    mask = np.ones((1, 6), "float32")
    keep = np.array([[True, False, True, False, True, False]])
    res = tpa.text.token_attributions(model, [ids, mask], 0, attributed=keep, baseline="zeros", n_steps=16)
    np.testing.assert_array_equal(res.mask, keep)
    np.testing.assert_array_equal(res.attributions[~keep], 0.0)
    with pytest.raises(ValueError, match="attributed must be a bool array of shape"):
        tpa.text.token_attributions(model, [ids, mask], 0, attributed=np.ones((2, 6), bool))


def test_gradients_default_to_the_l2_score_after_a_layer_norm():
    """Issue 18 item 8: raw gradients summed over the embedding axis are ~0 behind a LayerNorm (its
    Jacobian annihilates the ones vector), so methods without completeness report the L2 score by
    default and name the reduction; complete methods keep the signed sum."""
    from tf_pathattr.testing import models as zoo

    model = zoo.text_model(layer_norm=True)
    ids = zoo.ids(2)
    res = tpa.text.token_attributions(model, ids, 1, method="gradients")
    raw_sum = res.attributions.sum(-1)
    assert np.max(np.abs(raw_sum)) < 1e-5 * np.max(res.l2)  # the defect: the signed sum carries nothing
    assert res.reduction == "l2"
    np.testing.assert_array_equal(res.scores, res.l2)
    assert np.min(res.scores[res.mask]) > 0
    signed = tpa.text.token_attributions(model, ids, 1, method="gradients", reduction="sum")
    assert signed.reduction == "sum"
    np.testing.assert_allclose(signed.scores, raw_sum, atol=1e-7)
    ig = tpa.text.token_attributions(model, ids, 1, n_steps=16)
    assert ig.reduction == "sum"
    np.testing.assert_allclose(ig.scores, ig.attributions.sum(-1), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="reduction"):
        tpa.text.token_attributions(model, ids, 1, method="gradients", reduction="max")
