"""Deletion and insertion curves (RISE ``CausalMetric``, as used by the IDG authors).

Pixels (all channels at once) or tabular features are changed in order of decreasing saliency
``|sum_c a|`` (stable sort: ties go to the lower flat index). Deletion starts from the input and
replaces units by a substrate; insertion starts from the substrate and reveals the input. The score
is, by default, the probability of the class predicted on the original input (the shared
scoring rule of :mod:`._scoring`: a model ending in softmax is read as is, logits get their softmax). The curve has
``n_steps + 1`` points (point 0 = the start image) and

.. math:: AUC = \\frac{\\sum_k s_k - s_0/2 - s_n/2}{n}

(the trapezoid rule on a unit x axis). Deletion: lower is better; insertion: higher is better.

References: V. Petsiuk, A. Das, K. Saenko, "RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC 2018, arXiv 1806.07421; G. Walker et al., "Integrated Decision Gradients",
AAAI 2024 (evaluation protocol: 224 pixels per step at 224x224, substrate zeros for deletion, an
11x11 sigma-5 Gaussian blur for insertion, in normalised space).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.gradients import as_numpy_seed
from ..engine.shapes import check_choice, check_positive_int
from . import _common as C

__all__ = ["CurveResult", "deletion", "insertion", "step_counts", "gaussian_kernel_rise"]

SUBSTRATES = ("constant", "blur", "maximum_entropy")


@dataclass
class CurveResult:
    """Per-example curves and areas; also readable like a dict (``result["auc"]``).

    Attributes
    ----------
    auc : ``[B]`` float64
    curves : ``[B, n_steps + 1]`` float64
    fractions : ``[n_steps + 1]`` fraction of units changed at each point
    valid : ``[B]`` bool, False where the attribution map ranks nothing (all zero or constant:
        the protocol skips those)
    target : ``[B]`` int, the explained class (None for a callable target)
    score : the score the curve is made of (``"probability"``, ``"logit"``, ``"output"``, ``"accuracy"``)
    extra : how the model's outputs were read (``outputs``, ``detected_by``) and the ``units``
    """

    auc: np.ndarray
    curves: np.ndarray
    fractions: np.ndarray
    valid: np.ndarray
    target: np.ndarray | None
    score: str = "probability"
    extra: dict = field(default_factory=dict)

    @property
    def mean_auc(self) -> float:
        """Mean AUC over the valid examples (NaN if none)."""
        return float(np.mean(self.auc[self.valid])) if self.valid.any() else float("nan")

    def __getitem__(self, key):
        return getattr(self, key)

    def keys(self):
        return ("auc", "curves", "fractions", "valid", "target", "score")


def step_counts(n_units: int, pixels_per_step=None, n_steps=None) -> np.ndarray:
    """Number of units changed at each curve point, ``[n_steps + 1]`` from 0 to ``n_units``.

    ``pixels_per_step=p``: ``min(k p, U)`` for ``k = 0..ceil(U / p)`` (the RISE rule);
    ``n_steps=n``: ``round(k U / n)``.
    """
    if pixels_per_step is not None and n_steps is not None:
        raise ValueError("give pixels_per_step or n_steps, not both")
    if n_steps is not None:
        n = check_positive_int(n_steps, "n_steps")
        return np.rint(np.arange(n + 1) * n_units / n).astype(np.int32)
    p = check_positive_int(pixels_per_step, "pixels_per_step")
    n = -(-n_units // p)
    return np.minimum(np.arange(n + 1) * p, n_units).astype(np.int32)


def gaussian_kernel_rise(size: int = 11, sigma: float = 5.0) -> np.ndarray:
    """RISE's blur kernel: ``scipy.ndimage.gaussian_filter`` applied to a ``size x size`` delta.

    scipy's default ``reflect`` mode folds the truncated tails back into the window, so the kernel
    sums to 1 (it is not a plain sampled Gaussian for ``sigma`` comparable to ``size``).
    """
    from scipy.ndimage import gaussian_filter

    size = check_positive_int(size, "blur_size")
    if size % 2 == 0:
        raise ValueError(f"blur_size must be odd, got {size}")
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    return gaussian_filter(delta, sigma)


def _blur(x, kernel):
    """Per-channel conv2d with zero padding ``size // 2`` (RISE ``nn.functional.conv2d(..., padding=klen//2)``)."""
    c = x.shape[-1]
    k = tf.constant(np.tile(kernel[:, :, None, None], (1, 1, c, 1)), tf.float32)
    return tf.nn.depthwise_conv2d(x, k, [1, 1, 1, 1], "SAME")


def _curve(
    mode,
    model,
    inputs,
    attributions,
    target,
    substrate,
    substrate_value,
    blur_sigma,
    blur_size,
    pixels_per_step,
    n_steps,
    score,
    value_range,
    seed,
    batch_size,
    units,
    data_format,
):
    check_choice(substrate, "substrate", SUBSTRATES)
    C.check_score_name(score)
    problem = C.prepare_single(model, inputs, target)
    x = problem.flat_x[0]
    shape = tuple(x.shape)
    layout = C.resolve_layout(shape, units, data_format, model=model)
    scoring = C.resolve_scoring(problem, score)
    sal = layout.saliency(attributions)
    grid = layout.grid
    n_units = layout.n_units
    if pixels_per_step is None and n_steps is None:
        pixels_per_step = grid[1] if len(grid) >= 2 else 1  # RISE: one image row per step; else 1 unit
    counts = step_counts(n_units, pixels_per_step, n_steps)
    ranks = C.rank_positions(sal).reshape((shape[0],) + grid)

    # substrate (constant / noise are extra arguments; the blur is computed from x inside)
    if substrate == "blur":
        if not layout.is_image:
            raise ValueError(
                f"substrate='blur' needs image inputs [B, H, W, C], [B, C, H, W] or [B, H, W] "
                f"(units='pixels'), got shape {shape}"
            )
        kernel = gaussian_kernel_rise(blur_size, float(blur_sigma))
        sub_arg = tf.zeros((), tf.float32)
    elif substrate == "constant":
        v = np.asarray(substrate_value, np.float32)
        try:
            v = np.broadcast_to(v, shape)
        except ValueError:
            raise ValueError(
                f"substrate_value must broadcast to the inputs' shape {shape}, got shape {v.shape}"
            ) from None
        sub_arg = tf.constant(v)
        kernel = None
    else:
        if value_range is None:
            raise ValueError("substrate='maximum_entropy' needs value_range=(low, high), the valid input box")
        lo, hi = (np.asarray(v, np.float32) for v in value_range)
        if np.any(hi <= lo):
            raise ValueError(f"value_range: need high > low, got {value_range!r}")
        u = tf.random.stateless_uniform(shape, seed=[as_numpy_seed(seed), 0], dtype=tf.float32)
        sub_arg = tf.constant(lo) + u * tf.constant(hi - lo)
        kernel = None

    batch = problem.batch_size
    deleting = mode == "deletion"

    def make_points(flat_x, indices, start, size, ranks_t, counts_t, sub):
        xx = flat_x[0]
        base = layout.from_channels_last(_blur(layout.to_channels_last(xx), kernel)) if kernel is not None else sub
        cnt = tf.slice(counts_t, [start], [size])
        m = layout.expand(ranks_t[None] < eng.expand_like(cnt, ranks_t[None]))  # True = unit changed
        if deleting:
            pts = tf.where(m, base[None], xx[None])
        else:
            pts = tf.where(m, xx[None], base[None])
        pts = tf.ensure_shape(pts, [size, batch] + list(shape[1:]))
        return tf.reshape(pts, [size * batch] + list(shape[1:]))

    key = (
        mode,
        substrate,
        None if kernel is None else (int(blur_size), float(blur_sigma)),
        tuple(counts),
        layout.kind,
        layout.channel_axis,
    )
    scores, indices, _, _ = C.batched_scores(
        problem, key, len(counts), batch_size, make_points, (tf.constant(ranks), tf.constant(counts), sub_arg), scoring
    )
    curves = scores.T.astype(np.float64)
    return CurveResult(
        auc=C.trapezoid_unit(curves),
        curves=curves,
        fractions=counts / float(n_units),
        valid=~C.degenerate(sal),
        target=C.result_target(problem, indices),
        score=scoring.score,
        extra={"outputs": scoring.outputs, "detected_by": scoring.detected_by, "units": layout.kind},
    )


def deletion(
    model,
    inputs,
    attributions,
    target=None,
    *,
    substrate: str = "constant",
    substrate_value=0.0,
    blur_sigma: float = 5.0,
    blur_size: int = 11,
    pixels_per_step=None,
    n_steps=None,
    score=None,
    value_range=None,
    seed=None,
    batch_size=None,
    units=None,
    data_format=None,
) -> CurveResult:
    """Deletion curve: remove the most salient units first; lower AUC is better.

    Parameters
    ----------
    model : keras.Model or callable
    inputs : images ``[B, H, W, C]`` / ``[B, C, H, W]`` (``data_format``) or ``[B, H, W]``
        (``units="pixels"``), sequences ``[B, T, E]`` (``units="tokens"``) or tabular rows
        ``[B, d]``, in model space
    attributions : array shaped like ``inputs``, or one value per unit (``[B, H, W]`` for images,
        e.g. XRAI's maps); ranking uses ``|sum over channels|`` (stable ties)
    target : None (class predicted on the original input), int, B ints, or a callable score
    substrate : {"constant", "blur", "maximum_entropy"}
        What replaces deleted units: ``substrate_value`` (default 0.0, the dataset mean in normalised
        space), an ``blur_size`` x ``blur_size`` Gaussian blur (sigma ``blur_sigma``, zero padding) of
        the input, or one uniform draw on ``value_range = (low, high)`` per example (``seed``).
    pixels_per_step, n_steps : int
        Units changed per step (default: the image width, i.e. 224 at 224x224 as in RISE; one
        unit for sequences and tabular data), or the number of steps.
    score : {None, "probability", "logit", "output", "accuracy"}
        The shared scoring rule (:mod:`tf_pathattr.metrics._scoring`). ``None`` = ``"probability"``:
        the probability of the target, read from a model that ends in softmax / sigmoid and computed
        (softmax, or sigmoid for one unit) from a logits model. ``"softmax"`` is an alias.
    units : {None, "pixels", "tokens", "features"}
        Needed for rank-3 inputs only (grayscale images or sequences).
    data_format : {None, "channels_last", "channels_first"}
        Layout of rank-4 images (``None`` = the layout the model declares, else
        ``keras.config.image_data_format()``; see :func:`tf_pathattr.engine.layout.resolve_image_layout`).
    batch_size : int
        Most model rows per call (default 256); several curve points go in each call.

    Returns
    -------
    CurveResult with ``auc [B]`` and ``curves [B, n_steps + 1]``.
    """
    return _curve(
        "deletion",
        model,
        inputs,
        attributions,
        target,
        substrate,
        substrate_value,
        blur_sigma,
        blur_size,
        pixels_per_step,
        n_steps,
        score,
        value_range,
        seed,
        batch_size,
        units,
        data_format,
    )


def insertion(
    model,
    inputs,
    attributions,
    target=None,
    *,
    substrate: str = "blur",
    substrate_value=0.0,
    blur_sigma: float = 5.0,
    blur_size: int = 11,
    pixels_per_step=None,
    n_steps=None,
    score=None,
    value_range=None,
    seed=None,
    batch_size=None,
    units=None,
    data_format=None,
) -> CurveResult:
    """Insertion curve: start from the substrate (default: the RISE blur) and reveal the most salient
    units first; higher AUC is better. Arguments as :func:`deletion`."""
    return _curve(
        "insertion",
        model,
        inputs,
        attributions,
        target,
        substrate,
        substrate_value,
        blur_sigma,
        blur_size,
        pixels_per_step,
        n_steps,
        score,
        value_range,
        seed,
        batch_size,
        units,
        data_format,
    )
