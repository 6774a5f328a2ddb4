"""Numerical integration of metric curves, with pinned rules.

* :func:`simpson`: composite Simpson rule with spacing ``dx``. For an **odd** number of points
  ``n = 2m + 1`` it is the classical rule ``dx/3 * (y_0 + 4 y_1 + 2 y_2 + ... + 4 y_{n-2} + y_{n-1})``,
  identical to ``scipy.integrate.simpson`` (and the removed ``simps``). For an **even** number of
  points the rule is pinned (SciPy changed its even-count default in 1.11): composite Simpson on the
  first ``n - 1`` points plus the trapezoid on the last interval (SciPy's old ``even="first"``).
  Two points: the trapezoid; one point: 0.
* :func:`trapezoid`: the trapezoid rule with spacing ``dx``.
* :func:`auc_unit`: the trapezoid rule on a unit-length x-axis, ``(sum s - s_0/2 - s_last/2)/(n-1)``.

All work on the last axis of a numpy array, so a batch of curves ``[B, n]`` gives ``[B]``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["simpson", "trapezoid", "auc_unit"]


def _as_curves(y):
    y = np.asarray(y, np.float64)
    if y.ndim == 0:
        raise ValueError("the curve must have at least one point along its last axis")
    return y


def trapezoid(y, dx: float = 1.0):
    """Trapezoid rule over the last axis: ``dx * (sum y - (y_0 + y_last)/2)``."""
    y = _as_curves(y)
    n = y.shape[-1]
    if n < 2:
        return np.zeros(y.shape[:-1])
    return dx * (y.sum(axis=-1) - 0.5 * (y[..., 0] + y[..., -1]))


def _simpson_odd(y, dx):
    n = y.shape[-1]  # odd, >= 3
    w = np.ones(n)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return dx / 3.0 * (y @ w)


def simpson(y, dx: float = 1.0):
    """Composite Simpson over the last axis, pinned rule for even point counts (see the module doc).

    Examples: for 5 points ``dx/3 (y0 + 4y1 + 2y2 + 4y3 + y4)``; for 6 points the 5-point value plus
    ``dx (y4 + y5)/2``.
    """
    y = _as_curves(y)
    n = y.shape[-1]
    if n < 2:
        return np.zeros(y.shape[:-1])
    if n == 2:
        return trapezoid(y, dx)
    if n % 2 == 1:
        return _simpson_odd(y, dx)
    return _simpson_odd(y[..., :-1], dx) + 0.5 * dx * (y[..., -2] + y[..., -1])


def auc_unit(y):
    """Trapezoid AUC on a unit-length x-axis (``dx = 1/(n-1)``), as in the RISE / IDG protocol."""
    y = _as_curves(y)
    n = y.shape[-1]
    if n < 2:
        return np.zeros(y.shape[:-1])
    return trapezoid(y, 1.0 / (n - 1))
