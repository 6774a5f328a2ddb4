"""Performance Information Curves: SIC (softmax) and AIC (accuracy), as PAIR ``saliency.metrics.pic`` computes them.

Kapishnikov et al., "XRAI: Better Attributions Through Regions", ICCV 2019.

How much of the model's performance comes back as a function of how much *information* of the
image is revealed, most salient pixels first. The "blurred" (bokeh) image keeps the selected pixels
(plus the four corners and a random 1 % mask) and fills the others channel by channel by linear
interpolation over a Delaunay triangulation of the kept pixels (``scipy.interpolate.griddata``).
Information is the byte length of the image as lossless WebP (Pillow). For each threshold
``tau`` the image keeping the top ``tau`` fraction of pixels gives a point
``(clip((H - H0)/(H_orig - H0)), clip((p - p0)/(p_orig - p0)))``; with ``(0, 0)`` and ``(1, 1)``
added, the piecewise-linear curve is sampled at 1000 points plus 1.0 and integrated with the
trapezoid rule. The ``len(thresholds) + 2`` images of every example are scored by one compiled
forward loop. SIC is made of the probability of the target by the shared scoring rule
(:mod:`._scoring`: a model ending in softmax is read as is), AIC of top-1 == target.

References: A. Kapishnikov, T. Bolukbasi, F. Viegas, M. Terry, "XRAI: Better Attributions Through
Regions", ICCV 2019; A. Kapishnikov et al., "Guided Integrated Gradients", CVPR 2021. Protocol as
released in PAIR ``saliency.metrics.pic``; this is an independent port (numpy 2.4 compatible).
Needs scipy and Pillow with WebP (``pip install tf_pathattr[metrics]``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.shapes import check_choice
from . import _common as C

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ComputePicMetricError",
    "PicCurve",
    "PicAggregate",
    "PicResult",
    "create_blurred_image",
    "generate_random_mask",
    "estimate_image_entropy",
    "compute_pic_metric",
    "aggregate_pic_results",
    "pic",
]

DEFAULT_THRESHOLDS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75)


class ComputePicMetricError(Exception):
    """The image cannot be scored (low prediction, or the fully blurred image is not less informative
    or not less confidently predicted than the original); skip it."""


@dataclass
class PicCurve:
    """One image's curve: ``x`` (1001 information levels), ``y`` (normalised performance), ``auc``,
    the bokeh images, the raw predictions ``[p0, p_tau..., p_orig]`` and the thresholds ``[0, tau..., 1]``."""

    x: np.ndarray
    y: np.ndarray
    auc: float
    blurred_images: list
    predictions: list
    thresholds: list


@dataclass
class PicAggregate:
    x: np.ndarray
    y: np.ndarray
    auc: float


def create_blurred_image(full_img: np.ndarray, pixel_mask: np.ndarray, method: str = "linear") -> np.ndarray:
    """Keep the pixels where ``pixel_mask`` (and the four corners) is True, interpolate the rest.

    Each channel of the unknown pixels is filled by ``scipy.interpolate.griddata`` from the kept
    pixels, with the channel mean as fill value. Integer images are rounded; the dtype is kept.
    """
    from scipy.interpolate import LinearNDInterpolator, griddata
    from scipy.spatial import Delaunay

    img = np.asarray(full_img)
    dtype = img.dtype
    gray = img.ndim == 2
    if gray:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"full_img must be [H, W, C] or [H, W], got shape {np.shape(full_img)}")
    keep = np.array(pixel_mask, dtype=bool, copy=True)
    if keep.shape != img.shape[:2]:
        raise ValueError(f"pixel_mask must have shape {img.shape[:2]}, got {keep.shape}")
    h, w = keep.shape
    keep[0, 0] = keep[0, w - 1] = keep[h - 1, 0] = keep[h - 1, w - 1] = True
    if keep.all():
        return np.asarray(full_img)
    # work buffer in the promoted float type (float32 for 8-bit images), as the released code does:
    # interpolated values are rounded to that precision before the final rounding to integers
    out = (img * keep[:, :, None].astype(np.float32)).astype(np.result_type(img.dtype, np.float32))
    known = np.argwhere(keep)
    unknown = np.argwhere(~keep)
    fill = img.mean(axis=(0, 1))
    # one Delaunay triangulation of the kept pixels serves every channel (griddata would rebuild it
    # per channel; the triangulation and the barycentric weights are the same)
    interp = (
        LinearNDInterpolator(
            Delaunay(known.astype(np.float64)), img[known[:, 0], known[:, 1], :].astype(np.float64), fill_value=np.nan
        )
        if method == "linear"
        else None
    )
    if interp is not None:
        vals = interp(unknown.astype(np.float64))
        vals = np.where(np.isnan(vals), fill[None, :], vals)
        out[unknown[:, 0], unknown[:, 1], :] = vals
    else:
        for c in range(img.shape[2]):
            vals = img[:, :, c][known[:, 0], known[:, 1]]
            out[unknown[:, 0], unknown[:, 1], c] = griddata(known, vals, unknown, method=method, fill_value=fill[c])
    if gray:
        out = out[:, :, 0]
    if np.issubdtype(dtype, np.integer):
        out = np.round(out)
    return out.astype(dtype)


def generate_random_mask(height: int, width: int, fraction: float = 0.01, seed=None) -> np.ndarray:
    """Boolean ``[H, W]`` with ``int(fraction H W)`` pixels True, drawn without replacement from
    ``numpy.random.default_rng(seed)``. Use one mask per image, the same for every method."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(height * width, bool)
    mask[rng.choice(height * width, size=int(height * width * fraction), replace=False)] = True
    return mask.reshape(height, width)


def estimate_image_entropy(image: np.ndarray) -> int:
    """Byte length of the uint8 image saved as lossless WebP (quality 100); a single channel is squeezed."""
    from PIL import Image

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="webp", lossless=True, quality=100)
    return buf.tell()


def _check_img(img):
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"img must be uint8, got {img.dtype}")
    if img.ndim not in (2, 3):
        raise ValueError(f"img must be [H, W, C] or [H, W], got shape {img.shape}")
    return img


def pic_images(img, saliency_map, random_mask, saliency_thresholds=DEFAULT_THRESHOLDS):
    """The ``len(thresholds) + 2`` images ``[B0, B_tau..., img]`` and their WebP sizes."""
    img = _check_img(img)
    sal = np.asarray(saliency_map)
    if sal.shape != img.shape[:2]:
        raise ValueError(f"saliency_map must have shape {img.shape[:2]}, got {sal.shape}")
    th = [float(t) for t in saliency_thresholds]
    if any(b <= a for a, b in zip(th, th[1:])):
        raise ValueError("saliency_thresholds must be ascending")
    rmask = np.asarray(random_mask, bool)
    images = [create_blurred_image(img, rmask)]
    for t in th:
        keep = np.logical_or(sal >= np.quantile(sal, 1.0 - t), rmask)
        images.append(create_blurred_image(img, keep))
    images.append(img)
    return images, [estimate_image_entropy(im) for im in images]


def pic_curve(
    entropies,
    predictions,
    saliency_thresholds=DEFAULT_THRESHOLDS,
    min_pred_value: float = 0.8,
    keep_monotonous: bool = True,
    num_data_points: int = 1000,
    images=None,
) -> PicCurve:
    """The curve from the entropies and predictions of ``[B0, B_tau..., img]`` (see :func:`pic_images`)."""
    from scipy.interpolate import interp1d

    ent = [float(e) for e in entropies]
    pred = [float(p) for p in predictions]
    h0, h_orig = ent[0], ent[-1]
    p0, p_orig = pred[0], pred[-1]
    if p_orig < min_pred_value:
        raise ComputePicMetricError(
            f"prediction on the original image {p_orig} is below min_pred_value={min_pred_value}"
        )
    if h0 >= h_orig:
        raise ComputePicMetricError(f"the fully blurred image is not less informative ({h0} >= {h_orig} bytes)")
    if p0 >= p_orig:
        raise ComputePicMetricError(f"prediction on the fully blurred image {p0} is not below the original {p_orig}")
    pts = []
    running = 0.0
    for e, p in zip(ent[1:-1], pred[1:-1]):
        hn = float(np.clip((e - h0) / (h_orig - h0), 0.0, 1.0))
        pn = float(np.clip((p - p0) / (p_orig - p0), 0.0, 1.0))
        running = max(running, pn)
        pts.append((hn, running if keep_monotonous else pn))
    pts += [(0.0, 0.0), (1.0, 1.0)]
    hx, py = zip(*pts)
    f = interp1d(hx, py)
    x = np.linspace(0.0, 1.0, num_data_points, endpoint=False)
    y = np.asarray(f(x), np.float64)
    x, y = np.append(x, 1.0), np.append(y, 1.0)
    return PicCurve(
        x=x,
        y=y,
        auc=float(np.trapezoid(y, x)),
        blurred_images=list(images or [])[:-1],
        predictions=pred,
        thresholds=[0.0] + [float(t) for t in saliency_thresholds] + [1.0],
    )


def compute_pic_metric(
    img,
    saliency_map,
    random_mask,
    pred_func: Callable,
    saliency_thresholds=DEFAULT_THRESHOLDS,
    min_pred_value: float = 0.8,
    keep_monotonous: bool = True,
    num_data_points: int = 1000,
) -> PicCurve:
    """PIC curve of one uint8 image (``saliency.metrics.compute_pic_metric`` semantics).

    ``pred_func(uint8 batch) -> sequence of floats`` is called **once**, on the batch
    ``[B0, B_tau..., img]`` (the fully blurred image, one image per threshold, the original).
    Raises :class:`ComputePicMetricError` when the image must be skipped.
    """
    images, ent = pic_images(img, saliency_map, random_mask, saliency_thresholds)
    preds = np.asarray(pred_func(np.stack(images)), np.float64).reshape(-1)
    if preds.size != len(images):
        raise ValueError(f"pred_func must return one value per image ({len(images)}), got {preds.size}")
    return pic_curve(ent, preds, saliency_thresholds, min_pred_value, keep_monotonous, num_data_points, images)


def aggregate_pic_results(results: Sequence[PicCurve], method: str = "median") -> PicAggregate:
    """Pointwise median (or mean) curve over images and the AUC of that curve (not the median AUC)."""
    check_choice(method, "method", ("median", "mean"))
    results = [r for r in results if r is not None]
    if not results:
        raise ValueError("aggregate_pic_results needs at least one curve")
    xs = np.stack([r.x for r in results])
    if not np.all(xs == xs[0]):
        raise ValueError("the curves have different x grids")
    ys = np.stack([r.y for r in results])
    y = np.median(ys, axis=0) if method == "median" else ys.mean(axis=0)
    return PicAggregate(x=xs[0], y=y, auc=float(np.trapezoid(y, xs[0])))


@dataclass
class PicResult:
    """Per kind (``"sic"``, ``"aic"``): ``auc[kind]`` ``[B]`` (NaN for skipped images),
    ``curves[kind]`` (list of :class:`PicCurve` or None), ``aggregate[kind]`` (:class:`PicAggregate`
    over the valid, not skipped images, or None if there is none), ``errors[kind]`` (message or
    None per image). ``valid [B]``: False where the saliency map ranks nothing (all zero or
    constant); such maps keep every pixel at every threshold, so their AUC says nothing, and the
    aggregate leaves them out. ``target``: the explained classes (None for a callable target);
    ``score``: what SIC is made of."""

    auc: dict
    curves: dict
    aggregate: dict
    errors: dict
    target: np.ndarray | None
    valid: np.ndarray = None
    score: str = "probability"

    def __getitem__(self, key):
        return getattr(self, key)


def _check_in_value_range(x, lo: float, hi: float, given: bool) -> None:
    """Refuse float images that the uint8 mapping of ``value_range`` would clip (beyond half a step)."""
    step = (hi - lo) / 255.0
    x_lo, x_hi = float(np.min(x)), float(np.max(x))
    if x_lo >= lo - 0.5 * step and x_hi <= hi + 0.5 * step:
        return
    which = f"value_range={(lo, hi)!r}" if given else f"the default value_range={(lo, hi)!r}"
    raise ValueError(
        f"pic: inputs lie in [{x_lo:.4g}, {x_hi:.4g}], outside {which}; they would be clipped into it when mapped "
        "to uint8 (a silently different image). Pass value_range=(low, high) with the model's input range "
        "(e.g. (-1, 1)), or to_uint8= / preprocess= for another mapping"
    )


def pic(
    model,
    inputs,
    attributions,
    target=None,
    *,
    kind: str = "both",
    score=None,
    value_range=None,
    to_uint8: Callable | None = None,
    preprocess: Callable | None = None,
    random_masks=None,
    random_fraction: float = 0.01,
    seed=None,
    thresholds=DEFAULT_THRESHOLDS,
    min_pred_value: float = 0.5,
    keep_monotonous: bool = True,
    num_data_points: int = 1000,
    aggregate: str = "median",
    batch_size=None,
    units=None,
    data_format=None,
) -> PicResult:
    """SIC and AIC for a batch of images.

    Parameters
    ----------
    inputs : images ``[B, H, W, C]`` / ``[B, C, H, W]`` (``data_format``) or ``[B, H, W]``
        (``units="pixels"``), float in model space or **uint8** (PAIR's convention)
    attributions : shaped like ``inputs`` or ``[B, H, W]``; the saliency is ``|sum over channels|``
    kind : {"sic", "aic", "both"}
        SIC scores the probability of the target class (``score``), AIC 1.0 when the top-1 class
        is the target. AIC needs a class: with a callable target use ``kind="sic"``.
    score : {None, "probability", "logit", "output"}
        What SIC is made of, by the shared scoring rule (:mod:`tf_pathattr.metrics._scoring`):
        None = the probability (a model ending in softmax is read as is, logits get their softmax).
    value_range : (low, high)
        The model-space range that uint8 0..255 maps to: ``x = low + u (high - low) / 255`` and
        ``u = round(255 (x - low) / (high - low))``. Default ``(0, 1)`` for float inputs and
        ``(0, 255)`` for uint8 inputs (the model then gets the pixel values as float32). Float
        inputs outside the range (beyond half a uint8 step) raise a ``ValueError`` naming
        ``value_range=``: they are never clipped into it (a ``[-1, 1]`` model's images clipped to
        ``(0, 1)`` give a different SIC).
    to_uint8, preprocess : callables
        Model space -> uint8 images, and uint8 batch -> model inputs (both in the model's layout);
        replace the ``value_range`` mapping.
    random_masks : bool ``[B, H, W]``, optional
        The random 1 % masks; by default drawn per image from ``seed`` (pass the same ``seed`` or
        masks to every method compared on the same images).
    target : None (class predicted on the inputs), int, B ints, or a callable score (SIC only).
    min_pred_value : float
        Images whose prediction on the (uint8) original is lower are skipped (default 0.5 as in the
        PAIR notebook; the function default of PAIR is 0.8).
    aggregate : {"median", "mean"}
    batch_size : int, most model rows per call (the ``len(thresholds) + 2`` images of every example
        are scored by one compiled forward loop; they are held in memory together, as float32:
        ``(len(thresholds) + 2) * B`` images, so split very large batches)

    Returns
    -------
    PicResult
    """
    check_choice(kind, "kind", ("sic", "aic", "both"))
    C.check_score_name(score, ("probability", "logit", "output"))
    kinds = ("sic", "aic") if kind == "both" else (kind,)
    x_in = inputs.numpy() if hasattr(inputs, "numpy") else np.asarray(inputs)
    is_u8 = x_in.dtype == np.uint8
    if not is_u8 and not np.issubdtype(x_in.dtype, np.floating):
        raise TypeError(f"pic: inputs must be float images in model space or uint8 images, got {x_in.dtype}")
    value_range_given = value_range is not None
    if value_range is None:
        value_range = (0.0, 255.0) if is_u8 else (0.0, 1.0)
    lo, hi = (float(v) for v in value_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    if to_uint8 is None:
        if not is_u8:
            _check_in_value_range(x_in, lo, hi, value_range_given)

        def to_uint8(v):
            return np.clip(np.round((np.asarray(v, np.float64) - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)

    if preprocess is None:

        def preprocess(u):
            return np.asarray(u, np.float32) / np.float32(255.0) * np.float32(hi - lo) + np.float32(lo)

    x_model = np.asarray(preprocess(x_in), np.float32) if is_u8 else x_in.astype(np.float32)
    layout = C.resolve_layout(x_model.shape, units, data_format, model=model)
    if not layout.is_image:
        raise ValueError(
            f"pic needs images [B, H, W, C], [B, C, H, W] or [B, H, W] (units='pixels'), got shape {x_model.shape}"
        )
    problem = C.prepare_single(model, x_model, target)
    scorings = []
    if "sic" in kinds:
        scorings.append(C.resolve_scoring(problem, score, allowed=("probability", "logit", "output")))
    if "aic" in kinds:
        try:
            scorings.append(C.resolve_scoring(problem, "accuracy"))
        except ValueError as exc:
            raise ValueError(
                f"kind={kind!r}: AIC needs a class to compare the top-1 prediction with, "
                f"and a callable target names none; pass kind='sic'. ({exc})"
            ) from None
    sal = np.abs(layout.unit_map(attributions))  # [B, H, W]
    valid = ~C.degenerate(sal)
    batch = x_model.shape[0]
    h, w = layout.grid
    if random_masks is None:
        base = eng.as_numpy_seed(seed)
        random_masks = np.stack([generate_random_mask(h, w, random_fraction, seed=[base, i]) for i in range(batch)])
    random_masks = np.asarray(random_masks, bool)
    if random_masks.shape != (batch, h, w):
        raise ValueError(f"random_masks must have shape {(batch, h, w)}, got {random_masks.shape}")

    u8 = np.asarray(x_in if is_u8 else to_uint8(x_model))
    if u8.dtype != np.uint8 or u8.shape != x_model.shape:
        raise ValueError(f"to_uint8 must return uint8 images of shape {x_model.shape}, got {u8.dtype} {u8.shape}")
    u8_last = layout.to_channels_last(u8)
    n_img = len(thresholds) + 2
    stacks, ents = [], []
    for i in range(batch):
        images, ent = pic_images(u8_last[i], sal[i], random_masks[i], thresholds)
        stacks.append(np.stack(images))
        ents.append(ent)
    imgs = np.stack(stacks, axis=1)  # [n_img, B, H, W, C] uint8
    model_imgs = np.asarray(preprocess(layout.from_channels_last(imgs.reshape((-1,) + imgs.shape[2:]))), np.float32)
    model_imgs = model_imgs.reshape((n_img, batch) + tuple(x_model.shape[1:]))
    shape = tuple(x_model.shape)

    def make_points(flat_x, indices, start, size, all_imgs):
        return tf.reshape(
            tf.slice(all_imgs, [start] + [0] * len(shape), [size] + list(shape)), [size * batch] + list(shape[1:])
        )

    scores, indices, _, _ = C.batched_scores(
        problem, ("pic", n_img), n_img, batch_size, make_points, (tf.constant(model_imgs),), tuple(scorings)
    )
    preds = {k: scores[j].astype(np.float64) for j, k in enumerate(kinds)}  # [n_img, B]
    out = {k: ([], [], []) for k in kinds}
    for i in range(batch):
        for k in kinds:
            try:
                c = pic_curve(ents[i], preds[k][:, i], thresholds, min_pred_value, keep_monotonous, num_data_points)
                out[k][0].append(c.auc)
                out[k][1].append(c)
                out[k][2].append(None)
            except ComputePicMetricError as exc:
                out[k][0].append(np.nan)
                out[k][1].append(None)
                out[k][2].append(str(exc))
    aggr = {}
    for k in kinds:
        curves = [c for c, ok in zip(out[k][1], valid) if c is not None and ok]
        aggr[k] = aggregate_pic_results(curves, aggregate) if curves else None
    return PicResult(
        auc={k: np.asarray(out[k][0]) for k in kinds},
        curves={k: out[k][1] for k in kinds},
        aggregate=aggr,
        errors={k: out[k][2] for k in kinds},
        target=C.result_target(problem, indices),
        valid=valid,
        score=scorings[0].score,
    )
