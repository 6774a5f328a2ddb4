"""MuFidelity (faithfulness correlation; Bhatt, Weller, Moura, IJCAI 2020).

.. math:: \\mu_F = corr_S\\Big(\\sum_{i \\in S} \\Phi_i,\\; f(x) - f(x_{[x_S = \\bar x_S]})\\Big)

the correlation, over random subsets ``S`` of the input, between the attribution mass of ``S`` and
the drop of the score when ``S`` is set to a baseline ``x_bar``. Higher is better.

Protocol (``nb_samples`` subsets per example, default 200):

* **images**: a ``grid_size x grid_size`` grid of cells (9 x 9) over the pixels; cell ``(i, j)``
  holds pixel rows ``h`` with ``min(floor((h + 1/2) G / H), G - 1) = i`` (what
  ``tf.image.resize(method="nearest")`` of the cell grid gives, xplique's construction) and the same
  for columns; a removed cell is set to the baseline in every channel;
* **sequences** (``units="tokens"``): ``grid_size`` cells along the tokens, each removing whole token
  vectors (xplique's time-series grid also splits the feature axis: ``grid_size x features`` cells);
* **tabular rows**: one cell per feature (``grid_size`` is ignored);
* ``subset="bernoulli"`` (default, xplique since 2023): each cell is removed independently with
  probability ``subset_percent`` (0.2); ``subset="exact"``: exactly ``round(subset_percent * cells)``
  cells (the paper's fixed ``|S|``);
* ``correlation="pearson"`` (default, the paper's and Quantus's) or ``"spearman"`` (xplique's since
  2021: Pearson of average ranks); a constant vector gives 0 and ``constant[b] = True``.

``attr_k = sum(Phi * removed_k)`` (a ``[B, H, W]`` map counts once per pixel), ``drop_k = f(x) -
f(x~_k)`` with ``f`` the metric's ``score`` (default the raw explained output, as xplique's
``Σ model(x) · targets``). Parity with xplique: ``correlation="spearman"``, the defaults otherwise;
xplique draws its masks with unseeded ``tf.random.uniform`` and resizes them, here the cell uniforms
are drawn on the host from ``numpy.random.default_rng([seed, example])`` (the same masks whatever
the batch) and mapped to pixels by the index formula above.

Reference: U. Bhatt, A. Weller, J. M. F. Moura, "Evaluating and Aggregating Feature-based Model
Explanations", IJCAI 2020, arXiv 2005.00631 (Definition 3); xplique ``metrics.MuFidelity``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.shapes import check_choice, check_positive_int
from . import _common as C

__all__ = ["MuFidelityResult", "mu_fidelity", "grid_cells"]


@dataclass
class MuFidelityResult:
    """``mu_fidelity [B]``; ``drops [B, n]``, ``attribution_sums [B, n]``, ``removed [B, n, cells]``
    (the subsets), ``constant [B]`` (a vector had no variance: the value is 0), ``target``, ``score``."""

    mu_fidelity: np.ndarray
    drops: np.ndarray
    attribution_sums: np.ndarray
    removed: np.ndarray
    constant: np.ndarray
    target: np.ndarray | None
    score: str

    def __getitem__(self, key):
        return getattr(self, key)


def grid_cells(n: int, g: int) -> np.ndarray:
    """Cell index of each of ``n`` positions for ``g`` cells: ``min(floor((i + 1/2) g / n), g - 1)``."""
    i = np.arange(n)
    return np.minimum(np.floor((i + 0.5) * g / n).astype(np.int64), g - 1)


def _pearson(a, b):
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    ok = den > 0
    return np.where(ok, (a * b).sum(-1) / np.where(ok, den, 1.0), 0.0), ~ok


def _ranks(v):
    """Average ranks along the last axis (ties share the mean rank, as scipy.stats.rankdata)."""
    out = np.empty_like(v, dtype=np.float64)
    for idx in np.ndindex(v.shape[:-1]):
        row = v[idx]
        order = np.argsort(row, kind="stable")
        s = row[order]
        r = np.empty(len(row))
        i = 0
        while i < len(row):
            j = i
            while j + 1 < len(row) and s[j + 1] == s[i]:
                j += 1
            r[order[i : j + 1]] = 0.5 * (i + j) + 1.0
            i = j + 1
        out[idx] = r
    return out


def mu_fidelity(
    model,
    inputs,
    attributions,
    target=None,
    *,
    grid_size: int | None = 9,
    subset_percent: float = 0.2,
    baseline=0.0,
    nb_samples: int = 200,
    correlation: str = "pearson",
    subset: str = "bernoulli",
    score="output",
    seed=None,
    removed=None,
    batch_size=None,
    units=None,
    data_format=None,
) -> MuFidelityResult:
    """MuFidelity per example (higher is better); see the module doc.

    Parameters
    ----------
    model, inputs, target
        As for the attribution methods (``target=None``: the class predicted on ``inputs``).
    attributions : shaped like ``inputs`` or one value per unit (``[B, H, W]``)
    grid_size : int or None (one cell per unit)
    subset_percent : float in (0, 1)
    baseline : scalar or array broadcastable to ``inputs`` (0: the mean colour in normalised space)
    nb_samples : int (200)
    correlation : {"pearson", "spearman"}
    subset : {"bernoulli", "exact"}
    score : the shared scoring rule (:mod:`tf_pathattr.metrics._scoring`); default ``"output"``
    seed : int (None = 0)
    removed : bool array ``[B, nb_samples, cells]``, optional
        Explicit subsets (True = set to the baseline), cells in row-major grid order; replaces the
        draws (tests, parity with another implementation).
    units, data_format : as :func:`tf_pathattr.metrics.deletion`
    """
    check_choice(correlation, "correlation", ("pearson", "spearman"))
    check_choice(subset, "subset", ("bernoulli", "exact"))
    C.check_score_name(score)
    if not 0.0 < float(subset_percent) < 1.0:
        raise ValueError(f"subset_percent must be in (0, 1), got {subset_percent!r}")
    problem = C.prepare_single(model, inputs, target)
    x = problem.flat_x[0]
    shape = tuple(x.shape)
    batch = problem.batch_size
    layout = C.resolve_layout(shape, units, data_format, model=model)
    scoring = C.resolve_scoring(problem, score, default="output")
    unit_map = layout.unit_map(attributions)  # [B, *grid], channel sums
    grid = layout.grid
    if layout.kind == "features" or grid_size is None:
        cell_of = np.arange(layout.n_units).reshape(grid)
        n_cells = layout.n_units
    else:
        g = check_positive_int(grid_size, "grid_size")
        per_axis = [grid_cells(n, min(g, n)) for n in grid]
        sizes = [min(g, n) for n in grid]
        cell_of = np.zeros(grid, np.int64)
        for ax, idx in enumerate(per_axis):
            stride = int(np.prod(sizes[ax + 1 :]))
            cell_of = cell_of + idx.reshape([-1 if a == ax else 1 for a in range(len(grid))]) * stride
        n_cells = int(np.prod(sizes))
    if removed is not None:
        rem = np.asarray(removed, bool)
        if rem.ndim != 3 or rem.shape[0] != batch or rem.shape[2] != n_cells:
            raise ValueError(f"removed must have shape [{batch}, nb_samples, {n_cells}], got {rem.shape}")
        n = rem.shape[1]
    else:
        n = check_positive_int(nb_samples, "nb_samples")
        base_seed = eng.as_numpy_seed(seed)
        u = np.stack([np.random.default_rng([base_seed, b]).random((n, n_cells)) for b in range(batch)])
        if subset == "bernoulli":
            rem = u < float(subset_percent)
        else:
            m = int(round(float(subset_percent) * n_cells))
            rem = np.argsort(np.argsort(u, axis=-1, kind="stable"), axis=-1) < m
    # attribution mass per cell and per subset
    cell_mass = np.zeros((batch, n_cells))
    np.add.at(cell_mass, (slice(None), cell_of.reshape(-1)), unit_map.reshape(batch, -1))
    attr_sums = (rem * cell_mass[:, None, :]).sum(-1)  # [B, n]

    base = np.asarray(baseline, np.float32)
    try:
        base = np.broadcast_to(base, shape).astype(np.float32)
    except ValueError:
        raise ValueError(f"baseline must broadcast to the inputs' shape {shape}, got shape {base.shape}") from None
    rem_units = np.transpose(rem, (1, 0, 2))  # [n, B, cells]

    def make_points(flat_x, indices, start, size, rem_t, cells_t, base_t):
        xx = flat_x[0]
        r = tf.slice(rem_t, [start, 0, 0], [size, batch, n_cells])
        m = tf.gather(r, cells_t, axis=2)  # [size, B, *grid]
        m = layout.expand(m)
        pts = tf.where(m, base_t[None], xx[None])
        return tf.reshape(pts, [size * batch] + list(shape[1:]))

    key = ("mu_fidelity", n, n_cells, layout.kind, layout.channel_axis)
    scores, indices, clean, _ = C.batched_scores(
        problem,
        key,
        n,
        batch_size,
        make_points,
        (tf.constant(rem_units), tf.constant(cell_of), tf.constant(base)),
        scoring,
        with_clean=True,
    )
    drops = (clean[None, :] - scores).T.astype(np.float64)  # [B, n]
    if correlation == "spearman":
        value, const = _pearson(_ranks(attr_sums), _ranks(drops))
    else:
        value, const = _pearson(attr_sums, drops)
    return MuFidelityResult(
        mu_fidelity=value,
        drops=drops,
        attribution_sums=attr_sums,
        removed=rem,
        constant=const,
        target=C.result_target(problem, indices),
        score=scoring.score,
    )
