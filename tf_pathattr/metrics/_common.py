"""Helpers shared by the perturbation metrics: input layouts and units, rankings, scored forward passes.

**Units.** A metric changes whole *units* of an input: a pixel of an image (all its channels
together), a token of a sequence (its whole embedding vector) or a feature of a tabular row. The
layout of the inputs says which:

* ``[B, H, W, C]`` / ``[B, C, H, W]`` (by ``data_format``, the rule of
  :mod:`tf_pathattr.engine.layout`: ``None`` = the layout the model declares, else
  ``keras.config.image_data_format()``): pixels;
* ``[B, d]``: features;
* ``[B, a, b]`` is either a grayscale image ``[B, H, W]`` (``units="pixels"``) or a sequence
  ``[B, T, E]`` (``units="tokens"``); without ``units=`` it is ambiguous and refused;
* higher ranks: channels-last grids ``[B, *S, C]`` (one unit per position of ``S``).

Attributions shaped like the inputs, or one value per unit (``[B, H, W]`` maps such as XRAI's for
images with a channel axis, ``[B, T]`` for sequences), are accepted. The saliency of a unit is
``|sum over its channels|`` (RISE).

**Scores** follow the one rule of :mod:`._scoring`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine.layout import resolve_image_layout
from ..engine.shapes import check_choice
from ._scoring import SCORES, check_score_name, resolve_scoring  # noqa: F401  (re-exported)

UNITS = ("pixels", "tokens", "features")


def float_inputs(inputs, what: str = "inputs"):
    """Inputs a metric can perturb: uint8 images become float32 pixel values (0-255, what the model would
    get from a cast), other integer or bool dtypes are refused with a ``TypeError`` saying why."""
    dtype = getattr(inputs, "dtype", None)
    if dtype is None or isinstance(inputs, (list, tuple, dict)):
        return inputs
    dtype = tf.as_dtype(dtype)
    if dtype == tf.uint8:
        return tf.cast(inputs, tf.float32)
    if dtype.is_integer or dtype == tf.bool:
        raise TypeError(
            f"{what} has dtype {dtype.name}: metrics replace, blend and add noise to input values, which integer "
            "ids or categories (token ids into an Embedding) cannot take. uint8 images are accepted (read as float "
            "pixel values 0-255); for ids, run the metric on a float representation, e.g. the embedding output and "
            "the layers after it"
        )
    return inputs


def prepare_single(model, inputs, target):
    """``eng.prepare`` restricted to single-input models (metrics perturb one tensor); uint8 images are
    read as float pixel values (:func:`float_inputs`)."""
    problem = eng.prepare(model, float_inputs(inputs), target)
    if problem.structure.kind != "single":
        raise ValueError("metrics support single-input models only; pass one array as inputs")
    return problem


def attributions_array(attributions, x_shape, name="attributions") -> np.ndarray:
    """Attributions as float64 numpy, checked to have the inputs' shape and finite values."""
    a = attributions.numpy() if hasattr(attributions, "numpy") else np.asarray(attributions)
    a = np.asarray(a, np.float64)
    if tuple(a.shape) != tuple(x_shape):
        raise ValueError(f"{name} must have the shape of inputs {tuple(x_shape)}, got {tuple(a.shape)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


@dataclass(frozen=True)
class Layout:
    """How the inputs split into units.

    ``grid``: the unit grid ``[*U]`` (``(H, W)``, ``(T,)`` or ``(d,)``); ``channel_axis``: the axis
    of the inputs (batch axis included) that holds a unit's channels, or None.
    """

    kind: str
    shape: tuple[int, ...]
    grid: tuple[int, ...]
    channel_axis: int | None
    data_format: str

    @property
    def n_units(self) -> int:
        return int(np.prod(self.grid))

    @property
    def is_image(self) -> bool:
        return self.kind == "pixels" and len(self.grid) == 2

    def unit_map(self, attr: np.ndarray, name: str = "attributions") -> np.ndarray:
        """Signed per-unit map ``[B, *grid]``: the channel sum (attributions shaped like the inputs)
        or the map itself (attributions with one value per unit)."""
        a = np.asarray(attr.numpy() if hasattr(attr, "numpy") else attr, np.float64)
        if tuple(a.shape) == tuple(self.shape):
            if self.channel_axis is not None:
                a = a.sum(axis=self.channel_axis)
        elif tuple(a.shape) != (self.shape[0],) + tuple(self.grid):
            per_unit = (
                f" or one value per unit {(self.shape[0],) + tuple(self.grid)}" if self.channel_axis is not None else ""
            )
            raise ValueError(
                f"{name} must have the shape of inputs {tuple(self.shape)}{per_unit}, got {tuple(a.shape)}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite values")
        return a

    def saliency(self, attr) -> np.ndarray:
        """``[B, U]`` ranking key ``|sum over channels|`` per unit."""
        return np.abs(self.unit_map(attr)).reshape(self.shape[0], -1)

    def expand(self, m, n_prefix: int = 1):
        """A unit mask ``[*prefix, B, *grid]`` made broadcastable against ``[*prefix, B, *x.shape[1:]]``."""
        if self.channel_axis is None:
            return m
        return tf.expand_dims(m, n_prefix + self.channel_axis)

    def to_channels_last(self, x):
        """Images as ``[B, H, W, C]`` (a grayscale ``[B, H, W]`` gets ``C = 1``); numpy or TF."""
        if not self.is_image:
            raise ValueError("internal: to_channels_last on non-image inputs")
        if self.channel_axis is None:
            return x[..., None]
        if self.channel_axis == 1:
            perm = (0, 2, 3, 1)
            return tf.transpose(x, perm) if isinstance(x, tf.Tensor) else np.transpose(x, perm)
        return x

    def from_channels_last(self, x):
        if self.channel_axis is None:
            return x[..., 0]
        if self.channel_axis == 1:
            perm = (0, 3, 1, 2)
            return tf.transpose(x, perm) if isinstance(x, tf.Tensor) else np.transpose(x, perm)
        return x


def resolve_layout(shape, units=None, data_format=None, what: str = "inputs", model=None) -> Layout:
    """The :class:`Layout` of inputs of ``shape`` (batch axis included); see the module doc.

    Rank-4 images take their layout from :func:`tf_pathattr.engine.layout.resolve_image_layout`:
    ``data_format`` when given (checked against ``model``), else the layout ``model`` declares, else
    ``keras.config.image_data_format()``.
    """
    shape = tuple(int(s) for s in shape)
    if units is not None:
        check_choice(units, "units", UNITS)
    rank = len(shape)
    fmt = resolve_image_layout(model, shape, data_format, what)
    if rank < 2:
        raise ValueError(f"{what} must have a batch axis and at least one feature axis, got shape {shape}")
    if rank == 2:
        if units not in (None, "features"):
            raise ValueError(f"units={units!r}: {what} of shape {shape} are tabular rows [B, d] (units='features')")
        return Layout("features", shape, shape[1:], None, fmt)
    if rank == 3:
        if units is None:
            raise ValueError(
                f"units: {what} of shape {shape} are ambiguous: pass units='pixels' for grayscale images "
                "[B, H, W] or units='tokens' for sequences [B, T, E] (one unit per token)"
            )
        if units == "pixels":
            return Layout("pixels", shape, shape[1:], None, fmt)
        if units == "tokens":
            return Layout("tokens", shape, shape[1:2], 2, fmt)
        raise ValueError(f"units='features' needs tabular rows [B, d]; {what} have shape {shape}")
    if rank == 4:
        if units not in (None, "pixels"):
            raise ValueError(f"units={units!r}: {what} of shape {shape} are images (units='pixels')")
        if fmt == "channels_first":
            return Layout("pixels", shape, shape[2:4], 1, fmt)
        return Layout("pixels", shape, shape[1:3], 3, fmt)
    if units not in (None, "pixels"):
        raise ValueError(f"units={units!r}: {what} of shape {shape} are channels-last grids [B, *S, C]")
    return Layout("pixels", shape, shape[1:-1], rank - 1, fmt)


def degenerate(sal: np.ndarray) -> np.ndarray:
    """``[B]`` True where the saliency is the same for every unit (all zero or constant): the map
    ranks nothing, so the protocols skip it."""
    s = sal.reshape(sal.shape[0], -1)
    return ~(s.max(axis=1) > s.min(axis=1))


def rank_positions(sal: np.ndarray, descending: bool = True) -> np.ndarray:
    """Position of each unit in the order of (de|in)creasing saliency, ``[B, U]`` int32.

    Stable sort, so ties go to the lower flat index first (deterministic).
    """
    key = -sal if descending else sal
    order = np.argsort(key, axis=1, kind="stable")
    pos = np.empty_like(order)
    rows = np.arange(sal.shape[0])[:, None]
    pos[rows, order] = np.arange(sal.shape[1])[None, :]
    return pos.astype(np.int32)


def trapezoid_unit(curves: np.ndarray) -> np.ndarray:
    """AUC on a unit-length x axis: ``(sum s - s_0/2 - s_last/2) / (len(s) - 1)`` per row."""
    c = np.asarray(curves, np.float64)
    n = c.shape[-1]
    if n < 2:
        raise ValueError("a curve needs at least 2 points")
    return (c.sum(axis=-1) - 0.5 * c[..., 0] - 0.5 * c[..., -1]) / (n - 1)


def batched_scores(
    problem, key, n_points, rows_per_call, make_points, extra_args, scoring, with_clean=False, class_probability=False
):
    """Run ``scores[p, b] = scoring(make_points(p...))`` for ``n_points`` perturbed copies of the batch.

    ``make_points(flat_x, indices, start, size, *extra) -> [size * B, *S]`` builds ``size`` points
    (point-major rows). One cached ``tf.function`` (forward only) loops over chunks of points with
    ``eng.chunked_loop``; several points go to the model in each call. ``scoring`` is one
    :class:`~._scoring.Scoring` or a tuple of them (several scores from the same forward passes).
    ``with_clean=True`` also returns the score of the clean inputs; ``class_probability=True`` also
    the probability of the compared class (ROAD).

    Returns ``(scores, target indices [B], clean or None, probs [n_points, B] or None)`` as numpy;
    ``scores`` is ``[n_points, B]`` (``[n_scorings, n_points, B]`` for a tuple), ``clean`` ``[B]``
    (``[n_scorings, B]``).
    """
    many = isinstance(scoring, (tuple, list))
    scorings = tuple(scoring) if many else (scoring,)
    batch = problem.batch_size
    chunk = eng.chunk_size(n_points, batch, rows_per_call)
    needs_classes = any(s.needs_classes for s in scorings)

    def builder():
        def fn(flat_x, indices, *extra):
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)
            if (with_clean or needs_classes) and out_x is None:
                out_x = problem.forward(list(flat_x))
            cls = [s.classes(out_x, indices) if s.needs_classes else indices for s in scorings]

            def body(start, size, acc):
                pts = make_points(flat_x, indices, start, size, *extra)
                out = problem.forward([pts])
                idx = tf.range(start, start + size)[:, None]
                res = [
                    tf.tensor_scatter_nd_update(a, idx, tf.reshape(s(problem, out, c), [size, batch]))
                    for a, s, c in zip(acc, scorings, cls)
                ]
                if class_probability:
                    p = scorings[0].class_probability(problem, out, cls[0])
                    res.append(tf.tensor_scatter_nd_update(acc[-1], idx, tf.reshape(p, [size, batch])))
                return tuple(res)

            n_out = len(scorings) + (1 if class_probability else 0)
            init = tuple(tf.zeros((n_points, batch), tf.float32) for _ in range(n_out))
            acc = eng.chunked_loop(n_points, chunk, body, init)
            if with_clean:
                clean = tf.stack([s(problem, out_x, c) for s, c in zip(scorings, cls)])
            else:
                clean = tf.zeros((len(scorings), batch), tf.float32)
            return acc, indices, clean

        return fn

    key = ("metric",) + tuple(key) + (n_points, chunk, tuple(s.key for s in scorings), with_clean, class_probability)
    acc, indices, clean = eng.run(problem, key, builder, extra_args)
    scores = np.stack([a.numpy() for a in acc[: len(scorings)]])
    probs = acc[-1].numpy() if class_probability else None
    clean = clean.numpy() if with_clean else None
    if not many:
        scores = scores[0]
        clean = None if clean is None else clean[0]
    return scores, indices.numpy(), clean, probs


def result_target(problem, classes):
    """What a result reports as ``target``: the explained classes, None for a callable target."""
    from ..engine import targets as _targets

    if problem.target.kind == _targets.CALLABLE:
        return None
    return np.asarray(classes)
