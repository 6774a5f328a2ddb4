"""Blur Integrated Gradients: integrate along the Gaussian scale-space path from a blurred image to the image.

.. math::

    \\mathrm{BlurIG}_i(x) = \\int_0^{\\sigma_{end}} \\frac{\\partial z_i(\\sigma)}{\\partial \\sigma}
        \\, \\partial_i F(z(\\sigma)) \\, d\\sigma \\cdot (-1),
    \\qquad z(\\sigma) = \\mathrm{blur}(x, \\sigma)

discretised as in the released code (PAIR ``saliency`` ``BlurIG``): ``sigma_i = i * max_sigma / n``
(or ``sqrt(i * max_sigma / n)`` with ``sqrt=True``), left points ``i = 0..n-1``, widths
``d_i = sigma_{i+1} - sigma_i``, a forward difference
``dz_i = (blur(x, sigma_i + h) - blur(x, sigma_i)) / h`` with ``h = grad_step``, and

.. math::

    \\mathrm{BlurIG}(x) \\approx -\\sum_{i=0}^{n-1} d_i \\, dz_i \\odot \\nabla F(z_i).

Completeness target: ``sum(attr) ~= F(x) - F(blur(x, sigma_end))`` with ``sigma_end = max_sigma``
(``sqrt(max_sigma)`` with ``sqrt=True``); convergence is slow (first order in the step).

The blur is scipy's ``gaussian_filter(img, [s, s, 0], mode="constant")``: a separable Gaussian
truncated at radius ``int(4 s + 0.5)``, weights computed in float64 and normalised to 1, zero
padding without renormalisation (large ``s`` darkens the borders), and the identity for ``s == 0``
and for ``0 < s < 0.125`` (radius 0). In TensorFlow it is applied as banded matrices,
``blur(x, s)_c = B_H(s) X_c B_W(s)^T``, precomputed once per image size and sigma schedule.
The forward difference is formed from float64 *difference* matrices,
``B_H^+ X B_W^{+T} - B_H X B_W^T = (B_H^+ - B_H) X B_W^{+T} + B_H X (B_W^+ - B_W)^T``, so no float32
cancellation is amplified by ``1/h``. Unlike the package, the step widths are the correct
per-step ``d_i`` whatever the chunk size (PAIR multiplies a batch by the last width when
``sqrt=True`` and ``batch_size > 1``).

Reference: S. Xu, S. Venugopalan, M. Sundararajan, "Attribution in Scale and Space", CVPR 2020,
arXiv 2004.03383.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..baselines import gaussian_kernel_1d
from ..engine import accumulators as _acc
from ..engine import gradients as eng
from ..engine.layout import image_axes, resolve_image_layout, to_channels_last
from ..engine.shapes import check_positive_int
from .registry import MethodSpec, require

__all__ = [
    "blur_integrated_gradients",
    "blur_matrix",
    "gaussian_blur",
    "gaussian_kernel1d",
    "sigma_schedule",
]

TRUNCATE = 4.0


def gaussian_kernel1d(sigma: float) -> np.ndarray:
    """scipy's truncated 1-D Gaussian at the default truncation (see :func:`tf_pathattr.baselines.gaussian_kernel_1d`)."""
    return gaussian_kernel_1d(sigma, TRUNCATE)


def blur_matrix(size: int, sigma: float) -> np.ndarray:
    """``[size, size]`` float64 banded matrix ``M[i, j] = w[j - i]`` (zero padding, no renormalisation)."""
    w = gaussian_kernel1d(sigma)
    r = (len(w) - 1) // 2
    d = np.arange(size)[None, :] - np.arange(size)[:, None]
    inside = np.abs(d) <= r
    return np.where(inside, w[np.clip(d + r, 0, 2 * r)], 0.0)


def sigma_schedule(max_sigma: float, n_steps: int, sqrt: bool = False) -> np.ndarray:
    """``sigma_i`` for ``i = 0..n_steps`` (float64, the package's formula); the path ends at ``sigma[-1]``."""
    i = np.arange(n_steps + 1, dtype=np.float64)
    s = i * float(max_sigma) / float(n_steps)
    return np.sqrt(s) if sqrt else s


def _apply(bh, bw, x):
    """``B_H X_c B_W^T`` for stacks ``bh [k,H,H]``, ``bw [k,W,W]`` and images ``x [B,H,W,C]`` -> ``[k,B,H,W,C]``."""
    t = tf.einsum("khi,biwc->kbhwc", bh, x)
    return tf.einsum("kwj,kbhjc->kbhwc", bw, t)


def gaussian_blur(images, sigma: float):
    """Blur ``[B, H, W, C]`` (or ``[H, W, C]``) images along H and W exactly like
    ``scipy.ndimage.gaussian_filter(img, [sigma, sigma, 0], mode="constant")``.

    Computed in the images' float dtype (float32 or float64) with the banded matrices.
    """
    x = tf.convert_to_tensor(images)
    if not x.dtype.is_floating:
        raise TypeError(f"images must be a float array, got dtype {x.dtype.name}")
    squeeze = x.shape.rank == 3
    if squeeze:
        x = x[None]
    if x.shape.rank != 4:
        raise ValueError(f"images must have shape [B, H, W, C] or [H, W, C], got {tuple(x.shape)}")
    h, w = int(x.shape[1]), int(x.shape[2])
    bh = tf.constant(blur_matrix(h, sigma)[None], x.dtype)
    bw = tf.constant(blur_matrix(w, sigma)[None], x.dtype)
    out = _apply(bh, bw, x)[0]
    return out[0] if squeeze else out


@functools.lru_cache(maxsize=4)
def _path_tables(h: int, w: int, max_sigma: float, n_steps: int, grad_step: float, sqrt: bool):
    """Float32 arrays for the whole path (numpy, cached per image size and schedule).

    ``bh, bw``: blur at ``sigma_i``; ``dh = c_i (B_H^+ - B_H)``, ``dw = c_i (B_W^+ - B_W)`` with
    ``c_i = -d_i / h`` (width, forward difference and the final sign folded in, float64 before the
    cast); ``bwp``: ``B_W^+``; ``end_h, end_w``: the blur at ``sigma_end``.
    """
    sig = sigma_schedule(max_sigma, n_steps, sqrt)
    widths = np.diff(sig)
    bh, bw, dh, dw, bwp = [], [], [], [], []
    for i in range(n_steps):
        s, sp, c = sig[i], sig[i] + grad_step, -widths[i] / grad_step
        mh, mw = blur_matrix(h, s), blur_matrix(w, s)
        mhp, mwp = blur_matrix(h, sp), blur_matrix(w, sp)
        bh.append(mh)
        bw.append(mw)
        dh.append(c * (mhp - mh))
        dw.append(c * (mwp - mw))
        bwp.append(mwp)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return dict(
        bh=f32(bh),
        bw=f32(bw),
        dh=f32(dh),
        dw=f32(dw),
        bwp=f32(bwp),
        end_h=f32(blur_matrix(h, sig[-1])[None]),
        end_w=f32(blur_matrix(w, sig[-1])[None]),
    )


def _refuse_integer_images(inputs, method_name):
    """Integer images: say to convert them to float (the engine's integer message points to layer=,
    which image methods cannot take)."""
    dtype = getattr(inputs, "dtype", None)
    if dtype is None and not isinstance(inputs, (list, tuple, dict)):
        dtype = np.asarray(inputs).dtype
    if dtype is not None and (tf.as_dtype(dtype).is_integer or tf.as_dtype(dtype) == tf.bool):
        raise TypeError(
            f"inputs has integer dtype {tf.as_dtype(dtype).name}: {method_name} explains float images; "
            "convert integer images (e.g. uint8 0-255) to float as the model expects them. "
            f"It cannot attribute to a layer's output (layer=), so token-id models need another method."
        )


def _check_positive_float(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


@overload
def blur_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    max_sigma: float = ...,
    n_steps: int = ...,
    grad_step: float = ...,
    sqrt: bool = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    data_format: str | None = ...,
    layer: Any = ...,
    idgi: Any = ...,
) -> Attributions: ...


@overload
def blur_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    max_sigma: float = ...,
    n_steps: int = ...,
    grad_step: float = ...,
    sqrt: bool = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    data_format: str | None = ...,
    layer: Any = ...,
    idgi: Any = ...,
) -> tuple[Attributions, tf.Tensor]: ...


@overload
def blur_integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: bool = ...,
    max_sigma: float = ...,
    n_steps: int = ...,
    grad_step: float = ...,
    sqrt: bool = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    data_format: str | None = ...,
    layer: Any = ...,
    idgi: Any = ...,
) -> Any: ...


@eng.planned
def blur_integrated_gradients(
    model,
    inputs,
    target=None,
    *,
    max_sigma: float = 50.0,
    n_steps: int = 100,
    grad_step: float = 0.01,
    sqrt: bool = False,
    internal_batch_size=None,
    return_convergence_delta: bool = False,
    jit_compile: bool = False,
    data_format=None,
    layer=None,
    idgi=False,
):
    """Blur IG: integrated gradients along the path from ``blur(x, sigma_end)`` to ``x``.

    Parameters
    ----------
    model : keras.Model or callable
        An image model taking float image batches in ``data_format``.
    inputs : array-like ``[B, H, W, C]``, ``[B, C, H, W]`` or ``[B, H, W]``, float
        The images. The height and width axes are blurred, the channel axis is left alone. Other
        ranks, multi-input structures and integer dtypes raise an error.
    target : None, int, sequence of B ints, or callable
        See :mod:`tf_pathattr.engine.targets`.
    max_sigma : float
        Largest blur (default 50); the path starts at ``sigma_end = max_sigma`` (or
        ``sqrt(max_sigma)`` with ``sqrt=True``).
    n_steps : int
        Number of sigma steps (PAIR's ``steps``, default 100); ``n_steps`` gradients are taken.
    grad_step : float
        Step ``h`` of the forward difference ``d blur / d sigma`` (default 0.01).
    sqrt : bool
        ``sigma_i = sqrt(i * max_sigma / n_steps)``; the path then ends at ``sqrt(max_sigma)``.
        The per-step widths are exact (no PAIR batch quirk).
    internal_batch_size : int, optional
        Most model rows per call (default 256); ``internal_batch_size // B`` sigma steps per call.
    return_convergence_delta : bool
        Also return ``delta = sum(attr) - (F(x) - F(blur(x, sigma_end)))`` per example.
    jit_compile : bool
        Compile the whole method with XLA.
    idgi : bool or engine.accumulators.ImportantDirection
        Reduce the blur path with IDGI (``tpa.idgi``): the points ``z_i = blur(x, sigma_i)``,
        ``i = 0..n-1`` (from the image towards blur), each with its gradient, and the output change
        to the next point, the last one being ``blur(x, sigma_end)`` (one extra forward pass); the
        sum is negated so that it runs from the blurred image to ``x``.
    data_format : {"channels_last", "channels_first"}, optional
        Layout of rank-4 images. Default: the layout the model declares (its first image layer's
        ``data_format``, its input shape), else ``keras.config.image_data_format()``; a model whose
        layout cannot be read, or a value that contradicts the model, raises a ``ValueError``
        (:func:`tf_pathattr.engine.layout.resolve_image_layout`). ``[B, H, W]`` grayscale batches
        are the same in both.
    layer : None
        Not supported: the blur path is defined on the image itself (a ``ValueError`` says so).

    Returns
    -------
    attributions : tf.Tensor shaped like ``inputs`` (float32)
    delta : tf.Tensor ``[B]``, only with ``return_convergence_delta=True``

    Notes
    -----
    Memory for the precomputed matrices is ``n_steps * (2 H^2 + 3 W^2)`` float32 values
    (about 100 MB for 224 x 224 and 100 steps); the last 4 sets are cached per size and schedule.
    Zero padding darkens the borders of strongly blurred images, so the path starts from a dim
    blob, not from a mean-colour image. With ``grad_step < 0.125`` the first step contributes
    exactly 0 (both blurs are the identity).
    """
    if layer is not None:
        require(SPEC, "layer", "layer=")
    _refuse_integer_images(inputs, "blur_integrated_gradients")
    max_sigma = _check_positive_float(max_sigma, "max_sigma")
    grad_step = _check_positive_float(grad_step, "grad_step")
    n_steps = check_positive_int(n_steps, "n_steps")
    accumulator = _acc.as_accumulator(idgi)
    problem = eng.prepare(model, inputs, target)
    if problem.structure.kind != "single":
        require(SPEC, "multi_input", f"inputs (a {problem.structure.kind} of inputs)")
    x0 = problem.flat_x[0]
    fmt = resolve_image_layout(model, tuple(x0.shape), data_format)
    h_axis, w_axis, _ = image_axes(tuple(x0.shape), fmt)
    rank = x0.shape.rank
    batch = problem.batch_size
    h, w = int(x0.shape[h_axis]), int(x0.shape[w_axis])

    def to_bhwc(t):  # the user's layout -> [B, H, W, C] (a grayscale batch gets C = 1)
        return t[..., None] if rank == 3 else to_channels_last(t, fmt)

    def from_bhwc(t):  # [..., H, W, C] -> the user's layout (leading axes kept)
        if rank == 3:
            return t[..., 0]
        if fmt == "channels_first":
            lead = t.shape.rank - 3
            return tf.transpose(t, list(range(lead)) + [lead + 2, lead, lead + 1])
        return t

    tables = _path_tables(h, w, max_sigma, n_steps, grad_step, bool(sqrt))
    chunk = eng.chunk_size(n_steps, batch, internal_batch_size)
    key = (
        "blur_integrated_gradients",
        float(max_sigma),
        n_steps,
        float(grad_step),
        bool(sqrt),
        chunk,
        bool(return_convergence_delta),
        batch,
        fmt,
        _acc.cache_token(accumulator),
    )
    names = ("bh", "bw", "dh", "dw", "bwp", "end_h", "end_w")

    def builder():
        def fn(flat_x, indices, bh, bw, dh, dw, bwp, end_h, end_w):
            x = to_bhwc(flat_x[0])  # blurred along H and W in [B, H, W, C]; the model sees its own layout
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)

            def body(start, size, acc):
                sl = lambda t: tf.slice(t, [start, 0, 0], [size, -1, -1])  # noqa: E731
                mh, mw, mdh, mdw, mwp = sl(bh), sl(bw), sl(dh), sl(dw), sl(bwp)
                t1 = tf.einsum("khi,biwc->kbhwc", mh, x)
                z = tf.einsum("kwj,kbhjc->kbhwc", mw, t1)
                dz = tf.einsum("kwj,kbhjc->kbhwc", mdw, t1) + _apply(
                    mdh, mwp, x
                )  # = -(d_i / h) (blur(x, s_i + h) - blur(x, s_i))
                f, grads = eng.score_and_gradients(problem, [eng.rows(from_bhwc(z), size, batch)], indices)
                g = eng.unrows(to_bhwc(grads[0]), size, batch)
                if accumulator is not None:  # IDGI: (F, g) at blur(x, sigma_i), in path order
                    return accumulator.update(acc, tf.reshape(f, [size, batch]), [g])
                return acc + tf.reduce_sum(dz * g, axis=0)

            if accumulator is not None:
                state = eng.chunked_loop(n_steps, chunk, body, accumulator.init([x]))
                f_end = eng.scores(problem, [from_bhwc(_apply(end_h, end_w, x)[0])], indices)
                (attr,), _ = accumulator.finish(state, f_end)
                attr = -attr  # from blur(x, sigma_end) to x
            else:
                attr = eng.chunked_loop(n_steps, chunk, body, tf.zeros_like(x))
            attr = from_bhwc(attr)
            if not return_convergence_delta:
                return [attr], tf.zeros((batch,), tf.float32)
            f_x = eng.scores_at_x(problem, flat_x, indices, out_x)
            f_end = eng.scores(problem, [from_bhwc(_apply(end_h, end_w, x)[0])], indices)
            total = tf.reduce_sum(tf.reshape(attr, [batch, -1]), axis=1)
            return [attr], total - (f_x - f_end)

        return fn

    extra = tuple(tf.constant(tables[k]) for k in names)
    return eng.Plan(problem, key, builder, extra, jit_compile, eng.packed_finish(problem, return_convergence_delta))


SPEC = MethodSpec(
    name="blur_integrated_gradients",
    function=blur_integrated_gradients,
    aliases=("blur_ig",),
    summary=("scale-space path from a heavily blurred image; scipy-exact Gaussian blur as banded matrices in TF"),
    paper="S. Xu, S. Venugopalan, M. Sundararajan, Attribution in Scale and Space, CVPR 2020",
    completeness="F(x) − F(blur(x, σ_max))",
    layer="blur_integrated_gradients blurs an image; it cannot attribute to a layer's output",
    multi_input="blur_integrated_gradients blurs one image input; multi-input models are not supported",
    image_only="blur_integrated_gradients needs images [B, H, W, C], [B, C, H, W] (data_format) or [B, H, W]",
    test_options={"n_steps": 8, "max_sigma": 2.0},
)
