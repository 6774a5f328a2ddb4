"""Sequential Integrated Gradients: spec vectors, per-token completeness, parity with a numpy
re-statement of the released loop (time_interpret ``SequentialIntegratedGradients``)."""

import keras
import numpy as np
import pytest

import tf_pathattr as tpa
from tf_pathattr.methods import registry
from tf_pathattr.testing.text_models import token_model, twin_gradients

U = np.array([[0.5, -1], [1.5, 0.25], [-0.75, 2]], np.float32)


def tanh_model():
    inp = keras.Input((3, 2))
    out = keras.layers.Lambda(lambda z: keras.ops.tanh(keras.ops.sum(z * U, axis=(1, 2)))[:, None])(inp)
    return keras.Model(inp, out)


def test_spec_vector_tanh_model_and_per_token_completeness():
    x = np.array([[[0.2, 0.1], [1.0, -0.5], [0.3, 0.8]]], np.float32)
    b = np.array([[[0.2, 0.1], [0.05, 0.05], [0.05, 0.05]]], np.float32)
    attr, delta = tpa.sequential_integrated_gradients(tanh_model(), x, 0, baseline=b, return_convergence_delta=True)
    expected = [[0, 0], [0.103732, -0.010009], [-0.014095, 0.112762]]  # idgi_sig.md B.7
    np.testing.assert_allclose(attr.numpy()[0], expected, atol=2e-6)
    assert delta.shape == (1, 3)
    assert np.max(np.abs(delta)) < 1e-6
    np.testing.assert_array_equal(attr.numpy()[0, 0], 0.0)  # token equal to its baseline


def test_product_of_two_tokens_differs_from_ig():
    inp = keras.Input((2, 1))
    model = keras.Model(inp, keras.layers.Lambda(lambda z: z[:, 0] * z[:, 1])(inp))
    x = np.array([[[2.0], [3.0]]], np.float32)
    sig = tpa.sequential_integrated_gradients(model, x, 0, baseline=0.0).numpy()
    np.testing.assert_allclose(sig.reshape(-1), [6.0, 6.0], rtol=1e-5)
    ig = tpa.integrated_gradients(model, x, 0, baseline=0.0).numpy()
    np.testing.assert_allclose(ig.reshape(-1), [3.0, 3.0], rtol=1e-5)


def released_sig(twin, x_emb, b_emb, target, n_steps):
    """numpy re-statement of the released loop: per position, n_steps copies with that position
    interpolated (Gauss-Legendre nodes on [0, 1]), one gradient call, weighted sum, times (x - b)."""
    nodes, w = np.polynomial.legendre.leggauss(n_steps)
    alphas, weights = (nodes + 1) / 2, w / 2
    out = np.zeros_like(x_emb, dtype=np.float64)
    for idx in range(x_emb.shape[1]):
        rows = np.repeat(x_emb[None], n_steps, axis=0)  # [n, B, T, E]
        rows[:, :, idx] = b_emb[None, :, idx] + alphas[:, None, None] * (x_emb - b_emb)[None, :, idx]
        g = twin_gradients(twin, rows.reshape((-1,) + x_emb.shape[1:]), target).reshape(rows.shape)
        total = np.einsum("n,nbte->bte", weights, g) * (x_emb - b_emb)
        out[:, idx] = total[:, idx]
    return out


def test_parity_with_released_loop_on_an_embedding_model(rng):
    model, twin, table = token_model()
    ids = rng.integers(1, 40, size=(2, 6)).astype("int32")
    x_emb = table[ids].astype(np.float64)
    b_emb = np.broadcast_to(table[0], x_emb.shape).copy()
    b_emb[:, 0] = x_emb[:, 0]  # a "special token" kept at its own embedding
    ref = released_sig(twin, x_emb, b_emb, 2, n_steps=10)
    got, delta = tpa.sequential_integrated_gradients(
        model,
        ids,
        2,
        layer="embedding",
        baseline=b_emb,
        n_steps=10,
        internal_batch_size=16,
        return_convergence_delta=True,
    )
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(got.numpy()[:, 0], 0.0)
    assert np.max(np.abs(delta)) < 1e-5
    assert tpa.attribute is not None and registry.get("sig").name == "sequential_integrated_gradients"


def test_errors():
    a, b = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(ValueError, match="one sequence input"):
        tpa.sequential_integrated_gradients(model, [np.ones((2, 3), np.float32)] * 2, 0)
    with pytest.raises(ValueError, match="single baseline"):
        tpa.sequential_integrated_gradients(
            tanh_model(), np.ones((1, 3, 2), np.float32), 0, baseline=np.zeros((2, 1, 3, 2), np.float32)
        )
