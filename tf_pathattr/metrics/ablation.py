"""MEB ablation: replace the top-q features by fresh maximum-entropy (uniform) noise.

For fractions ``q`` (default 0, 0.1, ..., 1) the ``round(q U)`` most (MoRF) or least (LeRF)
relevant units are replaced by a uniform draw on the valid raw box ``[low, high]`` passed through
``preprocess`` (the same preprocessing as the inputs). The score of the target class is averaged
over ``n_draws`` draws; the area under the curve uses the trapezoid rule over ``q``. MoRF: lower is
better; the LeRF - MoRF gap: higher is better.

Draw ``r`` is keyed by ``(seed, r)`` and shared by every fraction and both orders (common random
numbers), so at ``q = 1`` MoRF and LeRF give the same score, the score of a pure MEB sample.

A reconstruction, from the paper's description of its evaluation, of the "improved ablation evaluation" of H. Tan, "Maximum Entropy Baseline for Integrated Gradients", IJCNN 2023,
arXiv 2204.05948; no code was released, so the exact protocol is not confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.gradients import as_numpy_seed
from ..engine.shapes import check_choice, check_positive_int
from . import _common as C

__all__ = ["AblationResult", "meb_ablation", "meb_noise"]

#: the default fractions q = 0, 0.1, ..., 1 (read-only: a shared default must not be changed in place)
DEFAULT_FRACTIONS = np.linspace(0, 1, 11)
DEFAULT_FRACTIONS.setflags(write=False)


@dataclass
class AblationResult:
    """``fractions [Q]``; per order (``"morf"``, ``"lerf"``) curves ``[B, Q]`` and ``auc [B]``;
    ``gap = auc_lerf - auc_morf`` when both orders are run. Dict-style access works too."""

    fractions: np.ndarray
    curves: dict
    auc: dict
    gap: np.ndarray
    target: np.ndarray
    valid: np.ndarray
    score: str = "probability"

    def __getitem__(self, key):
        return getattr(self, key)


def meb_noise(shape, low, high, n_draws, seed, preprocess=None) -> tf.Tensor:
    """``[n_draws, *shape]`` uniform draws on ``[low, high]`` keyed by ``(seed, r)``, then ``preprocess``."""
    lo = np.asarray(low, np.float32)
    hi = np.asarray(high, np.float32)
    if np.any(hi <= lo):
        raise ValueError(f"meb_ablation: need high > low, got low={low!r}, high={high!r}")
    draws = []
    for r in range(n_draws):
        u = tf.random.stateless_uniform(list(shape), seed=[seed, r], dtype=tf.float32)
        d = tf.constant(lo) + u * tf.constant(hi - lo)
        if preprocess is not None:
            d = tf.cast(tf.convert_to_tensor(preprocess(d)), tf.float32)
            if tuple(d.shape) != tuple(shape):
                raise ValueError(f"preprocess must keep the shape {tuple(shape)}, got {tuple(d.shape)}")
        draws.append(d)
    return tf.stack(draws)


def meb_ablation(
    model,
    inputs,
    attributions,
    target=None,
    *,
    low,
    high,
    preprocess=None,
    fractions=DEFAULT_FRACTIONS,
    order: str = "morf",
    n_draws: int = 5,
    seed=None,
    score=None,
    batch_size=None,
    units=None,
    data_format=None,
) -> AblationResult:
    """Ablation curves with maximum-entropy replacement.

    Parameters
    ----------
    model, inputs, target
        ``inputs`` in model space; ``target=None`` explains the class predicted on ``inputs``.
    attributions : array shaped like ``inputs`` (or one value per unit, e.g. ``[B, H, W]``); units
        ranked by ``|sum over channels|`` (pixels for images, tokens, features), stable ties.
    low, high : scalars or arrays broadcastable to one example, the valid raw box
    preprocess : callable, optional
        Maps raw-space draws ``[B, *S]`` to model space (the inputs' preprocessing).
    fractions : ascending values in [0, 1]
    order : {"morf", "lerf", "both"}
    n_draws : int, noise draws averaged per point (R >= 5 recommended)
    seed : int (None = 0); the same seed reproduces the curves exactly
    score : {None, "probability", "logit", "output", "accuracy"}
        The shared scoring rule (:mod:`tf_pathattr.metrics._scoring`); None = "probability".
    units, data_format : as :func:`tf_pathattr.metrics.deletion`
    """
    check_choice(order, "order", ("morf", "lerf", "both"))
    n_draws = check_positive_int(n_draws, "n_draws")
    fr = np.array(fractions, np.float64)  # a copy: the result never aliases the shared default
    if fr.ndim != 1 or fr.size < 2 or np.any(fr < 0) or np.any(fr > 1) or np.any(np.diff(fr) <= 0):
        raise ValueError("fractions must be at least 2 strictly increasing values in [0, 1]")
    C.check_score_name(score)
    problem = C.prepare_single(model, inputs, target)
    x = problem.flat_x[0]
    shape = tuple(x.shape)
    layout = C.resolve_layout(shape, units, data_format, model=model)
    scoring = C.resolve_scoring(problem, score)
    grid = layout.grid
    n_units = layout.n_units
    sal = layout.saliency(attributions)
    orders = ("morf", "lerf") if order == "both" else (order,)
    ranks = np.stack([C.rank_positions(sal, descending=(o == "morf")).reshape((shape[0],) + grid) for o in orders])
    counts = np.rint(fr * n_units).astype(np.int32)
    noise = meb_noise(shape, low, high, n_draws, as_numpy_seed(seed), preprocess)

    n_o, n_q, n_r = len(orders), len(counts), n_draws
    n_points = n_o * n_q * n_r
    p = np.arange(n_points)
    table_o = tf.constant(p // (n_q * n_r), tf.int32)
    table_c = tf.constant(counts[(p // n_r) % n_q], tf.int32)
    table_r = tf.constant(p % n_r, tf.int32)
    batch = problem.batch_size

    def make_points(flat_x, indices, start, size, ranks_t, noise_t, t_o, t_c, t_r):
        xx = flat_x[0]
        o = tf.slice(t_o, [start], [size])
        c = tf.slice(t_c, [start], [size])
        r = tf.slice(t_r, [start], [size])
        rk = tf.gather(ranks_t, o)  # [size, B, *grid]
        m = layout.expand(rk < eng.expand_like(c, rk))
        pts = tf.where(m, tf.gather(noise_t, r), xx[None])
        pts = tf.ensure_shape(pts, [size, batch] + list(shape[1:]))
        return tf.reshape(pts, [size * batch] + list(shape[1:]))

    key = ("meb_ablation", n_o, n_q, n_r, layout.kind, layout.channel_axis)
    scores, indices, _, _ = C.batched_scores(
        problem, key, n_points, batch_size, make_points, (tf.constant(ranks), noise, table_o, table_c, table_r), scoring
    )
    s = scores.reshape(n_o, n_q, n_r, batch).mean(axis=2).astype(np.float64)  # [O, Q, B]
    curves = {o: s[i].T for i, o in enumerate(orders)}
    auc = {o: np.trapezoid(curves[o], fr, axis=1) for o in orders}
    gap = auc["lerf"] - auc["morf"] if order == "both" else None
    return AblationResult(
        fractions=fr,
        curves=curves,
        auc=auc,
        gap=gap,
        target=C.result_target(problem, indices),
        valid=~C.degenerate(sal),
        score=scoring.score,
    )
