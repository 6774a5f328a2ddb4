"""The compiled gradient kernel and the per-call set-up every method shares.

``prepare(model, inputs, target)`` checks the inputs, resolves the target against the model's
output shape and returns a :class:`Problem`. Inside a method's traced function,
:func:`score_and_gradients` maps a chunk of path points (``c * B`` rows, point-major) to the
explained scalar per row and its gradient with respect to exactly those points, in one forward and
one backward pass. :func:`chunked_loop` runs a body over the chunks of a static number of path
points as a ``tf.while_loop`` with ``parallel_iterations=1`` (one chunk alive at a time), so
memory is bounded by ``internal_batch_size`` and does not grow with ``n_steps``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec

import keras
import numpy as np
import tensorflow as tf

from . import shapes as _shapes
from . import targets as _targets

DEFAULT_INTERNAL_BATCH_SIZE = 256


# --------------------------------------------------------------------------------------------
# model calls


def make_forward(model, structure: _shapes.Structure) -> Callable[[list[tf.Tensor]], Any]:
    """A function ``flat_points -> outputs`` that calls ``model`` in inference mode.

    Keras models and layers (``keras.layers.TFSMLayer`` too) get ``training=False``; other
    callables (``tf.saved_model.load(path).serve``, plain functions, ``tf.function``s) are called
    with the inputs alone. Single-entry dict outputs (SavedModel signatures) are unwrapped.
    """
    if not callable(model):
        raise TypeError(
            f"model must be a keras.Model or a callable mapping a batch to outputs, got {type(model).__name__}"
        )
    is_keras = isinstance(model, keras.layers.Layer)

    def forward(flat_points):
        packed = structure.pack(flat_points)
        out = model(packed, training=False) if is_keras else model(packed)
        if isinstance(out, dict) and len(out) == 1:
            out = next(iter(out.values()))
        if isinstance(out, (list, tuple)) and len(out) == 1:
            out = out[0]
        return out

    return forward


def _model_key(model):
    return id(model)


_OUTPUT_SHAPES: OrderedDict[tuple, Any] = OrderedDict()


def output_shape(model, forward, flat_x) -> tuple | None:
    """Per-example output shape (``None`` for list/dict outputs), from one cached probe call."""
    key = (_model_key(model), tuple(tuple(x.shape[1:]) for x in flat_x), tuple(x.dtype.name for x in flat_x))
    if key in _OUTPUT_SHAPES:
        ref, shape = _OUTPUT_SHAPES[key]
        if ref() is model:
            return shape
    out = forward([x[:1] for x in flat_x])
    if isinstance(out, (dict, list, tuple)):
        shape = None
    else:
        shape = tuple(tf.convert_to_tensor(out).shape[1:])
    try:
        _OUTPUT_SHAPES[key] = (weakref.ref(model), shape)  # a weak reference: the model stays collectable
    except TypeError:  # objects without weakref support are probed on every call
        return shape
    while len(_OUTPUT_SHAPES) > 256:
        _OUTPUT_SHAPES.popitem(last=False)
    return shape


# --------------------------------------------------------------------------------------------
# the problem every method solves


@dataclass
class LayerInputs:
    """The raw model inputs (token ids, masks, other inputs) fed unchanged to every model call of a ``layer=`` problem.

    Eagerly, ``tensors`` are the explicands' own inputs. A traced body (the compiled function of a
    plan, or :meth:`Plan.embed` inside a caller's graph) first points ``tensors`` at its traced
    arguments, so the graph reads its inputs from its arguments, never from captured constants.
    """

    tensors: list[tf.Tensor]


@dataclass
class Problem:
    """Checked inputs, model call and target of one attribution request.

    With ``layer=``, ``flat_x`` holds the layer's activations for the explicands (the space the
    attributions live in) and ``context`` the raw model inputs, fed unchanged to every model call.
    """

    model: Any
    forward: Callable
    flat_x: list[tf.Tensor]
    structure: _shapes.Structure
    batch_size: int
    target: _targets.TargetSpec
    scorer: Callable
    context: list[tf.Tensor] | None = None
    layer: Any = None
    layer_call: int | None = None  # which call of ``layer`` is replaced (see engine.layers)
    raw_forward: Callable | None = None  # the model on its own inputs (= forward without layer=)
    layer_inputs: LayerInputs | None = None  # what ``forward`` feeds the model with ``layer=``

    def __post_init__(self):
        if self.raw_forward is None:
            self.raw_forward = self.forward

    def pack(self, flat):
        return self.structure.pack(flat)

    @property
    def example_shapes(self):
        return [tuple(x.shape[1:]) for x in self.flat_x]


def prepare(model, inputs, target, name_inputs: str = "inputs", layer=None, no_layer=None) -> Problem:
    """Check inputs, probe the model's output shape, resolve the target.

    ``layer`` (a Keras layer, its name, ``callable(model) -> layer``, or ``(layer, call_index)``)
    moves the attribution to that layer's output; the raw inputs may then be integers (token ids).
    Only the selected call of the layer is replaced along the path (a tied embedding's
    ``reverse=True`` projection keeps running on the real weights). ``no_layer``: the calling
    method's reason for refusing ``layer=``, given in the integer-input error instead of advising it.
    """
    if layer is None:
        flat_x, structure, batch = _shapes.prepare_inputs(inputs, name_inputs, no_layer=no_layer)
        _shapes.check_against_model(model, flat_x, structure, name_inputs)
        model_call = make_forward(model, structure)
        out_shape = output_shape(model, model_call, flat_x)
        spec = _targets.resolve_target(target, batch, out_shape)
        return Problem(model, model_call, flat_x, structure, batch, spec, _targets.make_scorer(spec, batch))

    from . import layers as _layers

    raw, raw_structure, batch = _shapes.prepare_inputs(inputs, name_inputs, allow_integer=True)
    _shapes.check_against_model(model, raw, raw_structure, name_inputs)
    lay, call_index = _layers.resolve_layer(model, layer)
    known = _KNOWN_ACTIVATIONS.get()
    if known is not None and known.matches(model, inputs, lay, call_index):
        acts, call_index = known.activations, known.call_index  # the caller's own probe of these inputs
    else:
        acts, call_index, _, _ = layer_probe(model, lay, call_index, raw_structure.pack(raw))
    if not acts.dtype.is_floating:
        raise TypeError(f"layer {lay.name!r} outputs {acts.dtype.name}; attribution needs a float layer output")
    acts = tf.cast(acts, tf.float32)
    raw_forward = make_forward(model, raw_structure)
    layer_inputs = LayerInputs(list(raw))

    def forward(flat_points):
        (points,) = flat_points
        groups = points.shape[0] // batch
        ctx = [tf.tile(c, [groups] + [1] * (c.shape.rank - 1)) for c in layer_inputs.tensors]
        with _layers.replaced_output(lay, tf.cast(points, lay.compute_dtype or tf.float32), call_index):
            return raw_forward(ctx)

    out_shape = output_shape(model, raw_forward, raw)
    spec = _targets.resolve_target(target, batch, out_shape)

    def zero_input():
        """The layer's activations at an all-zero model input (``baseline="zero_input"``)."""
        zeros = raw_structure.pack([tf.zeros_like(r) for r in raw])
        return tf.cast(layer_probe(model, lay, call_index, zeros)[0], tf.float32)

    return Problem(
        model,
        forward,
        _shapes.LayerActivations([acts], zero_input),
        _shapes.Structure("single"),
        batch,
        spec,
        _targets.make_scorer(spec, batch),
        context=raw,
        layer=lay,
        layer_call=call_index,
        raw_forward=raw_forward,
        layer_inputs=layer_inputs,
    )


@dataclass(frozen=True)
class _KnownActivations:
    model: Any
    inputs: Any
    layer: Any
    call_index: int
    activations: tf.Tensor

    def matches(self, model, inputs, layer, call_index) -> bool:
        return (
            model is self.model
            and inputs is self.inputs
            and layer is self.layer
            and call_index in (None, self.call_index)
        )


_KNOWN_ACTIVATIONS: contextvars.ContextVar[_KnownActivations | None] = contextvars.ContextVar(
    "tf_pathattr_known_activations", default=None
)


@contextlib.contextmanager
def known_layer_activations(model, inputs, layer, call_index: int, activations):
    """Within the block, :func:`prepare` with ``layer=layer`` on this very ``model`` and ``inputs`` object
    (identity, not equality) takes ``activations`` as the layer's output instead of probing the model.

    For a caller that has just probed the same layer on the same raw inputs (``tpa.text``: the user's
    model, then a scoring wrapper around it that feeds the model those inputs unchanged) and would
    otherwise pay a second forward pass per call. Scoped to the block (a context variable): nothing is
    kept afterwards, and inputs that a method replaces or tiles are probed as usual.
    """
    token = _KNOWN_ACTIVATIONS.set(_KnownActivations(model, inputs, layer, int(call_index), activations))
    try:
        yield
    finally:
        _KNOWN_ACTIVATIONS.reset(token)


def layer_probe(model, layer, call_index, inputs, outputs: bool = True):
    """``(activations, call_index, first input of that call, model outputs)`` from one compiled model call.

    ``layer`` is a layer object; ``call_index`` ``None`` is resolved as in
    :func:`tf_pathattr.engine.layers.layer_call_activations` (the only call, or a tied embedding's
    lookup). The traced probe is cached per model, layer, call index and input signature and holds
    the model by weak reference, so repeated explanations of same-shaped inputs cost a graph call,
    not an eager forward pass (an eager call of a keras-hub model costs more than a short IG run).

    ``outputs=False``: the caller needs the outputs' shapes, not their values. The fourth item is then
    a ``tf.TensorSpec`` (nest) with the static shapes of the outputs, recorded while tracing, and the
    call runs a second cached function that returns only the activations and the layer's input:
    TensorFlow prunes the model's ops after the layer from its graph (on a 2-layer GPT-2 at T = 32:
    0.5 ms instead of 1.9 ms a call). Each function is traced on its first use only.
    """
    from . import layers as _layers

    flat = [tf.convert_to_tensor(t) for t in tf.nest.flatten(inputs)]
    inputs = tf.nest.pack_sequence_as(inputs, flat)
    sig = tuple((tuple(t.shape), t.dtype.name) for t in flat)
    keys = tuple(inputs) if isinstance(inputs, dict) else type(inputs).__name__
    model_ref: Callable[[], Any]
    try:
        model_ref = weakref.ref(model)
    except TypeError:
        model_ref = (lambda m: lambda: m)(model)
    is_keras = isinstance(model, keras.layers.Layer)

    def build():
        resolved = _LayerProbe(None)

        def probe(inputs):
            m = model_ref()
            with _layers.LayerTap(layer) as tap:
                out = m(inputs, training=False) if is_keras else m(inputs)
            k = _layers._select_call(layer, tap, call_index, m)
            resolved.call_index = k
            acts = tap.call_outputs[k]
            if isinstance(acts, (list, tuple, dict)):
                raise ValueError(f"layer {layer.name!r} returns several tensors; pick a layer with a single output")
            first = tap.call_inputs[k]
            first = first if isinstance(first, tf.Tensor) else tf.zeros((0,))
            return tf.convert_to_tensor(acts), first, out

        def activations_only(inputs):
            acts, first, out = probe(inputs)  # traced whole; the outputs' static shapes are known here
            resolved.out_spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), out)
            return acts, first  # and TF prunes the ops that only the outputs need

        resolved.function = tf.function(probe, autograph=False, reduce_retracing=False)
        resolved.activations_function = tf.function(activations_only, autograph=False, reduce_retracing=False)
        return resolved

    resolved = CACHE.get(model, ("layer_probe", id(layer), call_index, sig, keys), build)
    if outputs:
        acts, first, out = resolved.function(inputs)
        return acts, resolved.call_index, first, out
    acts, first = resolved.activations_function(inputs)
    return acts, resolved.call_index, first, resolved.out_spec


@dataclass
class _LayerProbe:
    """A cached layer probe: its traced ``function`` (activations, layer input, model outputs), the same
    without the outputs (``activations_function``), the call index resolved while tracing and the
    outputs' static ``out_spec``.

    Behaves as the traced function where the cache is inspected (callable, tracing count), so every cached
    value answers ``experimental_get_tracing_count()``.
    """

    call_index: int | None
    function: Any = None  # the tf.functions, set right after construction
    activations_function: Any = None
    out_spec: Any = None

    def __call__(self, *args):
        return self.function(*args)

    def experimental_get_tracing_count(self) -> int:
        return (
            self.function.experimental_get_tracing_count() + self.activations_function.experimental_get_tracing_count()
        )


# --------------------------------------------------------------------------------------------
# kernels used inside traced functions


def scores(problem: Problem, flat_points, indices) -> tf.Tensor:
    """Forward only: the explained scalar for each row of ``flat_points`` (``g * B`` rows)."""
    return problem.scorer(problem.forward(list(flat_points)), indices)


def resolve_indices(problem: Problem, flat_x, indices):
    """Replace the placeholder indices with the predicted classes when ``target=None``.

    Returns ``(indices, outputs_at_x or None)`` so callers that need ``F(x)`` can reuse the pass.
    """
    if problem.target.kind != _targets.PREDICTED:
        return indices, None
    out = problem.forward(list(flat_x))
    return _targets.predicted_indices(out, problem.target), out


def scores_at_x(problem: Problem, flat_x, indices, outputs_at_x=None) -> tf.Tensor:
    """``F(x)`` per example, reusing the outputs :func:`resolve_indices` computed when it had to."""
    if outputs_at_x is not None:
        return problem.scorer(outputs_at_x, indices)
    return scores(problem, flat_x, indices)


def score_and_gradients(problem: Problem, flat_points, indices):
    """Scores ``[rows]`` and gradients (one per input, shaped like the points) for a chunk of points."""
    flat_points = list(flat_points)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        for p in flat_points:
            tape.watch(p)
        s = problem.scorer(problem.forward(flat_points), indices)
    grads = connected_gradients(problem, tape, s, flat_points)
    return s, grads


def _input_labels(problem, which):
    if problem.layer is not None:
        return f"the output of layer {problem.layer.name!r} (layer=)"
    if problem.structure.kind == "single":
        return "inputs"
    return ", ".join(f"inputs[{problem.structure.keys[i]!r}]" for i in which)


def unconnected_message(problem, which, what: str = "the explained output") -> str:
    """The error for a missing gradient path from ``what`` to the inputs ``which`` (indices)."""
    where = _input_labels(problem, which)
    if problem.layer is not None:
        hint = "pick a layer whose output the explained output depends on differentiably"
    else:
        hint = (
            "if these are token ids (or any ids / categories fed to an Embedding or a lookup), pass them as "
            "integers with layer=<the Embedding layer or its name> to attribute to the embedding output; if the "
            "input is unused, remove it or give it a zero baseline"
        )
    return (
        f"no gradient path from {what} to {where}: the model's output does not depend differentiably on it "
        f"(float-cast token ids into an Embedding, an argmax / round / cast to int inside the model, "
        f"tf.stop_gradient, or an unused input), so every attribution would be zero; {hint}"
    )


def connected_gradients(problem, tape, target, sources, what: str = "the explained output"):
    """``tape.gradient(target, sources)`` that raises (at trace time) where a source has no gradient path.

    A missing path used to become zeros (``UnconnectedGradients.ZERO``), which made float-cast token
    ids give silently all-zero attributions; now it is a ``ValueError`` naming the input (or ``layer=``).
    """
    grads = tape.gradient(target, sources, unconnected_gradients=tf.UnconnectedGradients.NONE)
    single = not isinstance(sources, (list, tuple))
    glist = [grads] if single else list(grads)
    missing = [i for i, g in enumerate(glist) if g is None]
    if missing:
        raise ValueError(unconnected_message(problem, missing, what))
    glist = [tf.convert_to_tensor(g) for g in glist]
    return glist[0] if single else glist


def chunk_size(n_points: int, batch_size: int, internal_batch_size) -> int:
    """Path points per model call: ``internal_batch_size // B`` (at least 1, at most ``n_points``)."""
    ibs = (
        DEFAULT_INTERNAL_BATCH_SIZE
        if internal_batch_size is None
        else _shapes.check_positive_int(internal_batch_size, "internal_batch_size")
    )
    if ibs < batch_size:
        warnings.warn(
            f"internal_batch_size={ibs} is smaller than the number of explicands ({batch_size}); "
            f"each model call will still carry {batch_size} rows (one path point for every example)",
            stacklevel=3,
        )
    return int(max(1, min(n_points, ibs // batch_size)))


def chunked_loop(n_points: int, chunk: int, body: Callable, carry):
    """Run ``carry = body(start, size, carry)`` over ``[0, n_points)`` in chunks of ``chunk``.

    ``start`` is an int32 scalar tensor, ``size`` a static Python int (``chunk``, or the remainder
    for the final partial chunk, which is run once after the loop so no padded work is done).
    """
    n_full, rem = divmod(int(n_points), int(chunk))
    if n_full == 1:
        carry = body(tf.constant(0, tf.int32), chunk, carry)
    elif n_full > 1:

        def cond(i, *c):
            return i < n_full

        def loop_body(i, *c):
            out = body(i * chunk, chunk, tf.nest.pack_sequence_as(carry, list(c)))
            return [i + 1] + tf.nest.flatten(out)

        flat = tf.nest.flatten(carry)
        res = tf.while_loop(cond, loop_body, [tf.constant(0, tf.int32)] + flat, parallel_iterations=1)
        carry = tf.nest.pack_sequence_as(carry, res[1:])
    if rem:
        carry = body(tf.constant(n_full * chunk, tf.int32), rem, carry)
    return carry


def expand_like(v, x):
    """Reshape a ``[..., B]``-indexed vector so it broadcasts against ``x`` of shape ``[..., B, *S]``."""
    extra = x.shape.rank - v.shape.rank
    return tf.reshape(v, tf.concat([tf.shape(v), tf.ones((extra,), tf.int32)], 0)) if extra > 0 else v


def rows(t, size, batch):
    """``[size, B, *S] -> [size * B, *S]`` (point-major rows)."""
    return tf.reshape(t, [size * batch] + t.shape[2:].as_list())


def unrows(t, size, batch):
    """``[size * B, *S] -> [size, B, *S]``."""
    return tf.reshape(t, [size, batch] + t.shape[1:].as_list())


# --------------------------------------------------------------------------------------------
# compiled-function cache


_CACHE_ATTRIBUTE = "_tf_pathattr_compiled"


def attached_store(model, name: str):
    """A dict stored *on* ``model`` (``None`` where it takes no attributes), for per-model objects that
    refer back to the model: the cycle is freed with the model, where a module-level mapping would keep
    it alive."""
    owner = _cache_owner(model)
    attr = "_tf_pathattr_" + name
    store = getattr(owner, "__dict__", {}).get(attr)
    if store is None:
        store = {}
        try:
            object.__setattr__(owner, attr, store)
        except (AttributeError, TypeError):
            return None
    return store


def _cache_owner(model):
    """The object a model's compiled functions are stored on: the model itself, or the instance a
    bound method belongs to (bound methods take no attributes)."""
    return getattr(model, "__self__", None) if inspect.ismethod(model) else model


class _Cache:
    """Traced methods per (method, static options), stored *on the model object*.

    A cached ``tf.function`` closes over the model (it calls it), so a cache held by this module
    would keep every model alive. Stored as an attribute of the model, the functions form a
    reference cycle with it that the garbage collector frees together with the model once the user
    drops it. Only weak references to the owners are kept here (for :meth:`clear` and inspection).
    Objects that take no attributes (rare callables) are not cached: each call traces anew.
    """

    def __init__(self, maxsize: int = 64):
        self.maxsize = maxsize
        self._owners: list[weakref.ref] = []

    def _store(self, model, create: bool):
        owner = _cache_owner(model)
        store = getattr(owner, "__dict__", {}).get(_CACHE_ATTRIBUTE)
        if store is None and create:
            store = OrderedDict()
            try:
                object.__setattr__(owner, _CACHE_ATTRIBUTE, store)
            except (AttributeError, TypeError):
                return None
            try:
                self._owners.append(weakref.ref(owner))
            except TypeError:
                pass
            self._owners = [r for r in self._owners if r() is not None]
        return store

    def get(self, model, key, build: Callable[[], Callable]):
        full = (("bound", id(model.__func__)) + tuple(key)) if _cache_owner(model) is not model else tuple(key)
        store = self._store(model, create=True)
        if store is None:
            return build()
        fn = store.get(full)
        if fn is not None:
            store.move_to_end(full)
            return fn
        fn = build()
        store[full] = fn
        while len(store) > self.maxsize:
            store.popitem(last=False)
        return fn

    def functions(self, model=None) -> list:
        """The cached functions of ``model`` (of every live model when ``None``)."""
        if model is not None:
            store = self._store(model, create=False)
            return list(store.values()) if store else []
        return [fn for _, fn in self._items.values()]

    @property
    def _items(self) -> dict:
        """``{(owner id,) + key: (weakref to owner, function)}`` over every live owner (inspection)."""
        out = {}
        for ref in self._owners:
            owner = ref()
            if owner is None:
                continue
            for key, fn in owner.__dict__.get(_CACHE_ATTRIBUTE, {}).items():
                out[(id(owner),) + tuple(key)] = (ref, fn)
        return out

    def clear(self):
        for ref in self._owners:
            owner = ref()
            if owner is not None:
                owner.__dict__.pop(_CACHE_ATTRIBUTE, None)
        self._owners = []


CACHE = _Cache()


def compiled(problem: Problem, key: tuple, python_fn_builder: Callable[[], Callable], jit_compile: bool = False):
    """The cached ``tf.function`` for ``key``; ``python_fn_builder()`` builds the Python body once.

    The traced function must take tensors only (inputs, baselines, target indices, seeds), so new
    inputs of the same shape and new targets reuse the same trace.
    """
    layer_key = None
    if problem.layer is not None and problem.context is not None:
        layer_key = (
            id(problem.layer),
            problem.layer_call,
            tuple((tuple(c.shape), c.dtype.name) for c in problem.context),
        )
    full_key = tuple(key) + (
        problem.structure,
        problem.target.cache_token,
        problem.batch_size,
        tuple(problem.example_shapes),
        bool(jit_compile),
        layer_key,
    )
    return CACHE.get(problem.model, full_key, lambda: _trace(problem, python_fn_builder, jit_compile))


def _trace(problem: Problem, python_fn_builder: Callable[[], Callable], jit_compile: bool):
    """A new ``tf.function`` of the body ``python_fn_builder()`` (with the raw-input context for ``layer=``)."""
    python_fn = python_fn_builder()
    if problem.layer is None:
        body = python_fn
    else:
        layer_inputs = problem.layer_inputs

        def body(flat_x, indices, context, *extra):
            layer_inputs.tensors = list(context)  # the traced raw inputs feed every model call
            return python_fn(flat_x, indices, *extra)

    # One tf.function per key, traced once for its static shapes (batch size included). TF counts
    # traces per *code object* (its frequent-retracing detector), so the per-batch-size functions
    # built from one method body would read as "retracing" of one function and log a warning; a
    # partial is its own detector key, so only a real retrace of this very function is counted.
    fn = tf.function(functools.partial(body), jit_compile=bool(jit_compile), reduce_retracing=False, autograph=False)
    fn.python_function_body = python_fn
    return fn


@dataclass
class Plan:
    """A method's compiled body and the arguments it is called with: what a method hands over.

    ``builder()`` returns the Python body ``python_fn(flat_x, indices, *extra_args)``; its output is a
    list of attribution tensors (one per input) or a tuple whose first item is that list. Running the
    plan (:meth:`execute`) calls the cached ``tf.function`` of that body on the problem's inputs and
    passes the raw result through ``finish`` (host-side packing, diagnostics) to give what the user
    gets. Embedding it (``tpa.saved_model.export``, anything that traces a method into its own
    ``tf.function``) calls :attr:`python_fn` with its own tensors and ``extra_args``.

    Convention every method follows: ``flat_x`` and ``indices`` are the only arguments that depend on
    the explicands; ``extra_args`` are tensors that do not depend on input *values* (quadrature
    tables, reference sets, seeds, shared baselines...). Anything computed from the input values is
    computed inside the body. That is what lets the same body run on new inputs.
    """

    problem: Problem
    key: tuple
    builder: Callable[[], Callable]
    extra_args: tuple = ()
    jit_compile: bool = False
    finish: Callable[[Any], Any] | None = None

    @property
    def function(self):
        """The cached ``tf.function`` (built on first use; uncached when ``key`` is ``None``)."""
        if self.key is None:
            return _trace(self.problem, self.builder, self.jit_compile)
        return compiled(self.problem, self.key, self.builder, self.jit_compile)

    @property
    def python_fn(self):
        """A fresh Python body ``fn(flat_x, indices, *extra_args)`` in attribution space, for embedding."""
        return self.builder()

    def embed(self, flat_inputs, indices):
        """Run the body inside a caller's traced function on the model's own inputs.

        ``flat_inputs`` are what the model takes (token ids too, with ``layer=``: the layer's output
        is computed from them in the same graph). Returns the body's outputs.
        """
        fn = self.builder()
        problem = self.problem
        if problem.layer is None:
            return fn(list(flat_inputs), indices, *self.extra_args)
        from .layers import LayerTap

        flat_inputs = list(flat_inputs)
        with LayerTap(problem.layer) as tap:
            problem.raw_forward(flat_inputs)
        acts = tf.cast(tap.call_outputs[problem.layer_call or 0], tf.float32)
        problem.layer_inputs.tensors = flat_inputs
        return fn([acts], indices, *self.extra_args)

    def raw(self):
        """Run the compiled body on the problem's inputs; the body's outputs as they are."""
        fn = self.function
        if self.problem.layer is not None:
            return fn(self.problem.flat_x, self.problem.target.indices, self.problem.context, *self.extra_args)
        return fn(self.problem.flat_x, self.problem.target.indices, *self.extra_args)

    def execute(self):
        """Run the plan and return what the method returns to its caller."""
        result = self.raw()
        return result if self.finish is None else self.finish(result)


def packed_finish(problem: Problem, return_convergence_delta: bool) -> Callable:
    """``finish`` for bodies returning ``(attributions list, delta [B])``: attributions packed into the
    user's structure, with the delta when asked."""

    def finish(result):
        attr, delta = result
        attr = problem.pack(attr)
        return (attr, delta) if return_convergence_delta else attr

    return finish


_Options = ParamSpec("_Options")


def planned(plan_fn: Callable[_Options, Any]) -> Callable[_Options, Any]:
    """Make a public method from its planner ``plan_fn(model, inputs, target, **options) -> Plan``.

    The method runs the plan (a planner may also return a finished result, for option combinations
    that run partly on the host and so cannot be embedded); ``method.plan`` is the planner, so the
    exporter gets the compiled body and its arguments without running anything.
    """

    @functools.wraps(plan_fn)
    def method(*args, **kwargs):
        result = plan_fn(*args, **kwargs)
        return result.execute() if isinstance(result, Plan) else result

    def plan(*args, **kwargs) -> Plan:
        result = plan_fn(*args, **kwargs)
        if not isinstance(result, Plan):
            raise ValueError(
                f"{plan_fn.__name__}: these options run partly on the host and cannot be embedded "
                "in a graph (export or a compiled callback step)"
            )
        return result

    method.plan = plan  # type: ignore[attr-defined]  # the planner, for export (read by saved_model)
    return method


def run_packed(
    problem: Problem,
    key: tuple,
    builder: Callable[[], Callable],
    extra_args=(),
    jit_compile: bool = False,
    return_convergence_delta: bool = False,
):
    """Run a body returning ``(attributions list, delta [B])``; see :func:`packed_finish`."""
    return Plan(
        problem, key, builder, tuple(extra_args), jit_compile, packed_finish(problem, return_convergence_delta)
    ).execute()


def run(problem: Problem, key: tuple, builder: Callable[[], Callable], extra_args=(), jit_compile: bool = False):
    """Build (once, cached) and call a traced body ``fn(flat_x, indices, *extra_args)``; its raw outputs."""
    return Plan(problem, key, builder, tuple(extra_args), jit_compile).raw()


def as_numpy_seed(seed, name: str = "seed") -> int:
    """Seeds are ints (``None`` -> 0, documented per method)."""
    if seed is None:
        return 0
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(seed).__name__}")
    return int(seed)
