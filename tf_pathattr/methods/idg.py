"""Integrated Decision Gradients (IDG): IG weighted by the path derivative of the logit, with adaptive sampling.

.. math::

    IDG_i(x) = \\Delta x_i \\int_0^1 \\partial_i F(\\gamma(\\alpha))\\, F'(\\alpha)\\, d\\alpha,
    \\qquad \\gamma(\\alpha) = x' + \\alpha \\Delta x,\\quad F'(\\alpha) = \\nabla F(\\gamma(\\alpha)) \\cdot \\Delta x

approximated by ``IDG = Delta x * sum_k w_k s_k g_k`` over M fine samples ``alpha_k`` that are placed
where the logit changes fastest along the path:

1. **Coarse pass** (forward only): ``L_j = F(gamma(a_j))``, ``a_j = j / (N - 1)``, ``j = 0..N-1``;
   segment slopes ``S_j = (L_{j+1} - L_j) / Delta``, ``Delta = 1 / (N - 1)``.
2. **Allocation** of the M samples over the N - 1 segments: ``S^_j = (S_j - lo) / (hi - lo)`` with
   ``lo = min(0, min S)``, ``hi = max(0, max S)`` (the released code's implicit 0 from its sentinel
   entry), ``f_j = M S^_j / sum S^``, ``n_j = floor(f_j)``; the remainder goes one each to the
   zero-floor segments in descending ``f`` (ties: lowest j), then by largest fractional part
   (ties: lowest j), so ``sum n_j = M`` always. If ``max S^ <= 1e-3`` (F constant, or decreasing
   at a numerically constant rate, where the released code divides 0 by 0) the allocation is
   uniform: ``n_j = floor(M / (N-1))``, the remainder to the lowest j.
3. **Placement** (``placement="segment"``): segment j gets ``n_j`` equal sub-cells of
   ``[a_j, a_{j+1}]``; ``alpha = a_j + (r + o) Delta / n_j`` with ``o = 0`` (``sample_point="left"``) or
   ``1/2`` (``"mid"``), weight ``w = Delta / n_j``. ``placement="reference"`` reproduces the released
   code's drift (quirk Q1): the start only advances over non-empty segments.
4. **Fine pass** (forward + backward): ``g_k = grad F(gamma(alpha_k))`` and the importance
   ``s_k = g_k . Delta x`` (``importance="exact"``, the 2023 code) or the finite difference
   ``(F_k - F_{k-1}) / (alpha_k - alpha_{k-1})`` with ``s_0 = 0`` (the 2024 code).

Exact identity (exact importance, any model): ``sum_i IDG_i = sum_k w_k s_k^2 >= 0``; IDG is not
complete. For a linear model ``IDG = (F(x) - F(x')) * IG`` exactly. ``normalize="completeness"``
rescales each example so that ``sum_i IDG_i = F(x) - F(x')`` (third-party convention, opt-in).

``reference_compat=True`` reproduces the released ``IDG`` function and its quirks: a sentinel entry ``S_0 = 0`` kept in the allocation (it can win a remainder
slot), the released remainder fill (descending ``f`` among zero-count entries, ties broken from the
highest index, as ``flip(sort(.))`` does), reference placement, finite-difference importance,
left points and an extra ``1 / M`` factor; it requires ``n_coarse == n_steps``. The degenerate-path
guard (uniform allocation over the real entries) replaces the released code's 0/0 (NaN) in that mode too.

References
----------
C. Walker, S. Jha, K. Chen, R. Ewetz, "Integrated Decision Gradients: Compute Your Attributions
Where the Model Makes Its Decision", AAAI 2024, arXiv 2305.20052. Released code:
``chasewalker26/Integrated-Decision-Gradients``, ``util/attribution_methods/saliencyMethods.py``.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import gradients as eng
from ..engine.shapes import check_choice, check_positive_int, prepare_baselines
from .registry import MethodSpec, tile_baseline

__all__ = ["integrated_decision_gradients", "allocate", "allocate_from_logits", "place"]

IMPORTANCE = ("exact", "finite_difference")
PLACEMENT = ("segment", "reference")
SAMPLE_POINT = ("left", "mid")
NORMALIZE = (None, "completeness")
DEGENERATE_TOL = 1e-3


def _ranks(order):
    """Inverse permutation, row-wise: ``rank[b, order[b, i]] = i``."""
    return tf.argsort(order, axis=-1, stable=True)


def allocate(slopes, n_samples: int, reference: bool = False):
    """Sample counts per entry from the coarse slopes (pure tensor ops, per example).

    Parameters
    ----------
    slopes : ``[B, E]`` float32
        Segment slopes ``S_j`` (``reference=False``), or the released code's entries with the
        sentinel ``S_0 = 0`` first (``reference=True``).
    n_samples : int
        The fine budget M.
    reference : bool
        Released remainder rule (one pass, ties from the highest index, the sentinel entry can
        win) instead of the generalised rule (two passes, ties to the lowest index).

    Returns
    -------
    counts : ``[B, E]`` int32, ``f`` : ``[B, E]`` float32 (the fractional allocation).
    """
    m = int(n_samples)
    e = int(slopes.shape[-1])
    lo = tf.minimum(tf.reduce_min(slopes, axis=-1, keepdims=True), 0.0)
    hi = tf.maximum(tf.reduce_max(slopes, axis=-1, keepdims=True), 0.0)
    span = hi - lo
    norm = tf.maximum(tf.math.divide_no_nan(slopes - lo, span), 0.0)  # >= 0 also after compiled rounding
    if reference:
        norm = tf.concat([tf.zeros_like(norm[:, :1]), norm[:, 1:]], axis=1)  # the sentinel gets 0
    degenerate = tf.reduce_max(norm, axis=-1) <= DEGENERATE_TOL  # [B]
    total = tf.reduce_sum(norm, axis=-1, keepdims=True)
    f = tf.math.divide_no_nan(m * norm, total)
    f = tf.where(degenerate[:, None], tf.zeros_like(f), f)
    counts = tf.cast(tf.floor(f), tf.int32)
    remaining = m - tf.reduce_sum(counts, axis=-1, keepdims=True)  # [B, 1]
    zero = tf.equal(counts, 0)
    key = tf.where(zero, f, -tf.ones_like(f))
    if reference:  # flip(sort(key)): descending, ties from the highest index
        order = tf.reverse(tf.argsort(key, axis=-1, stable=True), axis=[-1])
    else:
        order = tf.argsort(key, axis=-1, direction="DESCENDING", stable=True)
    filled = (_ranks(order) < remaining) & zero
    counts = counts + tf.cast(filled, tf.int32)
    if not reference:  # what is still left: largest fractional part among the others (ties -> lowest j)
        remaining = m - tf.reduce_sum(counts, axis=-1, keepdims=True)
        frac = f - tf.floor(f)
        key2 = tf.where(filled, -tf.ones_like(f), frac)
        order2 = tf.argsort(key2, axis=-1, direction="DESCENDING", stable=True)
        counts = counts + tf.cast((_ranks(order2) < remaining) & ~filled, tf.int32)
    # degenerate path: uniform over the real entries, remainder to the lowest j
    first = 1 if reference else 0
    real = e - first
    base, rem = divmod(m, real)
    uniform = np.zeros(e, np.int32)
    uniform[first:] = base
    uniform[first : first + rem] += 1
    counts = tf.where(degenerate[:, None], tf.constant(uniform)[None], counts)
    return counts, f


def allocate_from_logits(coarse, n_samples: int, reference: bool = False):
    """Sample counts ``[B, E]`` from the coarse logits ``[B, N]`` (the method's step 2).

    The allocation is invariant to a positive scale of the slopes (``S^`` is min-max normalised), so
    it is computed from the logit *differences* ``L_{j+1} - L_j`` rather than the slopes
    ``(L_{j+1} - L_j) / Delta``: a float32 subtraction of the same two numbers is exact and the
    same in every compiled form, while XLA may evaluate the division in two fused kernels with
    different rounding, so that ``S_j - min S`` came out as ``-1e-8`` for the minimum and ``floor``
    turned it into a count of ``-1`` (eager and ``jit_compile=True`` placed the samples
    differently). Normalised values are also clamped at 0.
    """
    diffs = coarse[:, 1:] - coarse[:, :-1]  # [B, N-1], proportional to the slopes
    if reference:
        diffs = tf.concat([tf.zeros_like(diffs[:, :1]), diffs], axis=1)  # the released sentinel entry
    counts, _ = allocate(diffs, n_samples, reference=reference)
    return counts


def place(
    counts, n_samples: int, delta: float, placement: str = "segment", sample_point: str = "left", first_left: int = 0
):
    """Fine ``alpha [B, M]`` and weights ``w [B, M]`` from the counts (sorted in alpha, vectorised).

    Entry ``j`` covers ``[(j - first_left) Delta, (j - first_left + 1) Delta]`` in segment placement
    (``first_left = 1`` when entry 0 is the released code's sentinel); in reference placement the
    m-th non-empty entry starts at ``m Delta`` (quirk Q1). Samples beyond ``sum(counts)`` (never
    produced by :func:`allocate`) get weight 0.
    """
    m = int(n_samples)
    e = int(counts.shape[-1])
    batch = tf.shape(counts)[0]
    cum = tf.cumsum(counts, axis=-1)
    start = cum - counts
    k = tf.broadcast_to(tf.range(m, dtype=tf.int32)[None], [batch, m])
    j = tf.searchsorted(cum, k, side="right", out_type=tf.int32)
    valid = j < e
    jc = tf.minimum(j, e - 1)
    n_j = tf.cast(tf.gather(counts, jc, batch_dims=1), tf.float32)
    r = tf.cast(k - tf.gather(start, jc, batch_dims=1), tf.float32)
    if placement == "segment":
        left = tf.cast(jc - first_left, tf.float32) * delta
    else:
        nonempty = tf.cast(counts > 0, tf.int32)
        before = tf.cumsum(nonempty, axis=-1, exclusive=True)
        left = tf.cast(tf.gather(before, jc, batch_dims=1), tf.float32) * delta
    off = 0.0 if sample_point == "left" else 0.5
    step = tf.math.divide_no_nan(tf.constant(delta, tf.float32), n_j)
    alpha = left + (r + off) * step
    w = tf.where(valid, step, tf.zeros_like(step))
    alpha = tf.where(valid, alpha, tf.ones_like(alpha))
    return alpha, w


@overload
def integrated_decision_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: Literal[False] = ...,
    baseline: Any = ...,
    n_steps: int = ...,
    n_coarse: Any = ...,
    reference_compat: bool = ...,
    importance: str = ...,
    placement: str = ...,
    sample_point: str = ...,
    normalize: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
) -> Attributions: ...


@overload
def integrated_decision_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: Literal[True],
    baseline: Any = ...,
    n_steps: int = ...,
    n_coarse: Any = ...,
    reference_compat: bool = ...,
    importance: str = ...,
    placement: str = ...,
    sample_point: str = ...,
    normalize: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
) -> tuple[Attributions, dict]: ...


@overload
def integrated_decision_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: bool = ...,
    baseline: Any = ...,
    n_steps: int = ...,
    n_coarse: Any = ...,
    reference_compat: bool = ...,
    importance: str = ...,
    placement: str = ...,
    sample_point: str = ...,
    normalize: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
) -> Any: ...


@eng.planned
def integrated_decision_gradients(
    model,
    inputs,
    target=None,
    *,
    baseline=0.0,
    n_steps: int = 50,
    n_coarse=None,
    reference_compat: bool = False,
    importance: str = "exact",
    placement: str = "segment",
    sample_point: str = "left",
    normalize=None,
    internal_batch_size=None,
    return_details: bool = False,
    jit_compile: bool = False,
    layer=None,
    seed=None,
):
    """Integrated Decision Gradients with adaptive sample allocation (bug-free default).

    Parameters
    ----------
    model : keras.Model or callable
    inputs : array-like ``[B, ...]`` or list / tuple / dict of them (float)
    target : None, int, sequence of B ints, or callable
        The explained scalar F (the logit of the predicted class by default).
    baseline : scalar, array or per-example array (one baseline; default 0)
    n_steps : int
        Fine samples M (gradient evaluations), default 50.
    n_coarse : int, optional
        Coarse forward passes N (default: ``n_steps``); there are N - 1 segments.
    reference_compat : bool
        Reproduce the released code (finite-difference importance, sentinel entry, reference
        placement and fill order, left points, extra ``1/M``); needs ``n_coarse == n_steps``.
        Overrides ``importance``, ``placement`` and ``sample_point``.
    importance : {"exact", "finite_difference"}
        ``s_k = g_k . Delta x`` or ``(F_k - F_{k-1}) / (alpha_k - alpha_{k-1})`` (``s_0 = 0``).
    placement : {"segment", "reference"}
        Samples inside their own segment, or the released code's drifting placement (Q1).
    sample_point : {"left", "mid"}
        Left end or midpoint of each sub-cell.
    normalize : None or "completeness"
        Rescale each example so that ``sum(attr) = F(x) - F(x')``.
    internal_batch_size : int, optional
        Most model rows per call (default 256).
    return_details : bool
        Also return a dict with ``alphas [B, M]``, ``weights [B, M]``, ``counts [B, E]`` (E = N - 1,
        or N with the sentinel in reference mode), ``coarse_logits [B, N]``, ``fine_logits [B, M]``
        and ``importance [B, M]``.
    jit_compile : bool
        Compile the whole method with XLA.
    layer : keras layer, layer name or callable(model) -> layer, optional
        Attribute to this layer's output (e.g. an ``Embedding``): the coarse and fine passes run on
        the straight line from ``baseline`` (in that layer's output space, default zeros) to the
        layer's activations; the raw inputs (integer token ids) are fed unchanged.
    seed : int, optional
        Seed of a random ``tpa.baselines`` recipe (``None``: the recipe's own seed). IDG itself
        draws nothing.

    Returns
    -------
    attributions : tf.Tensor (float32) shaped like ``inputs``; ``(attributions, details)`` with
    ``return_details=True``.

    Notes
    -----
    Cost: N forward-only passes plus M forward+backward passes, each chunked by
    ``internal_batch_size``. There is no convergence delta: IDG is not complete
    (``sum(attr) = sum_k w_k s_k^2``); use ``normalize="completeness"`` for a complete map.
    """
    m = check_positive_int(n_steps, "n_steps")
    n = m if n_coarse is None else check_positive_int(n_coarse, "n_coarse", minimum=2)
    if n < 2:
        raise ValueError(f"n_coarse must be >= 2 (it defaults to n_steps, which is {m}); pass n_coarse explicitly")
    check_choice(importance, "importance", IMPORTANCE)
    check_choice(placement, "placement", PLACEMENT)
    check_choice(sample_point, "sample_point", SAMPLE_POINT)
    check_choice(normalize, "normalize", NORMALIZE)
    compat = bool(reference_compat)
    if compat:
        if n != m:
            raise ValueError(
                f"reference_compat=True needs n_coarse == n_steps (the released code uses one size), "
                f"got n_coarse={n}, n_steps={m}"
            )
        importance, placement, sample_point = "finite_difference", "reference", "left"
    problem = eng.prepare(model, inputs, target, layer=layer)
    flat_base = prepare_baselines(baseline, problem.flat_x, problem.structure, seed=seed)
    if int(flat_base[0].shape[0]) != 1:
        raise ValueError(
            f"baseline: integrated_decision_gradients takes one baseline per example, got "
            f"{int(flat_base[0].shape[0])} stacked baselines"
        )
    flat_base = [b[0] for b in flat_base]
    batch = problem.batch_size
    delta = 1.0 / (n - 1)
    coarse_alphas = tf.constant(np.linspace(0.0, 1.0, n), tf.float32)
    chunk_c = eng.chunk_size(n, batch, internal_batch_size)
    chunk_f = eng.chunk_size(m, batch, internal_batch_size)
    key = (
        "integrated_decision_gradients",
        m,
        n,
        compat,
        importance,
        placement,
        sample_point,
        normalize,
        chunk_c,
        chunk_f,
        bool(return_details),
        batch,
    )

    def builder():
        def fn(flat_x, indices, flat_base, coarse_alphas):
            indices, _ = eng.resolve_indices(problem, flat_x, indices)
            dxs = [x - b for x, b in zip(flat_x, flat_base)]

            def path(a, size):  # a [size, B] or [size] -> list of [size*B, *S]
                out = []
                for b, d in zip(flat_base, dxs):
                    aa = a if a.shape.rank == 2 else tf.broadcast_to(a[:, None], [size, batch])
                    out.append(eng.rows(b[None] + eng.expand_like(aa, d[None]) * d[None], size, batch))
                return out

            # 1. coarse pass, forward only
            def coarse_body(start, size, logits):
                a = tf.slice(coarse_alphas, [start], [size])
                s = tf.reshape(eng.scores(problem, path(a, size), indices), [size, batch])
                idx = (start + tf.range(size))[:, None]
                return tf.tensor_scatter_nd_update(logits, idx, s)

            coarse = eng.chunked_loop(n, chunk_c, coarse_body, tf.zeros((n, batch), tf.float32))
            coarse = tf.transpose(coarse)  # [B, N]
            # 2. allocation and placement
            counts = allocate_from_logits(coarse, m, compat)
            if compat:
                alpha, w = place(counts, m, delta, "reference", "left", first_left=1)
            else:
                alpha, w = place(counts, m, delta, placement, sample_point, first_left=0)
            alpha_t, w_t = tf.transpose(alpha), tf.transpose(w)  # [M, B]

            # 3. fine pass
            def fine_body(start, size, carry):
                acc, f_prev, a_prev, f_all, s_all = carry
                a = tf.slice(alpha_t, [start, 0], [size, -1])
                wk = tf.slice(w_t, [start, 0], [size, -1])
                f, grads = eng.score_and_gradients(problem, path(a, size), indices)
                f = tf.reshape(f, [size, batch])
                gs = [eng.unrows(g, size, batch) for g in grads]
                if importance == "exact":
                    s = tf.add_n(
                        [tf.reduce_sum(tf.reshape(g * d[None], [size, batch, -1]), axis=-1) for g, d in zip(gs, dxs)]
                    )
                else:
                    fp = tf.concat([f_prev[None], f[:-1]], axis=0)
                    ap = tf.concat([a_prev[None], a[:-1]], axis=0)
                    s = tf.math.divide_no_nan(f - fp, a - ap)
                    k = start + tf.range(size)
                    s = tf.where(tf.equal(k, 0)[:, None], tf.zeros_like(s), s)
                coef = wk * s
                acc = [acc_i + tf.reduce_sum(eng.expand_like(coef, g) * g, axis=0) for acc_i, g in zip(acc, gs)]
                idx = (start + tf.range(size))[:, None]
                f_all = tf.tensor_scatter_nd_update(f_all, idx, f)
                s_all = tf.tensor_scatter_nd_update(s_all, idx, s)
                return acc, f[-1], a[-1], f_all, s_all

            zeros_mb = tf.zeros((m, batch), tf.float32)
            carry = (
                [tf.zeros_like(x) for x in flat_x],
                tf.zeros((batch,), tf.float32),
                tf.zeros((batch,), tf.float32),
                zeros_mb,
                zeros_mb,
            )
            acc, _, _, f_all, s_all = eng.chunked_loop(m, chunk_f, fine_body, carry)
            attr = [a * d for a, d in zip(acc, dxs)]
            if compat:
                attr = [a / m for a in attr]
            if normalize == "completeness":
                total = tf.add_n([tf.reduce_sum(tf.reshape(a, [batch, -1]), axis=1) for a in attr])
                sign = tf.where(total >= 0, tf.ones_like(total), -tf.ones_like(total))
                scale = (coarse[:, -1] - coarse[:, 0]) / (total + 1e-12 * sign)
                attr = [a * eng.expand_like(scale, a) for a in attr]
            details = (alpha, w, counts, coarse, tf.transpose(f_all), tf.transpose(s_all))
            return attr, details

        return fn

    def finish(result):
        attr, details = result
        attr = problem.pack(attr)
        if return_details:
            names = ("alphas", "weights", "counts", "coarse_logits", "fine_logits", "importance")
            return attr, dict(zip(names, details))
        return attr

    return eng.Plan(problem, key, builder, (flat_base, coarse_alphas), jit_compile, finish)


SPEC = MethodSpec(
    name="integrated_decision_gradients",
    function=integrated_decision_gradients,
    aliases=("idg",),
    summary=(
        "IG weighted by the path derivative of the logit, samples placed where the logit changes; not "
        'complete (Σ IDG = Σ_k w_k s_k²; `normalize="completeness"` rescales); `reference_compat=True` '
        "for the released code"
    ),
    paper="C. Walker, S. Jha, K. Chen, R. Ewetz, Integrated Decision Gradients: Compute Your Attributions "
    "Where the Model Makes Its Decision, AAAI 2024",
    details=True,
    per_example_options={"baseline": tile_baseline},
    baseline_option="baseline",
    test_options={"n_steps": 8},
)
