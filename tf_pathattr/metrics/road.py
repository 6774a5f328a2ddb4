"""ROAD: Remove And Debias (Rong, Leemann, Borisov, Kasneci, Kasneci, ICML 2022).

Pixels are removed in the order of the attribution and **imputed by a noisy linear (harmonic)
interpolation** of their neighbours, so that the shape of the removed region leaks (almost) no class
information; the accuracy is then measured without retraining.

**Noisy linear imputer** (the authors' ``NoisyLinearImputer``): for every removed pixel ``p`` with
in-image neighbours ``N(p)`` (edge neighbours weight 1/6, diagonal ones 1/12),
``sum_{q in N(p)} w_q v_q - (sum_{q in N(p)} w_q) v_p = 0``; known neighbours go to the right-hand
side. One sparse system per image (``scipy.sparse.linalg.spsolve``), one right-hand side per
channel; then ``noise * N(0, 1)`` is added to every imputed value (``noise = 0.01``, absolute, in
the space the image is in: raw pixels when ``transform`` maps them to the model's input).

**Protocol.** The ranking key is the signed channel sum of the attribution, min-max normalised
(``(s - min) / (max - min + 1e-5)``) plus a tie-break pattern ``tie_break * N(0, 1)`` per image
(``1e-4``), sorted descending (stable). For each fraction ``p`` (the paper's
``0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9``):

* **MoRF** removes the ``floor(H W p)`` most relevant pixels (lower accuracy is better);
* **LeRF** removes the ``floor(H W p)`` least relevant pixels (higher is better).

The score is the accuracy (top-1 class == ``labels``; ``labels=None`` = the class predicted on the
clean input) and the mean probability of the label class (shared scoring rule). The area of each
accuracy curve is the trapezoid over the fractions divided by their span; ``gap = area_lerf -
area_morf`` (higher is better) summarises both orders (the paper compares curves and rank
consistency; this summary is ours).

Differences from the released code (``tleemann/road_evaluation``), on purpose: fractions are always
*removed* fractions (the authors' LeRF at ``p`` keeps the top ``floor(H W p)`` pixels, i.e. removes
``H W - floor(H W p)``, vs. ``floor(H W (1 - p))`` here: they differ by at most one pixel); one
tie-break pattern per image shared by every fraction, so the removed sets are nested
(``reference_compat=True`` draws a new pattern per fraction, as ``run_road`` does); the probability
is that of the label class (the released ``prob_acc`` uses class 0 by mistake); draws are keyed by
``(seed, example, fraction)``. Quantus's ``ROAD`` removes 1 %, 3 %, ..., 99 %, MoRF only, without a
channel sum or tie-break.

Reference: Y. Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution
Methods", ICML 2022, arXiv 2202.00449.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.shapes import check_choice
from . import _common as C

__all__ = ["RoadResult", "road", "noisy_linear_imputation", "road_masks", "DEFAULT_FRACTIONS"]

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
_NEIGHBOURS = [
    (-1, 0, 1 / 6),
    (1, 0, 1 / 6),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (-1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (1, 1, 1 / 12),
]


def noisy_linear_imputation(image, keep, noise: float = 0.01, rng=None) -> np.ndarray:
    """Impute the pixels where ``keep`` is False (see the module doc).

    Parameters
    ----------
    image : ``[H, W, C]`` or ``[H, W]`` array
    keep : bool ``[H, W]`` (True = known pixel)
    noise : standard deviation of the noise added to the imputed values
    rng : ``numpy.random.Generator`` (needed when ``noise > 0``)

    Returns
    -------
    numpy.ndarray
        float64 of the image's shape; kept pixels are unchanged.
    """
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    img = np.asarray(image, np.float64)
    gray = img.ndim == 2
    if gray:
        img = img[:, :, None]
    keep = np.asarray(keep, bool)
    h, w, c = img.shape
    if keep.shape != (h, w):
        raise ValueError(f"keep must have shape {(h, w)}, got {keep.shape}")
    unknown = ~keep
    n_u = int(unknown.sum())
    out = img.copy()
    if n_u == 0:
        return out[:, :, 0] if gray else out
    if n_u == h * w:
        raise ValueError("noisy_linear_imputation: every pixel is removed; the system has no known value")
    index = np.full((h, w), -1, np.int64)
    index[unknown] = np.arange(n_u)
    ys, xs = np.nonzero(unknown)
    me = np.arange(n_u)
    rows, cols, vals = [], [], []
    diag = np.zeros(n_u)
    rhs = np.zeros((n_u, c))
    for dy, dx, wt in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        r, qy, qx = me[inside], ny[inside], nx[inside]
        diag[r] -= wt
        q_unknown = unknown[qy, qx]
        rows.append(r[q_unknown])
        cols.append(index[qy[q_unknown], qx[q_unknown]])
        vals.append(np.full(int(q_unknown.sum()), wt))
        np.add.at(rhs, r[~q_unknown], -wt * img[qy[~q_unknown], qx[~q_unknown]])
    rows.append(me)
    cols.append(me)
    vals.append(diag)
    a = csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_u, n_u))
    sol = spsolve(a, rhs).reshape(n_u, c)
    if noise:
        if rng is None:
            raise ValueError("noisy_linear_imputation: noise > 0 needs rng (a numpy Generator)")
        sol = sol + float(noise) * rng.standard_normal((n_u, c))
    out[ys, xs] = sol
    return out[:, :, 0] if gray else out


def road_masks(
    unit_map, fractions, order: str = "morf", tie_break: float = 1e-4, seed=None, reference_compat: bool = False
) -> np.ndarray:
    """Removed pixels ``[P, B, H, W]`` (True = removed) for signed per-pixel maps ``[B, H, W]``."""
    s = np.asarray(unit_map, np.float64)
    b, h, w = s.shape
    flat = s.reshape(b, -1)
    lo, hi = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    norm = (flat - lo) / (hi - lo + 1e-5)
    base = eng.as_numpy_seed(seed)
    out = np.zeros((len(fractions), b, h * w), bool)
    for j, p in enumerate(fractions):
        for i in range(b):
            key = [base, i, j] if reference_compat else [base, i]
            pattern = tie_break * np.random.default_rng(key + [7]).standard_normal(h * w)
            order_idx = np.argsort(-(norm[i] + pattern), kind="stable")
            k = int(np.floor(h * w * p))
            chosen = order_idx[:k] if order == "morf" else order_idx[h * w - k :]
            out[j, i, chosen] = True
    return out.reshape(len(fractions), b, h, w)


@dataclass
class RoadResult:
    """Per order (``"morf"``, ``"lerf"``): ``accuracy[order] [P]`` (mean over the batch),
    ``correct[order] [B, P]``, ``probability[order] [B, P]`` (of the label class), ``area[order]``
    (trapezoid of the accuracy over the fractions / their span); ``gap = area_lerf - area_morf``
    when both orders ran; ``clean_accuracy``; ``labels [B]``; ``fractions [P]``."""

    fractions: np.ndarray
    accuracy: dict
    correct: dict
    probability: dict
    area: dict
    gap: float | None
    clean_accuracy: float
    labels: np.ndarray

    def __getitem__(self, key):
        return getattr(self, key)


def road(
    model,
    inputs,
    attributions,
    labels=None,
    *,
    fractions=DEFAULT_FRACTIONS,
    order: str = "morf",
    noise: float = 0.01,
    tie_break: float = 1e-4,
    transform=None,
    seed=None,
    reference_compat: bool = False,
    batch_size=None,
    units=None,
    data_format=None,
) -> RoadResult:
    """ROAD accuracy curves (see the module doc).

    Parameters
    ----------
    model : keras.Model or callable
    inputs : images ``[B, H, W, C]`` / ``[B, C, H, W]`` (``data_format``) or ``[B, H, W]``
        (``units="pixels"``), in the space the imputation happens in (the model sees
        ``transform(x)``)
    attributions : shaped like ``inputs`` or ``[B, H, W]``
    labels : None (the class predicted on the clean input), int or B ints
    fractions : fractions of pixels removed, each in (0, 1)
    order : {"morf", "lerf", "both"}
    noise : float, standard deviation of the imputation noise (0.01)
    tie_break : float, scale of the per-image tie-break pattern (1e-4)
    transform : callable, optional; preprocessing applied after imputation (e.g. normalisation)
    seed : int (None = 0)
    reference_compat : bool, a new tie-break pattern per fraction, as the released ``run_road``
    batch_size : most model rows per call (default 256); the ``orders x fractions x B`` imputed
        images are held in memory together (float32), so split very large batches
    """
    from .aupc import _wrap

    check_choice(order, "order", ("morf", "lerf", "both"))
    fr = np.asarray(fractions, np.float64)
    if fr.ndim != 1 or fr.size < 1 or np.any(fr <= 0) or np.any(fr >= 1):
        raise ValueError("fractions must be values in (0, 1) (fractions of pixels removed)")
    if callable(labels) and not isinstance(labels, (int, np.integer)):
        raise ValueError("labels: ROAD measures accuracy against class labels; a callable target names no class")
    fwd = _wrap(model, transform)
    problem = C.prepare_single(fwd, inputs, labels)
    x = problem.flat_x[0]
    shape = tuple(x.shape)
    batch = problem.batch_size
    layout = C.resolve_layout(shape, units, data_format, model=model)
    if not layout.is_image:
        raise ValueError(f"road needs images [B, H, W, C], [B, C, H, W] or [B, H, W] (units='pixels'), got {shape}")
    scoring = C.resolve_scoring(problem, "accuracy")
    umap = layout.unit_map(attributions)
    orders = ("morf", "lerf") if order == "both" else (order,)
    x_last = np.asarray(layout.to_channels_last(x.numpy()), np.float64)
    base = eng.as_numpy_seed(seed)
    imputed = []
    for o in orders:
        masks = road_masks(umap, fr, o, tie_break, base, reference_compat)
        for j in range(len(fr)):
            for i in range(batch):
                rng = np.random.default_rng([base, i, j, 0 if o == "morf" else 1])
                imputed.append(noisy_linear_imputation(x_last[i], ~masks[j, i], noise, rng))
    imgs = np.asarray(layout.from_channels_last(np.stack(imputed).astype(np.float32)))
    n_points = len(orders) * len(fr)
    imgs = imgs.reshape((n_points, batch) + shape[1:])

    def make_points(flat_x, indices, start, size, all_imgs):
        return tf.reshape(
            tf.slice(all_imgs, [start] + [0] * len(shape), [size] + list(shape)), [size * batch] + list(shape[1:])
        )

    acc, indices, clean, probs = C.batched_scores(
        problem,
        ("road", n_points),
        n_points,
        batch_size,
        make_points,
        (tf.constant(imgs),),
        scoring,
        with_clean=True,
        class_probability=True,
    )
    if scoring.single:
        labels_out = scoring.decision(problem.forward(list(problem.flat_x))).numpy() if labels is None else indices
    else:
        labels_out = indices
    res = {"accuracy": {}, "correct": {}, "probability": {}, "area": {}}
    span = fr[-1] - fr[0]
    for k, o in enumerate(orders):
        c = acc[k * len(fr) : (k + 1) * len(fr)].T.astype(np.float64)
        res["correct"][o] = c
        res["probability"][o] = probs[k * len(fr) : (k + 1) * len(fr)].T.astype(np.float64)
        res["accuracy"][o] = c.mean(0)
        res["area"][o] = (
            float(np.trapezoid(res["accuracy"][o], fr) / span) if span > 0 else float(res["accuracy"][o][0])
        )
    gap = res["area"]["lerf"] - res["area"]["morf"] if order == "both" else None
    return RoadResult(fractions=fr, gap=gap, clean_accuracy=float(np.mean(clean)), labels=np.asarray(labels_out), **res)
