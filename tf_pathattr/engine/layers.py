"""Finding hidden layers in Keras models and reading their activations inside traced code.

IG2 (and any method that works on a hidden representation) needs, in ONE forward pass of the
model, both the model's outputs and the activations at a hidden layer. Rather than rebuilding a
two-output functional model (which fails for nested sub-models, whose layers live in their own
graph), :class:`LayerTap` intercepts the layer's ``call`` for the duration of one model call and
records what went in and what came out. It works for Sequential, functional and nested models and
for subclassed models that call the layer, and it costs nothing outside the ``with`` block.

* :func:`find_last_dense(model)`: the Dense layer nearest the output (searching nested models);
* :func:`find_layer(model, layer)`: a layer given by object or name, searched recursively;
* :class:`LayerTap`: ``with LayerTap(layer) as tap: out = model(z)``; then ``tap.inputs`` /
  ``tap.outputs`` hold the tensors of the last call of ``layer``.
"""
from __future__ import annotations

from typing import Iterator, Optional

import keras

__all__ = ["iter_layers", "find_last_dense", "find_layer", "LayerTap"]


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


def find_layer(model, layer) -> Optional[keras.layers.Layer]:
    """Resolve ``layer`` (a layer object or a layer name) inside ``model``, recursively; None if absent."""
    for candidate in iter_layers(model):
        if isinstance(layer, str):
            if candidate.name == layer:
                return candidate
        elif candidate is layer:
            return candidate
    return None


class LayerTap:
    """Record the input and output of ``layer`` while the model is called inside the ``with`` block.

    The layer's bound ``call`` is shadowed by an instance attribute for the duration of the block
    (restored on exit, also on error). If the layer is called several times (a shared layer), the
    last call wins. Used inside traced functions, the tap is only active while tracing.
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
