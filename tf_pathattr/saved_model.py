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

Each explain endpoint takes ``x`` ``[None, *S]`` (float32, or the model's integer dtype for token ids
with ``layer=``) and ``target`` ``[None]`` int32 (a negative target means "the class the model
predicts"; an index outside the model's outputs fails with "target out of range") and returns the
attributions ``[None, *S]`` (the layer output's shape with ``layer=``). With ``export(...,
target=score_fn)`` the score function is baked in and the endpoints take ``x`` alone (models with
several outputs, regression heads). The method body is the one ``tpa.attribute`` runs: every
exportable method hands over a *plan* (``tpa.integrated_gradients.plan(...)``: the compiled body and
its baked arguments) for a one-example problem, and the endpoint maps it over the examples with a
``tf.while_loop`` (``parallel_iterations=1``), so every example is explained exactly as
``tpa.attribute(model, x[i:i+1], target[i], method=..., **options)`` would explain it.

What can be baked in: options that do not depend on the input values — step counts, rules,
constant or fixed-array baselines, reference / background sets, seeds, seeded random baselines. What
cannot: anything computed from the explicand (e.g. ``tpa.baselines.blurred(sigma)``, a baseline made
from ``x``), per-example arrays (an array with a leading batch axis is read as a set of shared
baselines for a one-example problem), and callable targets. :func:`export` checks this by
planning each method for two different sample inputs and refusing (``ValueError``) when the baked
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
from .methods import registry

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


def _input_spec(model, input_shape, input_dtype):
    """Per-example input shape and dtype of a single-input model (``model.inputs`` or the arguments)."""
    inputs = getattr(model, "inputs", None)
    if input_shape is not None:
        shape = tuple(input_shape)
        if shape and shape[0] is None:
            shape = shape[1:]
    else:
        if not inputs:
            raise ValueError(
                "input_shape: the model has no known input shape (e.g. a TFSMLayer); pass "
                "input_shape=(H, W, C) (per example, without the batch axis)"
            )
        if len(inputs) != 1:
            raise NotImplementedError(f"export supports single-input models; this model has {len(inputs)} inputs")
        shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"input_shape: every per-example dimension must be known, got {shape}")
    if input_dtype is None:
        input_dtype = inputs[0].dtype if inputs and len(inputs) == 1 else "float32"
    dtype = tf.as_dtype(input_dtype)
    if not (dtype.is_floating or dtype.is_integer):
        raise ValueError(f"input_dtype: expected a float or integer dtype, got {dtype.name}")
    if dtype.is_floating:
        dtype = tf.float32
    return tuple(int(d) for d in shape), dtype


def _flat_values(extra_args):
    return [np.asarray(t.numpy() if hasattr(t, "numpy") else t) for t in tf.nest.flatten(extra_args)]


def _plan(model, sample, name, target, opts):
    """The method's plan for a one-example problem (its compiled body and baked arguments)."""
    planner = getattr(registry.get(name).function, "plan", None)
    if planner is None:
        raise ValueError(f"methods: {name!r} hands over no plan, so it cannot be exported")
    return planner(model, sample, 0 if target is None else target, **opts)


def _samples(shape, dtype):
    """Two different one-example inputs (the second checks that baked tensors do not depend on x)."""
    if dtype.is_integer:  # token ids: two valid, different id sequences
        return [np.zeros((1,) + shape, dtype.as_numpy_dtype), np.ones((1,) + shape, dtype.as_numpy_dtype)]
    rng = np.random.default_rng(12345)  # local generator: no global random state is used
    return [rng.uniform(0.0, 1.0, size=(1,) + shape).astype(np.float32) for _ in range(2)]


def _make_explain(plan, shape, dtype, name, n_outputs, callable_target):
    """The endpoint: a ``tf.while_loop`` explaining each example as a one-example call."""
    problem = plan.problem
    spec_x = tf.TensorSpec((None,) + shape, dtype, name="x")
    out_one = (1,) + tuple(problem.example_shapes[0])
    begin = tf.zeros((len(shape),), tf.int32)

    def explain_all(x, target):
        n = tf.shape(x)[0]
        acc = tf.TensorArray(tf.float32, size=n, element_shape=tf.TensorShape(out_one), infer_shape=True)

        def body(i, acc):
            xi = tf.ensure_shape(tf.slice(x, tf.concat([[i], begin], 0), (1,) + shape), (1,) + shape)
            ti = tf.reshape(target[i], (1,))
            if not callable_target:
                ti = tf.cond(
                    ti[0] < 0,
                    lambda: tf.reshape(_targets.predicted_indices(problem.raw_forward([xi]), problem.target), (1,)),
                    lambda: ti,
                )
            out = plan.embed([xi], ti)
            attr = tf.nest.flatten(out[0] if isinstance(out, tuple) else out)[0]
            return i + 1, acc.write(i, tf.ensure_shape(tf.cast(attr, tf.float32), out_one))

        _, acc = tf.while_loop(lambda i, _: i < n, body, (tf.constant(0, tf.int32), acc), parallel_iterations=1)
        return tf.reshape(acc.concat(), tf.concat([[n], tf.constant(out_one[1:], tf.int32)], 0))

    if callable_target:

        def explain(x):
            return explain_all(x, tf.zeros((tf.shape(x)[0],), tf.int32))

        signature = [spec_x]
    else:

        def explain(x, target):
            checks = [
                tf.debugging.assert_equal(
                    tf.shape(target)[0],
                    tf.shape(x)[0],
                    message=("target: one class index per example is needed (target must have shape [len(x)])"),
                ),
                tf.debugging.assert_less(
                    target,
                    tf.constant(n_outputs, tf.int32),
                    message=(
                        f"target out of range: the model has {n_outputs} outputs (valid: 0..{n_outputs - 1}, or a "
                        "negative number for the predicted class)"
                    ),
                ),
            ]
            with tf.control_dependencies(checks):
                return explain_all(x, tf.identity(target))

        signature = [spec_x, tf.TensorSpec((None,), tf.int32, name="target")]
    explain.__name__ = name
    return tf.function(explain, input_signature=signature, autograph=False)


def export(
    model,
    path,
    methods=("integrated_gradients",),
    options=None,
    input_shape=None,
    check_inputs=True,
    *,
    target=None,
    input_dtype=None,
):
    """Write a SavedModel with ``serve`` and one ``explain_<method>`` endpoint per method.

    Parameters
    ----------
    model : keras.Model or keras layer (``keras.layers.TFSMLayer`` too)
        Single-input; its variables are tracked and saved.
    path : str or path
        Output folder.
    methods : sequence of str
        Names from ``tpa.METHODS`` (aliases allowed; the endpoint uses the full name). Methods the
        registry declares not exportable (XRAI, Split IG) are refused with the reason.
    options : dict, optional
        ``{method name: {option: value}}``, e.g. ``{"integrated_gradients": {"n_steps": 32}}``.
        Options must not depend on the input values (see the module docstring). ``layer=`` works:
        the endpoint then takes the model's raw inputs (e.g. integer token ids) and returns
        attributions shaped like that layer's output per example.
    input_shape : tuple, optional
        Per-example input shape; read from ``model.inputs`` when omitted.
    check_inputs : bool
        Plan every method for two different sample inputs and refuse options whose baked tensors
        depend on the input values (default True).
    target : callable, optional
        A score function ``score(outputs) -> [B]`` baked into every endpoint (a model with several
        outputs, a regression head); the endpoints then take ``x`` alone. Without it they take
        ``(x, target)`` with ``target`` int32 ``[len(x)]``: a class index per example, negative for
        the predicted class; an index outside the model's outputs fails with a clear error.
    input_dtype : dtype, optional
        The endpoint's input dtype; read from ``model.inputs`` (float32 otherwise). Integer inputs
        (token ids) need ``layer=`` in each method's options.

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
        raise TypeError(
            "model: export needs a keras.Model or keras layer whose variables can be saved; wrap a "
            "SavedModel as keras.layers.TFSMLayer(path, call_endpoint='serve') and pass input_shape"
        )
    if target is not None and not callable(target):
        raise TypeError(
            "target: export takes a callable score(outputs) -> [B] (baked into the endpoints) or None "
            f"(the endpoints take a target argument), got {type(target).__name__}"
        )
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
    shape, dtype = _input_spec(model, input_shape, input_dtype)
    samples = _samples(shape, dtype)

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec_x = tf.TensorSpec((None,) + shape, dtype, name="x")
    archive.add_endpoint(
        "serve", tf.function(lambda x: model(x, training=False), input_signature=[spec_x], autograph=False)
    )
    written = ["serve"]
    for name in names:
        opts = options.get(name, {})
        if dtype.is_integer and opts.get("layer") is None:
            raise ValueError(
                f"options[{name!r}]: the model takes integer inputs ({dtype.name}), which have no "
                "gradient; pass layer=<the embedding layer> to attribute to its output"
            )
        plan = _plan(model, samples[0], name, target, opts)
        if plan.problem.batch_size != 1 or len(plan.problem.flat_x) != 1:
            raise ValueError(f"methods: {name} planned an unexpected problem (batch {plan.problem.batch_size})")
        if check_inputs:
            a = _flat_values(plan.extra_args)
            b = _flat_values(_plan(model, samples[1], name, target, opts).extra_args)
            if len(a) != len(b) or any(u.shape != v.shape or not np.array_equal(u, v) for u, v in zip(a, b)):
                raise ValueError(
                    f"options[{name!r}]: these options produce tensors that depend on the input values (for example "
                    "a baseline computed from x, such as tpa.baselines.blurred); they cannot be baked into an "
                    "exported endpoint. Pass fixed arrays instead"
                )
        out_shape = eng.output_shape(model, plan.problem.raw_forward, [tf.constant(samples[0])])
        n_outputs = 1 if not out_shape else int(out_shape[0] or 0)
        endpoint = "explain_" + name
        archive.add_endpoint(endpoint, _make_explain(plan, shape, dtype, endpoint, n_outputs, target is not None))
        written.append(endpoint)
    Path(path).mkdir(parents=True, exist_ok=True)
    archive.write_out(str(path), verbose=False)
    return written
