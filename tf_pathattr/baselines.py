"""Baselines for path methods (``baseline=`` of Integrated Gradients and friends).

Each constructor returns a :class:`Baseline`: an object that, given the explicands ``x``
(``[B, *S]``), draws ``n`` baselines ``[n, B, *S]`` (or ``[n, 1, *S]`` when shared by all
examples). Several baselines are averaged by the methods: ``IG = mean_k IG(x; x'_k)``.
Random draws use stateless RNG keyed by ``(seed, k)``, so the same seed gives the same draws and
draw ``k`` does not depend on ``n``.

``preprocess`` (every constructor) maps baselines drawn in *raw* input space (pixels in
[0, 255], say) into the model's input space, with the same function the user applies to ``x``.

With ``layer=`` a baseline lives in the layer's output space and defaults to zeros there. The
named baseline :data:`ZERO_INPUT` (``baseline="zero_input"``) is instead the layer's activation at
an all-zero *model input* (every model input zero: token id 0, a zero mask...), one per example:
captum's ``LayerIntegratedGradients`` default, so completeness reads ``F(x) - F(0 input)``.

References
----------
P. Sturmfels, S. Lundberg, S.-I. Lee, "Visualizing the Impact of Feature Attribution Baselines",
Distill 2020 (uniform, Gaussian, blurred and data baselines, averaged over draws).
H. Tan, "Maximum Entropy Baseline for Integrated Gradients", IJCNN 2023, arXiv 2204.05948.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from .engine.gradients import as_numpy_seed
from .engine.shapes import ZERO_INPUT, check_positive_int

__all__ = [
    "ZERO_INPUT",
    "Baseline",
    "zeros",
    "constant",
    "uniform",
    "maximum_entropy",
    "gaussian_noise",
    "blurred",
    "from_data",
]


class Baseline:
    """A recipe for ``n`` baselines, drawn per call from the explicands.

    Subclasses implement :meth:`_draw` returning ``[n, B or 1, *S]`` float32.
    """

    name = "baseline"

    def __init__(self, n: int = 1, seed: int | None = None, preprocess: Callable | None = None):
        self.n = check_positive_int(n, "n")
        self.seed = as_numpy_seed(seed)
        if preprocess is not None and not callable(preprocess):
            raise TypeError("preprocess must be a callable mapping raw-space baselines to model inputs")
        self.preprocess = preprocess

    def draw(self, x, seed: int | None = None, input_index: int = 0) -> tf.Tensor:
        """Baselines for explicands ``x`` (``[B, *S]``): a float32 tensor ``[n, B or 1, *S]``."""
        x = tf.convert_to_tensor(x, tf.float32)
        s = self.seed if seed is None else as_numpy_seed(seed)
        out = tf.cast(self._draw(x, s + 1000003 * input_index), tf.float32)
        if self.preprocess is not None:
            n, rows = out.shape[0], out.shape[1]
            flat = tf.reshape(out, [n * rows] + out.shape[2:].as_list())
            flat = tf.cast(tf.convert_to_tensor(self.preprocess(flat)), tf.float32)
            out = tf.reshape(flat, [n, rows] + flat.shape[1:].as_list())
        return out

    __call__ = draw

    def _draw(self, x, seed):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(n={self.n}, seed={self.seed})"


class _Constant(Baseline):
    name = "constant"

    def __init__(self, value=0.0, preprocess=None):
        super().__init__(1, None, preprocess)
        self.value = value

    def _draw(self, x, seed):
        v = tf.cast(tf.convert_to_tensor(self.value), tf.float32)
        return tf.broadcast_to(v, [1, 1] + x.shape[1:].as_list())


def zeros() -> Baseline:
    """The all-zeros baseline (in model input space: after normalisation this is often the mean colour)."""
    return _Constant(0.0)


def constant(value, preprocess: Callable | None = None) -> Baseline:
    """A constant baseline: a scalar or an array broadcastable to one example."""
    return _Constant(value, preprocess)


class _Uniform(Baseline):
    name = "uniform"

    def __init__(self, low, high, n, seed, preprocess, discrete):
        super().__init__(n, seed, preprocess)
        lo = np.asarray(low, np.float32)
        hi = np.asarray(high, np.float32)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError("uniform baseline: low and high must be finite")
        try:
            np.broadcast_shapes(lo.shape, hi.shape)
        except ValueError:
            raise ValueError(
                f"uniform baseline: low (shape {lo.shape}) and high (shape {hi.shape}) do not broadcast "
                "against each other"
            ) from None
        if np.any(hi <= lo):
            raise ValueError(f"uniform baseline: need high > low everywhere, got low={low!r}, high={high!r}")
        self.discrete = bool(discrete)
        if self.discrete and not (np.all(lo == np.round(lo)) and np.all(hi == np.round(hi))):
            raise ValueError(
                f"uniform baseline: discrete=True draws integers low..high, so low and high must be "
                f"integers, got low={low!r}, high={high!r}"
            )
        self.low, self.high = lo, hi

    def _draw(self, x, seed):
        shape = x.shape[1:].as_list()
        try:
            np.broadcast_shapes(self.low.shape, tuple(shape))
            np.broadcast_shapes(self.high.shape, tuple(shape))
            if len(np.broadcast_shapes(self.low.shape, self.high.shape, tuple(shape))) != len(shape):
                raise ValueError
        except ValueError:
            raise ValueError(
                f"uniform baseline: low {self.low.shape} / high {self.high.shape} must broadcast to one "
                f"example of shape {tuple(shape)} (a scalar, per-channel or per-feature bounds)"
            ) from None
        lo = tf.broadcast_to(tf.constant(self.low), shape)
        hi = tf.broadcast_to(tf.constant(self.high), shape)
        draws = []
        for k in range(self.n):
            u = tf.random.stateless_uniform([x.shape[0]] + shape, seed=[seed, k], dtype=tf.float32)
            if self.discrete:  # uniform over the integers low..high (8-bit pixels: 0..255)
                d = lo + tf.floor(u * (hi - lo + 1.0))
                draws.append(tf.minimum(d, hi))
            else:
                # lo + u (hi - lo) can round up to hi for u < 1; keep draws in the box
                draws.append(tf.clip_by_value(lo + u * (hi - lo), lo, hi))
        return tf.stack(draws)


def uniform(
    low=0.0,
    high=1.0,
    n: int = 1,
    seed: int | None = None,
    preprocess: Callable | None = None,
    discrete: bool = False,
) -> Baseline:
    """Uniform noise on the box ``[low, high]`` (per feature): the Maximum Entropy Baseline (MEB).

    Among all distributions on a box the product of uniforms has the largest differential entropy
    (the discrete uniform for 8-bit data), so this is the "uninformative" baseline of Tan (2023).
    Draw it in *raw* input space (``low``/``high`` the valid raw range, e.g. 0 and 255, or
    per-feature min/max of tabular training data; scalars, per-channel ``[C]`` or per-feature
    arrays that broadcast to one example) and pass the model's preprocessing as ``preprocess``.

    Draw ``k`` (``k = 0..n-1``) is ``low + (high - low) * stateless_uniform([B, *S], seed=[seed, k])``
    (``seed=None`` means 0): each example gets its own draw, the same seed gives the same draws
    and draw ``k`` does not depend on ``n``. The ``n`` draws are averaged by the method, so IG
    with ``n`` draws satisfies ``sum IG = F(x) - mean_k F(x'_k)`` (up to the quadrature error).
    ``discrete=True`` draws integers uniformly from ``low..high`` (bounds must be integers).

    Because every per-feature affine preprocessing ``T(u) = (u - mu) / s`` maps this box
    distribution to the uniform distribution on the transformed box, IG with MEB is the same
    object in raw and preprocessed space: ``IG(F o T, p, p') == IG(F, T(p), T(p'))``.

    **Reconstruction:** built from the paper's abstract (no code was released); whether the paper
    averages several draws (``n > 1``) or uses one is not known (default ``n=1``).

    References: H. Tan, "Maximum Entropy Baseline for Integrated Gradients", IJCNN 2023,
    arXiv 2204.05948.
    """
    return _Uniform(low, high, n, seed, preprocess, discrete)


maximum_entropy = uniform


class _Gaussian(Baseline):
    name = "gaussian_noise"

    def __init__(self, stddev, n, seed, clip, preprocess):
        super().__init__(n, seed, preprocess)
        if not np.isfinite(stddev) or stddev < 0:
            raise ValueError(f"gaussian_noise: stddev must be a finite number >= 0, got {stddev!r}")
        self.stddev, self.clip = float(stddev), clip

    def _draw(self, x, seed):
        draws = []
        for k in range(self.n):
            e = tf.random.stateless_normal(tf.shape(x), seed=[seed, k], dtype=tf.float32)
            b = x + self.stddev * e
            if self.clip is not None:
                b = tf.clip_by_value(b, self.clip[0], self.clip[1])
            draws.append(b)
        return tf.stack(draws)


def gaussian_noise(
    stddev: float, n: int = 1, seed: int | None = None, clip=None, preprocess: Callable | None = None
) -> Baseline:
    """The explicand plus Gaussian noise, ``x + stddev * eps`` (Sturmfels et al.'s Gaussian baseline),
    optionally clipped to ``clip = (low, high)``."""
    return _Gaussian(stddev, n, seed, clip, preprocess)


def gaussian_kernel_1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy's truncated 1-D Gaussian: radius ``int(truncate * sigma + 0.5)``, float64, sums to 1.

    ``[1.]`` (the identity) for ``sigma == 0`` or a zero radius (``sigma < 0.125`` at the default
    truncation). Shared by blurred baselines and Blur IG.
    """
    sigma = float(sigma)
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    radius = int(truncate * sigma + 0.5) if sigma > 0 else 0
    if radius == 0:
        return np.ones(1, np.float64)
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 / (sigma * sigma) * k * k)
    return w / w.sum()


def gaussian_blur(images, sigma: float) -> tf.Tensor:
    """Separable Gaussian blur of ``[B, H, W, C]`` (or ``[B, H, W]``) images, reflect-padded.

    Used for blurred baselines; Blur IG has its own scipy-compatible, zero-padded operator.
    """
    x = tf.convert_to_tensor(images, tf.float32)
    squeeze = False
    if x.shape.rank == 3:
        x, squeeze = x[..., None], True
    if x.shape.rank != 4:
        raise ValueError(f"blurring needs image inputs [B, H, W, C] or [B, H, W], got shape {tuple(x.shape)}")
    w = gaussian_kernel_1d(float(sigma))
    r = (len(w) - 1) // 2
    if r == 0:
        return x[..., 0] if squeeze else x
    c = x.shape[-1]
    h, wd = x.shape[1], x.shape[2]
    if r >= h or r >= wd:
        raise ValueError(f"blur sigma={sigma} is too large for {h}x{wd} images (kernel radius {r})")
    k = tf.constant(w, tf.float32)
    kh = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, c, 1])
    kw = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, c, 1])
    y = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
    y = tf.nn.depthwise_conv2d(y, kh, [1, 1, 1, 1], "VALID")
    y = tf.nn.depthwise_conv2d(y, kw, [1, 1, 1, 1], "VALID")
    return y[..., 0] if squeeze else y


class _Blurred(Baseline):
    name = "blurred"

    def __init__(self, sigma, preprocess):
        super().__init__(1, None, preprocess)
        if not np.isfinite(sigma) or sigma < 0:
            raise ValueError(f"blurred: sigma must be a finite number >= 0, got {sigma!r}")
        self.sigma = float(sigma)

    def _draw(self, x, seed):
        return gaussian_blur(x, self.sigma)[None]


def blurred(sigma: float, preprocess: Callable | None = None) -> Baseline:
    """A Gaussian-blurred copy of each explicand (image inputs ``[B, H, W, C]``)."""
    return _Blurred(sigma, preprocess)


class _FromData(Baseline):
    name = "from_data"

    def __init__(self, background, n, seed, preprocess):
        bg = np.asarray(background, np.float32) if not isinstance(background, tf.Tensor) else background.numpy()
        if bg.ndim < 1 or bg.shape[0] == 0:
            raise ValueError("from_data: background must be a non-empty array [M, ...]")
        if not np.all(np.isfinite(bg)):
            raise ValueError("from_data: background contains NaN or infinite values")
        super().__init__(bg.shape[0] if n is None else n, seed, preprocess)
        self.background = bg
        self.sample = n is not None

    def _draw(self, x, seed):
        if tuple(self.background.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(
                f"from_data: background examples have shape {self.background.shape[1:]}, inputs {tuple(x.shape[1:])}"
            )
        bg = tf.constant(self.background)
        if not self.sample:
            return bg[:, None]
        idx = tf.random.stateless_uniform([self.n], seed=[seed, 0], maxval=bg.shape[0], dtype=tf.int32)
        return tf.gather(bg, idx)[:, None]


def from_data(
    background, n: int | None = None, seed: int | None = None, preprocess: Callable | None = None
) -> Baseline:
    """Baselines taken from reference data ``[M, *S]``: all ``M`` of them (``n=None``), or ``n``
    drawn with replacement (seeded). Each baseline is shared by every explicand."""
    return _FromData(background, n, seed, preprocess)
