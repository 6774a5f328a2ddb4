"""Performance Information Curves: SIC (softmax) and AIC (accuracy), per ``metrics.md`` section 2.

How much of the model's performance comes back as a function of how much *information* of the
image is revealed, most salient pixels first. The "blurred" (bokeh) image keeps the selected pixels
(plus the four corners and a random 1 % mask) and fills the others channel by channel by linear
interpolation over a Delaunay triangulation of the kept pixels (``scipy.interpolate.griddata``).
Information is the byte length of the image as lossless WebP (Pillow). For each threshold
``tau`` the image keeping the top ``tau`` fraction of pixels gives a point
``(clip((H - H0)/(H_orig - H0)), clip((p - p0)/(p_orig - p0)))``; with ``(0, 0)`` and ``(1, 1)``
added, the piecewise-linear curve is sampled at 1000 points plus 1.0 and integrated with the
trapezoid rule. Per image the model is called once, on all ``len(thresholds) + 2`` images.

References: A. Kapishnikov, T. Bolukbasi, F. Viegas, M. Terry, "XRAI: Better Attributions Through
Regions", ICCV 2019; A. Kapishnikov et al., "Guided Integrated Gradients", CVPR 2021. Protocol as
released in PAIR ``saliency.metrics.pic``; this is an independent port (numpy 2.4 compatible).
Needs scipy and Pillow with WebP (``pip install tf_pathattr[metrics]``).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

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
    interp = LinearNDInterpolator(Delaunay(known.astype(np.float64)), img[known[:, 0], known[:, 1], :].astype(np.float64),
                                  fill_value=np.nan) if method == "linear" else None
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


def pic_curve(entropies, predictions, saliency_thresholds=DEFAULT_THRESHOLDS, min_pred_value: float = 0.8,
              keep_monotonous: bool = True, num_data_points: int = 1000, images=None) -> PicCurve:
    """The curve from the entropies and predictions of ``[B0, B_tau..., img]`` (see :func:`pic_images`)."""
    from scipy.interpolate import interp1d

    ent = [float(e) for e in entropies]
    pred = [float(p) for p in predictions]
    h0, h_orig = ent[0], ent[-1]
    p0, p_orig = pred[0], pred[-1]
    if p_orig < min_pred_value:
        raise ComputePicMetricError(f"prediction on the original image {p_orig} is below min_pred_value={min_pred_value}")
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
    return PicCurve(x=x, y=y, auc=float(np.trapezoid(y, x)), blurred_images=list(images or [])[:-1],
                    predictions=pred, thresholds=[0.0] + [float(t) for t in saliency_thresholds] + [1.0])


def compute_pic_metric(img, saliency_map, random_mask, pred_func: Callable, saliency_thresholds=DEFAULT_THRESHOLDS,
                       min_pred_value: float = 0.8, keep_monotonous: bool = True,
                       num_data_points: int = 1000) -> PicCurve:
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
    or None if every image was skipped), ``errors[kind]`` (message or None per image)."""

    auc: dict
    curves: dict
    aggregate: dict
    errors: dict
    target: np.ndarray

    def __getitem__(self, key):
        return getattr(self, key)


def pic(model, inputs, attributions, target=None, *, kind: str = "both", value_range=(0.0, 1.0),
        to_uint8: Optional[Callable] = None, preprocess: Optional[Callable] = None, random_masks=None,
        random_fraction: float = 0.01, seed=None, thresholds=DEFAULT_THRESHOLDS, min_pred_value: float = 0.5,
        keep_monotonous: bool = True, num_data_points: int = 1000, aggregate: str = "median") -> PicResult:
    """SIC and AIC for a batch of images ``[B, H, W, C]`` in model space.

    Parameters
    ----------
    kind : {"sic", "aic", "both"}
        SIC scores the softmax of the target class, AIC 1.0 when the top-1 class is the target.
    value_range : (low, high)
        The inputs' range, used (when ``to_uint8`` / ``preprocess`` are not given) to map the images
        to uint8 ``round(255 (x - low)/(high - low))`` and back.
    to_uint8, preprocess : callables
        Model space ``[B, H, W, C]`` -> uint8 images, and uint8 batch -> model inputs.
    random_masks : bool ``[B, H, W]``, optional
        The random 1 % masks; by default drawn per image from ``seed`` (pass the same ``seed`` or
        masks to every method compared on the same images).
    target : None (class predicted on ``inputs``), int or B ints.
    min_pred_value : float
        Images whose prediction on the (uint8) original is lower are skipped (default 0.5 as in the
        PAIR notebook; the function default of PAIR is 0.8).
    aggregate : {"median", "mean"}

    Returns
    -------
    PicResult
    """
    check_choice(kind, "kind", ("sic", "aic", "both"))
    kinds = ("sic", "aic") if kind == "both" else (kind,)
    problem = C.prepare_single(model, inputs, target)
    x = problem.flat_x[0]
    shape = tuple(x.shape)
    if len(shape) != 4:
        raise ValueError(f"pic needs image inputs [B, H, W, C], got shape {shape}")
    attr = C.attributions_array(attributions, shape)
    sal = np.abs(attr.sum(axis=-1))
    batch, h, w = shape[0], shape[1], shape[2]
    lo, hi = (float(v) for v in value_range)
    if to_uint8 is None:
        def to_uint8(v):
            return np.clip(np.round((np.asarray(v) - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
    if preprocess is None:
        def preprocess(u):
            return np.asarray(u, np.float32) / 255.0 * (hi - lo) + lo
    if random_masks is None:
        base = eng.as_numpy_seed(seed)
        random_masks = np.stack([generate_random_mask(h, w, random_fraction, seed=[base, i]) for i in range(batch)])
    random_masks = np.asarray(random_masks, bool)
    if random_masks.shape != (batch, h, w):
        raise ValueError(f"random_masks must have shape {(batch, h, w)}, got {random_masks.shape}")

    # target classes from the original inputs (one forward pass)
    def builder():
        def fn(flat_x, indices):
            indices, _ = eng.resolve_indices(problem, flat_x, indices)
            return indices

        return fn

    indices = eng.run(problem, ("metric_pic_target",), builder).numpy()
    model_fn = _probability_fn(problem)
    u8 = to_uint8(x.numpy())
    out = {k: ([], [], []) for k in kinds}
    for i in range(batch):
        images, ent = pic_images(u8[i], sal[i], random_masks[i], thresholds)
        probs = model_fn(np.asarray(preprocess(np.stack(images)), np.float32))  # [n_images, classes]
        preds = {"sic": probs[:, indices[i]], "aic": (np.argmax(probs, axis=1) == indices[i]).astype(np.float64)}
        for k in kinds:
            try:
                c = pic_curve(ent, preds[k], thresholds, min_pred_value, keep_monotonous, num_data_points)
                out[k][0].append(c.auc)
                out[k][1].append(c)
                out[k][2].append(None)
            except ComputePicMetricError as exc:
                out[k][0].append(np.nan)
                out[k][1].append(None)
                out[k][2].append(str(exc))
    aggr = {}
    for k in kinds:
        curves = [c for c in out[k][1] if c is not None]
        aggr[k] = aggregate_pic_results(curves, aggregate) if curves else None
    return PicResult(auc={k: np.asarray(out[k][0]) for k in kinds}, curves={k: out[k][1] for k in kinds},
                     aggregate=aggr, errors={k: out[k][2] for k in kinds}, target=indices)


_PROB_FNS = {}


def _probability_fn(problem):
    """Softmax outputs of the model for a batch of images (one compiled forward-only function per model)."""
    import weakref

    key = id(problem.model)
    hit = _PROB_FNS.get(key)
    if hit is not None and hit[0]() is problem.model:
        return hit[1]
    forward = problem.forward

    @tf.function(reduce_retracing=True)
    def probs(v):
        out = tf.convert_to_tensor(forward([v]))
        if out.shape.rank == 2 and out.shape[-1] == 1:
            p = tf.sigmoid(out)
            return tf.concat([p, 1.0 - p], axis=-1)  # column 0 = the single unit (the explained score)
        return tf.nn.softmax(out, axis=-1)

    def call(v):
        return probs(tf.convert_to_tensor(v)).numpy().astype(np.float64)

    try:
        ref = weakref.ref(problem.model)
    except TypeError:
        ref = (lambda m: (lambda: m))(problem.model)
    _PROB_FNS[key] = (ref, call)
    return call
