"""Straight-path kernels shared by every path method (IG, IDGI through IG, Guided IG, DIG, ...).

:func:`straight_path_sum` is the compiled core of Integrated Gradients on the straight line
``x'_k + alpha (x - x'_k)``:

.. math::

    IG_i(x) = \\frac{1}{K} \\sum_k (x_i - x'_{k,i}) \\sum_j w_j\\, \\partial_i F(x'_k + \\alpha_j (x - x'_k))

run chunk by chunk (``internal_batch_size`` rows per model call) inside a method's traced function.
:func:`completeness_delta` is the completeness gap ``sum_i A_i - (F(x) - mean_k F(x'_k))`` any path
method reports with ``return_convergence_delta=True``.

Reference: M. Sundararajan, A. Taly, Q. Yan, "Axiomatic Attribution for Deep Networks", ICML 2017,
arXiv 1703.01365.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import gradients as eng

__all__ = ["straight_path_sum", "completeness_delta"]


def straight_path_sum(
    problem, flat_x, flat_base, indices, alphas, weights, chunk, multiply_by_inputs=True, accumulator=None
):
    """Graph-level core shared by IG-like methods: ``mean_k (x - x'_k) * sum_j w_j grad F(x'_k + a_j (x - x'_k))``.

    Parameters
    ----------
    flat_x : list of ``[B, *S]`` tensors
    flat_base : list of ``[K, B, *S]`` tensors
    alphas, weights : numpy float64 ``[n]``
    chunk : int, path points per model call

    accumulator : engine.accumulators.ImportantDirection, optional
        Feed the ``(F, g)`` pairs of the (single-baseline) path points to it instead of summing
        ``w_j g``; the return value is then its state (IDGI hook, see ``methods/idgi.py``).

    Returns
    -------
    list of ``[B, *S]`` tensors (local attributions ``mean_k sum_j w_j g`` when
    ``multiply_by_inputs`` is False).
    """
    n = len(alphas)
    k_count = int(flat_base[0].shape[0])
    batch = problem.batch_size
    point_alpha = tf.constant(np.tile(alphas, k_count), tf.float32)
    point_weight = tf.constant(np.tile(weights, k_count), tf.float32)
    point_k = tf.constant(np.repeat(np.arange(k_count), n), tf.int32)
    deltas = [x[None] - b for x, b in zip(flat_x, flat_base)]  # [K, B, *S]
    inside = k_count > 1 and multiply_by_inputs  # Δx differs per baseline: multiply inside the loop

    def body(start, size, acc):
        a = tf.slice(point_alpha, [start], [size])
        w = tf.slice(point_weight, [start], [size])
        if k_count == 1:
            base = [b[0][None] for b in flat_base]
            dx = [d[0][None] for d in deltas]
        else:
            kk = tf.slice(point_k, [start], [size])
            base = [tf.gather(b, kk) for b in flat_base]
            dx = [tf.gather(d, kk) for d in deltas]
        pts = [eng.rows(b + eng.expand_like(a, d) * d, size, batch) for b, d in zip(base, dx)]
        s, grads = eng.score_and_gradients(problem, pts, indices)
        if accumulator is not None:  # IDGI: one baseline, points in path order
            return accumulator.update(acc, tf.reshape(s, [size, batch]), [eng.unrows(g, size, batch) for g in grads])
        out = []
        for acc_i, g, d in zip(acc, grads, dx):
            g = eng.unrows(g, size, batch)
            term = g * d if inside else g
            out.append(acc_i + tf.reduce_sum(eng.expand_like(w, term) * term, axis=0))
        return out

    if accumulator is not None:
        return eng.chunked_loop(n, chunk, body, accumulator.init(flat_x))
    acc = eng.chunked_loop(n * k_count, chunk, body, [tf.zeros_like(x) for x in flat_x])
    if multiply_by_inputs:
        if inside:
            return [a / k_count for a in acc]
        return [a * d[0] for a, d in zip(acc, deltas)]
    return [a / k_count for a in acc]


def completeness_delta(problem, flat_x, flat_base, indices, attributions, outputs_at_x=None):
    """``sum(attr) - (F(x) - mean_k F(x'_k))`` per example (all inputs summed)."""
    batch = problem.batch_size
    k_count = int(flat_base[0].shape[0])
    f_x = eng.scores_at_x(problem, flat_x, indices, outputs_at_x)
    f_b = eng.scores(problem, [eng.rows(b, k_count, batch) for b in flat_base], indices)
    f_b = tf.reduce_mean(tf.reshape(f_b, [k_count, batch]), axis=0)
    total = tf.add_n([tf.reduce_sum(tf.reshape(a, [batch, -1]), axis=1) for a in attributions])
    return total - (f_x - f_b)
