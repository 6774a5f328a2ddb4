"""The one scoring rule every metric uses: what number a perturbed input gets.

A metric scores each (perturbed) input by one number per example. Which number depends on what the
model returns, so the output kind is detected once per call:

* **the final activation of a Keras model**: a model (``Sequential``, functional, or a layer) whose
  output layer applies ``softmax`` (an ``activation="softmax"`` layer, ``Activation("softmax")``,
  ``Softmax()``) or ``sigmoid`` returns *probabilities*; an output layer with any other declared
  activation (``linear``, ``relu``...) returns *logits*;
  shape-only layers after it (``Reshape``, ``Flatten``, ``Identity``, ``Activation("linear")``) are
  walked back through, so ``Dense(1) -> Reshape(())`` returns logits; a ``Lambda`` is opaque;
* **otherwise** (SavedModel signatures, ``TFSMLayer``, plain callables, custom or ``Lambda`` output
  layers), for a ``[B, K]`` output (``K >= 2``), from the outputs at the clean inputs: every row
  non-negative and summing to 1 (to 1e-3) holds probabilities, any other holds logits. A **single
  output unit** cannot be told from its values (a probability or a small logit), so it is never
  decided from a batch: the user says it once, ``score="logit"`` (the unit is a logit) or
  ``score="output"`` (the raw value), and any other ``score`` raises a ``ValueError`` naming ``score=``;
* ``[B]`` and ``[B, 1]`` outputs are **one score per example** (a binary classifier's unit, or a
  regression output); list / dict outputs and per-example outputs of rank > 1 need a callable
  ``target`` and are scored by its value.

``score=`` then picks the number (``None`` = the metric's default, usually ``"probability"``):

=================  ==========================================================================
``"probability"``  the probability of the target class: ``softmax(logits)[c]`` for logits,
                   the output itself for probabilities; one unit: ``sigmoid(z)`` for a logit,
                   ``p`` for a probability. A callable target is applied to the probabilities.
``"logit"``        the target's logit, the raw output of a logits model. A model that returns
                   probabilities has no logit to give: ``ValueError``.
``"output"``       the raw model output for the target, whatever it is (a logit, a
                   probability, a regression value); a callable target's own value. This is
                   the scalar the attribution methods explain.
``"accuracy"``     1.0 when the top-1 class equals the target class, else 0.0. One unit: 1.0
                   when the decision (``z >= 0`` for a logit, ``p >= 0.5`` for a probability)
                   equals the decision on the clean input (or the given 0/1 label). A callable
                   target names no class: ``ValueError``.
=================  ==========================================================================

``"softmax"`` (the old default name) is accepted as an alias of ``"probability"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine import targets as _targets

__all__ = ["SCORES", "Scoring", "resolve_scoring", "output_activation"]

SCORES = ("probability", "logit", "output", "accuracy")
_ALIASES = {"softmax": "probability"}
_PROB_ACTIVATIONS = ("softmax", "sigmoid")


def _is_shape_only(layer) -> bool:
    """A layer that moves or keeps the values without changing them: ``Reshape``, ``Flatten``,
    ``Identity``, ``Activation("linear")``. A ``Lambda`` is opaque (it may compute anything)."""
    if isinstance(layer, (keras.layers.Reshape, keras.layers.Flatten, keras.layers.Identity)):
        return True
    if type(layer) is keras.layers.Activation:
        return getattr(layer.activation, "__name__", "") == "linear"
    return False


def _output_chain(model, limit: int = 64):
    """The layers that produce the model's (single) output, from the output backwards, while each has
    one input; empty when they cannot be read (not a Keras model, several outputs)."""
    if isinstance(model, keras.Sequential):
        yield from list(reversed(model.layers))[:limit]
        return
    if isinstance(model, keras.Model):
        try:
            outs = model.outputs
        except (AttributeError, ValueError):
            return
        if not outs or len(outs) != 1:
            return
        tensor = outs[0]
        for _ in range(limit):
            hist = getattr(tensor, "_keras_history", None)
            if not hist:
                return
            layer = hist[0]
            yield layer
            try:
                inputs = layer._inbound_nodes[hist[1]].input_tensors
            except (AttributeError, IndexError):
                return
            if len(inputs) != 1:
                return
            tensor = inputs[0]
        return
    if isinstance(model, keras.layers.Layer):
        yield model


def output_activation(model, _depth: int = 0) -> str | None:
    """``"softmax"``, ``"sigmoid"``, ``"none"`` (a declared non-probability activation) or None
    (unknown: not a Keras model, or no declared activation behind the output).

    Shape-only layers at the end of the model (``Reshape``, ``Flatten``, ``Identity``,
    ``Activation("linear")``, see :func:`_is_shape_only`) are walked back through to the layer that
    declares the activation: ``Dense(1, "sigmoid") -> Reshape(())`` returns probabilities,
    ``Dense(1) -> Reshape(())`` logits, whatever values a batch happens to give.
    """
    if _depth > 8:
        return None
    for layer in _output_chain(model):
        if isinstance(layer, keras.layers.InputLayer):
            return None
        if isinstance(layer, keras.Model) and layer is not model:
            return output_activation(layer, _depth + 1)
        if _is_shape_only(layer):
            continue
        if isinstance(layer, keras.layers.Softmax):
            return "softmax"
        act = getattr(layer, "activation", None)
        if act is None or not callable(act):
            return None
        name = getattr(act, "__name__", "") or ""
        if name in _PROB_ACTIVATIONS:
            return name
        return "none"
    return None


@dataclass(frozen=True)
class Scoring:
    """A resolved scoring rule (see the module doc).

    Attributes
    ----------
    score : the resolved score name
    outputs : ``"logits"``, ``"probabilities"`` or ``"structured"`` (list / dict / rank > 1 outputs)
    detected_by : ``"layer"`` (Keras output activation), ``"values"`` (``[B, K]`` outputs at the clean
        inputs), ``"score"`` (a one-unit output read as the user's ``score=`` says) or ``"shape"``
        (structured outputs)
    single : one output unit per example
    callable_target : the target is a callable ``score(outputs) -> [B]``
    """

    score: str
    outputs: str
    detected_by: str
    single: bool
    callable_target: bool

    @property
    def key(self):
        return (self.score, self.outputs, self.single, self.callable_target)

    @property
    def needs_classes(self) -> bool:
        """Accuracy of a one-unit model compares with the decision at the clean input."""
        return self.score == "accuracy" and self.single

    # ---------------------------------------------------------------------------------------
    def _prob(self, out):
        if self.outputs == "probabilities":
            return out
        if self.single:
            return tf.sigmoid(out)
        return tf.nn.softmax(out, axis=-1)

    def decision(self, out):
        """Top-1 class per row (one unit: 1 for a positive decision, 0 otherwise)."""
        out = _single_tensor(out)
        if self.single:
            z = tf.reshape(tf.cast(out, tf.float32), (-1,))
            thr = 0.5 if self.outputs == "probabilities" else 0.0
            return tf.cast(z >= thr, tf.int32)
        return tf.cast(tf.argmax(out, axis=-1), tf.int32)

    def classes(self, out_x, indices):
        """The classes ``accuracy`` compares with, from the clean outputs (one unit: the decision)."""
        if self.single:
            return self.decision(out_x)
        return indices

    def __call__(self, problem, outputs, classes):
        """``[rows]`` float32 scores for ``outputs`` of ``g * B`` rows; ``classes`` is ``[B]`` int32."""
        if self.callable_target:
            if self.score == "probability":
                return problem.scorer(self._prob(tf.cast(_single_tensor(outputs), tf.float32)), classes)
            return problem.scorer(outputs, classes)
        out = tf.cast(_single_tensor(outputs), tf.float32)
        rows = tf.shape(out)[0]
        if self.score == "accuracy":
            want = tf.tile(classes, [rows // problem.batch_size])
            return tf.cast(tf.equal(self.decision(out), want), tf.float32)
        if self.single:
            z = tf.reshape(out, (-1,))
            return self._prob(z) if self.score == "probability" else z
        if self.score == "probability":
            out = self._prob(out)
        tiled = tf.tile(classes, [rows // problem.batch_size])
        return tf.gather(out, tiled, axis=1, batch_dims=1)

    def class_probability(self, problem, outputs, classes):
        """Probability of ``classes`` per row (one unit: ``p`` for class 1, ``1 - p`` for class 0)."""
        out = tf.cast(_single_tensor(outputs), tf.float32)
        rows = tf.shape(out)[0]
        want = tf.tile(classes, [rows // problem.batch_size])
        if self.single:
            p = self._prob(tf.reshape(out, (-1,)))
            return tf.where(want == 1, p, 1.0 - p)
        return tf.gather(self._prob(out), want, axis=1, batch_dims=1)


def _single_tensor(out):
    if isinstance(out, dict) and len(out) == 1:
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)) and len(out) == 1:
        out = out[0]
    return tf.convert_to_tensor(out)


def check_score_name(score, allowed=SCORES, name="score"):
    if score is None:
        return None
    if not isinstance(score, str):
        raise TypeError(f"{name} must be one of {list(allowed)} or None, got {type(score).__name__}")
    s = _ALIASES.get(score, score)
    if s not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)} or None (default), got {score!r}")
    return s


def resolve_scoring(problem, score, default: str = "probability", allowed=SCORES, what: str = "score") -> Scoring:
    """Detect the model's output kind and resolve ``score`` (None = ``default``) for ``problem``.

    Raises ``ValueError`` for a score that means nothing for this model or target (the message
    names the argument and what would work).
    """
    score = check_score_name(score, allowed, what)
    shape = eng.output_shape(problem.model, problem.forward, problem.flat_x)
    is_callable = problem.target.kind == _targets.CALLABLE
    structured = shape is None or len(shape) > 1
    if structured:
        if score is None:
            score = "output"
        if score != "output":
            raise ValueError(
                f"{what}={score!r} needs a classifier output [B, K], [B, 1] or [B]; this model returns "
                f"{'a list / dict' if shape is None else 'per-example shape ' + str(tuple(shape))}. Use "
                f"{what}='output' (the value of the callable target)"
            )
        return Scoring("output", "structured", "shape", False, is_callable)
    single = len(shape) == 0 or tuple(shape) == (1,)
    act = output_activation(problem.model)
    if act is not None:
        outputs = "probabilities" if act in _PROB_ACTIVATIONS else "logits"
        detected = "layer"
    elif single:
        # Nothing declares what the unit is, and its values cannot tell (a probability and a small logit look
        # the same): the user says it, once, through score= -- never a decision from a batch's values.
        if score not in ("logit", "output"):
            raise ValueError(
                f"{what}: the model has one output unit and declares no output activation (not a Keras model, or "
                "a custom / Lambda output layer), so it cannot be told whether the unit is a probability or a logit. "
                f"Say which: {what}='output' scores the raw output as it is (a probability model's probability, a "
                f"regression value), {what}='logit' reads it as a logit; or give a Keras model whose last layer "
                "declares activation='sigmoid' (or a linear one for logits)"
            )
        outputs, detected = "logits", "score"
    else:
        detected = "values"
        out = tf.cast(_single_tensor(problem.forward(list(problem.flat_x))), tf.float32).numpy()
        on_simplex = np.all(out >= 0) and np.allclose(out.sum(-1), 1.0, atol=1e-3)
        outputs = "probabilities" if on_simplex else "logits"
    if score is None:
        score = default
    if score == "logit" and outputs == "probabilities":
        asked = " (this metric's default)" if default == "logit" else ""
        default_note = " (the default)" if default == "probability" else ""
        why = "its output layer applies " + act if act else "its outputs are on the probability simplex"
        raise ValueError(
            f"{what}='logit'{asked}: the model returns probabilities ({why}), so its logits are not available; "
            f"use {what}='probability'{default_note}, {what}='output' for the raw output, or pass the model "
            "without its final activation"
        )
    if score == "accuracy" and is_callable:
        raise ValueError(
            f"{what}='accuracy' needs a class: a callable target names none. Pass target=None (the class predicted "
            "on the clean input), an int or B ints"
        )
    return Scoring(score, outputs, detected, single, is_callable)
