"""SavedModels: explain reloaded models, and export explain endpoints next to ``serve``.

Explaining a reloaded SavedModel needs nothing special; every method accepts

* the raw ``serve`` function of ``tf.saved_model.load(path)`` (or one of its ``signatures``), and
* a ``keras.layers.TFSMLayer(path, call_endpoint="serve")``,

as ``model``. :func:`load` is a small convenience returning such a callable.

:func:`export` writes a SavedModel with the model's ``serve`` endpoint and one
``explain_<method>`` endpoint per method, e.g.::

    tpa.saved_model.export(model, "exported", methods=("integrated_gradients", "guided_ig"),
                           options={"integrated_gradients": {"n_steps": 32}})
    loaded = tf.saved_model.load("exported")          # no tf_pathattr needed here
    attr = loaded.explain_integrated_gradients(x, tf.constant([3, -1], tf.int32))

Each explain endpoint takes ``x`` ``[None, *S]`` float32 and ``target`` ``[None]`` int32 (a negative
target means "the class the model predicts") and returns the attributions ``[None, *S]``. The method
body is the same traced function ``tpa.attribute`` runs (captured through the engine's capture
protocol for a one-example problem) and is mapped over the examples with a ``tf.while_loop``
(``parallel_iterations=1``), so every example is explained exactly as ``tpa.attribute(model, x[i:i+1],
target[i], method=..., **options)`` would explain it.

What can be baked in: options that do not depend on the input values — step counts, rules,
constant or fixed-array baselines, reference / background sets, seeds, seeded random baselines. What
cannot: anything computed from the explicand (e.g. ``tpa.baselines.blurred(sigma)``, a baseline made
from ``x``), per-example arrays (an array with a leading batch axis is read as a set of shared
baselines for a one-example problem), and callable targets. :func:`export` checks this by
capturing each method for two different sample inputs and refusing (``ValueError``) when the baked
tensors differ. Gradients are taken when the endpoint is traced, so the saved graph contains the
backward pass and the reloaded endpoint needs no gradient registry (methods must not use
``tf.custom_gradient``, whose gradients a SavedModel does not keep).
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .engine import gradients as eng
from .engine import targets as _targets
from .methods import attribute, registry

__all__ = ["export", "load", "endpoint_name", "LoadedEndpoint"]


def load(path, endpoint: str = "serve"):
    """``tf.saved_model.load(path)`` and return the callable ``endpoint`` (usable as ``model`` by every method)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"path: no SavedModel folder at {str(path)!r}")
    loaded = tf.saved_model.load(str(path))
    fn = getattr(loaded, endpoint, None)
    if fn is None and endpoint in getattr(loaded, "signatures", {}):
        fn = loaded.signatures[endpoint]
    if fn is None or not callable(fn):
        have = sorted(set(getattr(loaded, "signatures", {})))
        raise ValueError(f"endpoint: the SavedModel at {str(path)!r} has no callable {endpoint!r}; signatures: {have}")
    return LoadedEndpoint(loaded, fn, endpoint)


class LoadedEndpoint:
    """A reloaded SavedModel endpoint that keeps the loaded object (and so its variables) alive.

    ``tf.saved_model.load(path).serve`` alone fails once the loaded object is garbage collected
    ("Called a function referencing variables which have been deleted"); this holds both.
    """

    def __init__(self, loaded, fn, endpoint):
        self.loaded, self.fn, self.endpoint = loaded, fn, endpoint

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return f"LoadedEndpoint({self.endpoint!r})"


def _canonical(method) -> str:
    if not isinstance(method, str):
        raise TypeError(f"methods: expected method names (str), got {type(method).__name__}")
    return registry.canonical(method)


def endpoint_name(method) -> str:
    """The endpoint ``export`` writes for ``method`` (aliases resolved): ``explain_<full name>``."""
    return "explain_" + _canonical(method)


def _input_shape(model, input_shape):
    if input_shape is not None:
        shape = tuple(input_shape)
        if shape and shape[0] is None:
            shape = shape[1:]
    else:
        inputs = getattr(model, "inputs", None)
        if not inputs:
            raise ValueError("input_shape: the model has no known input shape (e.g. a TFSMLayer); pass "
                             "input_shape=(H, W, C) (per example, without the batch axis)")
        if len(inputs) != 1:
            raise NotImplementedError("export supports single-input models; this model has "
                                      f"{len(inputs)} inputs")
        shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"input_shape: every per-example dimension must be known, got {shape}")
    return tuple(int(d) for d in shape)


def _flat_values(extra_args):
    return [np.asarray(t.numpy() if hasattr(t, "numpy") else t) for t in tf.nest.flatten(extra_args)]


def _capture(model, sample, method, opts):
    with eng.capture() as cap:
        out = attribute(model, sample, 0, method=method, **opts)
    if cap.record is None:
        raise ValueError(f"methods: {method!r} did not run through the engine (tf_pathattr.engine.gradients.run), "
                         f"so it cannot be exported (it returned {type(out).__name__})")
    return cap.record


def _make_explain(python_fn, extra_args, problem, shape, name):
    spec_x = tf.TensorSpec((None,) + shape, tf.float32, name="x")
    spec_t = tf.TensorSpec((None,), tf.int32, name="target")
    one = (1,) + shape

    def explain(x, target):
        n = tf.shape(x)[0]
        acc = tf.TensorArray(tf.float32, size=n, element_shape=tf.TensorShape(one), infer_shape=True)

        def predicted(xi):
            return _targets.predicted_indices(problem.forward([xi]), problem.target)

        def body(i, acc):
            xi = tf.ensure_shape(tf.slice(x, tf.concat([[i], tf.zeros((len(shape),), tf.int32)], 0),
                                          (1,) + shape), one)
            ti = tf.reshape(target[i], (1,))
            ti = tf.cond(ti[0] < 0, lambda: tf.cast(tf.reshape(predicted(xi), (1,)), tf.int32), lambda: ti)
            out = python_fn([xi], ti, *extra_args)
            attr = out[0] if isinstance(out, tuple) else out
            attr = tf.nest.flatten(attr)[0]
            return i + 1, acc.write(i, tf.ensure_shape(tf.cast(attr, tf.float32), one))

        _, acc = tf.while_loop(lambda i, _: i < n, body, (tf.constant(0, tf.int32), acc), parallel_iterations=1)
        return tf.reshape(acc.concat(), tf.concat([[n], tf.constant(shape, tf.int32)], 0))

    explain.__name__ = name
    return tf.function(explain, input_signature=[spec_x, spec_t], autograph=False)


def export(model, path, methods=("integrated_gradients",), options=None, input_shape=None, check_inputs=True):
    """Write a SavedModel with ``serve`` and one ``explain_<method>`` endpoint per method.

    Parameters
    ----------
    model : keras.Model or keras layer (``keras.layers.TFSMLayer`` too)
        Single-input; its variables are tracked and saved.
    path : str or path
        Output folder.
    methods : sequence of str
        Names from ``tpa.METHODS`` (aliases allowed; the endpoint uses the full name).
    options : dict, optional
        ``{method name: {option: value}}``, e.g. ``{"integrated_gradients": {"n_steps": 32}}``.
        Options must not depend on the input values (see the module docstring).
    input_shape : tuple, optional
        Per-example input shape; read from ``model.inputs`` when omitted.
    check_inputs : bool
        Capture every method for two different sample inputs and refuse options whose baked
        tensors depend on the input values (default True).

    Returns
    -------
    list of str : the endpoint names written (``"serve"`` first).

    Notes
    -----
    The files load with ``tf.saved_model.load(path)`` alone. ``loaded.explain_<m>(x, target)``
    explains each example as a one-example ``tpa.attribute`` call, so stochastic methods draw the
    noise a one-example call with the same seed would draw.
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError("model: export needs a keras.Model or keras layer whose variables can be saved; wrap a "
                        "SavedModel as keras.layers.TFSMLayer(path, call_endpoint='serve') and pass input_shape")
    if isinstance(methods, str):
        methods = (methods,)
    names = [_canonical(m) for m in methods]
    for name in names:
        registry.require(registry.get(name), "exportable", f"methods: {name!r} cannot be exported")
    if not names:
        raise ValueError("methods: give at least one method name")
    if len(set(names)) != len(names):
        raise ValueError(f"methods: duplicate methods {names}")
    options = dict(options or {})
    unknown = [k for k in options if k not in names and registry.canonical(k) not in names]
    if unknown:
        raise ValueError(f"options: entries {unknown} do not match any exported method {names}")
    options = {_canonical(k): dict(v or {}) for k, v in options.items()}
    shape = _input_shape(model, input_shape)
    rng = np.random.default_rng(12345)  # local generator: no global random state is used
    samples = [rng.uniform(0.0, 1.0, size=(1,) + shape).astype(np.float32) for _ in range(2)]

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec_x = tf.TensorSpec((None,) + shape, tf.float32, name="x")
    archive.add_endpoint("serve", tf.function(lambda x: model(x, training=False), input_signature=[spec_x],
                                              autograph=False))
    written = ["serve"]
    for name in names:
        opts = options.get(name, {})
        python_fn, extra_args, problem = _capture(model, samples[0], name, opts)
        if problem.batch_size != 1 or len(problem.flat_x) != 1:
            raise ValueError(f"methods: {name} captured an unexpected problem (batch {problem.batch_size})")
        if check_inputs:
            _, extra_2, _ = _capture(model, samples[1], name, opts)
            a, b = _flat_values(extra_args), _flat_values(extra_2)
            if len(a) != len(b) or any(u.shape != v.shape or not np.array_equal(u, v) for u, v in zip(a, b)):
                raise ValueError(
                    f"options[{name!r}]: these options produce tensors that depend on the input values (for example "
                    "a baseline computed from x, such as tpa.baselines.blurred); they cannot be baked into an "
                    "exported endpoint. Pass fixed arrays instead"
                )
        endpoint = "explain_" + name
        archive.add_endpoint(endpoint, _make_explain(python_fn, extra_args, problem, shape, endpoint))
        written.append(endpoint)
    Path(path).mkdir(parents=True, exist_ok=True)
    archive.write_out(str(path), verbose=False)
    return written

