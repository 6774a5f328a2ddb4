"""Discretized Integrated Gradients: a monotone path through vocabulary embeddings.

The straight IG path in embedding space passes through points far from every word. DIG replaces
it, token by token, by a path whose interior points are *anchors* taken from the embedding matrix
``E`` (the vocabulary) and made monotone between baseline and input:

* from the input word ``w_0``, ``m = n_steps`` times: among the ``n_neighbors`` nearest vocabulary
  rows of the current word (itself, the baseline word and words already on the path excluded), pick
  the anchor ``a`` that is closest to monotone, ``strategy="greedy"`` (smallest
  ``||a - mono(a)||``) or ``"maxcount"`` (most monotone dimensions); ``mono(a)`` keeps the
  dimensions of ``a`` lying between the baseline and the current word and sets the others to
  ``cur - (cur - base) / m``; no candidate left -> the baseline;
* the path point is ``mono(a)`` relative to the previous path point; the path
  ``[baseline, mono_m, ..., mono_1, input]`` (``m + 2`` points) runs from baseline to input and can
  be refined ``factor`` times by inserting midpoints;
* ``DIG_i = sum_k dF/dx_i(p_k) (p_{k+1,i} - p_{k,i})`` (left Riemann sum along the polyline).

Completeness: ``sum DIG = F(x) - F(baseline)`` up to the left-Riemann error (exact for linear F).
A token whose input equals its baseline (special tokens, padding) has a constant path and gets 0.

The path is discrete (nearest-neighbour search), so it is built on the host in numpy; the gradient
loop over its points is one compiled ``tf.while_loop``, batched over examples and chunked by
``internal_batch_size``. Because the path depends on the input values it cannot be embedded in a
SavedModel endpoint.

Reference: S. Sanyal, X. Ren, "Discretized Integrated Gradients for Explaining Language Models",
EMNLP 2021, arXiv 2108.13654 (released as INK-USC/DIG; defaults ``steps=30``, ``factor=0``,
500 neighbours, greedy). The released scripts explain the largest logit at each path point; here
the target is resolved once on the input, as for every method.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import gradients as eng
from ..engine.paths import completeness_delta
from ..engine.shapes import check_choice, check_positive_int, prepare_baselines
from .registry import MethodSpec, tile_baseline

__all__ = ["discretized_integrated_gradients", "dig_path", "STRATEGIES"]

STRATEGIES = ("greedy", "maxcount")


def _monotone_dims(base, cur, v):
    """Dimensions where ``v`` lies between ``base`` and ``cur`` (equal dims must stay equal)."""
    return np.where(base > cur, (v <= base) & (v >= cur), np.where(base < cur, (v >= base) & (v <= cur), v == base))


def _monotonize(base, cur, v, steps):
    ok = _monotone_dims(base, cur, v)
    return np.where(ok, v, cur - (cur - base) / steps)


def _row_id(table, v):
    """Index of a vocabulary row equal to ``v`` (``None`` when ``v`` is not a row of ``table``)."""
    hit = np.nonzero(np.all(table == v[None], axis=1))[0]
    return int(hit[0]) if hit.size else None


def dig_path(
    x, base, table, n_steps: int = 30, strategy: str = "greedy", n_neighbors: int = 500, factor: int = 0, sq_norms=None
):
    """The DIG path of one token: ``[2**factor * (n_steps + 1) + 1, d]`` points from ``base`` to ``x``.

    ``x``, ``base``: ``[d]`` (float64 recommended); ``table``: vocabulary embeddings ``[V, d]``.
    """
    m = int(n_steps)
    n_pts = m + 2
    if np.array_equal(x, base):
        path = np.repeat(x[None], n_pts, axis=0)
    else:
        if sq_norms is None:
            sq_norms = np.sum(table * table, axis=1)
        base_id = _row_id(table, base)
        cur, cur_id = x, _row_id(table, x)
        used = {cur_id} if cur_id is not None else set()
        anchors = []
        k = min(int(n_neighbors), table.shape[0])
        for _ in range(m):
            if (base_id is not None and cur_id == base_id) or np.array_equal(cur, base):
                nxt, nxt_id = base, base_id
            else:
                dist = sq_norms - 2.0 * table @ cur + np.dot(cur, cur)
                if cur_id is not None:
                    dist[cur_id] = np.inf  # a word is not its own neighbour
                order = np.argsort(dist, kind="stable")[:k]
                order = order[np.isfinite(dist[order])]
                if base_id is not None:
                    order = order[order != base_id]
                if order.size == 0:
                    nxt, nxt_id = base, base_id
                else:
                    cand = table[order]
                    if strategy == "greedy":
                        score = np.sqrt(np.sum((cand - _monotonize(base[None], cur[None], cand, m)) ** 2, axis=1))
                    else:
                        score = -np.sum(_monotone_dims(base[None], cur[None], cand), axis=1).astype(np.float64)
                    ranked = order[np.argsort(score, kind="stable")]
                    ranked = [j for j in ranked.tolist() if j not in used]
                    if not ranked:
                        nxt, nxt_id = base, base_id
                    else:
                        nxt_id = ranked[0]
                        nxt = table[nxt_id]
            if nxt_id is not None:
                used.add(nxt_id)
            anchors.append(nxt)
            cur, cur_id = nxt, nxt_id
        points = [x]
        for a in anchors:
            points.append(_monotonize(base, points[-1], a, m))
        points.append(base)
        path = np.stack(points[::-1])
    for _ in range(int(factor)):
        mid = 0.5 * (path[:-1] + path[1:])
        up = np.empty((2 * path.shape[0] - 1, path.shape[1]), path.dtype)
        up[0::2], up[1::2] = path, mid
        path = up
    return path


@overload
def discretized_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    baseline: Any = ...,
    n_steps: int = ...,
    strategy: str = ...,
    n_neighbors: int = ...,
    factor: int = ...,
    embedding_matrix: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    return_path: bool = ...,
    seed: int | None = ...,
) -> Attributions: ...


@overload
def discretized_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    baseline: Any = ...,
    n_steps: int = ...,
    strategy: str = ...,
    n_neighbors: int = ...,
    factor: int = ...,
    embedding_matrix: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    return_path: bool = ...,
    seed: int | None = ...,
) -> tuple[Attributions, tf.Tensor]: ...


@overload
def discretized_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: bool = ...,
    baseline: Any = ...,
    n_steps: int = ...,
    strategy: str = ...,
    n_neighbors: int = ...,
    factor: int = ...,
    embedding_matrix: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    return_path: bool = ...,
    seed: int | None = ...,
) -> Any: ...


def discretized_integrated_gradients(
    model,
    inputs,
    target=None,
    *,
    baseline=0.0,
    n_steps: int = 30,
    strategy: str = "greedy",
    n_neighbors: int = 500,
    factor: int = 0,
    embedding_matrix=None,
    internal_batch_size=None,
    return_convergence_delta: bool = False,
    jit_compile: bool = False,
    layer=None,
    return_path: bool = False,
    seed=None,
):
    """Discretized Integrated Gradients (DIG) over the tokens (axis 1) of ``inputs`` or a layer's output.

    Parameters
    ----------
    model, inputs, target, internal_batch_size, jit_compile
        As in :func:`tf_pathattr.integrated_gradients`. The attributed tensor is ``[B, m, ...]`` with
        one token vector per position on axis 1 (``layer=`` the token embedding for text models).
    baseline : scalar, ``[m, ...]`` or per-example ``[B, m, ...]``
        The path start per token (the released code uses the ``[PAD]`` embedding; see
        :func:`tf_pathattr.text.token_attributions`). Tokens equal to their baseline get 0.
    n_steps : int
        Anchors per token (``m``, default 30): ``m + 2`` path points.
    strategy : {"greedy", "maxcount"}
        Anchor choice (closest to its monotonized self / most monotone dimensions).
    n_neighbors : int
        Nearest vocabulary rows searched per step (default 500).
    factor : int
        Insert midpoints ``factor`` times (``2**factor * (m + 1) + 1`` points).
    embedding_matrix : array ``[V, ...]``, optional
        The vocabulary anchors; default: the ``embeddings`` weight of ``layer``.
    return_convergence_delta : bool
        Also return ``sum(attr) - (F(x) - F(baseline))`` per example.
    return_path : bool
        Also return the path points ``[P, B, m, ...]`` (numpy), after the delta if any.

    seed : int, optional
        Seed of a random ``tpa.baselines`` recipe given as ``baseline`` (``None``: the recipe's own seed).

    Returns
    -------
    attributions ``[B, m, ...]`` (and delta ``[B]``, and the path)
    """
    check_choice(strategy, "strategy", STRATEGIES)
    n_steps = check_positive_int(n_steps, "n_steps")
    n_neighbors = check_positive_int(n_neighbors, "n_neighbors")
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 0:
        raise ValueError(f"factor must be an int >= 0, got {factor!r}")
    problem = eng.prepare(model, inputs, target, layer=layer)
    if len(problem.flat_x) != 1:
        raise ValueError("discretized_integrated_gradients explains one sequence input (use layer= for text models)")
    x = problem.flat_x[0]
    if x.shape.rank < 3:
        raise ValueError(
            f"inputs: discretized_integrated_gradients needs token vectors [B, m, d...], got shape "
            f"{tuple(x.shape)}; token ids (integer or float) have no gradient path: pass "
            "layer=<the token embedding> to attribute to its output"
        )
    if embedding_matrix is None:
        table = getattr(problem.layer, "embeddings", None) if problem.layer is not None else None
        if table is None:
            raise ValueError(
                "embedding_matrix: DIG needs the vocabulary embeddings [V, d]; pass embedding_matrix= or "
                "layer= an Embedding layer"
            )
    else:
        table = embedding_matrix
    table = np.asarray(tf.cast(tf.convert_to_tensor(table), tf.float32)).astype(np.float64)
    batch, m = problem.batch_size, int(x.shape[1])
    feat = tuple(x.shape[2:])
    d = int(np.prod(feat))
    if table.ndim < 2 or int(np.prod(table.shape[1:])) != d:
        raise ValueError(
            f"embedding_matrix must be [V, {', '.join(map(str, feat))}] (one row per vocabulary token), "
            f"got shape {table.shape}"
        )
    table = table.reshape(table.shape[0], d)
    flat_base = prepare_baselines(baseline, problem.flat_x, problem.structure, seed=seed)
    if flat_base[0].shape[0] != 1:
        raise ValueError("discretized_integrated_gradients takes a single baseline (got several)")
    x_np = x.numpy().astype(np.float64).reshape(batch, m, d)
    b_np = flat_base[0][0].numpy().astype(np.float64).reshape(batch, m, d)
    sq = np.sum(table * table, axis=1)
    paths = np.stack(
        [
            np.stack(
                [dig_path(x_np[i, t], b_np[i, t], table, n_steps, strategy, n_neighbors, factor, sq) for t in range(m)],
                axis=1,
            )
            for i in range(batch)
        ],
        axis=1,
    )  # [P, B, m, d]
    n_pts = paths.shape[0]
    path = tf.constant(paths.reshape((n_pts, batch, m) + feat), tf.float32)
    chunk = eng.chunk_size(n_pts - 1, batch, internal_batch_size)
    key = ("dig", n_pts, chunk, bool(return_convergence_delta), batch)

    def builder():
        def fn(flat_x, indices, path):
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)

            def body(start, size, acc):
                pts = tf.slice(path, [start] + [0] * (path.shape.rank - 1), [size] + path.shape[1:].as_list())
                nxt = tf.slice(path, [start + 1] + [0] * (path.shape.rank - 1), [size] + path.shape[1:].as_list())
                _, (g,) = eng.score_and_gradients(problem, [eng.rows(pts, size, batch)], indices)
                return acc + tf.reduce_sum(eng.unrows(g, size, batch) * (nxt - pts), axis=0)

            acc = eng.chunked_loop(n_pts - 1, chunk, body, tf.zeros_like(flat_x[0]))
            if not return_convergence_delta:
                return [acc], tf.zeros((batch,), tf.float32)
            return [acc], completeness_delta(problem, flat_x, [path[0][None]], indices, [acc], out_x)

        return fn

    out = eng.run_packed(problem, key, builder, (path,), jit_compile, return_convergence_delta)
    if return_path:
        return (
            (out + (paths.reshape((n_pts, batch, m) + feat),))
            if isinstance(out, tuple)
            else (out, paths.reshape((n_pts, batch, m) + feat))
        )
    return out


def _test_vocabulary(x):
    """Sixteen fixed uniform token vectors shaped like the probe's tokens ``x[:, i]`` (contract tests)."""
    return np.random.default_rng(3).uniform(0.0, 1.0, size=(16,) + tuple(x.shape[2:])).astype(np.float32)


SPEC = MethodSpec(
    name="discretized_integrated_gradients",
    function=discretized_integrated_gradients,
    aliases=("dig",),
    summary="monotone path through vocabulary embeddings (anchors from the embedding matrix), greedy or maxcount",
    paper="S. Sanyal, X. Ren, Discretized Integrated Gradients for Explaining Language Models, EMNLP 2021",
    completeness="F(x) − F(x') (left Riemann sum on the anchor path)",
    multi_input="discretized_integrated_gradients explains one sequence input (use layer= for text models)",
    exportable="discretized_integrated_gradients builds its path on the host (nearest-neighbour search in the "
    "embedding matrix); it cannot be embedded in a SavedModel endpoint",
    host_side=True,
    per_example_options={"baseline": tile_baseline},
    baseline_option="baseline",
    test_options={"n_steps": 4, "n_neighbors": 8, "embedding_matrix": _test_vocabulary},
)
