"""Helpers shared by the perturbation metrics: saliency units, rankings, scored forward passes."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.shapes import check_choice

SCORES = ("softmax", "logit", "accuracy")


def prepare_single(model, inputs, target):
    """``eng.prepare`` restricted to single-input models (metrics perturb one tensor)."""
    problem = eng.prepare(model, inputs, target)
    if problem.structure.kind != "single":
        raise ValueError("metrics support single-input models only; pass one array as inputs")
    return problem


def attributions_array(attributions, x_shape, name="attributions") -> np.ndarray:
    a = attributions.numpy() if hasattr(attributions, "numpy") else np.asarray(attributions)
    a = np.asarray(a, np.float64)
    if tuple(a.shape) != tuple(x_shape):
        raise ValueError(f"{name} must have the shape of inputs {tuple(x_shape)}, got {tuple(a.shape)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def unit_saliency(attr: np.ndarray) -> np.ndarray:
    """Per-unit saliency ``[B, U]``: ``|sum over the last (channel) axis|`` for inputs of rank >= 3
    (images ``[B, H, W, C]``: one unit per pixel, all channels together; sequences ``[B, T, E]``: one
    unit per token), ``|a|`` per feature for tabular ``[B, d]``."""
    if attr.ndim >= 3:
        s = np.abs(attr.sum(axis=-1))
    else:
        s = np.abs(attr)
    return s.reshape(s.shape[0], -1)


def units_shape(x_shape):
    """Shape of one unit grid ``[*S_units]`` and the trailing channel count (1 for tabular)."""
    if len(x_shape) >= 3:
        return tuple(x_shape[1:-1]), int(x_shape[-1])
    return tuple(x_shape[1:]), 1


def rank_positions(sal: np.ndarray, descending: bool = True) -> np.ndarray:
    """Position of each unit in the order of (de|in)creasing saliency, ``[B, U]`` int32.

    Stable sort, so ties go to the lower flat index first (deterministic).
    """
    key = -sal if descending else sal
    order = np.argsort(key, axis=1, kind="stable")
    pos = np.empty_like(order)
    rows = np.arange(sal.shape[0])[:, None]
    pos[rows, order] = np.arange(sal.shape[1])[None, :]
    return pos.astype(np.int32)


def mask_from_ranks(ranks, counts, x_rank):
    """Boolean ``[g, B, *S]``-broadcastable mask: unit changed when ``rank < count`` (count per point).

    ``ranks``: ``[B, U]`` int32 (already reshaped to the unit grid ``[B, *S_units]`` by the caller),
    ``counts``: ``[g]`` int32.
    """
    m = ranks[None] < eng.expand_like(counts, ranks[None])
    if x_rank >= 3:
        m = m[..., None]
    return m


def check_score(score):
    check_choice(score, "score", SCORES)
    return score


def make_scored(problem, score):
    """``f(flat_points, indices) -> [rows]``: the score of the target class per row."""
    check_score(score)

    def scored(points, indices):
        out = problem.forward(list(points))
        if score == "logit":
            return problem.scorer(out, indices)
        if score == "softmax":
            out_t = tf.convert_to_tensor(out)
            if out_t.shape.rank == 2 and out_t.shape[-1] == 1:
                prob = tf.sigmoid(out_t)  # one logit: binary probability of that unit
                return problem.scorer(prob, indices)
            return problem.scorer(tf.nn.softmax(out_t, axis=-1), indices)
        out_t = tf.convert_to_tensor(out)
        rows = tf.shape(out_t)[0]
        pred = tf.cast(tf.argmax(out_t, axis=-1), tf.int32)
        want = tf.tile(indices, [rows // problem.batch_size])
        return tf.cast(tf.equal(pred, want), tf.float32)

    return scored


def trapezoid_unit(curves: np.ndarray) -> np.ndarray:
    """AUC on a unit-length x axis: ``(sum s - s_0/2 - s_last/2) / (len(s) - 1)`` per row."""
    c = np.asarray(curves, np.float64)
    n = c.shape[-1]
    if n < 2:
        raise ValueError("a curve needs at least 2 points")
    return (c.sum(axis=-1) - 0.5 * c[..., 0] - 0.5 * c[..., -1]) / (n - 1)


def batched_scores(problem, key, n_points, rows_per_call, make_points, extra_args, score):
    """Run ``scores[p, b] = score(make_points(p...))`` for ``n_points`` perturbed copies of the batch.

    ``make_points(flat_x, indices, start, size, *extra) -> [size * B, *S]`` builds ``size`` points
    (point-major rows). One cached ``tf.function`` (forward only) loops over chunks of points with
    ``eng.chunked_loop``; several points go to the model in each call.
    Returns ``(scores [n_points, B] numpy, indices [B] numpy)``.
    """
    batch = problem.batch_size
    chunk = eng.chunk_size(n_points, batch, rows_per_call)
    scored = make_scored(problem, score)

    def builder():
        def fn(flat_x, indices, *extra):
            indices, _ = eng.resolve_indices(problem, flat_x, indices)

            def body(start, size, acc):
                pts = make_points(flat_x, indices, start, size, *extra)
                s = tf.reshape(scored([pts], indices), [size, batch])
                idx = tf.range(start, start + size)[:, None]
                return tf.tensor_scatter_nd_update(acc, idx, s)

            acc = eng.chunked_loop(n_points, chunk, body, tf.zeros((n_points, batch), tf.float32))
            return acc, indices

        return fn

    out = eng.run(problem, key + (n_points, chunk, score), builder, extra_args)
    if out is None:
        return None
    s, idx = out
    return s.numpy(), idx.numpy()
