"""AUPC: area under the perturbation curve (region perturbation, SmoothTaylor evaluation protocol).

Protocol (Goh et al., ICPR 2020, released ``attribution/eval.py``; region perturbation in the
style of Samek et al., IEEE TNNLS 2017), per example:

1. Heatmap = the channel sum of the attributions; every ``window x window`` square that fits
   inside the image is scored by the mean of ``|heatmap|`` over it.
2. Greedily take the ``n_regions`` highest squares that do not overlap an already chosen one
   (ties: the first in row-major order). If fewer fit, the curve stops early.
3. For each region in turn: draw ``n_candidates`` patches (``draw="uniform"``: i.i.d.
   ``U(value_range)`` per pixel and channel, the released ``U[0,255]/255``; ``draw="gaussian"``:
   per channel ``N(mean_c, std_c)`` of the original image, clipped to ``value_range``), paste each
   into the *current* image, run the model (through ``preprocess``) and take the explained score
   (the logit of the explained class); record the **mean** over the candidates and **permanently
   apply** the candidate whose score is closest to the **median** (first one on ties; with an even
   number of candidates the two middle scores are exactly tied, computed in float64, so the one with
   the lower candidate index wins; the released script leaves this to float rounding).
4. Curve = ``[s_0, mean_1, ..., mean_R] / |s_0|`` (``R + 1`` points).
5. AUPC = Simpson's rule with ``dx = 1`` (:func:`tf_pathattr.metrics._integrate.simpson`; 31 points
   by default, an odd count, so the rule is SciPy's). Lower is better.

The candidates of one region for all examples are one model batch (``n_candidates * B`` rows);
the loop over regions is a ``tf.while_loop`` inside one cached ``tf.function``; candidate draws
use stateless RNG keyed by ``(seed, region)``.

Differences from the released script, on purpose: windows at the last valid row/column are
allowed (the script's ``range(H - k)`` skips them), and ties are broken in row-major order.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.layout import resolve_image_layout
from ..engine.shapes import check_choice, check_positive_int
from . import _common as _C
from ._integrate import simpson

__all__ = ["aupc", "select_regions"]

DRAWS = ("uniform", "gaussian")


def select_regions(heatmap, window: int, n_regions: int):
    """Greedy non-overlapping windows of the highest mean ``|heatmap|``.

    Parameters
    ----------
    heatmap : array ``[H, W]``
    Returns
    -------
    list of ``(row, col)`` top-left corners (at most ``n_regions``; fewer when no window fits).
    """
    h = np.abs(np.asarray(heatmap, np.float64))
    if not np.all(np.isfinite(h)):
        raise ValueError("attributions contain NaN or infinite values")
    H, W = h.shape
    if window > H or window > W:
        return []
    pooled = np.lib.stride_tricks.sliding_window_view(h, (window, window)).mean(axis=(-2, -1))
    free = np.ones(pooled.shape, bool)
    out = []
    for _ in range(n_regions):
        if not free.any():
            break
        flat = int(np.argmax(np.where(free, pooled, -np.inf)))  # first maximum in row-major order
        r, cc = divmod(flat, pooled.shape[1])
        out.append((r, cc))
        free[max(0, r - window + 1) : r + window, max(0, cc - window + 1) : cc + window] = False
    return out


class _Preprocessed:
    """``model(preprocess(x))`` (``x`` moved to channels-first first when ``to_first``): a stable
    callable so the compiled metric is cached per model."""

    def __init__(self, model, preprocess, to_first=False):
        self.model, self.preprocess, self.to_first = model, preprocess, to_first
        self.is_keras = isinstance(model, keras.layers.Layer)

    def __call__(self, x):
        if self.to_first:
            x = tf.transpose(x, (0, 3, 1, 2))
        y = self.preprocess(x) if self.preprocess is not None else x
        return self.model(y, training=False) if self.is_keras else self.model(y)


def _wrap(model, preprocess, to_first=False):
    if preprocess is None and not to_first:
        return model
    if preprocess is not None and not callable(preprocess):
        raise TypeError("preprocess must be a callable mapping pixel-space images to model inputs")
    per_model = eng.attached_store(model, "aupc_wrappers")  # on the model: no module state keeps it alive
    if per_model is None:
        return _Preprocessed(model, preprocess, to_first)
    key = (id(preprocess), bool(to_first))
    hit = per_model.get(key)
    if hit is None or hit.preprocess is not preprocess:
        hit = per_model[key] = _Preprocessed(model, preprocess, to_first)
    return hit


def _heatmaps(attributions, shape):
    a = np.asarray(attributions.numpy() if hasattr(attributions, "numpy") else attributions, np.float64)
    B, H, W, C = shape
    if a.shape == (B, H, W, C):
        return a.sum(axis=-1)
    if a.shape == (B, H, W):
        return a
    raise ValueError(f"attributions must have shape {(B, H, W, C)} or {(B, H, W)}, got {a.shape}")


def aupc(
    model,
    inputs,
    attributions,
    target=None,
    *,
    window: int = 15,
    n_regions: int = 30,
    n_candidates: int = 50,
    draw: str = "uniform",
    value_range=(0.0, 1.0),
    preprocess=None,
    seed=None,
    candidates=None,
    score="logit",
    data_format=None,
    jit_compile: bool = False,
):
    """Area under the region-perturbation curve (lower = the score drops faster = better).

    Parameters
    ----------
    model : keras.Model or callable
    inputs : array ``[B, H, W, C]``
        The images in *pixel space* when ``preprocess`` is given (the model sees
        ``preprocess(inputs)``), otherwise the model inputs themselves.
    attributions : array ``[B, H, W, C]`` or ``[B, H, W]``
        Only the channel-summed heatmap is used, to rank the regions.
    target : None, int, B ints or callable
        The explained score (default: the predicted class's raw output, the logit).
    window, n_regions, n_candidates : int
        Square size (15), regions (30), candidate patches per region (50).
    draw : {"uniform", "gaussian"}
        Candidate distribution (released ``draw_mode`` 0 and 1).
    value_range : (low, high)
        Pixel range the candidates are drawn in (``(0, 1)``: the released ``U[0,255]/255``). Inputs
        outside it raise a ``ValueError`` naming ``value_range=`` (drawn candidates only).
    preprocess : callable, optional
        Pixel space -> model input (e.g. mean/std normalisation), applied to every perturbed image.
    seed : int, optional
        Stateless seed (``None`` = 0); region ``r`` uses ``seed=[seed, r]``.
    candidates : array ``[n_regions, n_candidates, B, window, window, C]``, optional
        Explicit candidate patches (tests); overrides ``draw``.
    score : {"logit", "probability", "output"}
        The shared scoring rule (:mod:`tf_pathattr.metrics._scoring`); the protocol's ``"logit"``
        by default (a model ending in softmax has none: pass ``"probability"`` or ``"output"``).
    data_format : {None, "channels_last", "channels_first"}
        Layout of the images (``None`` = the layout the model declares, else
        ``keras.config.image_data_format()``: :func:`tf_pathattr.engine.layout.resolve_image_layout`); channels-first
        inputs and attributions are moved to channels-last for the region search and back for the
        model.

    Returns
    -------
    aupc : numpy ``[B]``
    curves : numpy ``[B, n_regions + 1]`` (normalised by ``|s_0|``; NaN after the last region
        when fewer than ``n_regions`` windows fit)
    """
    window = check_positive_int(window, "window")
    n_regions = check_positive_int(n_regions, "n_regions")
    n_candidates = check_positive_int(n_candidates, "n_candidates")
    check_choice(draw, "draw", DRAWS)
    lo, hi = (float(v) for v in value_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    seed = eng.as_numpy_seed(seed)
    _C.check_score_name(score, ("logit", "probability", "output"))
    to_first = resolve_image_layout(model, np.shape(inputs), data_format) == "channels_first"
    if to_first:
        inputs = np.transpose(np.asarray(inputs.numpy() if hasattr(inputs, "numpy") else inputs), (0, 2, 3, 1))
        a = np.asarray(attributions.numpy() if hasattr(attributions, "numpy") else attributions)
        attributions = np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a
    fwd_model = _wrap(model, preprocess, to_first)
    problem = eng.prepare(fwd_model, _C.float_inputs(inputs), target)
    if len(problem.flat_x) != 1 or problem.flat_x[0].shape.rank != 4:
        raise ValueError("aupc needs one image input of shape [B, H, W, C]")
    x = problem.flat_x[0]
    B, H, W, C = x.shape.as_list()
    if window > H or window > W:
        raise ValueError(f"window={window} does not fit images of size {H}x{W}")
    heat = _heatmaps(attributions, (B, H, W, C))
    pos = np.zeros((n_regions, B, 2), np.int32)
    valid = np.zeros((n_regions, B), bool)
    counts = np.zeros(B, int)
    for b in range(B):
        regs = select_regions(heat[b], window, n_regions)
        counts[b] = len(regs)
        for r, rc in enumerate(regs):
            pos[r, b] = rc
            valid[r, b] = True
    explicit = candidates is not None
    if explicit:
        cands = tf.cast(tf.convert_to_tensor(candidates), tf.float32)
        want = (n_regions, n_candidates, B, window, window, C)
        if tuple(cands.shape) != want:
            raise ValueError(f"candidates must have shape {want}, got {tuple(cands.shape)}")
    else:
        cands = tf.zeros([0], tf.float32)
        x_lo, x_hi = float(tf.reduce_min(x)), float(tf.reduce_max(x))
        if x_lo < lo or x_hi > hi:
            raise ValueError(
                f"aupc: inputs lie in [{x_lo:.4g}, {x_hi:.4g}], outside value_range={(lo, hi)!r}, the range the "
                "candidate patches are drawn (and clipped) in: the patches would not look like the image's pixels. "
                "Pass value_range=(low, high) with the images' range (or the pixel-space images and preprocess=)"
            )
    scoring = _C.resolve_scoring(problem, score, default="logit", allowed=("logit", "probability", "output"))
    key = ("aupc", window, n_regions, n_candidates, draw, lo, hi, explicit, B, scoring.key)

    def builder():
        K, w = n_candidates, window
        grid_r = tf.range(H, dtype=tf.int32)
        grid_c = tf.range(W, dtype=tf.int32)

        def fn(flat_x, indices, pos, valid, seed, cands):
            x0 = flat_x[0]
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)
            if out_x is None:
                out_x = problem.forward(list(flat_x))
            s0 = scoring(problem, out_x, indices)
            if draw == "gaussian":
                mean_c = tf.reduce_mean(x0, axis=[1, 2])  # [B, C]
                std_c = tf.math.reduce_std(x0, axis=[1, 2])

            def body(r, img, ta):
                p = pos[r]  # [B, 2]
                if explicit:
                    patch = cands[r]  # [K, B, w, w, C]
                else:
                    sd = tf.stack([seed, tf.cast(r, tf.int64)])
                    if draw == "uniform":
                        u = tf.random.stateless_uniform([K, B, w, w, C], seed=sd, dtype=tf.float32)
                        patch = lo + (hi - lo) * u
                    else:
                        z = tf.random.stateless_normal([K, B, w, w, C], seed=sd, dtype=tf.float32)
                        patch = tf.clip_by_value(mean_c[None, :, None, None] + std_c[None, :, None, None] * z, lo, hi)
                # place each example's patch at its own corner: full-size candidates [K, B, H, W, C]
                dr = grid_r[None, :] - p[:, :1]  # [B, H]
                dc = grid_c[None, :] - p[:, 1:]  # [B, W]
                inside = ((dr >= 0) & (dr < w))[:, :, None] & ((dc >= 0) & (dc < w))[:, None, :]  # [B, H, W]
                inside = inside & valid[r][:, None, None]
                pb = tf.transpose(patch, [1, 0, 2, 3, 4])  # [B, K, w, w, C]
                full = tf.gather(pb, tf.clip_by_value(dr, 0, w - 1), axis=2, batch_dims=1)  # [B, K, H, w, C]
                full = tf.gather(full, tf.clip_by_value(dc, 0, w - 1), axis=3, batch_dims=1)  # [B, K, H, W, C]
                full = tf.transpose(full, [1, 0, 2, 3, 4])  # [K, B, H, W, C]
                m = inside[None, :, :, :, None]
                pert = tf.where(m, full, img[None])
                s = scoring(problem, problem.forward([eng.rows(pert, K, B)]), indices)
                s = tf.ensure_shape(tf.reshape(s, [K, B]), [K, B])
                # closest to the median, in float64 so that the exact tie of the two middle values
                # (even K) is seen as a tie and resolved to the lower candidate index
                s64 = tf.cast(s, tf.float64)
                srt = tf.sort(s64, axis=0)
                med = 0.5 * (srt[(K - 1) // 2] + srt[K // 2])
                pick = tf.argmin(tf.abs(s64 - med[None]), axis=0, output_type=tf.int32)  # first on ties
                chosen = tf.gather(tf.transpose(full, [1, 0, 2, 3, 4]), pick, axis=1, batch_dims=1)  # [B, H, W, C]
                img = tf.where(inside[..., None], chosen, img)
                return r + 1, img, ta.write(r, tf.reduce_mean(s, axis=0))

            ta = tf.TensorArray(tf.float32, size=n_regions, element_shape=[B])
            _, _, ta = tf.while_loop(lambda r, *_: r < n_regions, body, [tf.constant(0), x0, ta], parallel_iterations=1)
            return ([tf.concat([s0[:, None], tf.transpose(ta.stack())], axis=1)],)

        return fn

    fn = eng.compiled(problem, key, builder, jit_compile)
    ((raw,),) = fn(
        problem.flat_x, problem.target.indices, tf.constant(pos), tf.constant(valid), tf.constant(seed, tf.int64), cands
    )
    raw = raw.numpy().astype(np.float64)
    curves = raw / np.abs(raw[:, :1])
    values = np.empty(B)
    for b in range(B):
        curves[b, 1 + counts[b] :] = np.nan
        values[b] = simpson(curves[b, : 1 + counts[b]], dx=1.0)
    return values, curves
