"""XRAI: rank image regions by the density of a pixel attribution inside them.

1. Pixel attribution: ``base_attribution`` if given, else Integrated Gradients averaged over two
   constant baselines (the image's minimum and maximum value), 100 steps of the ``pair`` rule.
2. Channels are reduced by their maximum, giving an ``H x W`` map.
3. Over-segmentation: Felzenszwalb segmentations at six scales (50 .. 1200, sigma 0.8, min size 150)
   of the image rescaled to [-1, 1] and resized to 224 x 224, mapped back to ``H x W``; every
   segment becomes a mask, dilated by a disk of radius 5. Masks overlap.
4. Greedy selection ("full"): repeatedly add the mask whose *new* pixels have the highest mean
   attribution, write that mean onto its new pixels, and drop masks that would add fewer than
   ``min_pixel_diff`` pixels, until the covered fraction exceeds ``area_threshold``. Uncovered
   pixels get the mean attribution over them. "fast" ranks every mask once by its own mean.

The result is a piecewise-constant ``[B, H, W]`` map (higher = chosen earlier, denser region).
The greedy step here is one matrix product per round over all candidate masks.

Reference: A. Kapishnikov, T. Bolukbasi, F. Viegas, M. Terry, "XRAI: Better Attributions Through
Regions", ICCV 2019, arXiv 1906.02825.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine.layout import image_axes, resolve_data_format, resolve_image_layout, to_channels_last
from ..engine.shapes import check_choice, check_positive_int, prepare_inputs
from .blur_ig import _refuse_integer_images
from .registry import MethodSpec, require, tile_baseline, tile_batch_axis

__all__ = ["xrai", "felzenszwalb_masks", "xrai_regions"]

_SCALES = (50, 100, 150, 250, 500, 1200)


def _skimage():
    try:
        from skimage import segmentation, transform
        from skimage.morphology import dilation, disk
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("xrai needs scikit-image: pip install 'tf_pathattr[metrics]'") from exc
    return segmentation, transform, dilation, disk


def felzenszwalb_masks(image, dilation_radius: int = 5, resize_to=(224, 224)):
    """The overlapping, dilated segment masks XRAI ranks (list of boolean ``H x W`` arrays)."""
    segmentation, transform, dilation, disk = _skimage()
    image = np.asarray(image, np.float64)
    h, w = image.shape[:2]
    lo, hi = image.min(), image.max()
    scaled = (image - lo) / (hi - lo) * 2.0 - 1.0 if hi > lo else np.zeros_like(image)
    if resize_to is not None:
        scaled = transform.resize(scaled, resize_to, order=3, mode="constant", preserve_range=True, anti_aliasing=True)
    masks = []
    for scale in _SCALES:
        seg = segmentation.felzenszwalb(scaled, scale=scale, sigma=0.8, min_size=150)
        if resize_to is not None:
            seg = transform.resize(
                seg, (h, w), order=0, mode="constant", preserve_range=True, anti_aliasing=False
            ).astype(int)
        masks.extend(seg == label for label in range(seg.min(), seg.max() + 1))
    if dilation_radius:
        fp = disk(dilation_radius)
        masks = [dilation(m, footprint=fp) for m in masks]
    return masks


def xrai_regions(
    attribution_map,
    masks,
    algorithm: str = "full",
    area_threshold: float = 1.0,
    min_pixel_diff: int = 50,
    region_score: str = "mean",
):
    """Greedy region ranking on one ``H x W`` map; returns ``(xrai_map, rank_map)``.

    ``rank_map`` holds 1 for the best region, 2 for the next, ...; uncovered pixels form the last rank.
    ``region_score="sum"`` ranks by summed attribution of the new pixels instead of their mean.
    """
    attr = np.asarray(attribution_map, np.float64)
    shape = attr.shape
    flat = attr.reshape(-1)
    m = np.stack([np.asarray(mk, bool).reshape(-1) for mk in masks]) if len(masks) else np.zeros((0, flat.size), bool)
    if m.shape[1:] != flat.shape:
        raise ValueError(f"segments must be boolean masks of shape {shape}, got {m.shape[1:]}")

    def score(sums, counts):
        return sums if region_score == "sum" else sums / np.maximum(counts, 1)

    out = np.full(flat.shape, -np.inf)
    covered = np.zeros(flat.shape, bool)
    trace = []  # (new pixels, gain)
    if algorithm == "full":
        alive = np.ones(len(m), bool)
        while covered.mean() <= area_threshold:
            new = m & ~covered  # [M, N]
            counts = new.sum(1)
            alive &= counts >= min_pixel_diff
            if not alive.any():
                break
            gains = np.where(alive, score(new.astype(np.float64) @ flat, counts), -np.inf)
            best = int(np.argmax(gains))  # first of equal gains, like a strict ">" scan
            diff = new[best]
            trace.append((diff, gains[best]))
            out[diff] = gains[best]
            covered |= m[best]
            alive[best] = False
    elif algorithm == "fast":
        order_gain = score(m.astype(np.float64) @ flat, m.sum(1))
        for idx in sorted(range(len(m)), key=lambda i: -order_gain[i]):
            diff = m[idx] & ~covered
            if diff.sum() < min_pixel_diff:
                continue
            gain = score(flat[diff].sum(), diff.sum())
            trace.append((diff, gain))
            out[diff] = gain
            covered |= m[idx]
    else:  # pragma: no cover - checked by the caller
        raise ValueError(algorithm)
    uncovered = out == -np.inf
    if uncovered.any():
        out[uncovered] = score(flat[uncovered].sum(), uncovered.sum())
    ranks = np.zeros(flat.shape, np.int32)
    ordered = [d for d, _ in sorted(trace, key=lambda t: -t[1])]
    if uncovered.any():
        ordered.append(uncovered)
    for r, d in enumerate(ordered, start=1):
        ranks[d] = r
    return out.reshape(shape), ranks.reshape(shape)


@overload
def xrai(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: Literal[False] = ...,
    base_attribution: Any = ...,
    baselines: Any = ...,
    segments: Any = ...,
    algorithm: str = ...,
    n_steps: int = ...,
    area_threshold: float = ...,
    min_pixel_diff: int = ...,
    region_score: str = ...,
    internal_batch_size: int | None = ...,
    data_format: str | None = ...,
    layer: Any = ...,
) -> Attributions: ...


@overload
def xrai(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: Literal[True],
    base_attribution: Any = ...,
    baselines: Any = ...,
    segments: Any = ...,
    algorithm: str = ...,
    n_steps: int = ...,
    area_threshold: float = ...,
    min_pixel_diff: int = ...,
    region_score: str = ...,
    internal_batch_size: int | None = ...,
    data_format: str | None = ...,
    layer: Any = ...,
) -> tuple[Attributions, dict]: ...


@overload
def xrai(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: bool = ...,
    base_attribution: Any = ...,
    baselines: Any = ...,
    segments: Any = ...,
    algorithm: str = ...,
    n_steps: int = ...,
    area_threshold: float = ...,
    min_pixel_diff: int = ...,
    region_score: str = ...,
    internal_batch_size: int | None = ...,
    data_format: str | None = ...,
    layer: Any = ...,
) -> Any: ...


def xrai(
    model,
    inputs,
    target=None,
    *,
    base_attribution=None,
    baselines=None,
    segments=None,
    algorithm: str = "full",
    n_steps: int = 100,
    area_threshold: float = 1.0,
    min_pixel_diff: int = 50,
    region_score: str = "mean",
    internal_batch_size=None,
    return_details: bool = False,
    data_format=None,
    layer=None,
):
    """XRAI region attribution for a batch of images ``[B, H, W, C]`` (or ``[B, C, H, W]``, ``[B, H, W]``).

    Parameters
    ----------
    base_attribution : array shaped like ``inputs``, or ``[B, H, W]``, optional
        Pixel attributions to rank regions by (any tf_pathattr map, e.g. Guided IG). Default:
        Integrated Gradients (``pair`` rule, ``n_steps``) averaged over ``baselines``.
    baselines : array ``[K, H, W, C]`` or ``[K, B, H, W, C]``, optional
        Default: two constant images per example, filled with its minimum and its maximum.
    segments : list (per image) of lists of boolean ``H x W`` masks, optional
        Replace the Felzenszwalb over-segmentation (same segments for every image if a single list
        of masks is given).
    algorithm : {"full", "fast"}
    area_threshold, min_pixel_diff : float, int
        Stop once this fraction of the image is covered; drop masks adding fewer new pixels.
    region_score : {"mean", "sum"}
        Rank regions by attribution density (the released code) or total (the poster's wording).

    data_format : {"channels_last", "channels_first"}, optional
        Layout of rank-4 images and of a rank-4 ``base_attribution``. Default: the layout the model
        declares (its first image layer's ``data_format``, its input shape), else
        ``keras.config.image_data_format()``; an unreadable layout or a value contradicting the model
        raises a ``ValueError`` (:func:`tf_pathattr.engine.layout.resolve_image_layout`). The channels
        are reduced along that layout's channel axis and the image is segmented as ``[H, W, C]``.
    layer : None
        Not supported: XRAI segments the input image (a ``ValueError`` says so).

    Returns
    -------
    tf.Tensor ``[B, H, W]`` float32; with ``return_details=True`` also a dict with ``ranks``
    ``[B, H, W]`` int32 (1 = best region) and ``base_attribution``.
    """
    if layer is not None:
        require(SPEC, "layer", "layer=")
    check_choice(algorithm, "algorithm", ("full", "fast"))
    check_choice(region_score, "region_score", ("mean", "sum"))
    min_pixel_diff = check_positive_int(min_pixel_diff, "min_pixel_diff", minimum=0)
    if data_format is not None:
        resolve_data_format(data_format)  # an unknown value is refused before any work
    _refuse_integer_images(inputs, "xrai")
    flat, structure, batch = prepare_inputs(inputs)
    if structure.kind != "single":
        require(SPEC, "multi_input", f"inputs (a {structure.kind} of inputs)")
    if flat[0].shape.rank not in (3, 4):
        raise ValueError(
            "xrai explains images: inputs must be one array [B, H, W, C], [B, C, H, W] (data_format) or [B, H, W]"
        )
    x = flat[0].numpy()
    fmt = resolve_image_layout(model, x.shape, data_format)
    _, _, c_axis = image_axes(x.shape, fmt)
    x_hwc = to_channels_last(x, fmt)  # segmentation works on [H, W, C] images
    if base_attribution is None:
        from .integrated_gradients import integrated_gradients

        if baselines is None:
            lo = x.reshape(batch, -1).min(1)
            hi = x.reshape(batch, -1).max(1)
            ex = (slice(None),) + (None,) * (x.ndim - 1)
            baselines = np.stack([np.ones_like(x) * lo[ex], np.ones_like(x) * hi[ex]])
        base = integrated_gradients(
            model, x, target, baseline=baselines, n_steps=n_steps, rule="pair", internal_batch_size=internal_batch_size
        ).numpy()
    else:
        base = np.asarray(base_attribution, np.float64)
        hw = tuple(x_hwc.shape[:3])
        if base.shape != x.shape and base.shape != hw:
            raise ValueError(f"base_attribution has shape {base.shape}; expected {x.shape} or {hw}")
    maps = base.max(axis=c_axis) if base.ndim == 4 else base
    if segments is not None and len(segments) and np.asarray(segments[0]).ndim == 2:
        segments = [segments] * batch
    out, ranks = [], []
    for b in range(batch):
        masks = felzenszwalb_masks(x_hwc[b]) if segments is None else segments[b]
        o, r = xrai_regions(maps[b], masks, algorithm, area_threshold, min_pixel_diff, region_score)
        out.append(o)
        ranks.append(r)
    result = tf.constant(np.stack(out), tf.float32)
    if return_details:
        return result, {"ranks": tf.constant(np.stack(ranks)), "base_attribution": tf.constant(base, tf.float32)}
    return result


def _tile_segments(value, ctx):
    """``segments``: one list of masks per image (``B`` lists) is per example; one list of 2-D masks is shared."""
    if value is None or not isinstance(value, (list, tuple)) or len(value) != ctx.batch:
        return value
    if len(value) and np.asarray(value[0]).ndim == 2:  # a single shared list of masks
        return value
    return list(value) * ctx.reps


SPEC = MethodSpec(
    name="xrai",
    function=xrai,
    summary="region ranking over Felzenszwalb segments of any base attribution, full and fast",
    paper="A. Kapishnikov, T. Bolukbasi, F. Viegas, M. Terry, XRAI: Better Attributions Through Regions, ICCV 2019",
    details=True,
    layer="xrai segments images; it cannot attribute to a layer's output",
    multi_input="xrai segments one image input; multi-input models are not supported",
    exportable="xrai ranks regions on the host (numpy, scikit-image); it cannot be embedded in a graph",
    host_side=True,
    image_only="xrai needs images [B, H, W, C], [B, C, H, W] (data_format) or [B, H, W]",
    output="pixels",
    per_example_options={
        "base_attribution": tile_batch_axis(0),
        "baselines": tile_baseline,
        "segments": _tile_segments,
    },
    test_options={"n_steps": 8},
)
