"""Target resolution: which scalar per example is explained.

``target`` may be

* ``None``: the class the model predicts for each explicand (argmax of its output at ``x``);
  a model with a single output unit (``[B]`` or ``[B, 1]``) is explained through that unit;
* an ``int``: the same class for every example;
* a sequence / array of ``B`` ints: one class per example;
* a callable ``score(outputs) -> [B]``: anything else (regression heads, multi-output models,
  tf-keras-vis ``Score`` objects such as ``CategoricalScore`` and ``BinaryScore``).

The scalar is the model's raw output as given (logits for a logits model).

Inside the compiled methods, path points are sent to the model in *groups*: a chunk of ``c``
points for ``B`` explicands is ``c * B`` rows ordered point-major (rows ``g*B .. g*B+B-1`` are
point ``g`` of every example). Integer targets are tiled accordingly; a callable is applied to
each group of ``B`` rows separately, so a per-example score (``CategoricalScore([3, 1, 4])``)
always sees exactly the ``B`` rows it was written for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

INDEX = "index"
PREDICTED = "predicted"
CALLABLE = "callable"


@dataclass(frozen=True)
class TargetSpec:
    """A resolved target. ``indices`` is an int32 ``[B]`` tensor (zeros unless ``kind == INDEX``)."""

    kind: str
    indices: tf.Tensor
    fn: Callable[[Any], tf.Tensor] | None = None
    single_unit: bool = False  # the model has one output unit and no class index is needed

    @property
    def cache_token(self):
        """What the compiled function depends on at trace time (not the index values)."""
        return (self.kind, id(self.fn) if self.fn is not None else None, self.single_unit)


def _tf_keras_vis_indices(target):
    """Map a tf-keras-vis ``CategoricalScore`` to plain indices (exactly equivalent on 2-D outputs)."""
    cls = type(target)
    if cls.__name__ == "CategoricalScore" and cls.__module__.startswith("tf_keras_vis"):
        return list(target.indices)
    return None


def resolve_target(target, batch_size: int, output_shape, name: str = "target") -> TargetSpec:
    """Check ``target`` against the batch size and the model's output shape (per example).

    Parameters
    ----------
    output_shape : tuple or None
        Per-example output shape, e.g. ``(10,)`` for 10 logits, ``()`` or ``(1,)`` for a single
        unit, ``None`` for structured (list / dict) outputs, which need a callable target.
    """
    zeros = tf.zeros((batch_size,), tf.int32)
    if callable(target) and not isinstance(target, (int, np.integer)):
        indices = _tf_keras_vis_indices(target)
        if indices is not None and output_shape is not None and len(output_shape) == 1:
            target = indices if len(indices) > 1 else int(indices[0])
        else:
            return TargetSpec(CALLABLE, zeros, fn=target)

    single_unit = output_shape is not None and (len(output_shape) == 0 or tuple(output_shape) == (1,))
    if output_shape is None:
        raise ValueError(
            f"{name}: the model returns several outputs (a list or dict); pass a callable {name} "
            "score(outputs) -> [B] that picks the scalar to explain"
        )
    if len(output_shape) > 1:
        raise ValueError(
            f"{name}: the model output has per-example shape {tuple(output_shape)}; an integer {name} selects a class "
            f"of a [B, n_classes] output. Pass a callable {name} score(outputs) -> [B] instead"
        )
    if target is None:
        return TargetSpec(PREDICTED, zeros, single_unit=single_unit)

    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, a sequence of ints or a callable, got a bool")
    if isinstance(target, tf.Tensor):
        target = target.numpy()
    arr = np.asarray(target)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an int, a sequence of ints or a callable, got {arr.dtype} values")
    if arr.ndim == 0:
        arr = np.full((batch_size,), int(arr))
    elif arr.ndim != 1 or arr.shape[0] != batch_size:
        raise ValueError(
            f"{name} must be an int or have shape ({batch_size},) (one per example), got shape {arr.shape}"
        )
    n_classes = 1 if len(output_shape) == 0 else int(output_shape[0]) if output_shape[0] is not None else None
    if n_classes is not None:
        bad = (arr < 0) | (arr >= n_classes)
        if bad.any():
            raise ValueError(
                f"{name} out of range: got {arr[bad][:5].tolist()} but the model has {n_classes} outputs "
                f"(valid: 0..{n_classes - 1})"
            )
    return TargetSpec(INDEX, tf.constant(arr, tf.int32), single_unit=single_unit)


def _squeeze_score(score, n_rows, name="target"):
    score = tf.convert_to_tensor(score)
    if score.shape.rank == 2 and score.shape[1] == 1:
        score = score[:, 0]
    if score.shape.rank != 1:
        raise ValueError(
            f"{name}: a score callable must return one value per example, shape [B]; got shape {score.shape}"
        )
    return tf.cast(score, tf.float32)


def make_scorer(spec: TargetSpec, batch_size: int) -> Callable[[Any, tf.Tensor], tf.Tensor]:
    """Return ``score(outputs, indices) -> [n_rows]`` for outputs of ``n_groups * B`` rows.

    ``indices`` is the per-example int32 ``[B]`` target (already resolved for ``PREDICTED``).
    """
    if spec.kind == CALLABLE:
        fn = spec.fn

        def score_callable(outputs, indices):
            first = tf.nest.flatten(outputs)[0]
            n_rows = first.shape[0]
            if n_rows is None or n_rows % batch_size:
                raise ValueError("internal error: rows must be a static multiple of the batch size")
            groups = n_rows // batch_size
            if groups == 1:
                return _squeeze_score(fn(outputs), n_rows)
            parts = []
            for g in range(groups):
                sl = tf.nest.map_structure(lambda o, g=g: o[g * batch_size : (g + 1) * batch_size], outputs)
                parts.append(_squeeze_score(fn(sl), batch_size))
            return tf.concat(parts, axis=0)

        return score_callable

    single = spec.single_unit

    def score_index(outputs, indices):
        out = outputs
        if isinstance(out, dict) and len(out) == 1:
            out = next(iter(out.values()))
        out = tf.cast(out, tf.float32)
        if single:
            return tf.reshape(out, (-1,))
        rows = tf.shape(out)[0]
        tiled = tf.tile(indices, [rows // batch_size])
        return tf.gather(out, tiled, axis=1, batch_dims=1)

    return score_index


def predicted_indices(outputs, spec: TargetSpec) -> tf.Tensor:
    """Argmax class per example from the outputs at ``x`` (zeros for single-unit models)."""
    out = outputs
    if isinstance(out, dict) and len(out) == 1:
        out = next(iter(out.values()))
    if spec.single_unit:
        return tf.zeros((tf.shape(out)[0],), tf.int32)
    return tf.cast(tf.argmax(out, axis=-1), tf.int32)
