"""Attribution to an internal layer's output (``layer=``), e.g. the ``Embedding`` of a text model.

Gradients do not exist for integer token ids, so text models are explained in the embedding
space: the path runs between the layer's output for the explicand and a baseline activation
(zeros by default), and the model is evaluated with the layer's output *replaced* by the path
point while everything else (the raw inputs, masks, other inputs) is fed unchanged. The
replacement patches the layer's ``call`` for the duration of the model call, so it works for
functional, sequential, nested and subclassed models without rebuilding the graph.

Completeness then reads ``sum(attr) = F(x) - F(model with the layer output set to the baseline)``.
"""
from __future__ import annotations

import contextlib

import keras
import tensorflow as tf


def find_layer(model, layer):
    """A layer object from a layer, its name (searched in nested models too) or ``callable(model)``."""
    if isinstance(layer, keras.layers.Layer):
        return layer
    if isinstance(layer, str):
        if not isinstance(model, keras.Model):
            raise TypeError(f"layer={layer!r}: naming a layer needs a keras.Model, got {type(model).__name__}")
        stack = list(model.layers)
        while stack:
            lay = stack.pop(0)
            if lay.name == layer:
                return lay
            if isinstance(lay, keras.Model):
                stack.extend(lay.layers)
        names = [lay.name for lay in model.layers]
        raise ValueError(f"layer={layer!r}: no layer of that name in the model (top-level layers: {names})")
    if callable(layer):
        found = layer(model)
        if not isinstance(found, keras.layers.Layer):
            raise TypeError("layer: a callable must return a keras layer when given the model")
        return found
    raise TypeError(f"layer must be a keras layer, a layer name or callable(model) -> layer, got {type(layer).__name__}")


@contextlib.contextmanager
def replaced_output(layer, tensor):
    """Within the block, ``layer`` returns ``tensor`` instead of computing its output."""
    had = "call" in layer.__dict__
    previous = layer.__dict__.get("call")
    layer.call = lambda *args, **kwargs: tensor
    try:
        yield
    finally:
        if had:
            layer.call = previous
        else:
            del layer.call


@contextlib.contextmanager
def recorded_output(layer, store: list):
    """Within the block, every output ``layer`` computes is appended to ``store``."""
    original = layer.call

    def record(*args, **kwargs):
        out = original(*args, **kwargs)
        store.append(out)
        return out

    layer.call = record
    try:
        yield
    finally:
        del layer.call


def layer_activations(model, layer, inputs):
    """The output of ``layer`` when ``model`` runs on ``inputs`` (e.g. embeddings of baseline token ids).

    Use it to build a baseline in the layer's space, e.g. the embedding of padding tokens:
    ``baseline = tpa.layer_activations(model, "embedding", pad_ids)``.
    """
    lay = find_layer(model, layer)
    store: list = []
    with recorded_output(lay, store):
        model(inputs, training=False)
    if len(store) != 1:
        raise ValueError(f"layer {lay.name!r} ran {len(store)} times in one model call; attribution to a shared layer "
                         "is ambiguous")
    out = store[0]
    if isinstance(out, (list, tuple, dict)):
        raise ValueError(f"layer {lay.name!r} returns several tensors; pick a layer with a single output")
    return tf.convert_to_tensor(out)
