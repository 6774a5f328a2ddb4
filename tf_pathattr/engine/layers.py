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

Both (and text's replaced token ids, :func:`replaced_input`) intercept the layer's ``call`` through
one context manager, :func:`patched_call`, for the duration of a ``with`` block, so they work for functional, sequential, nested and subclassed models without rebuilding
the graph (a two-output functional model cannot be built across nested sub-models).

A layer may run several times in one model call. ``layer=(layer, call_index)`` picks one call
(counted from 0 in *execution order*: the order in which the model runs the calls, for a functional
model its graph order by depth, which need not be the order in which the layer was wired) and only
that call is replaced; the others run unchanged. An index out of range, or a shared layer without
one, is an error that lists every call with the input it took (the layer it came from, its shape). The tied embedding of a causal language model (keras-hub ``ReversibleEmbedding``: a
lookup, then ``token_embedding(h, reverse=True)`` for the logits) is resolved without an index:
when a layer with a ``reverse`` call argument made exactly one non-reverse call, that call (the
lookup) is the one attributed, and the reverse projection keeps computing the logits from the
layer's weights.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "iter_layers",
    "find_last_dense",
    "lookup_layer",
    "find_layer",
    "resolve_layer",
    "patched_call",
    "on_call",
    "LayerTap",
    "replaced_output",
    "replaced_input",
    "layer_activations",
    "layer_call_activations",
    "is_reverse_call",
]


def _children(layer):
    sub = getattr(layer, "layers", None)
    return list(sub) if isinstance(sub, (list, tuple)) else []


def iter_layers(model) -> Iterator[keras.layers.Layer]:
    """All layers of ``model`` depth-first, in the model's own order, descending into sub-models."""
    for layer in _children(model):
        yield layer
        yield from iter_layers(layer)


def find_last_dense(model) -> keras.layers.Layer | None:
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


def lookup_layer(model, layer) -> keras.layers.Layer | None:
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

    Raises a clear error when it cannot be found (the ``layer=`` argument of the methods). A
    ``(layer, call_index)`` pair returns its layer (see :func:`resolve_layer` for the index).
    """
    if isinstance(layer, tuple):
        return resolve_layer(model, layer)[0]
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
    raise TypeError(
        f"layer must be a keras layer, a layer name, callable(model) -> layer or (layer, call_index), "
        f"got {type(layer).__name__}"
    )


def resolve_layer(model, layer):
    """``(layer object, call_index or None)`` from ``layer=``: a layer, a name, a callable or a pair.

    ``(layer, call_index)`` selects one call of a layer the model calls several times (``call_index``
    counts every call, from 0, in the order the model makes them). ``None``: decided after one model
    call by :func:`layer_call_activations` (the only call; or the lookup of a tied embedding).
    """
    if isinstance(layer, tuple):
        if len(layer) != 2:
            raise TypeError(f"layer=(layer, call_index) must be a pair, got a tuple of {len(layer)}")
        which, index = layer
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise TypeError(f"layer=(layer, call_index): call_index must be an int >= 0, got {index!r}")
        if isinstance(which, tuple):
            raise TypeError("layer=(layer, call_index): the first entry must be a layer, a name or a callable")
        return find_layer(model, which), int(index)
    return find_layer(model, layer), None


def is_reverse_call(args, kwargs) -> bool:
    """True for a ``reverse=True`` call of a two-way embedding (``layer(h, reverse=True)``)."""
    if "reverse" in kwargs:
        return bool(kwargs["reverse"]) if isinstance(kwargs["reverse"], (bool, np.bool_)) else True
    return len(args) > 1 and isinstance(args[1], (bool, np.bool_)) and bool(args[1])


def _has_reverse(layer) -> bool:
    params = getattr(layer, "call_signature_parameters", None)
    return params is not None and "reverse" in params


def _check_not_quantized(layer):
    mode = getattr(layer, "quantization_mode", None)
    if mode is not None:
        raise ValueError(
            f"layer {layer.name!r} is quantized ({mode}): Keras runs quantized_call, not call, so its "
            "output cannot be replaced; attribute a float copy of the model"
        )


_NO_INSTANCE_CALL = object()


@contextlib.contextmanager
def patched_call(layer: keras.layers.Layer, wrap: Callable[[Callable], Callable]) -> Iterator[keras.layers.Layer]:
    """Within the block, ``layer.call`` is ``wrap(call)``, where ``call`` is the layer's current ``call``.

    The one way this library patches a layer (taps, replaced outputs, replaced inputs): the patched
    function shadows the bound method as an instance attribute (``object.__setattr__``, past Keras'
    attribute tracking) and the layer's previous state is restored on exit, when the block raises
    too. Blocks nest: an inner patch wraps the outer one and is undone first. Inside a traced
    function the patch is active while tracing (the graph keeps what the patched call computed).

    Parameters
    ----------
    layer : keras.layers.Layer
        The layer whose ``call`` is replaced for the duration of the block.
    wrap : callable ``wrap(call) -> call``
        Receives the layer's current ``call`` and returns its replacement.

    Yields
    ------
    keras.layers.Layer
        ``layer``.
    """
    saved = layer.__dict__.get("call", _NO_INSTANCE_CALL)
    object.__setattr__(layer, "call", wrap(layer.call))
    try:
        yield layer
    finally:
        if saved is _NO_INSTANCE_CALL:
            object.__delattr__(layer, "call")
        else:
            object.__setattr__(layer, "call", saved)


def on_call(call_index: int | None, selected: Callable[..., Any]) -> Callable[[Callable], Callable]:
    """A ``wrap`` for :func:`patched_call` that changes one call of the layer, or every call.

    Calls are counted from 0 each time the block is entered, in call order; call ``call_index``
    (every call when ``None``) runs ``selected(call, *args, **kwargs)`` and every other call runs
    ``call(*args, **kwargs)`` unchanged (the ``reverse=True`` projection of a tied embedding keeps
    computing the logits).
    """

    def wrap(call):
        count = itertools.count()

        def patched(*args, **kwargs):
            k = next(count)
            if call_index is None or k == call_index:
                return selected(call, *args, **kwargs)
            return call(*args, **kwargs)

        return patched

    return wrap


class LayerTap:
    """Record the input and output of ``layer`` while the model is called inside the ``with`` block.

    The layer's ``call`` is patched with :func:`patched_call` for the duration of the block
    (restored on exit, also on error). If the layer is called several times (a shared layer), the
    last call wins in ``inputs`` / ``outputs`` and ``calls`` counts them; ``call_inputs``,
    ``call_outputs`` and ``reverse`` hold every call in order (``reverse[k]``: call ``k`` was a
    ``reverse=True`` call). Inside traced functions the tap is active while tracing.
    """

    def __init__(self, layer: keras.layers.Layer):
        self.layer = layer
        self.inputs: Any = None
        self.outputs: Any = None
        self.calls = 0
        self.call_inputs: list[Any] = []
        self.call_outputs: list[Any] = []
        self.reverse: list[bool] = []
        self._patch: contextlib.AbstractContextManager | None = None

    def _record(self, call, *args, **kwargs):
        if args:
            self.inputs = args[0]
        elif kwargs:
            self.inputs = kwargs.get("inputs", next(iter(kwargs.values())))
        out = call(*args, **kwargs)
        self.outputs = out
        self.calls += 1
        self.call_inputs.append(self.inputs)
        self.call_outputs.append(out)
        self.reverse.append(is_reverse_call(args, kwargs))
        return out

    def __enter__(self):
        self._patch = patched_call(self.layer, on_call(None, self._record))
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        patch, self._patch = self._patch, None
        patch.__exit__(*exc)
        return False


@contextlib.contextmanager
def replaced_output(layer, tensor, call_index=None):
    """Within the block, ``layer`` returns ``tensor`` instead of computing its output.

    ``call_index=None`` replaces every call; an int replaces only that call (counted from 0 each
    time the block is entered, in call order) and lets every other call run unchanged (the
    ``reverse=True`` projection of a tied embedding keeps computing the logits).
    """
    if call_index is not None:
        _check_not_quantized(layer)
    with patched_call(layer, on_call(call_index, lambda call, *args, **kwargs: tensor)):
        yield


@contextlib.contextmanager
def replaced_input(layer, call_index, tensor) -> Iterator[list[Any]]:
    """Within the block, call ``call_index`` of ``layer`` receives ``tensor`` as its first argument.

    Yields the list that receives that call's output (empty until the model has run), e.g. the
    embeddings of token ids that the model itself never saw.
    """
    outputs: list[Any] = []

    def with_tensor(call, *args, **kwargs):
        out = call(tensor, *args[1:], **kwargs) if args else call(**dict(kwargs, inputs=tensor))
        outputs.append(out)
        return out

    with patched_call(layer, on_call(call_index, with_tensor)):
        yield outputs


def _graph_call_sources(model, lay):
    """Per call of ``lay`` in ``model``'s run order, the names of the layers / ops its inputs come from
    (a functional model runs its nodes by decreasing depth, in this order); None when not readable."""
    by_depth = getattr(model, "_nodes_by_depth", None) if model is not None else None
    if not by_depth:
        return None
    sources = []
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if getattr(node, "operation", None) is not lay:
                continue
            names = []
            for t in getattr(node, "input_tensors", None) or ():
                hist = getattr(t, "_keras_history", None)
                names.append(repr(hist.operation.name) if hist else "?")
            sources.append(", ".join(names) or "?")
    return sources


def _describe_calls(lay, tap, model=None) -> str:
    """One line per call of ``lay`` in a model call: its index (the order the model makes the calls),
    what its first input came from (functional models) and its shape and dtype, and reverse calls."""
    sources = _graph_call_sources(model, lay)
    if sources is not None and len(sources) != tap.calls:
        sources = None
    lines = []
    for k in range(tap.calls):
        x = tap.call_inputs[k]
        dtype = getattr(x, "dtype", None)
        what = f"{getattr(dtype, 'name', dtype) or type(x).__name__} {list(getattr(x, 'shape', []))}"
        src = f" from {sources[k]}" if sources is not None else ""
        rev = " (reverse=True)" if tap.reverse[k] else ""
        lines.append(f"call {k}: input{src}, {what}{rev}")
    return "; ".join(lines)


def _select_call(lay, tap, call_index, model=None):
    """The index of the call of ``lay`` to attribute to. Calls are counted from 0 in execution order, the
    order in which the model runs them (for a functional model, its graph order), not the order in which
    the layer was wired; the errors list every call with the input it took."""
    if tap.calls == 0:
        raise ValueError(
            f"layer {lay.name!r} did not run in the model call; attribution to an unused layer is impossible"
        )
    if call_index is not None:
        if call_index >= tap.calls:
            raise ValueError(
                f"layer=({lay.name!r}, {call_index}): the layer ran {tap.calls} time(s) in one model "
                f"call (call_index 0..{tap.calls - 1}, counted in execution order): "
                f"{_describe_calls(lay, tap, model)}"
            )
        return call_index
    if tap.calls == 1:
        return 0
    forward = [k for k, rev in enumerate(tap.reverse) if not rev]
    if _has_reverse(lay) and len(forward) == 1:
        return forward[0]  # the lookup of a tied embedding; the reverse projection is left alone
    raise ValueError(
        f"layer {lay.name!r} ran {tap.calls} times in one model call; attribution to a shared layer "
        f"is ambiguous: pass layer=({lay.name!r}, call_index) with call_index in 0..{tap.calls - 1}, "
        f"counted in execution order: {_describe_calls(lay, tap, model)}"
    )


def layer_call_activations(model, layer, inputs, call_index=None, return_inputs=False):
    """``(activations, call_index)`` of one call of ``layer`` when ``model`` runs on ``inputs``.

    ``layer`` may be anything :func:`resolve_layer` takes; ``call_index`` (or the index in a
    ``(layer, call_index)`` pair) selects the call, ``None`` resolves it as described in the module
    docstring. With ``return_inputs=True`` the call's first input (e.g. the token ids an embedding
    received) comes third.
    """
    lay, index = resolve_layer(model, layer)
    if call_index is None:
        call_index = index
    with LayerTap(lay) as tap:
        if isinstance(model, keras.layers.Layer):
            model(inputs, training=False)
        else:
            model(inputs)
    k = _select_call(lay, tap, call_index, model)
    out = tap.call_outputs[k]
    if isinstance(out, (list, tuple, dict)):
        raise ValueError(f"layer {lay.name!r} returns several tensors; pick a layer with a single output")
    if return_inputs:
        return tf.convert_to_tensor(out), k, tap.call_inputs[k]
    return tf.convert_to_tensor(out), k


def layer_activations(model, layer, inputs):
    """The output of ``layer`` when ``model`` runs on ``inputs`` (e.g. embeddings of baseline token ids).

    Use it to build a baseline in the layer's space, e.g. the embedding of padding tokens:
    ``baseline = tpa.layer_activations(model, "embedding", pad_ids)``. ``layer=(layer, call_index)``
    picks one call of a layer that runs several times; a tied embedding (lookup + ``reverse=True``
    projection) gives its lookup.
    """
    return layer_call_activations(model, layer, inputs)[0]
