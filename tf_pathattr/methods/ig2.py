"""IG2: Integrated Gradient on the Iterative Gradient Path (GradPath) to a counterfactual (GradCF).

For each reference sample ``x^r`` the path starts at the explicand, ``γ_0 = x``, and takes ``K``
fixed-length, L2-normalised descent steps on the hidden-representation distance
``D_r(z) = ||f̃(z) - f̃(x^r)||²``:

.. math::

    u_j = \\nabla_z D_r(\\gamma_j), \\qquad
    \\gamma_{j+1} = \\mathrm{clip}_{[l,u]}\\big(\\gamma_j - \\eta\\, u_j / \\max(\\|u_j\\|_2, \\epsilon)\\big)

The last point ``γ_K`` is the counterfactual baseline GradCF_r. The attribution for reference ``r``
is the discrete path integral of the explained score ``f`` (the target logit) along the polyline,

.. math::

    \\phi^r = \\sum_{j=0}^{K-1} \\nabla f(\\gamma_j) \\odot (\\gamma_j - \\gamma_{j+1})
    \\quad(\\text{rule="official"}), \\qquad
    \\phi^r = \\sum_{j} \\tfrac12\\big(\\nabla f(\\gamma_j) + \\nabla f(\\gamma_{j+1})\\big)
    \\odot (\\gamma_j - \\gamma_{j+1}) \\quad(\\text{rule="trapezoid"}),

and the result is the plain mean over references, ``φ = mean_r φ^r``, with
``Σ_i φ^r_i ≈ f(x) - f(GradCF_r)`` (exact for the continuous line integral along the polyline).
Without clipping, ``γ_j - γ_{j+1} = η u_j / ||u_j||``, so each term is the product of the explicand
gradient and the counterfactual gradient ("IG²", Eq. 3 of the paper).

Implementation: path search and integral are ONE fused ``tf.while_loop`` (the release builds the
whole path first, then re-evaluates the gradients along it). Each step does one forward pass that
yields both the representation (recorded by a :class:`~tf_pathattr.engine.layers.LayerTap`) and
the model outputs, and two backward passes (``∇f`` and ``∇D_r``) from one persistent tape. The
explicands x references are flattened to ``M = B·R`` rows (reference-major, so the engine's target
handling sees groups of ``B`` rows), and path memory is O(1) in ``n_steps``.

Reference: Y. Zhuo, Z. Ge, "IG2: Integrated Gradient on Iterative Gradient Path for Feature
Attribution", IEEE TPAMI 46(11):7173-7190, 2024, doi:10.1109/TPAMI.2024.3388092, arXiv 2406.10852.
Released code: github.com/JoeZhuo-ZY/IG2 (PyTorch).
"""

from __future__ import annotations

import math
from typing import Any, Literal, overload

import keras
import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import gradients as eng
from ..engine.layers import LayerTap, find_last_dense, lookup_layer
from ..engine.shapes import check_choice, check_optional_positive_int, check_positive_int, renamed_option
from .registry import MethodSpec, require, tile_batch_axis

__all__ = ["ig2", "RULES"]

RULES = ("official", "trapezoid")


# --------------------------------------------------------------------------------------------
# argument checking


def _check_float(value, name, positive=True, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def _resolve_representation(model, representation):
    """Return ``(mode, obj)``: ``("input", layer)``, ``("output", layer)`` or ``("callable", fn)``."""
    is_keras = isinstance(model, keras.layers.Layer)
    if representation is None:
        layer = find_last_dense(model) if is_keras else None
        if layer is None:
            raise ValueError(
                "representation: no keras.layers.Dense layer found in the model to take the default representation "
                "(the input of the last Dense layer) from; pass representation=<a layer of the model, its name, or a "
                "callable z -> activations>"
            )
        return "input", layer
    if isinstance(representation, str):
        layer = lookup_layer(model, representation) if is_keras else None
        if layer is None:
            names = [lay.name for lay in getattr(model, "layers", [])] if is_keras else []
            raise ValueError(
                f"representation: no layer named {representation!r} in the model (top-level layers: {names})"
            )
        return "output", layer
    if isinstance(representation, keras.layers.Layer) and is_keras:
        layer = lookup_layer(model, representation)
        if layer is not None:
            return "output", layer
    if callable(representation):
        return "callable", representation
    raise TypeError(
        "representation must be None, a layer of the model, a layer name or a callable z -> activations, "
        f"got {type(representation).__name__}"
    )


def _prepare_references(references, x):
    """``references`` -> float32 tensor ``[R, *S]`` (shared) or ``[B, R, *S]`` (per explicand)."""
    if references is None:
        raise TypeError(
            "ig2() needs references=: an array [R, *S] shared by all explicands or [B, R, *S] per explicand"
        )
    try:
        arr = tf.cast(tf.convert_to_tensor(references), tf.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"references must be a float array, got {type(references).__name__}") from exc
    s = tuple(x.shape[1:])
    b = int(x.shape[0])
    shape = tuple(arr.shape)
    if len(shape) == len(s) + 1 and shape[1:] == s:
        per_example = False
    elif len(shape) == len(s) + 2 and shape[2:] == s and shape[0] == b:
        per_example = True
    else:
        raise ValueError(
            f"references has shape {shape}, which does not fit inputs of shape {(b,) + s}: expected (R,) + {s} "
            f"(shared) or ({b}, R) + {s} (one set per explicand)"
        )
    r = shape[1] if per_example else shape[0]
    if r == 0:
        raise ValueError("references: got zero references")
    if not bool(tf.reduce_all(tf.math.is_finite(arr))):
        raise ValueError("references contains NaN or infinite values")
    return arr, per_example, int(r)


def _prepare_clip(clip, x):
    if clip is None:
        return None
    if not isinstance(clip, (list, tuple)) or len(clip) != 2:
        raise ValueError(f"clip must be None or a pair (low, high), got {clip!r}")
    out = []
    for name, v in zip(("clip low", "clip high"), clip):
        try:
            t = np.broadcast_to(np.asarray(v, np.float32), tuple(x.shape))
        except ValueError as exc:
            raise ValueError(f"{name} has shape {np.shape(v)}, not broadcastable to inputs {tuple(x.shape)}") from exc
        if np.isnan(t).any():
            raise ValueError(f"{name} contains NaN")
        out.append(t)
    if (out[0] > out[1]).any():
        raise ValueError("clip: low must be <= high everywhere")
    return [tf.constant(out[0]), tf.constant(out[1])]


# --------------------------------------------------------------------------------------------
# the fused loop


def _row_norm(t):
    return tf.sqrt(tf.reduce_sum(tf.square(tf.reshape(t, [t.shape[0], -1])), axis=1))


def gradpath_integral(problem, x, refs_rb, indices, rep_fn, eta, n_steps, rule, eps, clip_rows=None):
    """Fused GradPath search and IG2 integral for ``M = c*B`` rows (graph-level core).

    Parameters
    ----------
    x : ``[B, *S]`` explicands
    refs_rb : ``[c, B, *S]`` references (reference-major)
    rep_fn : ``z -> (representation [rows, m], scores [rows])``, one forward pass
    eta : float32 scalar tensor, the step length
    clip_rows : None or ``(low, high)`` each ``[c*B, *S]``

    Returns
    -------
    dict of ``[c*B, ...]`` tensors: ``attr``, ``gradcf``, ``f_start``, ``f_end``, ``d_start``, ``d_end``.
    """
    c = int(refs_rb.shape[0])
    batch = problem.batch_size
    m_rows = c * batch
    shape = [m_rows] + x.shape[1:].as_list()
    x0 = eng.rows(tf.tile(x[None], [c] + [1] * x.shape.rank), c, batch)
    r_ref = tf.stop_gradient(rep_fn(eng.rows(refs_rb, c, batch))[0])

    def evaluate(z):
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(z)
            rep, s = rep_fn(z)
            d = tf.reduce_sum(tf.square(rep - r_ref), axis=1)
        g_f = eng.connected_gradients(problem, tape, s, z)
        g_d = eng.connected_gradients(problem, tape, d, z, what="the representation distance D_r (representation=)")
        del tape
        return (
            tf.ensure_shape(s, [m_rows]),
            tf.ensure_shape(d, [m_rows]),
            tf.ensure_shape(g_f, shape),
            tf.ensure_shape(g_d, shape),
        )

    s0, d0, gf0, gd0 = evaluate(x0)
    bshape = [m_rows] + [1] * (len(shape) - 1)

    def body(j, z, s, d, g_f, g_d, attr):
        w = tf.maximum(_row_norm(g_d), eps)
        z1 = z - eta * g_d / tf.reshape(w, bshape)
        if clip_rows is not None:
            z1 = tf.minimum(tf.maximum(z1, clip_rows[0]), clip_rows[1])
        z1 = tf.ensure_shape(z1, shape)
        s1, d1, gf1, gd1 = evaluate(z1)
        dz = z - z1
        g = g_f if rule == "official" else 0.5 * (g_f + gf1)
        return j + 1, z1, s1, d1, gf1, gd1, tf.ensure_shape(attr + g * dz, shape)

    init = (tf.constant(0, tf.int32), x0, s0, d0, gf0, gd0, tf.zeros(shape, tf.float32))
    _, zk, sk, dk, _, _, attr = tf.while_loop(
        lambda j, *_: j < n_steps, body, init, parallel_iterations=1, maximum_iterations=n_steps
    )
    return {"attr": attr, "gradcf": zk, "f_start": s0, "f_end": sk, "d_start": d0, "d_end": dk}


def _make_rep_fn(problem, mode, obj, indices):
    """``z -> (representation [rows, m] float32, scores [rows])``."""

    def flat(rep, rows):
        parts = [tf.reshape(tf.cast(t, tf.float32), [rows, -1]) for t in tf.nest.flatten(rep)]
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)

    def rep_fn(z):
        rows = int(z.shape[0])
        if mode == "callable":
            out = problem.forward([z])
            rep = obj(z, training=False) if isinstance(obj, keras.layers.Layer) else obj(z)
        else:
            with LayerTap(obj) as tap:
                out = problem.forward([z])
            if tap.calls == 0:
                raise ValueError(f"representation: layer {obj.name!r} was not called by the model's forward pass")
            rep = tap.inputs if mode == "input" else tap.outputs
        return flat(rep, rows), problem.scorer(out, indices)

    return rep_fn


# --------------------------------------------------------------------------------------------
# public function


@overload
def ig2(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: Literal[False] = ...,
    references: Any = ...,
    step_size: Any = ...,
    representation: Any = ...,
    n_steps: int = ...,
    clip: Any = ...,
    rule: str = ...,
    eps: float = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    max_batch: Any = ...,
) -> Attributions: ...


@overload
def ig2(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: Literal[True],
    references: Any = ...,
    step_size: Any = ...,
    representation: Any = ...,
    n_steps: int = ...,
    clip: Any = ...,
    rule: str = ...,
    eps: float = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    max_batch: Any = ...,
) -> tuple[Attributions, dict]: ...


@overload
def ig2(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_details: bool = ...,
    references: Any = ...,
    step_size: Any = ...,
    representation: Any = ...,
    n_steps: int = ...,
    clip: Any = ...,
    rule: str = ...,
    eps: float = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    max_batch: Any = ...,
) -> Any: ...


@eng.planned
def ig2(
    model,
    inputs,
    target=None,
    *,
    references=None,
    step_size=None,
    representation=None,
    n_steps: int = 201,
    clip=None,
    rule: str = "official",
    eps: float = 1e-12,
    internal_batch_size=None,
    return_details: bool = False,
    jit_compile: bool = False,
    layer=None,
    max_batch=None,
):
    """IG2: integrated gradients along the iterative gradient path (GradPath) to GradCF, averaged over references.

    Parameters
    ----------
    model : keras.Model or callable
        Called with ``training=False`` (required: BatchNorm in training mode would couple references).
    inputs : array-like ``[B, *S]``
        The explicands (float; single-input models).
    target : None, int, sequence of B ints, or callable ``score(outputs) -> [B]``
        The scalar explained (the release explains the pre-softmax logit of the predicted class,
        which is ``target=None`` on a logits model).
    references : array-like ``[R, *S]`` (shared by all explicands) or ``[B, R, *S]`` (per explicand)
        Real samples of other classes (see :mod:`tf_pathattr.references`). Required.
    step_size : float
        ``η``, the L2 length of every path step, in input units. Required; release presets: 256 or
        512 for 0-255 ImageNet images, 0.05 for [0, 1] wafer maps, 0.01 for word embeddings. The
        path length budget is ``n_steps * step_size``; too large a budget makes the path zig-zag
        around the representation optimum.
    representation : None, layer, layer name, or callable ``z -> activations``
        The hidden representation ``f̃`` whose distance to the reference drives the path. ``None``:
        the INPUT of the model's last ``Dense`` layer (penultimate activations, as in every official
        example; nested sub-models are searched). A layer of the model (object or name): that
        layer's OUTPUT. Any other callable (a function or a standalone layer/model) is applied to
        the path point directly (one extra forward pass per step).
    n_steps : int
        ``K``, the number of path steps (release presets 201 / 501 / 1001).
    clip : None or (low, high)
        Box the path is clipped to after every step; scalars or arrays broadcastable to ``inputs``.
    rule : {"official", "trapezoid"}
        ``"official"``: gradient of ``f`` at the explicand-side end of each segment (the released
        rule). ``"trapezoid"``: mean of both ends; far smaller completeness error.
    eps : float
        Floor of the step normaliser ``||∇D_r||``; a row whose gradient vanishes stops moving
        instead of producing NaN (the release has no floor).
    internal_batch_size : int, optional
        Most model rows (explicands x references) per call: references are processed in groups of
        ``max(1, internal_batch_size // B)`` to bound activation memory (default: all references
        in one fused loop).
    return_details : bool
        Also return a dict with ``per_reference`` and ``gradcf`` ``[B, R, *S]``, ``f_x [B]``,
        ``f_gradcf``, ``rep_dist_start``, ``rep_dist_end`` (``D_r = ||f̃ - f̃(x^r)||²``) and
        ``completeness_residual = Σφ^r - (f_x - f_gradcf)``, all ``[B, R]``.
    jit_compile : bool
        Compile the whole method with XLA.
    layer : keras layer, layer name or callable(model) -> layer, optional
        Attribute to this layer's output (e.g. the ``Embedding`` of a text model with integer token
        ids): GradPath walks in that layer's output space, starting at the explicand's activations;
        ``references``, ``step_size`` and ``clip`` are then given in that space (build references
        with ``tpa.layer_activations(model, layer, reference_ids)``), and the raw inputs are fed
        unchanged to every model call (a reference's representation is computed with the
        explicand's other inputs, e.g. its padding mask). This is not ``representation``: the
        representation is where the *distance* that steers the path is measured (it must come after
        ``layer`` in the model), ``layer`` is where the path and the attributions live.
    max_batch : int, optional
        Deprecated name of ``internal_batch_size`` (kept for one release; ``DeprecationWarning``).

    Returns
    -------
    attributions : tf.Tensor ``[B, *S]`` (float32), the mean over references
    details : dict, only with ``return_details=True``

    Notes
    -----
    Completeness target: ``Σ_i φ_i ≈ f(x) - mean_r f(GradCF_r)``; per reference it is reported as
    ``completeness_residual``. It is exact for the polyline integral, so the residual is the
    quadrature error of the rule (O(η²·curvature) per segment for "official").
    """
    if step_size is None:
        raise TypeError(
            "ig2() needs step_size= (η, the L2 length of each path step, in input units; e.g. 256-512 for 0-255 "
            "images, 0.05 for [0, 1] inputs)"
        )
    eta = _check_float(step_size, "step_size")
    n_steps = check_positive_int(n_steps, "n_steps")
    check_choice(rule, "rule", RULES)
    eps = _check_float(eps, "eps", allow_zero=True)
    max_batch = renamed_option(internal_batch_size, max_batch, "internal_batch_size", "max_batch")
    max_batch = check_optional_positive_int(max_batch, "internal_batch_size")
    problem = eng.prepare(model, inputs, target, layer=layer)
    if len(problem.flat_x) != 1:
        require(SPEC, "multi_input", f"inputs ({len(problem.flat_x)} model inputs)")
    x = problem.flat_x[0]
    refs, per_example, n_refs = _prepare_references(references, x)
    mode, obj = _resolve_representation(model, representation)
    clip_t = _prepare_clip(clip, x)
    batch = problem.batch_size
    per_chunk = n_refs if max_batch is None else max(1, min(n_refs, max_batch // batch))
    key = (
        "ig2",
        mode,
        id(obj),
        int(n_steps),
        rule,
        eps,
        per_chunk,
        n_refs,
        bool(per_example),
        clip_t is not None,
        bool(return_details),
    )

    def builder():
        def fn(flat_x, indices, refs, eta_t, *clip_args):
            x = flat_x[0]
            indices, _ = eng.resolve_indices(problem, flat_x, indices)
            rep_fn = _make_rep_fn(problem, mode, obj, indices)
            if per_example:
                refs_rb = tf.transpose(refs, [1, 0] + list(range(2, refs.shape.rank)))
            else:
                refs_rb = tf.broadcast_to(refs[:, None], [n_refs, batch] + x.shape[1:].as_list())
            parts = []
            for r0 in range(0, n_refs, per_chunk):
                r1 = min(n_refs, r0 + per_chunk)
                c = r1 - r0
                clip_rows = None
                if clip_args:
                    clip_rows = [eng.rows(tf.tile(t[None], [c] + [1] * t.shape.rank), c, batch) for t in clip_args]
                parts.append(
                    gradpath_integral(problem, x, refs_rb[r0:r1], indices, rep_fn, eta_t, n_steps, rule, eps, clip_rows)
                )
            out = {k: tf.concat([p[k] for p in parts], axis=0) if len(parts) > 1 else parts[0][k] for k in parts[0]}
            per_ref = eng.unrows(out["attr"], n_refs, batch)  # [R, B, *S]
            attr = tf.reduce_mean(per_ref, axis=0)
            if not return_details:
                return ([attr],)
            perm = [1, 0] + list(range(2, per_ref.shape.rank))
            gradcf = tf.transpose(eng.unrows(out["gradcf"], n_refs, batch), perm)
            per_ref = tf.transpose(per_ref, perm)

            def br(v):
                return tf.transpose(tf.reshape(v, [n_refs, batch]))

            f_x = tf.reshape(out["f_start"], [n_refs, batch])[0]
            f_cf = br(out["f_end"])
            total = tf.reduce_sum(tf.reshape(per_ref, [batch, n_refs, -1]), axis=2)
            resid = total - (f_x[:, None] - f_cf)
            return ([attr], per_ref, gradcf, f_x, f_cf, br(out["d_start"]), br(out["d_end"]), resid)

        return fn

    extra = (refs, tf.constant(eta, tf.float32)) + (tuple(clip_t) if clip_t is not None else ())

    def finish(result):
        attr = problem.pack(result[0])
        if not return_details:
            return attr
        names = (
            "per_reference",
            "gradcf",
            "f_x",
            "f_gradcf",
            "rep_dist_start",
            "rep_dist_end",
            "completeness_residual",
        )
        return attr, dict(zip(names, result[1:]))

    return eng.Plan(problem, key, builder, extra, jit_compile, finish)


def _tile_clip(value, ctx):
    """``clip=(low, high)``: a bound shaped like the inputs ``[B, *S]`` is per example (tiled); scalars and
    bounds without the batch axis are shared."""
    if value is None or not isinstance(value, (list, tuple)) or len(value) != 2:
        return value
    per_row = tile_batch_axis(0, rank=lambda r: r)
    return tuple(per_row(v, ctx) for v in value)


def _test_references(x):
    """Two fixed uniform references shaped like the probe's examples (contract tests)."""
    return np.random.default_rng(2).uniform(0.0, 1.0, size=(2,) + tuple(x.shape[1:])).astype(np.float32)


SPEC = MethodSpec(
    name="ig2",
    function=ig2,
    summary=(
        "iterative gradient path (GradPath) to a counterfactual baseline (GradCF) in one fused loop; "
        "`references`, `step_size`, `representation`; completeness residual F(x) − mean_r F(GradCF_r) in "
        "`return_details`"
    ),
    paper="Y. Zhuo, Z. Ge, IG2: Integrated Gradient on Iterative Gradient Path for Feature Attribution, "
    "IEEE TPAMI 2024",
    details=True,
    multi_input="ig2 walks one input tensor; multi-input models are not supported",
    per_example_options={"references": tile_batch_axis(0, rank=lambda r: r + 1), "clip": _tile_clip},
    baseline_option="references",
    test_options={"references": _test_references, "step_size": 0.05, "n_steps": 8},
)
