"""Guided Integrated Gradients (Guided IG, GIG): an adaptive path that moves low-gradient features first.

Starting at the baseline ``b`` and ending at the input ``x``, every one of the ``T`` steps evaluates
the gradient ``g = dF/dz`` once, at the step's start point ``z`` (a left Riemann sum), and then moves
the features with the smallest ``|g|`` towards ``x`` until the path has covered the step's share of
the total L1 distance ``L = sum_i |x_i - b_i|``:

.. math::

    GIG_i(x) = \\int_0^1 \\frac{\\partial F(\\gamma(\\alpha))}{\\partial \\gamma_i}
               \\frac{\\partial \\gamma_i}{\\partial \\alpha}\\, d\\alpha
             \\approx \\sum_{t=0}^{T-1} g_i(z_t)\\, (z_{t+1, i} - z_{t, i})

Step ``t`` (``alpha = (t+1)/T``) runs selection rounds: features lagging behind the window floor
``line(max(alpha - D, 0))`` are pulled up to it; if the remaining distance ``sum |z - x|`` already
equals ``L (1 - alpha)`` the step ends; otherwise the features whose ``|g|`` is at most the
numpy-``'lower'`` ``fraction``-quantile of ``|g|`` over all ``N`` features (features already at the
window ceiling ``line(min(alpha + D, 1))`` count as ``+inf`` and are never selected) are pushed to
the ceiling, or, when that would overshoot, moved by the common fraction ``gamma`` of their gap to
it that lands exactly on the step's L1 goal. ``max_dist=D`` bounds how far any feature's own
progress may deviate from ``alpha``; ``D = 1`` is unbounded Guided IG, ``D = 0`` or ``fraction = 1``
give left-Riemann Integrated Gradients with ``T`` steps.

``anchors=K`` gives GIG(K): ``K`` interior anchors ``line(k/(K+1))`` on the straight line split it
into ``K+1`` segments, unbounded Guided IG runs on each segment (with the segment's ends as its
baseline and input), the step budget is split as evenly as possible (the first ``T mod (K+1)``
segments get one extra step) and the segment attributions are summed. This construction is a
reconstruction of the paper's GIG(K) (the released code implements only ``max_dist``).

References: A. Kapishnikov, S. Venugopalan, B. Avci, B. Wedin, M. Terry, T. Bolukbasi, "Guided
Integrated Gradients: An Adaptive Path Method for Removing Noise", CVPR 2021, arXiv 2106.09788.
Released algorithm: PAIR-code/saliency 0.2.1, ``saliency.core.GuidedIG``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import accumulators as _acc
from ..engine import gradients as eng
from ..engine.paths import completeness_delta
from ..engine.shapes import check_positive_int, prepare_baselines
from .registry import MethodSpec, tile_baseline

__all__ = ["guided_integrated_gradients", "guided_ig_tables", "max_rounds_per_step"]

_PARITY_TOL = 1e-9  # math.isclose(rel_tol=1e-9, abs_tol=1e-9) as in the released code
_FAST_REL_TOL = 1e-5


def max_rounds_per_step(fraction: float) -> int:
    """The inner loop's bound ``ceil(1 / fraction) + 2`` on selection rounds per step.

    Every round that does not finish the step moves all selected features (at least about
    ``fraction * N`` of them) to the window ceiling, where they stay for the rest of the step.
    """
    return int(math.ceil(1.0 / float(fraction))) + 2


def guided_ig_tables(n_steps: int, max_dist: float, anchors=None):
    """Per-step schedule (float64 numpy, computed as the released code does).

    Returns a dict of ``[T]`` arrays: ``seg_lo`` / ``seg_hi`` (the segment's ends as fractions of the
    straight line; 0 and 1 without anchors), ``start`` (1.0 where a segment starts), ``a_min`` /
    ``a_max`` (the window in the segment's own progress coordinate) and ``goal`` (the fraction of the
    segment's L1 length that must remain after the step).
    """
    if anchors is None:
        segs = [n_steps]
        dist = float(max_dist)
    else:
        k1 = int(anchors) + 1
        base, extra = divmod(n_steps, k1)
        segs = [base + (1 if j < extra else 0) for j in range(k1)]
        dist = 1.0  # every segment runs unbounded
    rows = {name: [] for name in ("seg_lo", "seg_hi", "start", "a_min", "a_max", "goal")}
    k1 = len(segs)
    for j, steps in enumerate(segs):
        for step in range(steps):
            alpha = (step + 1.0) / steps
            rows["seg_lo"].append(j / k1)
            rows["seg_hi"].append((j + 1) / k1)
            rows["start"].append(1.0 if step == 0 else 0.0)
            rows["a_min"].append(max(alpha - dist, 0.0))
            rows["a_max"].append(min(alpha + dist, 1.0))
            rows["goal"].append(1 - (step + 1) / steps)
    return {k: np.asarray(v, np.float64) for k, v in rows.items()}


def _check_args(n_steps, fraction, max_dist, anchors, parity):
    n_steps = check_positive_int(n_steps, "n_steps")
    for value, name in ((fraction, "fraction"), (max_dist, "max_dist")):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value!r}")
    fraction, max_dist = float(fraction), float(max_dist)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"fraction must be in (0, 1] (the share of features moved per selection round), got {fraction}"
        )
    if max_dist < 0.0:
        raise ValueError(f"max_dist must be >= 0 (0 = straight line, 1 = unbounded), got {max_dist}")
    if anchors is not None:
        anchors = check_positive_int(anchors, "anchors", minimum=0)
        if anchors + 1 > n_steps:
            raise ValueError(
                f"anchors={anchors} splits the path into {anchors + 1} segments but n_steps={n_steps}: every segment "
                f"needs at least one step, so use anchors <= n_steps - 1"
            )
    if not isinstance(parity, (bool, np.bool_)):
        raise TypeError(f"parity must be a bool, got {type(parity).__name__}")
    return n_steps, fraction, max_dist, anchors, bool(parity)


def _kth_smallest_topk(mag, k):
    """Per row, the ``(k+1)``-th smallest entry of ``mag`` ``[B, N]`` (any float dtype), via ``top_k``."""
    return -tf.reduce_min(tf.math.top_k(-mag, k=k + 1, sorted=False).values, axis=1)


def _kth_smallest_bisect(mag, k):
    """Per row, the ``(k+1)``-th smallest entry of a non-negative float32 ``mag`` ``[B, N]`` (``+inf`` allowed).

    Exact: non-negative IEEE floats order like their int32 bit patterns, so a bisection over the bit
    patterns (at most 31 rounds of one compare-and-count pass) finds the smallest pattern ``v`` with
    ``count(mag <= v) >= k + 1``, which is the wanted order statistic. Below ``2**24`` features the
    count is a float32 matrix-vector product of the 0/1 comparison with ones: its partial sums are
    integers below ``2**24``, so it is exact in any summation order (and any batch size), and XLA runs
    it as a vectorized dot (measured on ``[8, 3072]`` under XLA: 70 us a bisection, against 260 us
    counting with an int32 ``reduce_sum`` and ~500 us for ``top_k``); above, an int32 sum.
    """
    n = int(mag.shape[1])
    bits = tf.bitcast(mag, tf.int32)
    rows = tf.shape(mag)[0]
    ones = tf.ones([n, 1], tf.float32)
    lo = tf.zeros([rows], tf.int32)
    hi = tf.fill([rows], tf.constant(0x7F800000, tf.int32))  # +inf: count(mag <= inf) = N >= k + 1

    def count_below(mid):
        below = bits <= mid[:, None]
        if n < 1 << 24:  # float32 counts stay exact
            return tf.cast(tf.matmul(tf.cast(below, tf.float32), ones)[:, 0], tf.int32)
        return tf.reduce_sum(tf.cast(below, tf.int32), axis=1)

    def body(lo, hi):
        mid = lo + (hi - lo) // 2
        ok = count_below(mid) >= k + 1
        return [tf.where(ok, lo, mid + 1), tf.where(ok, mid, hi)]

    lo, hi = tf.while_loop(lambda lo, hi: tf.reduce_any(lo < hi), body, [lo, hi], maximum_iterations=32)
    return tf.bitcast(hi, tf.float32)


def _select_round(z, s, base, end, lo, hi, a_min, a_max, moving, safe, kth):
    """First half of a selection round, element-wise and per row only (no float reduction).

    Pulls lagging features up to the window floor ``lo`` (``z1``), masks the features at the ceiling
    ``hi`` with ``+inf`` (``s1``), and selects the features whose ``|s1|`` is at most the per-example
    ``(kth+1)``-th smallest (numpy ``'lower'`` quantile). Returns ``z1, s1, sel`` and the two per-feature
    terms whose row sums the second half needs: ``|z1 - end|`` and ``|z1 - hi|`` on the selection.
    """
    inf = tf.constant(np.inf, z.dtype)
    progress = tf.where(moving, (z - base) / safe, a_max)
    z1 = tf.where(progress < a_min, lo, z)
    s1 = tf.where(tf.equal(z1, hi), inf, s)
    mag = tf.abs(s1)
    kth_smallest = _kth_smallest_bisect if z.dtype == tf.float32 else _kth_smallest_topk
    tau = kth_smallest(mag, kth)[:, None]
    sel = tf.logical_and(mag <= tau, tf.not_equal(s1, inf))
    cur_abs = tf.abs(z1 - end)
    sel_abs = tf.where(sel, tf.abs(z1 - hi), tf.zeros_like(z1))
    return z1, s1, sel, cur_abs, sel_abs


def _move_round(z, z1, s, s1, sel, l_cur, l_sel, goal, tol, hi, attr, g, active, rel_tol):
    """Second half of a selection round, given the row sums ``l_cur = sum|z1 - end|`` and ``l_sel``.

    Ends the step where ``l_cur`` is within tolerance of the goal; otherwise moves the selected features
    to the ceiling, or by the common fraction ``gamma = (l_cur - goal) / l_sel`` of their gap to it.
    Adds ``g * (z_new - z)`` to the attributions of the active rows. Returns ``z_new, attr, s, still``.
    """
    inf = tf.constant(np.inf, z.dtype)
    close = tf.abs(l_cur - goal) <= tf.maximum(rel_tol * tf.maximum(tf.abs(l_cur), tf.abs(goal)), tol)
    gamma = tf.where(l_sel > 0, (l_cur - goal) / tf.where(l_sel > 0, l_sel, tf.ones_like(l_sel)), inf)
    gamma = tf.maximum(gamma, 0.0)  # float32 mode: never move backwards
    big = gamma > 1.0
    moved = tf.where(big[:, None], hi, z1 + (hi - z1) * tf.where(big, tf.zeros_like(gamma), gamma)[:, None])
    z2 = tf.where(tf.logical_and(sel, tf.logical_not(close)[:, None]), moved, z1)
    act = active[:, None]
    z_new = tf.where(act, z2, z)
    attr = attr + tf.where(act, (z_new - z) * g, tf.zeros_like(z))
    # L_S = 0 (nothing left to move; only reachable through float32 rounding) also ends the step
    still = tf.logical_and(active, tf.logical_and(tf.logical_not(close), tf.logical_and(big, l_sel > 0)))
    return z_new, attr, tf.where(act, s1, s), still


def _row_sums_fixed_order(v):
    """Row sums of ``v`` ``[B, N]`` by pairwise halving in an order fixed by ``N`` alone.

    The columns are padded with zeros to a power of two and the right half is added onto the left
    half until one column is left: element-wise additions only, whose order XLA keeps (it does not
    reassociate float additions), so a row's sum is the same bits whatever the batch size. XLA's own
    row reduction is not: it picks its loop and vector split by the whole shape (measured: a row of a
    ``[16, 3072]`` float32 matrix sums to a value 1.5e-5 away from the same row alone).
    """
    width = int(v.shape[1])
    padded = 1 << max(width - 1, 0).bit_length()
    if padded != width:
        v = tf.pad(v, [[0, 0], [0, padded - width]])
    while padded > 1:
        padded //= 2
        v = v[:, :padded] + v[:, padded:]
    return v[:, 0]


def _step_rounds(z, attr, g, base, end, lo, hi, a_min, a_max, moving, safe, goal, tol, active0, kth, bound, rel_tol):
    """All selection rounds of one step (the gradient ``g`` fixed): an inner ``tf.while_loop`` of
    :func:`_select_round`, the two row sums and :func:`_move_round`, for at most ``bound`` rounds.

    Returns the new ``z``, ``attr``, the number of rounds run and whether some row was cut off by the
    bound. In parity (float64) mode it runs as plain TF ops with ``tf.reduce_sum``; the fast mode runs
    it as :data:`_step_rounds_xla`.
    """
    fast = z.dtype == tf.float32
    row_sums = _row_sums_fixed_order if fast else (lambda v: tf.reduce_sum(v, axis=1))

    def round_body(r, z, attr, s, active):
        z1, s1, sel, cur_abs, sel_abs = _select_round(z, s, base, end, lo, hi, a_min, a_max, moving, safe, kth)
        l_cur, l_sel = row_sums(cur_abs), row_sums(sel_abs)
        z_new, attr, s_new, still = _move_round(
            z, z1, s, s1, sel, l_cur, l_sel, goal, tol, hi, attr, g, active, rel_tol
        )
        return r + 1, z_new, attr, s_new, still

    r, z, attr, _, still = tf.while_loop(
        lambda r, z, attr, s, active: tf.reduce_any(active),
        round_body,
        [tf.constant(0, tf.int32), z, attr, g, active0],
        maximum_iterations=bound,
        parallel_iterations=1,
    )
    return z, attr, r, tf.reduce_any(still)


# Fast (float32) mode runs a step's selection rounds as one XLA cluster: one executable call per step instead
# of ~40 TF ops and a 31-pass bisection per round (measured on the guard's 8 x 32x32x3 case: 7 % of the
# floor faster than two XLA halves per round with TF reductions between them; running the rows one by one
# inside the cluster was slower). It is a module-level function of tensors and static numbers only (never a
# model), so XLA compiles it once per feature-matrix shape and constants: explaining new models of the same
# input shape adds no executable. Its only float reductions are the fixed-order row sums and the bisection
# counts integers, so its result does not depend on the batch size.
_step_rounds_xla = tf.function(_step_rounds, jit_compile=True, autograph=False, reduce_retracing=False)


def _build(problem, n_steps, fraction, parity, anchored, return_delta, accumulator=None):
    """The traced body ``fn(flat_x, indices, tables, flat_base)`` (``accumulator``: the IDGI hook)."""
    dtype = tf.float64 if parity else tf.float32
    rel_tol = _PARITY_TOL if parity else _FAST_REL_TOL
    abs_tol = _PARITY_TOL
    batch = problem.batch_size
    shapes = problem.example_shapes
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    n_feat = int(sum(sizes))
    kth = int(np.floor((n_feat - 1) * fraction))  # numpy 'lower' quantile index over all N features
    bound = max_rounds_per_step(fraction)
    rounds = _step_rounds if parity else _step_rounds_xla

    def flatten(flat):
        return tf.concat([tf.reshape(tf.cast(t, dtype), [batch, n]) for t, n in zip(flat, sizes)], axis=1)

    def unflatten(z, out_dtype):
        parts = tf.split(z, sizes, axis=1) if len(sizes) > 1 else [z]
        return [tf.reshape(tf.cast(p, out_dtype), (batch,) + s) for p, s in zip(parts, shapes)]

    def fn(flat_x, indices, tables, flat_base):
        indices, out_x = eng.resolve_indices(problem, flat_x, indices)
        x = flatten(flat_x)
        b = flatten([fb[0] for fb in flat_base])
        d_full = x - b
        total = tf.reduce_sum(tf.abs(d_full), axis=1)  # L per example
        seg_lo, seg_hi, start, a_min_t, a_max_t, goal_t = (
            tf.cast(tables[k], dtype) for k in ("seg_lo", "seg_hi", "start", "a_min", "a_max", "goal")
        )

        def point(c):
            # line(c) = b + (x - b) c, with the path's own ends exactly b and x
            if not anchored:
                return None
            return tf.where(tf.equal(c, 0.0), b, tf.where(tf.equal(c, 1.0), x, b + d_full * c))

        def segment(base, end):
            """What a step needs of its segment: ``delta``, its L1 length, the catch-up tolerance, the mask
            of features that move and ``delta`` made safe to divide by."""
            delta = end - base
            seg_len = tf.reduce_sum(tf.abs(delta), axis=1)
            # float32: the ceiling line(1) = b + (x - b) * 1 misses x by an ulp per feature, so the
            # catch-up test needs an absolute tolerance on the scale of the path length L
            tol = abs_tol if parity else tf.maximum(abs_tol, rel_tol * seg_len)
            moving = tf.not_equal(delta, 0.0)
            safe = tf.where(moving, delta, tf.ones_like(delta))
            return delta, seg_len, tol, moving, safe

        def advance(z, attr, g, base, end, seg, a_min, a_max, goal_frac, active0):
            """One step's selection rounds (the gradient ``g`` is fixed); returns the new z, attr, rounds, cut-off."""
            delta, seg_len, tol, moving, safe = seg
            lo = base + delta * a_min
            hi = base + delta * a_max
            goal = seg_len * goal_frac
            args = (z, attr, g, base, end, lo, hi, a_min, a_max, moving, safe, goal, tol, active0)
            return rounds(*args, kth, bound, rel_tol)

        def step(t, z, attr, max_r, sum_r, hit, *idgi_state):
            if anchored:
                base, end = point(seg_lo[t]), point(seg_hi[t])
                z = tf.where(start[t] > 0, base, z)  # each segment starts exactly at its anchor
            else:
                base, end = b, x
            pts = unflatten(z, tf.float32)
            pts = [tf.ensure_shape(p, (batch,) + s) for p, s in zip(pts, shapes)]
            f, grads = eng.score_and_gradients(problem, pts, indices)
            if accumulator is not None:  # IDGI: the (F, g) pair of the path point z_t
                idgi_state = (accumulator.update(idgi_state[0], f[None], [gr[None] for gr in grads]),)
            g = flatten(grads)
            seg = segment(base, end) if anchored else whole_line
            z, attr, r, cut = advance(z, attr, g, base, end, seg, a_min_t[t], a_max_t[t], goal_t[t], total > 0)
            return (t + 1, z, attr, tf.maximum(max_r, r), sum_r + r, tf.logical_or(hit, cut)) + tuple(idgi_state)

        any_moving = tf.reduce_any(total > 0)
        whole_line = None if anchored else segment(b, x)  # without anchors every step runs on the line b -> x
        init = [
            tf.constant(0, tf.int32),
            b,
            tf.zeros_like(b),
            tf.constant(0, tf.int32),
            tf.constant(0, tf.int32),
            tf.constant(False),
        ]
        if accumulator is not None:
            init.append(accumulator.init(flat_x))
        _, _, attr, max_r, sum_r, hit, *idgi_state = tf.while_loop(
            lambda t, *_: tf.logical_and(t < n_steps, any_moving), step, init, parallel_iterations=1
        )
        attr_list = unflatten(attr, tf.float32)
        if accumulator is not None:  # the last step ends at x: F(x), no gradient
            attr_list, _ = accumulator.finish(idgi_state[0], eng.scores_at_x(problem, flat_x, indices, out_x))
        if return_delta:
            delta = completeness_delta(problem, flat_x, flat_base, indices, attr_list, out_x)
        else:
            delta = tf.zeros((batch,), tf.float32)
        return attr_list, delta, tf.stack([max_r, sum_r]), hit

    return fn


@overload
def guided_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    return_details: Literal[False] = ...,
    baseline: Any = ...,
    n_steps: int = ...,
    fraction: float = ...,
    max_dist: float = ...,
    anchors: Any = ...,
    parity: bool = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
    idgi: Any = ...,
) -> Attributions: ...


@overload
def guided_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    return_details: Literal[True],
    baseline: Any = ...,
    n_steps: int = ...,
    fraction: float = ...,
    max_dist: float = ...,
    anchors: Any = ...,
    parity: bool = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
    idgi: Any = ...,
) -> tuple[Attributions, dict]: ...


@overload
def guided_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    return_details: Literal[False] = ...,
    baseline: Any = ...,
    n_steps: int = ...,
    fraction: float = ...,
    max_dist: float = ...,
    anchors: Any = ...,
    parity: bool = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
    idgi: Any = ...,
) -> tuple[Attributions, tf.Tensor]: ...


@overload
def guided_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    return_details: Literal[True],
    baseline: Any = ...,
    n_steps: int = ...,
    fraction: float = ...,
    max_dist: float = ...,
    anchors: Any = ...,
    parity: bool = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
    idgi: Any = ...,
) -> tuple[Attributions, tf.Tensor, dict]: ...


@overload
def guided_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: bool = ...,
    return_details: bool = ...,
    baseline: Any = ...,
    n_steps: int = ...,
    fraction: float = ...,
    max_dist: float = ...,
    anchors: Any = ...,
    parity: bool = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
    idgi: Any = ...,
) -> Any: ...


@eng.planned
def guided_integrated_gradients(
    model,
    inputs,
    target=None,
    *,
    baseline=0.0,
    n_steps: int = 200,
    fraction: float = 0.25,
    max_dist: float = 0.02,
    anchors=None,
    parity: bool = False,
    internal_batch_size=None,
    return_convergence_delta: bool = False,
    return_details: bool = False,
    jit_compile: bool = False,
    layer=None,
    seed=None,
    idgi=False,
):
    """Guided Integrated Gradients (Kapishnikov et al., CVPR 2021), batched over the explicands.

    Parameters
    ----------
    model : keras.Model or callable
        Called with ``training=False`` when it is a Keras model or layer.
    inputs : array-like ``[B, ...]``, or list / tuple / dict of them
        The explicands. Each example gets its own adaptive path; all ``B`` examples share one model
        call per step. With several model inputs the features of all inputs form one feature vector
        per example (the quantile and the L1 schedule run over all of them).
    target : None, int, sequence of B ints, or callable ``score(outputs) -> [B]``
        What is explained; ``None`` = predicted class.
    baseline : scalar, array ``S``, or per-example array ``[B, *S]``
        The path start (default zeros). One baseline per example: several baselines (``K > 1``) are
        not supported by Guided IG.
    n_steps : int
        ``T``: path steps and model calls (PAIR's ``x_steps``, default 200).
    fraction : float in (0, 1]
        ``q``: share of the features (lowest ``|gradient|`` first) moved in each selection round.
    max_dist : float >= 0
        ``D``: most any feature's progress may deviate from the straight line's ``alpha``
        (0 = left-Riemann IG, 1 = unbounded Guided IG). Ignored when ``anchors`` is given.
    anchors : int, optional
        ``K`` for GIG(K): ``K`` interior anchors on the straight line, unbounded Guided IG on each of
        the ``K + 1`` segments; needs ``n_steps >= K + 1``. ``anchors=0`` is unbounded Guided IG.
    parity : bool
        Keep the path state (``z``, attributions, window) in float64 and cast ``z`` to float32 only
        for the model call, as PAIR ``saliency`` does; reproduces it to about 1e-10. The default
        float32 path is faster (its selection rounds are XLA-compiled) but its exact tie and ceiling
        tests can decide differently on some features, and its catch-up test uses a tolerance of
        ``1e-5 * L`` (float32 sums), so compare it to the reference statistically (correlation
        > 0.99, attribution sums within 0.1 % on the test CNNs; on max-pool models the path is
        sensitive to float rounding).
    internal_batch_size : int, optional
        Validated only: Guided IG always sends exactly ``B`` rows (one path point per example) per
        model call, so memory never grows with ``n_steps``.

        Batch = per-example holds up to the model's own float rounding: many Keras/oneDNN
        kernels give input gradients that differ in the last bits with the batch size, and Guided
        IG's discrete feature selection can amplify that on max-pool models (measured: up to 15-26 %
        of ``max|attr|`` for one example, sums within 2.3 %; registry ``batch_tolerance``). For
        bit-reproducible per-example results explain one example per call.
    return_convergence_delta : bool
        Also return ``delta = sum(attr) - (F(x) - F(baseline))`` per example. Guided IG is complete
        up to the left-Riemann error on smooth models; on max-pool models it loses 10-66 % by design.
    return_details : bool
        Also return the selection-round statistics of this call as a dict: ``max_rounds`` (most rounds
        any step needed), ``mean_rounds`` (rounds per step, averaged over steps), ``bound`` (the inner
        loop's ``maximum_iterations``) and ``bound_hit`` (True if some example's step was cut off by
        the bound, i.e. the path fell behind its L1 schedule; it then catches up at the next window
        floor, and a ``RuntimeWarning`` says so).
    jit_compile : bool
        Compile the whole method (both loops) with XLA.
    idgi : bool or engine.accumulators.ImportantDirection
        Reduce the guided path's points ``z_0 = baseline, ..., z_T = x`` with IDGI (``tpa.idgi``):
        the gradient of each step's start point and the output change to the next point (one
        extra forward pass at ``x``); the path itself is unchanged.
    layer : keras layer, layer name or callable(model) -> layer, optional
        Attribute to this layer's output (e.g. an ``Embedding``): the adaptive path runs in the
        layer's output space, from ``baseline`` (given in that space, default zeros) to the layer's
        activations, and the raw inputs (integer token ids) are fed unchanged.
    seed : int, optional
        Seed of a random ``tpa.baselines`` recipe (``None``: the recipe's own seed). Guided IG itself
        draws nothing.

    Returns
    -------
    attributions : tf.Tensor (float32), shaped like ``inputs``
    delta : tf.Tensor ``[B]``, only with ``return_convergence_delta=True``
    details : dict, only with ``return_details=True`` (always last)

    Notes
    -----
    One cached ``tf.function``: an outer ``tf.while_loop`` over the ``T`` steps (one batched
    gradient each) and an inner ``tf.while_loop`` over selection rounds, bounded by
    ``ceil(1 / fraction) + 2`` (:func:`max_rounds_per_step`); the per-example quantile is an
    exact order statistic along the flattened feature axis (``top_k`` in parity mode, a bisection
    over float32 bit patterns in fast mode). Examples whose step is finished are masked, and
    examples with ``x == baseline`` return zeros. Round statistics come back with
    ``return_details=True``. Features with ``x_i == b_i`` get exactly zero.
    """
    n_steps, fraction, max_dist, anchors, parity = _check_args(n_steps, fraction, max_dist, anchors, parity)
    accumulator = _acc.as_accumulator(idgi)
    if internal_batch_size is not None:
        check_positive_int(internal_batch_size, "internal_batch_size")
    problem = eng.prepare(model, inputs, target, layer=layer)
    flat_base = prepare_baselines(baseline, problem.flat_x, problem.structure, seed=seed)
    if int(flat_base[0].shape[0]) != 1:
        raise ValueError(
            f"baseline: Guided IG takes one baseline per example (a scalar, an array shaped like one example, or "
            f"[B, ...]); got {int(flat_base[0].shape[0])} baselines. Average several Guided IG runs instead."
        )
    tables_np = guided_ig_tables(n_steps, max_dist, anchors)
    tables = {k: tf.constant(v, tf.float64) for k, v in tables_np.items()}
    anchored = anchors is not None
    key = (
        "guided_integrated_gradients",
        n_steps,
        fraction,
        anchored,
        parity,
        bool(return_convergence_delta),
        problem.batch_size,
        _acc.cache_token(accumulator),
    )

    def builder():
        return _build(problem, n_steps, fraction, parity, anchored, bool(return_convergence_delta), accumulator)

    def finish(result):
        attr, delta, rounds, hit = result
        rounds = rounds.numpy()
        details = dict(
            max_rounds=int(rounds[0]),
            mean_rounds=float(rounds[1]) / n_steps,
            bound=max_rounds_per_step(fraction),
            bound_hit=bool(hit),
        )
        if details["bound_hit"]:
            warnings.warn(
                f"guided_integrated_gradients: a step needed more than {details['bound']} selection rounds "
                f"(fraction={fraction}) and was cut off; the path catches up at the next step's window floor",
                RuntimeWarning,
                stacklevel=3,
            )
        out = [problem.pack(attr)]
        if return_convergence_delta:
            out.append(delta)
        if return_details:
            out.append(details)
        return out[0] if len(out) == 1 else tuple(out)

    return eng.Plan(problem, key, builder, (tables, flat_base), jit_compile, finish)


guided_ig = guided_integrated_gradients


SPEC = MethodSpec(
    name="guided_integrated_gradients",
    function=guided_integrated_gradients,
    aliases=("guided_ig",),
    summary=(
        "adaptive path moving low-gradient features first; `max_dist` window, `fraction`, `anchors=K` "
        "(GIG(K)); `parity=True` reproduces PAIR"
    ),
    paper="A. Kapishnikov, S. Venugopalan, B. Avci, B. Wedin, M. Terry, T. Bolukbasi, Guided Integrated "
    "Gradients: an Adaptive Path Method for Removing Noise, CVPR 2021",
    completeness="F(x) − F(x') (loose on max-pool models, by design)",
    details=True,
    # Measured, not fixed (issue 9 defect 11, re-measured for issue 21 after the rounds moved to module-level XLA
    # clusters without float reductions): Guided IG shares no state across rows (with a model called row by row, an
    # example's result inside a batch is bit-identical to its result alone, fast and parity modes;
    # tests/methods/test_guided_ig.py). Any difference comes from the model: oneDNN picks batch-size-dependent
    # kernels, so input gradients of a batch of 3 and of 1 can differ by ~4e-9, and Guided IG's discrete choices
    # amplify that on max-pool models with many near-ties. Measured max|batch - single| / max|single| (B = 3,
    # 8 / 50 / 200 steps, fast and parity): the contract suite's max-pool CNN (zoo.maxpool_cnn(16)) 1.6e-7 at most;
    # a random-weight 48x48 max-pool/BatchNorm CNN 2e-7 at 8-50 steps, 0.15 (fast) and 0.06 (parity) at 200-50
    # steps (issue 9 measured 0.26 there); MobileNetV3Small (96x96, 8 and 32 steps) 0.0. Smooth models stay at
    # float rounding.
    batch_tolerance=0.3,
    per_example_options={"baseline": tile_baseline},
    baseline_option="baseline",
    test_options={"n_steps": 8},
)
