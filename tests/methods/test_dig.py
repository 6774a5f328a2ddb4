"""Discretized Integrated Gradients: monotone anchor paths, telescoping on linear models, parity with
a numpy re-statement of the released algorithm (INK-USC/DIG monotonic_paths.py + dig.py)."""

import keras
import numpy as np
import pytest
from sklearn.neighbors import kneighbors_graph

import tf_pathattr as tpa
from tf_pathattr.methods.dig import dig_path
from tf_pathattr.testing.text_models import token_model, twin_gradients

# ---- numpy re-statement of the released algorithm, on word indices and a sklearn KNN graph ----


def _mono_vec(base, inp, v):
    inc, dec, eq = base > inp, base < inp, base == inp
    return inc * (v <= base) * (v >= inp) + dec * (v >= base) * (v <= inp) + eq * (v == base)


def _make_mono(base, inp, v, steps):
    ok = _mono_vec(base, inp, v).astype(bool)
    out = v.copy()
    out[~ok] = inp[~ok] - (inp[~ok] - base[~ok]) / steps
    return out


def released_word_path(word, ref, feats, adj, steps, strategy):
    path = [word]
    last = word
    for _ in range(steps):
        if last == ref:
            nxt = ref
        else:
            row = adj[last].tocoo()
            cand = {}
            for j in row.col:
                if j == ref:
                    continue
                if strategy == "greedy":
                    cand[j] = np.sqrt(np.sum((feats[j] - _make_mono(feats[ref], feats[last], feats[j], steps)) ** 2))
                else:
                    cand[j] = 10000 - _mono_vec(feats[ref], feats[last], feats[j]).sum()
            ranked = [k for k, _ in sorted(cand.items(), key=lambda kv: kv[1]) if k not in path]
            nxt = ranked[0] if ranked else ref
        path.append(nxt)
        last = nxt
    return path


def released_path(word, ref, feats, adj, steps, strategy):
    if word == ref:
        return np.repeat(feats[word][None], steps + 2, axis=0)
    wp = released_word_path(word, ref, feats, adj, steps, strategy)
    embs = [feats[wp[0]]]
    for j in wp[1:]:
        embs.append(_make_mono(feats[ref], embs[-1], feats[j], steps))
    embs.append(feats[ref])
    return np.stack(embs[::-1])


@pytest.mark.parametrize("strategy", ["greedy", "maxcount"])
def test_parity_with_the_released_algorithm(rng, strategy):
    model, twin, table = token_model()
    feats = table.astype(np.float64)
    adj = kneighbors_graph(feats, 10, mode="distance")
    ids = rng.integers(2, 40, size=(2, 6)).astype("int32")
    ids[0, 0] = 1  # "[CLS]" kept: reference id = input id
    ref_ids = np.zeros_like(ids)
    ref_ids[0, 0] = 1
    steps = 6
    paths = np.stack(
        [
            np.stack([released_path(ids[b, t], ref_ids[b, t], feats, adj, steps, strategy) for t in range(6)], axis=1)
            for b in range(2)
        ],
        axis=1,
    )  # [P, B, T, E]
    # attributions: left Riemann sum of gradients times the path steps (last point contributes 0)
    g = twin_gradients(twin, paths.reshape((-1, 6, 4)), 1).reshape(paths.shape)
    ref = np.sum(g[:-1] * (paths[1:] - paths[:-1]), axis=0)
    attr, delta, path = tpa.discretized_integrated_gradients(
        model,
        ids,
        1,
        layer="embedding",
        baseline=table[ref_ids],
        n_steps=steps,
        n_neighbors=10,
        strategy=strategy,
        return_convergence_delta=True,
        return_path=True,
        internal_batch_size=6,
    )
    np.testing.assert_allclose(path, paths, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(attr.numpy(), ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(attr.numpy()[0, 0], 0.0)
    f = model(ids).numpy()[:, 1] - model(ref_ids).numpy()[:, 1]
    np.testing.assert_allclose(delta, attr.numpy().reshape(2, -1).sum(1) - f, atol=1e-5)


def test_path_is_monotone_and_ends_at_input_and_baseline(rng):
    table = rng.normal(size=(50, 5))
    x, base = table[7], table[0]
    path = dig_path(x, base, table, n_steps=8, n_neighbors=20, factor=1)
    assert path.shape == (2 * 9 + 1, 5)
    np.testing.assert_array_equal(path[0], base)
    np.testing.assert_array_equal(path[-1], x)
    lo, hi = np.minimum(path[:-1], x), np.maximum(path[:-1], x)
    assert np.all((path[1:] >= lo - 1e-12) & (path[1:] <= hi + 1e-12))  # each point between the last and x


def test_linear_model_telescopes_exactly(rng):
    inp = keras.Input((4, 3))
    w = rng.normal(size=(4, 3)).astype("float32")
    model = keras.Model(inp, keras.layers.Lambda(lambda z: keras.ops.sum(z * w, axis=(1, 2))[:, None])(inp))
    table = rng.normal(size=(30, 3)).astype("float32")
    x = table[rng.integers(1, 30, size=(2, 4))]
    attr, delta = tpa.discretized_integrated_gradients(
        model,
        x,
        0,
        baseline=np.broadcast_to(table[0], (4, 3)),
        embedding_matrix=table,
        n_steps=5,
        n_neighbors=12,
        return_convergence_delta=True,
    )
    np.testing.assert_allclose(attr.numpy(), (x - table[0]) * w, rtol=1e-4, atol=1e-5)
    assert np.max(np.abs(delta)) < 1e-5


def test_errors(rng):
    inp = keras.Input((4, 3))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    x = rng.normal(size=(1, 4, 3)).astype("float32")
    with pytest.raises(ValueError, match="embedding_matrix"):
        tpa.discretized_integrated_gradients(model, x, 0)
    with pytest.raises(ValueError, match="strategy"):
        tpa.discretized_integrated_gradients(model, x, 0, embedding_matrix=np.zeros((5, 3)), strategy="nope")
    with pytest.raises(ValueError, match=r"embedding_matrix must be \[V, 3\]"):
        tpa.discretized_integrated_gradients(model, x, 0, embedding_matrix=np.zeros((5, 4)))
