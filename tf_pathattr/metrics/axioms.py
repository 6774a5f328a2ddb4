"""Completeness gap: how far ``sum_i a_i`` is from the method's completeness target.

.. math::

    \\delta = \\sum_i a_i - (F(x) - F_{ref}), \\qquad
    gap = |\\delta| / \\max(|F(x) - F_{ref}|, \\varepsilon)

``F_ref`` is ``mean_k F(x'_k)`` over the baseline(s) (IG, Guided IG, MEB-IG, anchors...) or given
directly as ``reference_scores`` for methods whose target is not a baseline value (SmoothGrad-IG,
Blur IG, IG2: their target is not the value at a baseline). ``F`` is the raw explained output (the
logit for a logits model), as for the attribution methods.

Reference: M. Sundararajan, A. Taly, Q. Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.shapes import prepare_baselines
from . import _common as C

__all__ = ["CompletenessResult", "completeness_gap"]


@dataclass
class CompletenessResult:
    """``delta [B]``, ``relative [B]``, ``f_x [B]``, ``f_ref [B]``; dict-style access works too."""

    delta: np.ndarray
    relative: np.ndarray
    f_x: np.ndarray
    f_ref: np.ndarray

    @property
    def median_relative(self) -> float:
        return float(np.median(self.relative))

    @property
    def max_relative(self) -> float:
        return float(np.max(self.relative))

    def __getitem__(self, key):
        return getattr(self, key)


def completeness_gap(
    model, inputs, attributions, target=None, *, baseline=0.0, reference_scores=None, eps: float = 1e-12
) -> CompletenessResult:
    """Per-example completeness delta and relative gap of ``attributions``.

    Parameters
    ----------
    model, inputs, target
        As for the attribution methods (``target=None``: the class predicted at ``inputs``).
    attributions : array (or list / dict for multi-input models) shaped like ``inputs``
    baseline : as ``integrated_gradients(baseline=...)``: scalar, array, per-example array, a stack
        of K baselines (averaged: ``F_ref = mean_k F(x'_k)``) or a ``tpa.baselines`` recipe.
    reference_scores : scalar or ``[B]``, optional
        ``F_ref`` directly (overrides ``baseline``).
    eps : float
        Floor of the denominator of the relative gap.
    """
    problem = eng.prepare(model, inputs, target)
    flat_a = problem.structure.flatten(attributions, "attributions")
    total = np.zeros(problem.batch_size)
    for a, x in zip(flat_a, problem.flat_x):
        a = C.attributions_array(a, tuple(x.shape))
        total += a.reshape(a.shape[0], -1).sum(axis=1)
    batch = problem.batch_size

    if reference_scores is None:
        flat_base = prepare_baselines(baseline, problem.flat_x, problem.structure)
        k_count = int(flat_base[0].shape[0])
    else:
        flat_base, k_count = None, 0

    def builder():
        def fn(flat_x, indices, *base):
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)
            f_x = eng.scores_at_x(problem, flat_x, indices, out_x)
            if not base:
                return f_x, tf.zeros_like(f_x)
            f_b = eng.scores(
                problem,
                [
                    eng.rows(tf.broadcast_to(b, [k_count, batch] + b.shape[2:].as_list()), k_count, batch)
                    for b in base[0]
                ],
                indices,
            )
            return f_x, tf.reduce_mean(tf.reshape(f_b, [k_count, batch]), axis=0)

        return fn

    key = ("metric_completeness", k_count, tuple(tuple(b.shape) for b in flat_base) if flat_base else None)
    extra = (flat_base,) if flat_base is not None else ()
    f_x, f_ref = eng.run(problem, key, builder, extra)
    f_x = f_x.numpy().astype(np.float64)
    if reference_scores is None:
        f_ref = f_ref.numpy().astype(np.float64)
    else:
        f_ref = np.broadcast_to(np.asarray(reference_scores, np.float64), (batch,)).copy()
    delta = total - (f_x - f_ref)
    relative = np.abs(delta) / np.maximum(np.abs(f_x - f_ref), eps)
    return CompletenessResult(delta=delta, relative=relative, f_x=f_x, f_ref=f_ref)
