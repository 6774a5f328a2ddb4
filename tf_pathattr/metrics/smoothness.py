"""AUTVC: area under the multi-scale average-total-variation curve (SmoothTaylor protocol).

Protocol (Goh et al., ICPR 2020, released ``attribution/eval.py``), per example:

1. Heatmap ``h`` = the channel sum of the attributions.
2. Gaussian pyramid of ``h`` (``skimage.transform.pyramid_gaussian(h, downscale=1.5)``: level 0 is
   ``h``, each next level is Gaussian-smoothed with ``sigma = 2 * downscale / 6`` and resized by
   ``1/downscale``), keeping the levels while both sides are ``>= min_size`` (224^2 -> 224, 150,
   100, 67, 45, 30: six levels).
3. At each level normalise: ``a = |h|``, ``a = (a - min a) / (p99(a) - min a)``, clipped to [0, 1]
   (a constant level, ``p99 == min``, becomes all zeros).
4. Average total variation ``ATV = (sum |d_x a| + sum |d_y a|) / (H * W)`` (forward differences;
   for ``p > 1`` the sum of the two p-norms ``(sum |d_x a|^p)^(1/p) + (sum |d_y a|^p)^(1/p)``).
5. AUTVC = Simpson's rule over the levels with ``dx = 1``
   (:func:`tf_pathattr.metrics._integrate.simpson`; for an even number of levels the pinned rule:
   Simpson on the first ``n - 1`` levels plus a trapezoid on the last interval). Lower is smoother.

Host-side numpy / scikit-image (``pip install tf_pathattr[metrics]``); no model calls.
"""

from __future__ import annotations

import numpy as np

from ._integrate import simpson

__all__ = ["total_variation", "average_total_variation", "heatmap_normalize"]


def heatmap_normalize(h, percentile: float = 99.0):
    """``|h|`` scaled by ``(a - min) / (p99 - min)`` and clipped to [0, 1] (zeros if constant)."""
    a = np.abs(np.asarray(h, np.float64))
    lo = a.min()
    hi = np.percentile(a, percentile)
    if not hi > lo:
        return np.zeros_like(a)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


def average_total_variation(h, p: int = 1):
    """ATV of one 2-D map after :func:`heatmap_normalize`."""
    a = heatmap_normalize(h)
    dx = np.abs(np.diff(a, axis=1))
    dy = np.abs(np.diff(a, axis=0))
    if p > 1:
        total = np.sum(dx**p) ** (1.0 / p) + np.sum(dy**p) ** (1.0 / p)
    else:
        total = dx.sum() + dy.sum()
    return total / (a.shape[0] * a.shape[1])


def total_variation(attributions, *, downscale: float = 1.5, min_size=30, p: int = 1, data_format=None):
    """AUTVC per example: area under the multi-scale average-total-variation curve (lower = smoother).

    Parameters
    ----------
    attributions : array ``[B, H, W, C]`` (summed over channels) or ``[B, H, W]``
    downscale : float
        Pyramid factor (1.5).
    min_size : int or (int, int)
        Smallest level kept (both sides ``>=`` it; 30).
    p : int
        Norm of the total variation (1).
    data_format : {None, "channels_last", "channels_first"}
        Layout of 4-D attributions (``None`` = ``keras.config.image_data_format()``).

    Returns
    -------
    autvc : numpy ``[B]``
    curves : list of B numpy arrays, the ATV of each pyramid level
    """
    try:
        from skimage.transform import pyramid_gaussian
    except ImportError as exc:  # pragma: no cover
        raise ImportError("total_variation needs scikit-image: pip install 'tf_pathattr[metrics]'") from exc
    a = np.asarray(attributions.numpy() if hasattr(attributions, "numpy") else attributions, np.float64)
    if a.ndim == 4:
        from ..engine.layout import resolve_data_format

        a = a.sum(axis=1 if resolve_data_format(data_format) == "channels_first" else -1)
    if a.ndim != 3:
        raise ValueError(f"attributions must have shape [B, H, W, C] or [B, H, W], got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("attributions contain NaN or infinite values")
    if not (np.isfinite(downscale) and downscale > 1):
        raise ValueError(f"downscale must be > 1, got {downscale!r}")
    mh, mw = (min_size, min_size) if np.ndim(min_size) == 0 else tuple(min_size)
    if a.shape[1] < mh or a.shape[2] < mw:
        raise ValueError(f"attribution maps of size {a.shape[1:]} are smaller than min_size={min_size}")
    values, curves = np.empty(a.shape[0]), []
    for b, h in enumerate(a):
        atvs = []
        for level in pyramid_gaussian(h, downscale=downscale):
            if level.shape[0] < mh or level.shape[1] < mw:
                break
            atvs.append(average_total_variation(level, p))
        atvs = np.asarray(atvs)
        curves.append(atvs)
        values[b] = simpson(atvs, dx=1.0)
    return values, curves
