"""Quadrature rules on [0, 1] for path integrals.

Every rule returns ``(alphas, weights)`` as float64 numpy arrays of length ``n_steps`` with
``sum(weights) == 1`` (to float64 rounding), so that a constant integrand is integrated exactly.
This is the invariant captum's and alibi's ``riemann_trapezoid`` break (their step sizes sum to
``(n-1)/n``; tests/engine/test_quadrature.py checks every rule's sum).

Rules
-----
``riemann_left``      alpha_k = k/n,        w_k = 1/n
``riemann_right``     alpha_k = (k+1)/n,    w_k = 1/n
``riemann_middle``    alpha_k = (k+1/2)/n,  w_k = 1/n
``riemann_trapezoid`` alpha_k = k/(n-1),    w = 1/(2(n-1)) at both ends, 1/(n-1) inside (n >= 2)
``gausslegendre``     alpha_k = (t_k+1)/2,  w_k = omega_k/2 with (t_k, omega_k) the Legendre nodes/weights
``pair``              alpha_k = k/(n-1),    w_k = 1/n (parity with PAIR ``saliency`` IG; n >= 2)
"""

from __future__ import annotations

import functools

import numpy as np

RULES = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
    "pair",
)


def _check_n_steps(n_steps, minimum: int = 1) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)):
        raise TypeError(f"n_steps must be an int, got {type(n_steps).__name__} ({n_steps!r})")
    if n_steps < minimum:
        raise ValueError(f"n_steps must be >= {minimum} for this rule, got {n_steps}")
    return int(n_steps)


@functools.lru_cache(maxsize=256)
def _rule(method: str, n_steps: int):
    n = n_steps
    if method == "riemann_left":
        alphas = np.arange(n, dtype=np.float64) / n
        weights = np.full(n, 1.0 / n)
    elif method == "riemann_right":
        alphas = np.arange(1, n + 1, dtype=np.float64) / n
        weights = np.full(n, 1.0 / n)
    elif method == "riemann_middle":
        alphas = (np.arange(n, dtype=np.float64) + 0.5) / n
        weights = np.full(n, 1.0 / n)
    elif method == "riemann_trapezoid":
        alphas = np.linspace(0.0, 1.0, n)
        weights = np.full(n, 1.0 / (n - 1))
        weights[0] = weights[-1] = 0.5 / (n - 1)
    elif method == "gausslegendre":
        nodes, omegas = np.polynomial.legendre.leggauss(n)
        alphas = (nodes + 1.0) / 2.0
        weights = omegas / 2.0
    elif method == "pair":
        alphas = np.linspace(0.0, 1.0, n)
        weights = np.full(n, 1.0 / n)
    else:  # pragma: no cover - guarded by quadrature()
        raise AssertionError(method)
    alphas.setflags(write=False)
    weights.setflags(write=False)
    return alphas, weights


def quadrature(method: str, n_steps: int):
    """Nodes and weights of a quadrature rule on [0, 1].

    Parameters
    ----------
    method : str
        One of :data:`RULES`.
    n_steps : int
        Number of nodes. ``riemann_trapezoid`` and ``pair`` need at least 2 (PAIR's package returns
        all zeros for one step; we refuse instead).

    Returns
    -------
    alphas, weights : numpy.ndarray of float64, shape ``(n_steps,)``
        Sorted nodes in [0, 1] and weights that sum to 1. Read-only.
    """
    if not isinstance(method, str) or method not in RULES:
        raise ValueError(f"method must be one of {list(RULES)}, got {method!r}")
    minimum = 2 if method in ("riemann_trapezoid", "pair") else 1
    n = _check_n_steps(n_steps, minimum)
    return _rule(method, n)
