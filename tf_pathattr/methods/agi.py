"""AGI, Adversarial Gradient Integration: integrate along adversarial paths towards false classes.

No baseline: for the explained (true) class ``c`` and each of ``k`` false classes ``j``, a signed
gradient ascent on the false class's probability ``p_j`` walks from ``x`` towards an adversarial
example of ``j``, and the true class's gradient is integrated along the walk:

.. math::

    x^{0} = x, \\quad x^{t+1} = \\mathrm{clip}(x^{t} + \\epsilon\\, \\mathrm{sign}(\\nabla p_j(x^{t})), lo, hi)

    \\mathrm{AGI}_j(x) = \\sum_{t} -\\nabla p_c(x^{t}) \\odot (x^{t+1} - x^{t}), \\qquad
    \\mathrm{AGI}(x) = \\sum_{j \\in J} \\mathrm{AGI}_j(x)

The walk for ``j`` stops as soon as the model predicts ``j`` (before the step is taken) or after
``max_iter`` steps. ``p = softmax(outputs)``. This chained walk is the paper's path (up to the
left-Riemann error, ``sum AGI_j = p_c(x) - p_c(x_adv,j)``). The released code
(pd90506/AGI ``pgd_step``/``fgsm_step``) takes every step from the *original* image,
``x^{t+1} = clip(x + eps sign(grad p_j(x^t)))`` and adds ``-grad p_c(x^t) * (x^{t+1} - x)``; that is
``reference_compat=True`` (the points then never leave the ``eps``-box around ``x`` and the sum
does not telescope).

Batched: the ``B * k`` (example, false class) walks run together in one ``tf.while_loop`` over
steps (finished walks are masked), chunked over false classes so a model call carries at most
``internal_batch_size`` rows.

Reference: D. Pan, X. Li, D. Zhu, "Explaining Deep Neural Network Models with Adversarial Gradient
Integration", IJCAI 2021. Released code: pd90506/AGI.
"""

from __future__ import annotations

import math
from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import gradients as eng
from ..engine import targets as _targets
from ..engine.shapes import check_choice, check_positive_int
from . import registry
from .registry import MethodSpec

__all__ = ["adversarial_gradient_integration", "agi", "spaced_classes"]

CLASS_SELECTION = ("random", "spaced")


def spaced_classes(n_classes: int, k: int) -> np.ndarray:
    """The released script's evenly spaced false classes ``range(0, C - 1, C // k)``."""
    return np.arange(0, n_classes - 1, max(1, n_classes // k), dtype=np.int32)


def _check_float(value, name, positive=True):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value}")
    return value


def _false_classes(false_classes, n_classes, batch):
    fc = np.asarray(false_classes)
    if fc.dtype.kind not in "iu":
        raise TypeError(f"false_classes must be integers, got dtype {fc.dtype}")
    if fc.ndim == 1:
        fc = np.broadcast_to(fc, (batch, fc.shape[0]))
    if fc.ndim != 2 or fc.shape[0] != batch or fc.shape[1] < 1:
        raise ValueError(f"false_classes must have shape (k,) or ({batch}, k), got {np.asarray(false_classes).shape}")
    if fc.min() < 0 or fc.max() >= n_classes:
        raise ValueError(f"false_classes must be in 0..{n_classes - 1}, got values {np.unique(fc)[:8].tolist()}")
    return np.ascontiguousarray(fc, np.int32)


def _build(problem, n_cls, n_classes, max_iter, chunk, compat, softmax, lo, hi, random):
    batch = problem.batch_size
    shapes = problem.example_shapes

    def fn(flat_x, indices, eps, fixed, draws):
        indices, _ = eng.resolve_indices(problem, flat_x, indices)
        if random:  # k distinct classes != c per example, uniformly (stateless)
            # one draw shared by every row: an example's classes do not depend on its batch
            u = tf.broadcast_to(draws, [batch, n_classes])
            u = tf.where(tf.one_hot(indices, n_classes) > 0, 2.0 * tf.ones_like(u), u)
            classes = tf.math.top_k(-u, k=n_cls).indices  # [B, k]
        else:
            classes = fixed
        classes = tf.transpose(tf.cast(classes, tf.int32))  # [k, B]: slot-major like the engine's rows

        def body(start, size, acc):
            rows = size * batch
            cls = tf.reshape(tf.slice(classes, [start, 0], [size, batch]), [rows])
            true_c = tf.tile(indices, [size])
            x0 = [
                tf.reshape(tf.tile(x[None], [size] + [1] * x.shape.rank), [rows] + list(s))
                for x, s in zip(flat_x, shapes)
            ]
            skip = tf.equal(cls, true_c)  # released main script: never attack the explained class

            def step(t, z, acc, done):
                with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
                    for zi in z:
                        tape.watch(zi)
                    out = problem.forward(z)
                    if isinstance(out, dict) and len(out) == 1:
                        out = next(iter(out.values()))
                    out = tf.cast(out, tf.float32)
                    prob = tf.nn.softmax(out, axis=-1) if softmax else out
                    p_j = tf.gather(prob, cls, axis=1, batch_dims=1)
                    p_c = tf.gather(prob, true_c, axis=1, batch_dims=1)
                g_j = eng.connected_gradients(problem, tape, p_j, z, "the false-class probability")
                g_c = eng.connected_gradients(problem, tape, p_c, z)
                del tape
                hit = tf.equal(tf.cast(tf.argmax(out, axis=-1), tf.int32), cls)
                done = tf.logical_or(done, hit)
                new_z, new_acc = [], []
                for zi, x0i, gj, gc, a in zip(z, x0, g_j, g_c, acc):
                    anchor = x0i if compat else zi
                    nxt = anchor + eps * tf.sign(gj)
                    if lo is not None:
                        nxt = tf.clip_by_value(nxt, lo, hi)
                    live = eng.expand_like(tf.logical_not(done), zi)
                    term = tf.where(live, -gc * (nxt - anchor), tf.zeros_like(zi))
                    new_acc.append(a + tf.reduce_sum(tf.reshape(term, [size, batch] + list(zi.shape[1:])), axis=0))
                    new_z.append(tf.where(live, nxt, zi))
                return t + 1, new_z, new_acc, done

            _, _, acc, _ = tf.while_loop(
                lambda t, z, acc, done: tf.logical_and(t < max_iter, tf.reduce_any(tf.logical_not(done))),
                step,
                [tf.constant(0, tf.int32), x0, acc, skip],
                parallel_iterations=1,
            )
            return acc

        attr = eng.chunked_loop(n_cls, chunk, body, [tf.zeros_like(x) for x in flat_x])
        return attr, tf.transpose(classes)

    return fn


@overload
def adversarial_gradient_integration(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: Literal[False] = ...,
    epsilon: float = ...,
    max_iter: int = ...,
    k: Any = ...,
    class_selection: str = ...,
    false_classes: Any = ...,
    reference_compat: bool = ...,
    clip: Any = ...,
    softmax: bool = ...,
    seed: int | None = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
) -> Attributions: ...


@overload
def adversarial_gradient_integration(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: Literal[True],
    epsilon: float = ...,
    max_iter: int = ...,
    k: Any = ...,
    class_selection: str = ...,
    false_classes: Any = ...,
    reference_compat: bool = ...,
    clip: Any = ...,
    softmax: bool = ...,
    seed: int | None = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
) -> tuple[Attributions, dict]: ...


@overload
def adversarial_gradient_integration(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: bool = ...,
    epsilon: float = ...,
    max_iter: int = ...,
    k: Any = ...,
    class_selection: str = ...,
    false_classes: Any = ...,
    reference_compat: bool = ...,
    clip: Any = ...,
    softmax: bool = ...,
    seed: int | None = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
) -> Any: ...


@eng.planned
def adversarial_gradient_integration(
    model,
    inputs,
    target=None,
    *,
    epsilon: float = 0.05,
    max_iter: int = 20,
    k=None,
    class_selection: str = "random",
    false_classes=None,
    reference_compat: bool = False,
    clip=None,
    softmax: bool = True,
    seed=None,
    internal_batch_size=None,
    return_details: bool = False,
    jit_compile: bool = False,
    layer=None,
):
    """Adversarial Gradient Integration (Pan, Li, Zhu, IJCAI 2021), batched over explicands and false classes.

    Parameters
    ----------
    model : keras.Model or callable
        A classifier with outputs ``[B, C]``, ``C >= 2`` (logits, or probabilities with
        ``softmax=False``).
    inputs : array-like ``[B, ...]`` or list / tuple / dict of them (float)
    target : None, int or sequence of B ints
        The explained class ``c`` (``None``: the predicted class). A callable target is refused:
        AGI needs the class index to walk towards the other classes.
    epsilon : float
        Step size of the signed ascent, in input units (default 0.05, the released default for
        inputs in [0, 1]; scale it with the inputs' range).
    max_iter : int
        Most steps per walk (default 20, the paper's value; the released script uses 15).
    k : int, optional
        Number of false classes per example (default ``min(20, C - 1)``; the paper uses 20).
    class_selection : {"random", "spaced"}
        ``"random"``: ``k`` distinct classes other than ``c``, from one stateless draw of ``seed``
        shared by the whole batch (one uniform number per class; each example takes the ``k``
        smallest among the classes other than its own ``c``), so an example's classes do not depend
        on the batch it is explained in and two examples with the same ``c`` get the same classes
        (the released quantitative scripts sample at random). ``"spaced"``: the released
        demo's ``range(0, C - 1, C // k)`` for every example; a class equal to ``c`` is skipped.
    false_classes : array ``(k,)`` or ``(B, k)`` of ints, optional
        Explicit false classes (overrides ``k`` and ``class_selection``; ``c`` itself is skipped).
    reference_compat : bool
        Take every step from the original input, as the released code does (see the module notes).
    clip : (lo, hi) or None
        Box the walk stays in, e.g. ``(0, 1)`` (the released code's pixel range) or the model's
        input range. Default ``None``: no box (a box is a property of the model's inputs, which a
        model does not declare; the old default ``(0, 1)`` silently moved standardised or [-1, 1]
        inputs into it at the first step). Inputs outside a given box raise a ``ValueError``.
    softmax : bool
        Apply a softmax to the outputs to get ``p`` (True, for logit models); False when the model
        already outputs probabilities. (The released quantitative scripts apply a softmax to a model
        that ends with one; pass such a model with ``softmax=True`` to reproduce that.)
    seed : int, optional
        Seed of the class sampling (``None`` = 0).
    internal_batch_size : int, optional
        Most model rows per call (default 256): ``internal_batch_size // B`` false classes per call.
    return_details : bool
        Also return ``{"false_classes": [B, k]}``.
    jit_compile : bool
        Compile the whole method with XLA.
    layer : None
        Not supported: the adversarial walk moves the model inputs inside the ``clip`` box (a
        ``ValueError`` gives the registry's reason).

    Returns
    -------
    attributions : tf.Tensor (float32) shaped like ``inputs``; with ``return_details=True`` also the dict.

    Notes
    -----
    Cost per step: one forward and two backward passes (``grad p_j`` and ``grad p_c`` from one
    persistent tape) for every unfinished walk; a chunk of walks loops until all of them have
    reached their false class or ``max_iter``. No completeness target is reported: the walks end at
    different adversarial points and the released form does not telescope.
    """
    epsilon = _check_float(epsilon, "epsilon")
    max_iter = check_positive_int(max_iter, "max_iter")
    check_choice(class_selection, "class_selection", CLASS_SELECTION)
    if not isinstance(reference_compat, (bool, np.bool_)):
        raise TypeError(f"reference_compat must be a bool, got {type(reference_compat).__name__}")
    if clip is not None:
        if not isinstance(clip, (tuple, list)) or len(clip) != 2:
            raise ValueError(f"clip must be a pair (lo, hi) or None, got {clip!r}")
        lo, hi = _check_float(clip[0], "clip[0]", False), _check_float(clip[1], "clip[1]", False)
        if not lo < hi:
            raise ValueError(f"clip must have lo < hi, got {clip!r}")
    else:
        lo = hi = None
    seed = eng.as_numpy_seed(seed)
    if layer is not None:
        registry.require(SPEC, "layer", "layer")
    problem = eng.prepare(model, inputs, target, no_layer=SPEC.layer)
    if problem.target.kind == _targets.CALLABLE:
        raise ValueError(
            "target: adversarial_gradient_integration needs a class index (None, an int or B ints); "
            "it walks towards the other classes of a [B, C] classifier, so a callable target "
            "cannot be used"
        )
    if lo is not None:
        for i, x in enumerate(problem.flat_x):
            x_lo, x_hi = float(tf.reduce_min(x)), float(tf.reduce_max(x))
            if x_lo < lo or x_hi > hi:
                where = "inputs" if len(problem.flat_x) == 1 else f"input {i}"
                raise ValueError(
                    f"clip=({lo:g}, {hi:g}): the {where} lie outside the box (values in [{x_lo:.4g}, {x_hi:.4g}]); "
                    "the walk would move them into it at the first step. Pass the inputs' own range as clip= "
                    "or clip=None (no box)"
                )
    out_shape = eng.output_shape(problem.model, problem.forward, problem.flat_x)
    if problem.target.single_unit or out_shape is None or len(out_shape) != 1 or (out_shape[0] or 0) < 2:
        raise ValueError(
            f"model: adversarial_gradient_integration needs a classifier with outputs [B, C], C >= 2 "
            f"(it walks towards false classes); this model's output per example has shape {out_shape}"
        )
    n_classes = int(out_shape[0])
    batch = problem.batch_size
    if false_classes is not None:
        fixed = _false_classes(false_classes, n_classes, batch)
        random = False
    else:
        if k is None:
            k = min(20, n_classes - 1)
        k = check_positive_int(k, "k")
        if k > n_classes - 1:
            raise ValueError(
                f"k={k} false classes requested but the model has only {n_classes - 1} classes besides "
                "the explained one"
            )
        random = class_selection == "random"
        fixed = (
            np.broadcast_to(spaced_classes(n_classes, k), (batch, len(spaced_classes(n_classes, k))))
            if not random
            else np.zeros((batch, k), np.int32)
        )
        fixed = np.ascontiguousarray(fixed, np.int32)
    n_cls = int(fixed.shape[1])
    chunk = eng.chunk_size(n_cls, batch, internal_batch_size)
    key = (
        "adversarial_gradient_integration",
        n_cls,
        n_classes,
        max_iter,
        chunk,
        bool(reference_compat),
        bool(softmax),
        lo,
        hi,
        random,
        batch,
    )

    def builder():
        return _build(problem, n_cls, n_classes, max_iter, chunk, bool(reference_compat), bool(softmax), lo, hi, random)

    # drawn outside the compiled body (one row shared by every example, so an example's classes do not
    # depend on its batch): the same numbers with jit_compile=True, whose XLA RNG draws a different stream
    draws = tf.random.stateless_uniform([1, n_classes], seed=tf.constant([seed, 0], tf.int32))
    extra = (tf.constant(epsilon, tf.float32), tf.constant(fixed), draws)

    def finish(result):
        attr, classes = result
        attr = problem.pack(attr)
        if return_details:
            return attr, {"false_classes": classes.numpy()}
        return attr

    return eng.Plan(problem, key, builder, extra, jit_compile, finish)


agi = adversarial_gradient_integration


SPEC = MethodSpec(
    name="adversarial_gradient_integration",
    function=adversarial_gradient_integration,
    aliases=("agi",),
    summary="no baseline: true-class gradients integrated along signed-gradient walks towards k false classes",
    paper="D. Pan, X. Li, D. Zhu, Explaining Deep Neural Network Models with Adversarial Gradient Integration, "
    "IJCAI 2021",
    details=True,
    stochastic=True,
    layer="adversarial_gradient_integration perturbs the model inputs with signed steps inside a box; "
    "it cannot attribute to a layer's output",
    test_options={"max_iter": 3, "k": 1, "seed": 0},
)
