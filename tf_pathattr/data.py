"""Small data sets with known ground truth, generated in seconds and deterministic by seed.

* :func:`pattern_images` - images whose class is set by one small pattern placed at a random
  position among distractor shapes; the pattern's footprint is the ground-truth mask.
* :func:`tabular_gaussian` - XAI-Bench-style tabular data (Liu et al., NeurIPS 2021 Datasets and
  Benchmarks): correlated Gaussian features (constant correlation ``rho``) and a known linear or
  non-linear additive target, with exact Keras models of the known function and the exact
  per-feature contributions (ground truth for path methods: the path integral of an additive function splits per feature).
* :func:`trigger_tokens` - token sequences whose label is set by trigger tokens.
* :func:`load_digits_images`, :func:`load_breast_cancer_standardized` - the small real data sets
  bundled with scikit-learn (an optional dependency).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine.shapes import check_positive_int

__all__ = [
    "PATTERNS",
    "pattern_images",
    "TabularProblem",
    "tabular_gaussian",
    "trigger_tokens",
    "load_digits_images",
    "load_breast_cancer_standardized",
]


def _pattern(rows):
    return np.array([[c == "#" for c in r] for r in rows], dtype=np.float32)


#: The class patterns of :func:`pattern_images` (5x5 binary stamps); class ``k`` is ``PATTERNS[k]``.
PATTERNS = (
    _pattern(["..#..", "..#..", "#####", "..#..", "..#.."]),  # plus
    _pattern(["#...#", ".#.#.", "..#..", ".#.#.", "#...#"]),  # x
    _pattern(["#####", "#...#", "#...#", "#...#", "#####"]),  # ring
    _pattern(["#....", "##...", "#.#..", "#..#.", "#####"]),  # triangle
)

# distractors: short bars and small blocks (no class pattern can be made of a single one of them)
_DISTRACTORS = (
    _pattern(["###"]),
    _pattern(["#", "#", "#"]),
    _pattern(["##", "##"]),
    _pattern(["#.", ".#"]),
    _pattern(["#"]),
)


def pattern_images(
    n: int,
    size: int = 32,
    seed: int = 0,
    n_classes: int = 4,
    n_distractors: int = 6,
    noise: float = 0.05,
    channels: int = 1,
):
    """Images whose class is set by a 5x5 pattern at a random position among distractors.

    Each image has a dark noisy background (``N(0.1, noise)`` clipped to [0, 1]), one class pattern
    (``PATTERNS[label]``, intensity 1) at a uniformly random position, and ``n_distractors``
    distractors (bars, blocks, single pixels and 3x3 fragments of class patterns, intensity 0.6-1)
    placed at random outside the pattern's footprint (one pixel of
    margin), so only the pattern decides the class.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Height and width (at least 12).
    seed : int
        Everything (labels, positions, noise) is drawn from ``numpy.random.default_rng(seed)``.
    n_classes : int
        2 to 4 classes.
    channels : int
        1 (default) or 3 (the grey image repeated).

    Returns
    -------
    x : float32 ``[n, size, size, channels]`` in [0, 1]
    y : int32 ``[n]``
    masks : bool ``[n, size, size]``, True on the 5x5 footprint of the class pattern
    """
    n = check_positive_int(n, "n")
    size = check_positive_int(size, "size")
    if size < 12:
        raise ValueError(f"size must be at least 12, got {size}")
    if not 2 <= int(n_classes) <= len(PATTERNS):
        raise ValueError(f"n_classes must be between 2 and {len(PATTERNS)}, got {n_classes!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n).astype(np.int32)
    x = np.clip(0.1 + noise * rng.standard_normal((n, size, size)), 0.0, 1.0).astype(np.float32)
    masks = np.zeros((n, size, size), bool)
    pos = rng.integers(0, size - 5 + 1, size=(n, 2))
    for i in range(n):
        r, c = pos[i]
        patch = x[i, r : r + 5, c : c + 5]
        x[i, r : r + 5, c : c + 5] = np.where(PATTERNS[y[i]] > 0, 1.0, patch)
        masks[i, r : r + 5, c : c + 5] = True
        blocked = np.zeros((size, size), bool)
        blocked[max(r - 1, 0) : r + 6, max(c - 1, 0) : c + 6] = True
        placed, tries = 0, 0
        while placed < n_distractors and tries < 50 * n_distractors:
            tries += 1
            j = rng.integers(len(_DISTRACTORS) + 2)
            if j < len(_DISTRACTORS):
                d = _DISTRACTORS[j]
            else:  # a 3x3 fragment of a class pattern (so the model has to see the whole pattern)
                pr, pc = rng.integers(0, 3, size=2)
                d = PATTERNS[rng.integers(n_classes)][pr : pr + 3, pc : pc + 3]
                if not d.any():
                    continue
            h, w = d.shape
            rr, cc = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
            if blocked[rr : rr + h, cc : cc + w].any():
                continue
            x[i, rr : rr + h, cc : cc + w] = np.where(d > 0, rng.uniform(0.6, 1.0), x[i, rr : rr + h, cc : cc + w])
            blocked[max(rr - 1, 0) : rr + h + 1, max(cc - 1, 0) : cc + w + 1] = True
            placed += 1
    x = x[..., None]
    if channels == 3:
        x = np.repeat(x, 3, axis=-1)
    return x.astype(np.float32), y, masks


# ------------------------------------------------------------------------------------------------
# XAI-Bench-style tabular data


_ADDITIVE_KINDS = ("sin", "abs", "exp", "square")


def _g_numpy(kind, v):
    if kind == "linear":
        return v
    if kind == "sin":
        return np.sin(v)
    if kind == "abs":  # smooth |v| (differentiable at 0, so exact tests are possible)
        return np.sqrt(v * v + 0.01)
    if kind == "exp":
        return np.exp(0.5 * v)
    if kind == "square":
        return 0.5 * v * v
    raise ValueError(kind)


@dataclass
class TabularProblem:
    """A synthetic tabular data set with a known target function ``f(x) = c + sum_i w_i h_i(x_i)``.

    Attributes
    ----------
    x : float32 ``[n, d]``
    y : float32 ``[n]`` regression target ``f(x) + noise``
    labels : int32 ``[n]`` binary labels ``f(x) > median f`` (the classification version)
    weights : float64 ``[d]``
    kinds : tuple of str, the per-feature function ``h_i`` ("linear", "sin", "abs" = sqrt(v^2+0.01),
        "exp" = exp(v/2), "square" = v^2/2)
    mean, cov : the feature distribution N(mean, cov)
    bias : float
    """

    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    kinds: tuple
    mean: np.ndarray
    cov: np.ndarray
    bias: float
    rho: float

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    def contributions(self, x) -> np.ndarray:
        """``w_i h_i(x_i)`` per feature, ``[n, d]``."""
        x = np.asarray(x, np.float64)
        return np.stack([self.weights[i] * _g_numpy(k, x[:, i]) for i, k in enumerate(self.kinds)], axis=1)

    def function(self, x) -> np.ndarray:
        """The exact target function ``f(x)``, ``[n]``."""
        return self.bias + self.contributions(x).sum(axis=1)

    def ground_truth(self, x, baseline=0.0) -> np.ndarray:
        """Exact attribution of any path method from ``baseline`` to ``x``: ``g_i(x_i) - g_i(b_i)``.

        Holds for every path because ``f`` is additive (its path integral splits per feature); discrete methods
        differ from it by their quadrature error only.
        """
        x = np.asarray(x, np.float64)
        b = np.broadcast_to(np.asarray(baseline, np.float64), x.shape)
        return self.contributions(x) - self.contributions(b)

    def shapley_marginal(self, x, background) -> np.ndarray:
        """Interventional Shapley values ``g_i(x_i) - E_D[g_i(X_i)]`` (the expectation of Expected Gradients)."""
        return self.contributions(x) - self.contributions(background).mean(axis=0, keepdims=True)

    def shapley_conditional(self, x) -> np.ndarray:
        """Observational Shapley values for the *linear* case, from the Gaussian conditional mean.

        ``v(S) = E[f(X) | X_S = x_S]`` with ``E[X_Sbar | x_S] = mu_Sbar + C_Sbar,S C_S,S^-1 (x_S - mu_S)``;
        exact enumeration over subsets (d <= 12).
        """
        if any(k != "linear" for k in self.kinds):
            raise ValueError("shapley_conditional: closed form only for the linear function")
        x = np.asarray(x, np.float64)
        d = x.shape[1]
        if d > 12:
            raise ValueError("shapley_conditional enumerates subsets; use d <= 12")
        from math import factorial

        w, mu, cov = self.weights, self.mean, self.cov

        def value(S):
            S = list(S)
            if not S:
                return np.full(x.shape[0], w @ mu)
            rest = [j for j in range(d) if j not in S]
            cond = np.tile(mu, (x.shape[0], 1))
            cond[:, S] = x[:, S]
            if rest:
                a = cov[np.ix_(rest, S)] @ np.linalg.inv(cov[np.ix_(S, S)])
                cond[:, rest] = mu[rest] + (x[:, S] - mu[S]) @ a.T
            return cond @ w

        phi = np.zeros_like(x)
        cache = {}
        for mask in range(1 << d):
            S = tuple(j for j in range(d) if mask >> j & 1)
            cache[mask] = value(S)
        for i in range(d):
            for mask in range(1 << d):
                if mask >> i & 1:
                    continue
                s = bin(mask).count("1")
                coef = factorial(s) * factorial(d - s - 1) / factorial(d)
                phi[:, i] += coef * (cache[mask | (1 << i)] - cache[mask])
        return phi

    def keras_model(self):
        """The exact target function as a Keras model ``[B, d] -> [B, 1]`` (no training).

        Linear: a single ``Dense(1)`` with the true weights. Additive: an elementwise layer per
        feature function summed by a ``Dense(1)`` holding the weights.
        """
        import keras

        inp = keras.Input((self.n_features,))
        if all(k == "linear" for k in self.kinds):
            dense = keras.layers.Dense(1)
            out = dense(inp)
            dense.set_weights([self.weights[:, None].astype(np.float32), np.array([self.bias], np.float32)])
            return keras.Model(inp, out, name="linear_ground_truth")
        layer = _Elementwise(self.kinds)
        dense = keras.layers.Dense(1)
        out = dense(layer(inp))
        dense.set_weights([self.weights[:, None].astype(np.float32), np.array([self.bias], np.float32)])
        return keras.Model(inp, out, name="additive_ground_truth")


def _make_elementwise():
    import keras
    from keras import ops

    class Elementwise(keras.layers.Layer):
        """``h_i(x_i)`` per feature (no weights)."""

        def __init__(self, kinds, **kwargs):
            super().__init__(**kwargs)
            self.kinds = tuple(kinds)

        def call(self, x):
            cols = []
            for i, k in enumerate(self.kinds):
                v = x[:, i : i + 1]
                if k == "linear":
                    cols.append(v)
                elif k == "sin":
                    cols.append(ops.sin(v))
                elif k == "abs":
                    cols.append(ops.sqrt(v * v + 0.01))
                elif k == "exp":
                    cols.append(ops.exp(0.5 * v))
                else:
                    cols.append(0.5 * v * v)
            return ops.concatenate(cols, axis=1)

        def get_config(self):
            return {**super().get_config(), "kinds": list(self.kinds)}

    return Elementwise


class _LazyElementwise:
    cls = None

    def __call__(self, kinds):
        if self.cls is None:
            self.cls = _make_elementwise()
        return self.cls(kinds)


_Elementwise = _LazyElementwise()


def tabular_gaussian(
    n: int,
    d: int = 8,
    rho: float = 0.5,
    function: str = "additive",
    seed: int = 0,
    noise: float = 0.0,
    weights=None,
    mean=None,
) -> TabularProblem:
    """XAI-Bench-style data: ``X ~ N(mean, Sigma)`` with ``Sigma_ii = 1``, ``Sigma_ij = rho``.

    ``function="linear"``: ``f(x) = w . x``; ``"additive"``: ``f(x) = sum_i w_i h_i(x_i)`` with
    ``h_i`` cycling through sin, smooth |.|, exp(./2), ./2 squared. Weights default to
    ``U(0.5, 2)`` with random signs (from the seed). ``noise`` adds ``N(0, noise)`` to ``y``.
    """
    n = check_positive_int(n, "n")
    d = check_positive_int(d, "d")
    if not (0.0 <= float(rho) < 1.0):
        raise ValueError(f"rho must be in [0, 1), got {rho!r}")
    if function not in ("linear", "additive"):
        raise ValueError(f"function must be 'linear' or 'additive', got {function!r}")
    rng = np.random.default_rng(seed)
    if weights is None:
        weights = rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d)
    weights = np.asarray(weights, np.float64)
    if weights.shape != (d,):
        raise ValueError(f"weights must have shape ({d},), got {weights.shape}")
    mu = np.zeros(d) if mean is None else np.broadcast_to(np.asarray(mean, np.float64), (d,)).copy()
    cov = np.full((d, d), float(rho)) + (1.0 - float(rho)) * np.eye(d)
    x = rng.multivariate_normal(mu, cov, size=n, method="cholesky").astype(np.float32)
    kinds = (
        ("linear",) * d if function == "linear" else tuple(_ADDITIVE_KINDS[i % len(_ADDITIVE_KINDS)] for i in range(d))
    )
    prob = TabularProblem(x, None, None, weights, kinds, mu, cov, 0.0, float(rho))
    f = prob.function(x)
    prob.y = (f + noise * rng.standard_normal(n)).astype(np.float32)
    prob.labels = (f > np.median(f)).astype(np.int32)
    return prob


# ------------------------------------------------------------------------------------------------
# tokens


def trigger_tokens(
    n: int, length: int = 16, vocab: int = 50, seed: int = 0, n_triggers: int = 3, max_per_sequence: int = 2
):
    """Token sequences labelled 1 exactly when they contain a trigger token.

    Token 0 is padding and never drawn; tokens ``1..n_triggers`` are the triggers; the rest of the
    vocabulary fills the sequences. Half of the sequences (label 1) get 1 to ``max_per_sequence``
    triggers at random distinct positions.

    Returns
    -------
    ids : int32 ``[n, length]``
    labels : int32 ``[n]``
    masks : bool ``[n, length]``, True where a trigger token sits
    """
    n = check_positive_int(n, "n")
    length = check_positive_int(length, "length")
    vocab = check_positive_int(vocab, "vocab")
    if vocab < n_triggers + 3:
        raise ValueError(f"vocab must be at least n_triggers + 3 = {n_triggers + 3}, got {vocab}")
    rng = np.random.default_rng(seed)
    ids = rng.integers(n_triggers + 1, vocab, size=(n, length)).astype(np.int32)
    labels = (rng.random(n) < 0.5).astype(np.int32)
    masks = np.zeros((n, length), bool)
    for i in np.flatnonzero(labels):
        k = int(rng.integers(1, min(max_per_sequence, length) + 1))
        where = rng.choice(length, size=k, replace=False)
        ids[i, where] = rng.integers(1, n_triggers + 1, size=k)
        masks[i, where] = True
    return ids, labels, masks


# ------------------------------------------------------------------------------------------------
# scikit-learn data


def load_digits_images():
    """scikit-learn's 8x8 digits as images ``[1797, 8, 8, 1]`` float32 in [0, 1], and int32 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return x, d.target.astype(np.int32)


def load_breast_cancer_standardized():
    """scikit-learn's breast-cancer table ``[569, 30]`` standardised per feature (float32), labels,
    and the feature names."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = d.data.astype(np.float64)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(np.float32), d.target.astype(np.int32), list(d.feature_names)
