"""Integrated Gradients on the straight path, with any quadrature rule and any baseline(s).

.. math::

    IG_i(x) = (x_i - x'_i) \\int_0^1 \\partial_i F(x' + \\alpha (x - x'))\\, d\\alpha
            \\approx (x_i - x'_i) \\sum_k w_k\\, \\partial_i F(x' + \\alpha_k (x - x'))

With several baselines ``x'_1..x'_K`` the result is the mean of the K maps, and completeness reads
``sum_i IG_i = F(x) - mean_k F(x'_k)`` up to the quadrature error.

Reference: M. Sundararajan, A. Taly, Q. Yan, "Axiomatic Attribution for Deep Networks", ICML 2017,
arXiv 1703.01365.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.quadrature import RULES, quadrature
from ..engine.shapes import check_choice, prepare_baselines
from .registry import MethodSpec, tile_baseline

__all__ = ["integrated_gradients", "straight_path_sum"]


def straight_path_sum(problem, flat_x, flat_base, indices, alphas, weights, chunk, multiply_by_inputs=True):
    """Graph-level core shared by IG-like methods: ``mean_k (x - x'_k) * sum_j w_j grad F(x'_k + a_j (x - x'_k))``.

    Parameters
    ----------
    flat_x : list of ``[B, *S]`` tensors
    flat_base : list of ``[K, B, *S]`` tensors
    alphas, weights : numpy float64 ``[n]``
    chunk : int, path points per model call

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
        _, grads = eng.score_and_gradients(problem, pts, indices)
        out = []
        for acc_i, g, d in zip(acc, grads, dx):
            g = eng.unrows(g, size, batch)
            term = g * d if inside else g
            out.append(acc_i + tf.reduce_sum(eng.expand_like(w, term) * term, axis=0))
        return out

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


@eng.planned
def integrated_gradients(model, inputs, target=None, baseline=0.0, n_steps: int = 64, method: str = "gausslegendre",
                         internal_batch_size=None, multiply_by_inputs: bool = True,
                         return_convergence_delta: bool = False, jit_compile: bool = False, layer=None):
    """Integrated Gradients along the straight line from ``baseline`` to ``inputs``.

    Parameters
    ----------
    model : keras.Model or callable
        Maps a batch (or a list / dict of batches) to outputs; called with ``training=False``
        when it is a Keras model or layer.
    inputs : array-like ``[B, ...]``, or list / tuple / dict of them
        The explicands (float). Attributions come back in the same structure.
    target : None, int, sequence of B ints, or callable ``score(outputs) -> [B]``
        What is explained (see :mod:`tf_pathattr.engine.targets`); ``None`` = predicted class.
    baseline : scalar, array, per-example array, stack of K baselines, or a ``tpa.baselines`` recipe
        Several baselines are averaged (see :func:`tf_pathattr.engine.shapes.prepare_baselines`).
    n_steps : int
        Quadrature nodes (default 64).
    method : {"gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "pair"}
        Quadrature rule; all weights sum to 1. ``pair`` reproduces PAIR ``saliency``'s IG.
    internal_batch_size : int, optional
        Most model rows per call (default 256): ``internal_batch_size // B`` path points per call.
        Peak memory depends on it, not on ``n_steps``.
    multiply_by_inputs : bool
        ``False`` returns the path-averaged gradient ``sum_k w_k g_k`` without the ``(x - x')``
        factor (captum's "local" attribution; completeness does not apply).
    return_convergence_delta : bool
        Also return ``delta = sum(attr) - (F(x) - mean_k F(x'_k))`` per example.
    jit_compile : bool
        Compile the whole method, path loop included, with XLA.
    layer : keras layer, layer name or callable(model) -> layer, optional
        Attribute to this layer's output instead of the inputs (e.g. the ``Embedding`` of a text
        model, whose integer inputs have no gradient). ``baseline`` then lives in the layer's output
        space (default zeros; ``tpa.layer_activations(model, layer, pad_ids)`` gives padding
        embeddings) and the attributions have the layer output's shape.

    Returns
    -------
    attributions : tf.Tensor (float32), shaped like ``inputs`` (same structure for multi-input)
    delta : tf.Tensor ``[B]``, only with ``return_convergence_delta=True``

    Notes
    -----
    The whole computation, the loop over path chunks included, is one ``tf.function`` cached per
    model and static options; new inputs of the same shape and new targets reuse the trace.
    """
    check_choice(method, "method", RULES)
    if return_convergence_delta and not multiply_by_inputs:
        raise ValueError("return_convergence_delta needs multiply_by_inputs=True (local attributions are not complete)")
    alphas, weights = quadrature(method, n_steps)
    problem = eng.prepare(model, inputs, target, layer=layer)
    flat_base = prepare_baselines(baseline, problem.flat_x, problem.structure)
    k_count = int(flat_base[0].shape[0])
    chunk = eng.chunk_size(n_steps * k_count, problem.batch_size, internal_batch_size)
    key = ("integrated_gradients", method, int(n_steps), chunk, k_count, bool(multiply_by_inputs),
           bool(return_convergence_delta), problem.batch_size)

    def builder():
        def fn(flat_x, indices, flat_base):
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)
            attr = straight_path_sum(problem, flat_x, flat_base, indices, alphas, weights, chunk, multiply_by_inputs)
            if return_convergence_delta:
                return attr, completeness_delta(problem, flat_x, flat_base, indices, attr, out_x)
            return attr, tf.zeros((problem.batch_size,), tf.float32)

        return fn

    return eng.Plan(problem, key, builder, (flat_base,), jit_compile, eng.packed_finish(problem, return_convergence_delta))


SPEC = MethodSpec(
    name="integrated_gradients", function=integrated_gradients, aliases=("ig",),
    summary=("straight path from a baseline; quadrature `rule=` `gausslegendre` (default, 64 steps), "
            "`riemann_left/right/middle/trapezoid` (weights sum to 1), `pair` (PAIR parity); any baseline, "
            "several averaged"),
    paper="M. Sundararajan, A. Taly, Q. Yan, Axiomatic Attribution for Deep Networks, ICML 2017",
    completeness="F(x) − mean_k F(x'_k)",
    per_example_options={"baseline": tile_baseline},
    test_options={"n_steps": 8},
)
