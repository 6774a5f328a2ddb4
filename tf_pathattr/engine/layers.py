"""Hidden layers: finding them, reading their activations, and replacing their output.

Two uses share this module:

* attribution to an internal layer's output (``layer=``, e.g. the ``Embedding`` of a text model):
  integer token ids have no gradient, so the path runs in the layer's output space and the model is
  evaluated with that output *replaced* by the path point (:func:`replaced_output`) while the raw
  inputs (token ids, masks, other inputs) are fed unchanged. Completeness then reads
  ``sum(attr) = F(x) - F(model with the layer output set to the baseline)``;
* methods that work on a hidden representation (IG2) need, in one forward pass, both the model's
  outputs and a layer's activations: :class:`LayerTap` records a layer's input and output during a
  model call.

Both intercept the layer's ``call`` with an instance attribute for the duration of a ``with``
block, so they work for functional, sequential, nested and subclassed models without rebuilding
the graph (a two-output functional model cannot be built across nested sub-models).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import keras
import tensorflow as tf

__all__ = ["iter_layers", "find_last_dense", "lookup_layer", "find_layer", "LayerTap", "replaced_output",
           "layer_activations"]


def _children(layer):
    sub = getattr(layer, "layers", None)
    return list(sub) if isinstance(sub, (list, tuple)) else []


def iter_layers(model) -> Iterator[keras.layers.Layer]:
    """All layers of ``model`` depth-first, in the model's own order, descending into sub-models."""
    for layer in _children(model):
        yield layer
        yield from iter_layers(layer)


def find_last_dense(model) -> Optional[keras.layers.Layer]:
    """The last ``keras.layers.Dense`` of ``model`` (nearest the output), searching nested models.

    For Sequential and functional models ``model.layers`` is in graph order, so walking it backwards
    (and descending into a sub-model before moving on) finds the final classifier layer.
    Returns ``None`` when there is none.
    """
    for layer in reversed(_children(model)):
        if isinstance(layer, keras.layers.Dense):
            return layer
        found = find_last_dense(layer)
        if found is not None:
            return found
    return None


def lookup_layer(model, layer) -> Optional[keras.layers.Layer]:
    """``layer`` (a layer object or a layer name) inside ``model``, recursively; ``None`` if absent."""
    for candidate in iter_layers(model):
        if isinstance(layer, str):
            if candidate.name == layer:
                return candidate
        elif candidate is layer:
            return candidate
    return None


def find_layer(model, layer):
    """A layer from a layer object, its name (searched in nested models too) or ``callable(model)``.

    Raises a clear error when it cannot be found (the ``layer=`` argument of the methods).
    """
    if isinstance(layer, keras.layers.Layer):
        return layer
    if isinstance(layer, str):
        if not isinstance(model, keras.Model):
            raise TypeError(f"layer={layer!r}: naming a layer needs a keras.Model, got {type(model).__name__}")
        found = lookup_layer(model, layer)
        if found is None:
            names = [lay.name for lay in model.layers]
            raise ValueError(f"layer={layer!r}: no layer of that name in the model (top-level layers: {names})")
        return found
    if callable(layer):
        found = layer(model)
        if not isinstance(found, keras.layers.Layer):
            raise TypeError("layer: a callable must return a keras layer when given the model")
        return found
    raise TypeError(f"layer must be a keras layer, a layer name or callable(model) -> layer, got {type(layer).__name__}")


class LayerTap:
    """Record the input and output of ``layer`` while the model is called inside the ``with`` block.

    The layer's bound ``call`` is shadowed by an instance attribute for the duration of the block
    (restored on exit, also on error). If the layer is called several times (a shared layer), the
    last call wins and ``calls`` counts them. Inside traced functions the tap is active while tracing.
    """

    def __init__(self, layer: keras.layers.Layer):
        self.layer = layer
        self.inputs = None
        self.outputs = None
        self.calls = 0
        self._saved = None

    def __enter__(self):
        layer = self.layer
        self._saved = layer.__dict__.get("call", None)
        original = layer.call  # bound method (or an instance attribute that shadows it)

        def tapped_call(*args, **kwargs):
            if args:
                self.inputs = args[0]
            elif kwargs:
                self.inputs = kwargs.get("inputs", next(iter(kwargs.values())))
            out = original(*args, **kwargs)
            self.outputs = out
            self.calls += 1
            return out

        object.__setattr__(layer, "call", tapped_call)
        return self

    def __exit__(self, *exc):
        if self._saved is None:
            object.__delattr__(self.layer, "call")
        else:
            object.__setattr__(self.layer, "call", self._saved)
        return False


@contextlib.contextmanager
def replaced_output(layer, tensor):
    """Within the block, ``layer`` returns ``tensor`` instead of computing its output."""
    saved = layer.__dict__.get("call", None)
    object.__setattr__(layer, "call", lambda *args, **kwargs: tensor)
    try:
        yield
    finally:
        if saved is None:
            object.__delattr__(layer, "call")
        else:
            object.__setattr__(layer, "call", saved)


def layer_activations(model, layer, inputs):
    """The output of ``layer`` when ``model`` runs on ``inputs`` (e.g. embeddings of baseline token ids).

    Use it to build a baseline in the layer's space, e.g. the embedding of padding tokens:
    ``baseline = tpa.layer_activations(model, "embedding", pad_ids)``.
    """
    lay = find_layer(model, layer)
    with LayerTap(lay) as tap:
        model(inputs, training=False)
    if tap.calls != 1:
        raise ValueError(f"layer {lay.name!r} ran {tap.calls} times in one model call; attribution to a shared or "
                         "unused layer is ambiguous")
    if isinstance(tap.outputs, (list, tuple, dict)):
        raise ValueError(f"layer {lay.name!r} returns several tensors; pick a layer with a single output")
    return tf.convert_to_tensor(tap.outputs)
