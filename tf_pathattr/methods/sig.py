"""Sequential Integrated Gradients: one straight path per token, the rest of the sentence fixed.

For token ``i`` of a sequence ``x = (x_1, ..., x_m)`` (rows of ``[B, m, ...]``, e.g. embeddings),
let ``x̄^(i)`` be ``x`` with only token ``i`` at its baseline ``b_i``. Then

.. math::

    SIG_{ij}(x) = (x_{ij} - b_{ij}) \\int_0^1
                  \\partial_{ij} F\\big(\\bar x^{(i)} + \\alpha (x - \\bar x^{(i)})\\big)\\, d\\alpha
                \\approx (x_{ij} - b_{ij}) \\sum_k w_k\\, \\partial_{ij} F(\\ldots \\alpha_k \\ldots)

Completeness holds per token, ``sum_j SIG_ij = F(x) - F(x̄^(i))``, not for the whole sequence;
``return_convergence_delta=True`` returns that per-token delta ``[B, m]``. Tokens whose input equals
the baseline (special tokens kept at their own embedding, padding) get exactly 0.

All ``m * n_steps`` path points of every example are sent through one compiled ``tf.while_loop`` in
chunks of ``internal_batch_size`` rows (a point is a whole sequence with one token interpolated).

Reference: J. Enguehard, "Sequential Integrated Gradients: a simple but effective method for
explaining language models", Findings of ACL 2023, arXiv 2305.15853 (released as
``SequentialIntegratedGradients`` in josephenguehard/time_interpret; the paper's baseline is the
``[MASK]`` embedding, captum's Gauss-Legendre rule with 50 nodes).
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import gradients as eng
from ..engine.quadrature import RULES, quadrature
from ..engine.shapes import check_choice, prepare_baselines
from .registry import MethodSpec, require, tile_baseline

__all__ = ["sequential_integrated_gradients"]


@overload
def sequential_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    baseline: Any = ...,
    n_steps: int = ...,
    rule: str = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
) -> Attributions: ...


@overload
def sequential_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    baseline: Any = ...,
    n_steps: int = ...,
    rule: str = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
) -> tuple[Attributions, tf.Tensor]: ...


@overload
def sequential_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: bool = ...,
    baseline: Any = ...,
    n_steps: int = ...,
    rule: str = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
) -> Any: ...


@eng.planned
def sequential_integrated_gradients(
    model,
    inputs,
    target=None,
    *,
    baseline=0.0,
    n_steps: int = 50,
    rule: str = "gausslegendre",
    internal_batch_size=None,
    return_convergence_delta: bool = False,
    jit_compile: bool = False,
    layer=None,
    seed=None,
):
    """Sequential Integrated Gradients (SIG) over the sequence axis (axis 1) of ``inputs``.

    Parameters
    ----------
    model, inputs, target, internal_batch_size, jit_compile, layer
        As in :func:`tf_pathattr.integrated_gradients`; ``inputs`` (or the ``layer`` output) is
        ``[B, m, ...]`` with the tokens on axis 1 (``layer=`` the token embedding for text models).
    baseline : scalar, ``[m, ...]`` or per-example ``[B, m, ...]``
        Each token's starting point (SIG's ``[MASK]`` embedding; see :func:`tf_pathattr.text.token_attributions`).
        A single baseline.
    n_steps : int
        Quadrature nodes per token (default 50, as released).
    rule : str
        Quadrature rule (default Gauss-Legendre, as released).
    return_convergence_delta : bool
        Also return the per-token delta ``sum_j SIG_ij - (F(x) - F(x̄^(i)))``, shape ``[B, m]``
        (``m`` extra forward passes).

    seed : int, optional
        Seed of a random ``tpa.baselines`` recipe given as ``baseline`` (``None``: the recipe's own seed).

    Returns
    -------
    attributions ``[B, m, ...]`` (and delta ``[B, m]``)
    """
    check_choice(rule, "rule", RULES)
    alphas, weights = quadrature(rule, n_steps)
    problem = eng.prepare(model, inputs, target, layer=layer)
    if len(problem.flat_x) != 1:
        require(SPEC, "multi_input", f"inputs ({len(problem.flat_x)} model inputs)")
    x0 = problem.flat_x[0]
    if x0.shape.rank < 2:
        raise ValueError(
            f"sequential_integrated_gradients needs inputs [B, m, ...] with tokens on axis 1, got shape "
            f"{tuple(x0.shape)}"
        )
    flat_base = prepare_baselines(baseline, problem.flat_x, problem.structure, seed=seed)
    if flat_base[0].shape[0] != 1:
        raise ValueError("sequential_integrated_gradients takes a single baseline (got several)")
    batch = problem.batch_size
    m = int(x0.shape[1])
    n = len(alphas)
    chunk = eng.chunk_size(m * n, batch, internal_batch_size)
    key = ("sig", rule, int(n_steps), chunk, m, bool(return_convergence_delta), batch)
    point_alpha = np.tile(alphas, m)
    point_weight = np.tile(weights, m)
    point_pos = np.repeat(np.arange(m), n)

    def builder():
        def fn(flat_x, indices, flat_base):
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)
            x = flat_x[0]
            b = flat_base[0][0]
            d = x - b
            extra = [1] * (x.shape.rank - 2)
            p_alpha = tf.constant(point_alpha, tf.float32)
            p_weight = tf.constant(point_weight, tf.float32)
            p_pos = tf.constant(point_pos, tf.int32)

            def body(start, size, acc):
                a = tf.slice(p_alpha, [start], [size])
                w = tf.slice(p_weight, [start], [size])
                sel = tf.one_hot(tf.slice(p_pos, [start], [size]), m, dtype=tf.float32)  # [size, m]
                sel = tf.reshape(sel, [size, 1, m] + extra)
                moved = sel * tf.reshape(1.0 - a, [size, 1, 1] + extra)
                pts = x[None] - moved * d[None]  # only token i leaves x, to b + a (x - b)
                _, (g,) = eng.score_and_gradients(problem, [eng.rows(pts, size, batch)], indices)
                g = eng.unrows(g, size, batch)
                return acc + tf.reduce_sum(tf.reshape(w, [size, 1, 1] + extra) * sel * g, axis=0)

            acc = eng.chunked_loop(m * n, chunk, body, tf.zeros_like(x))
            attr = acc * d
            if not return_convergence_delta:
                return [attr], tf.zeros((batch, m), tf.float32)
            f_x = eng.scores_at_x(problem, flat_x, indices, out_x)
            eye = tf.reshape(tf.eye(m), [m, 1, m] + extra)
            masked = x[None] - eye * d[None]  # [m, B, m, ...]: token i at its baseline
            f_i = tf.reshape(eng.scores(problem, [eng.rows(masked, m, batch)], indices), [m, batch])
            word = tf.reduce_sum(tf.reshape(attr, [batch, m, -1]), axis=2)
            return [attr], word - tf.transpose(f_x[None] - f_i)

        return fn

    return eng.Plan(
        problem, key, builder, (flat_base,), jit_compile, eng.packed_finish(problem, return_convergence_delta)
    )


SPEC = MethodSpec(
    name="sequential_integrated_gradients",
    function=sequential_integrated_gradients,
    aliases=("sig",),
    summary="one straight path per token (from its [MASK] baseline) with the rest of the sequence fixed",
    paper="J. Enguehard, Sequential Integrated Gradients: a simple but effective method for explaining language "
    "models, Findings of ACL 2023",
    completeness="per token i: F(x) − F(x with token i at its baseline) (delta [B, m])",
    multi_input="sequential_integrated_gradients explains one sequence input (use layer= for text models)",
    per_example_options={"baseline": tile_baseline},
    baseline_option="baseline",
    test_options={"n_steps": 4},
)
