"""Split Integrated Gradients: the IG integral cut where the score crosses a threshold.

With ``tau = F(x') + ratio * (F(x) - F(x'))`` and ``k*`` the first quadrature node (in path order)
whose score exceeds ``tau`` (falls below it when ``F(x) < F(x')``: the split is where the score has
made ``ratio`` of its way from ``F(x')`` to ``F(x)``):

.. math::

    Left = \\Delta x \\odot \\sum_{k < k^*} w_k g_k, \\qquad
    Right = \\Delta x \\odot \\sum_{k \\ge k^*} w_k g_k, \\qquad Left + Right = IG .

``Left`` is the attribution of the unsaturated part of the path (Left-IG). Scores come from the
same forward passes as the gradients, so this costs what IG costs plus two forward passes.

Reference: V. Miglani, N. Kokhlikyan, B. Alsallakh, M. Martin, O. Reblitz-Richardson, "Investigating
Saturation Effects in Integrated Gradients", ICML WHI 2020, arXiv 2010.12697.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.quadrature import RULES, quadrature
from ..engine.shapes import check_choice, prepare_baselines, renamed_option
from .registry import MethodSpec, tile_baseline

__all__ = ["split_integrated_gradients"]


@eng.planned
def split_integrated_gradients(
    model,
    inputs,
    target=None,
    *,
    baseline=0.0,
    ratio: float = 0.5,
    n_steps: int = 64,
    rule=None,
    internal_batch_size=None,
    jit_compile: bool = False,
    return_split_alpha: bool = False,
    layer=None,
    seed=None,
    method=None,
):
    """Left and right parts of Integrated Gradients, split where ``F`` first exceeds the threshold.

    Parameters
    ----------
    ratio : float in [0, 1]
        Threshold ``tau = F(x') + ratio (F(x) - F(x'))`` (Miglani et al. used 0.95 in their notebook).
    baseline, n_steps, rule, internal_batch_size, jit_compile, layer, seed
        As in :func:`tf_pathattr.integrated_gradients` (a single baseline; ``rule`` defaults to
        ``"gausslegendre"``; ``seed`` seeds a random baseline recipe).
    method : str, optional
        Deprecated name of ``rule`` (kept for one release; ``DeprecationWarning``).
    return_split_alpha : bool
        Also return, per example, the first alpha whose score exceeded ``tau`` (1.0 when none did).

    Returns
    -------
    left, right : attributions shaped like ``inputs``; ``left + right`` equals IG with the same rule.
    """
    if not np.isfinite(ratio) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio!r}")
    rule = renamed_option(rule, method, "rule", "method", default="gausslegendre")
    check_choice(rule, "rule", RULES)
    alphas, weights = quadrature(rule, n_steps)
    problem = eng.prepare(model, inputs, target, layer=layer)
    flat_base = prepare_baselines(baseline, problem.flat_x, problem.structure, seed=seed)
    if flat_base[0].shape[0] != 1:
        raise ValueError("split_integrated_gradients takes a single baseline (got several)")
    batch = problem.batch_size
    chunk = eng.chunk_size(n_steps, batch, internal_batch_size)
    key = ("split_ig", rule, int(n_steps), chunk, batch)

    def builder():
        def fn(flat_x, indices, flat_base, ratio_t):
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)
            base = [b[0] for b in flat_base]
            dx = [x - b for x, b in zip(flat_x, base)]
            f_x = eng.scores_at_x(problem, flat_x, indices, out_x)
            f_b = eng.scores(problem, base, indices)
            tau = f_b + ratio_t * (f_x - f_b)
            direction = tf.where(f_x >= f_b, 1.0, -1.0)
            a_all = tf.constant(alphas, tf.float32)
            w_all = tf.constant(weights, tf.float32)

            def body(start, size, carry):
                left, right, crossed, split_alpha = carry
                a = tf.slice(a_all, [start], [size])
                w = tf.slice(w_all, [start], [size])
                pts = [eng.rows(b[None] + eng.expand_like(a, d[None]) * d[None], size, batch) for b, d in zip(base, dx)]
                s, grads = eng.score_and_gradients(problem, pts, indices)
                # progress toward F(x): for a decreasing path "above tau" means below it
                above = (tf.reshape(s, [size, batch]) - tau[None]) * direction[None] > 0
                # a node is "right" once this or any earlier node crossed tau
                cum = tf.logical_or(crossed[None], tf.cast(tf.cumsum(tf.cast(above, tf.int32), axis=0), tf.bool))
                first = tf.logical_and(cum, tf.logical_not(tf.concat([crossed[None], cum[:-1]], axis=0)))
                split_alpha = split_alpha + tf.reduce_sum(tf.where(first, a[:, None] - 1.0, 0.0), axis=0)
                wr = tf.cast(cum, tf.float32) * w[:, None]
                wl = w[:, None] - wr
                new_left, new_right = [], []
                for l_i, r_i, g in zip(left, right, grads):
                    g = eng.unrows(g, size, batch)
                    new_left.append(l_i + tf.reduce_sum(eng.expand_like(wl, g) * g, axis=0))
                    new_right.append(r_i + tf.reduce_sum(eng.expand_like(wr, g) * g, axis=0))
                return new_left, new_right, cum[-1], split_alpha

            zeros = [tf.zeros_like(x) for x in flat_x]
            init = (zeros, list(zeros), tf.zeros((batch,), tf.bool), tf.ones((batch,), tf.float32))
            left, right, _, split_alpha = eng.chunked_loop(n_steps, chunk, body, init)
            return [l_i * d for l_i, d in zip(left, dx)], [r_i * d for r_i, d in zip(right, dx)], split_alpha

        return fn

    def finish(result):
        left, right, split_alpha = result
        out = (problem.pack(left), problem.pack(right))
        return out + (split_alpha,) if return_split_alpha else out

    return eng.Plan(problem, key, builder, (flat_base, tf.constant(ratio, tf.float32)), jit_compile, finish)


SPEC = MethodSpec(
    name="split_integrated_gradients",
    function=split_integrated_gradients,
    aliases=("split_ig",),
    summary="IG split where the score crosses a threshold: left + right = IG",
    paper="V. Miglani, N. Kokhlikyan, B. Alsallakh, M. Martin, O. Reblitz-Richardson, Investigating "
    "Saturation Effects in Integrated Gradients, ICML WHI 2020",
    output="split",
    exportable="split_integrated_gradients returns two maps; export one of them through integrated_gradients",
    per_example_options={"baseline": tile_baseline},
    baseline_option="baseline",
    test_options={"n_steps": 8},
)
