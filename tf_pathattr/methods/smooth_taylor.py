"""SmoothTaylor: first-order Taylor terms averaged over Gaussian roots around the input.

.. math::

    z_n = x + \\sigma \\varepsilon_n, \\quad \\varepsilon_n \\sim \\mathcal N(0, I)

    ST_i(x) = \\frac1N \\sum_{n=1}^N (x_i - z_{n,i})\\, \\partial_i F(z_n)
            = -\\frac{\\sigma}{N} \\sum_n \\varepsilon_{n,i}\\, \\partial_i F(x + \\sigma\\varepsilon_n)

Each term is the per-feature first-order term of the Taylor expansion of ``F`` around the root
``z_n``, evaluated at ``x``. SmoothTaylor is **not complete**; for a linear ``F`` the identity
``sum_i ST_i = F(x) - mean_n F(z_n)`` holds exactly for the drawn noise, and in expectation (Stein's
lemma) ``E[ST_i] = -sigma^2 E[d^2F/dx_i^2 (x + sigma eps)]``.

With ``adaptive=True`` the noise scale is chosen per example by the released adaptive-noising line
search (a 1-D stochastic search with a decaying step) minimising AUPC (perturbation curve,
:func:`tf_pathattr.metrics.aupc`) or AUTVC (multi-scale total variation,
:func:`tf_pathattr.metrics.total_variation`).

Reference: S. W. Goh, S. Lapuschkin, L. Weber, W. Samek, A. Binder, "Understanding Integrated
Gradients with SmoothTaylor for Deep Neural Network Attribution", ICPR 2020, arXiv 2004.10484;
released code ``garygsw/smooth-taylor`` (``attribution/analyzer.py``,
``experiment_adaptive_noising.py``).
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import gradients as eng
from ..engine.shapes import check_choice, check_positive_int
from .registry import MethodSpec, tile_batch_axis

__all__ = ["smooth_taylor", "adaptive_noise_search"]

OBJECTIVES = ("aupc", "autvc")
_SEARCH_DEFAULTS = {"lr": 0.1, "decay": 0.9, "max_stop_count": 3, "max_iteration": 20}


def _root_noise(seed, start, size, shape, input_index, n_inputs):
    """Standard normal noise ``[size, *shape]`` for roots ``start .. start+size-1``.

    Root ``n`` of input ``i`` is drawn with ``stateless_normal(seed=[seed, n * n_inputs + i])``, so a
    root's noise depends only on ``(seed, n)`` and not on how the roots are chunked. One draw per root
    is shared by every example of the batch (``shape[0]`` is the batch), so an example's result does
    not depend on the batch it is explained in.
    """
    idx = tf.cast(start, tf.int64) + tf.range(size, dtype=tf.int64)
    seeds = tf.stack([tf.fill([size], seed), idx * n_inputs + input_index], axis=1)
    one = [1] + list(shape[1:])
    draws = tf.map_fn(
        lambda s: tf.random.stateless_normal(one, seed=s, dtype=tf.float32),
        seeds,
        fn_output_signature=tf.TensorSpec(one, tf.float32),
    )
    return tf.broadcast_to(draws, [size] + list(shape))


def _sigma_tensor(noise_scale, batch):
    s = (
        np.asarray(tf.convert_to_tensor(noise_scale), np.float32)
        if isinstance(noise_scale, tf.Tensor)
        else np.asarray(noise_scale, np.float32)
    )
    if s.ndim == 0:
        s = np.full((batch,), float(s), np.float32)
    if s.shape != (batch,):
        raise ValueError(
            f"noise_scale must be a scalar or one value per example (shape ({batch},)), got shape {s.shape}"
        )
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"noise_scale must be finite and >= 0, got {noise_scale!r}")
    return tf.constant(s)


def _prepare_noise(noise, problem):
    """Explicit noise: per input ``[N, B, *S]``; returns (list of tensors, N)."""
    per_input = problem.structure.flatten(noise, "noise")
    out, ns = [], set()
    for _i, (e, x) in enumerate(zip(per_input, problem.flat_x)):
        t = tf.cast(tf.convert_to_tensor(e), tf.float32)
        want = (problem.batch_size,) + tuple(x.shape[1:])
        if t.shape.rank != len(want) + 1 or tuple(t.shape[1:]) != want:
            raise ValueError(f"noise must have shape (N,) + {want} (N roots per example), got {tuple(t.shape)}")
        if t.shape[0] == 0:
            raise ValueError("noise: got zero roots")
        if not bool(tf.reduce_all(tf.math.is_finite(t))):
            raise ValueError("noise contains NaN or infinite values")
        ns.add(int(t.shape[0]))
        out.append(t)
    if len(ns) > 1:
        raise ValueError(f"noise: every input needs the same number of roots, got {sorted(ns)}")
    return out, ns.pop()


def _smooth_taylor_plan(
    problem, n_roots, sigma, seed, flat_noise, percent, internal_batch_size, jit_compile, with_delta
):
    """The plan of one compiled SmoothTaylor evaluation; its body returns (list of maps, delta [B])."""
    batch = problem.batch_size
    n_inputs = len(problem.flat_x)
    explicit = flat_noise is not None
    chunk = eng.chunk_size(n_roots, batch, internal_batch_size)
    key = ("smooth_taylor", int(n_roots), chunk, explicit, bool(percent), bool(with_delta), batch)

    def builder():
        def fn(flat_x, indices, sigma, seed, flat_noise):
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)
            sig = []
            for x in flat_x:  # per input: sigma [B] -> [1, B, 1, ...]
                s = sigma
                if percent:
                    xf = tf.reshape(x, [batch, -1])
                    s = s * (tf.reduce_max(xf, axis=1) - tf.reduce_min(xf, axis=1))
                sig.append(tf.reshape(s, [1, batch] + [1] * (x.shape.rank - 1)))

            def body(start, size, carry):
                acc, acc_s = carry
                if explicit:
                    eps = [
                        tf.slice(
                            e,
                            tf.concat([[start], tf.zeros([e.shape.rank - 1], tf.int32)], 0),
                            [size] + e.shape[1:].as_list(),
                        )
                        for e in flat_noise
                    ]
                else:
                    eps = [_root_noise(seed, start, size, x.shape.as_list(), i, n_inputs) for i, x in enumerate(flat_x)]
                steps = [-s * e for s, e in zip(sig, eps)]  # x - z_n = -sigma * eps_n, [size, B, *S]
                pts = [eng.rows(x[None] - d, size, batch) for x, d in zip(flat_x, steps)]
                s_rows, grads = eng.score_and_gradients(problem, pts, indices)
                out = []
                for a, g, d in zip(acc, grads, steps):
                    g = tf.ensure_shape(eng.unrows(g, size, batch), d.shape)
                    out.append(a + tf.reduce_sum(d * g, axis=0))
                acc_s = acc_s + tf.reduce_sum(tf.reshape(s_rows, [size, batch]), axis=0)
                return out, acc_s

            acc, acc_s = eng.chunked_loop(
                n_roots, chunk, body, ([tf.zeros_like(x) for x in flat_x], tf.zeros([batch], tf.float32))
            )
            attr = [a / float(n_roots) for a in acc]
            if not with_delta:
                return attr, tf.zeros([batch], tf.float32)
            f_x = eng.scores_at_x(problem, flat_x, indices, out_x)
            total = tf.add_n([tf.reduce_sum(tf.reshape(a, [batch, -1]), axis=1) for a in attr])
            return attr, total - (f_x - acc_s / float(n_roots))

        return fn

    seed_t = tf.constant(int(seed), tf.int64)
    return eng.Plan(problem, key, builder, (sigma, seed_t, list(flat_noise) if explicit else []), jit_compile)


@overload
def smooth_taylor(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    return_details: Literal[False] = ...,
    n_roots: int = ...,
    noise_scale: Any = ...,
    percent: bool = ...,
    noise: Any = ...,
    seed: int | None = ...,
    adaptive: bool = ...,
    objective: Any = ...,
    objective_options: Any = ...,
    search_options: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
) -> Attributions: ...


@overload
def smooth_taylor(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    return_details: Literal[True],
    n_roots: int = ...,
    noise_scale: Any = ...,
    percent: bool = ...,
    noise: Any = ...,
    seed: int | None = ...,
    adaptive: bool = ...,
    objective: Any = ...,
    objective_options: Any = ...,
    search_options: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
) -> tuple[Attributions, dict]: ...


@overload
def smooth_taylor(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    return_details: Literal[False] = ...,
    n_roots: int = ...,
    noise_scale: Any = ...,
    percent: bool = ...,
    noise: Any = ...,
    seed: int | None = ...,
    adaptive: bool = ...,
    objective: Any = ...,
    objective_options: Any = ...,
    search_options: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
) -> tuple[Attributions, tf.Tensor]: ...


@overload
def smooth_taylor(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    return_details: Literal[True],
    n_roots: int = ...,
    noise_scale: Any = ...,
    percent: bool = ...,
    noise: Any = ...,
    seed: int | None = ...,
    adaptive: bool = ...,
    objective: Any = ...,
    objective_options: Any = ...,
    search_options: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
) -> tuple[Attributions, tf.Tensor, dict]: ...


@overload
def smooth_taylor(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: bool = ...,
    return_details: bool = ...,
    n_roots: int = ...,
    noise_scale: Any = ...,
    percent: bool = ...,
    noise: Any = ...,
    seed: int | None = ...,
    adaptive: bool = ...,
    objective: Any = ...,
    objective_options: Any = ...,
    search_options: Any = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
) -> Any: ...


@eng.planned
def smooth_taylor(
    model,
    inputs,
    target=None,
    *,
    n_roots: int = 150,
    noise_scale=0.5,
    percent: bool = False,
    noise=None,
    seed=None,
    adaptive: bool = False,
    objective="aupc",
    objective_options=None,
    search_options=None,
    internal_batch_size=None,
    return_convergence_delta: bool = False,
    return_details: bool = False,
    jit_compile: bool = False,
    layer=None,
):
    """SmoothTaylor attributions (Goh et al., ICPR 2020), optionally with adaptive noising.

    ``ST_i(x) = (1/N) sum_n (x_i - z_{n,i}) dF(z_n)/dz_i`` with roots ``z_n = x + sigma * eps_n``,
    ``eps_n ~ N(0, I)``.

    Parameters
    ----------
    model, inputs, target
        As for :func:`tf_pathattr.integrated_gradients`; ``F`` is the explained scalar (the logit of
        the predicted class by default).
    n_roots : int
        Number of Gaussian roots ``N`` (default 150, the released default). Ignored when ``noise``
        is given (then ``N = noise.shape[0]``).
    noise_scale : float or array ``[B]``
        ``sigma``, absolute in the model's input space (default 0.5 for ImageNet-normalised images),
        one value for all examples or one per example.
    percent : bool
        Multiply ``sigma`` by ``max(x) - min(x)`` of each example (per input).
    noise : array ``[N, B, *S]`` (same structure as ``inputs``), optional
        Explicit standard-normal draws ``eps_n`` (for tests and reproducibility across libraries).
    seed : int, optional
        Seed of the stateless noise (``None`` = 0). Root ``n`` uses
        ``stateless_normal([B, *S], seed=[seed, n])`` (``[seed, n * n_inputs + i]`` for input ``i``
        of a multi-input model), so the result does not depend on ``internal_batch_size``. Under
        ``jit_compile=True`` XLA's stateless generator draws *different* (equally valid, equally
        seed-deterministic) numbers, so seeded results differ from the non-XLA ones; pass
        ``noise`` to get identical results.
    adaptive : bool
        Choose ``sigma`` per example with the adaptive-noising search (see
        :func:`adaptive_noise_search`); ``noise_scale`` is then unused (the search starts at
        ``mean(|x|)``) and ``percent`` must be False.
    objective : {"aupc", "autvc"} or callable
        What the search minimises: AUPC (:func:`tf_pathattr.metrics.aupc`, default) or AUTVC
        (:func:`tf_pathattr.metrics.total_variation`); or a callable
        ``objective(attributions, inputs) -> [B]`` (lower is better).
    objective_options : dict, optional
        Keyword arguments of the objective metric (e.g. ``n_regions``, ``n_candidates``, ``window``,
        ``value_range``, ``preprocess`` for AUPC, plus ``raw_inputs``: the pixel-space images the
        model sees through ``preprocess``; ``downscale``, ``min_size`` for AUTVC).
    search_options : dict, optional
        ``lr`` (0.1), ``decay`` (0.9), ``max_stop_count`` (3), ``max_iteration`` (20).
    internal_batch_size : int, optional
        Most model rows per call (default 256): ``internal_batch_size // B`` roots per call.
    return_convergence_delta : bool
        Also return ``delta = sum(ST) - (F(x) - mean_n F(z_n))`` per example: the first-order
        Taylor remainder, exactly 0 for a linear ``F`` (SmoothTaylor is not complete in general).
    return_details : bool
        Also return a dict: ``sigma`` (the noise scale per example, before the ``percent`` scaling); with
        ``adaptive=True`` also ``objective``, ``initial_sigma``, ``initial_objective``,
        ``trajectory`` (per example, one record per search iteration) and ``n_evaluations``.
    jit_compile : bool
        Compile with XLA.
    layer : keras layer, layer name or callable(model) -> layer, optional
        Attribute to this layer's output (e.g. an ``Embedding``): the roots are drawn around the
        layer's activations, ``z_n = a(x) + sigma eps_n``, and the Taylor terms live in that space
        (``noise_scale`` and ``noise`` are then in the layer's output units); the raw inputs
        (integer token ids) are fed unchanged. ``adaptive=True`` then needs a callable objective.

    Returns
    -------
    attributions : tf.Tensor shaped like ``inputs`` (same structure for multi-input models)
    delta : tf.Tensor ``[B]``, only with ``return_convergence_delta=True``
    details : dict, only with ``return_details=True`` (always last)
    """
    n_roots = check_positive_int(n_roots, "n_roots")
    seed = eng.as_numpy_seed(seed)
    problem = eng.prepare(model, inputs, target, layer=layer)
    if layer is not None and adaptive and not callable(objective):
        raise ValueError(
            f"objective={objective!r} perturbs the model's inputs, not a layer's output; with layer= "
            "pass a callable objective(attributions, inputs) -> [B] or adaptive=False"
        )
    flat_noise = None
    if noise is not None:
        flat_noise, n_roots = _prepare_noise(noise, problem)

    def finish(attr, delta, details):
        out = [problem.pack(attr)]
        if return_convergence_delta:
            out.append(delta)
        if return_details:
            out.append(details)
        return out[0] if len(out) == 1 else tuple(out)

    if adaptive:  # the search runs on the host: a finished result, not a plan
        if percent:
            raise ValueError("adaptive=True searches an absolute noise scale; use percent=False")
        return finish(
            *adaptive_noise_search(
                problem,
                model,
                inputs,
                target,
                n_roots=n_roots,
                seed=seed,
                flat_noise=flat_noise,
                objective=objective,
                objective_options=objective_options,
                search_options=search_options,
                internal_batch_size=internal_batch_size,
                with_delta=return_convergence_delta,
                jit_compile=jit_compile,
            )
        )
    sigma = _sigma_tensor(noise_scale, problem.batch_size)
    details = {"sigma": sigma.numpy(), "percent": bool(percent)}
    plan = _smooth_taylor_plan(
        problem, n_roots, sigma, seed, flat_noise, percent, internal_batch_size, jit_compile, return_convergence_delta
    )
    plan.finish = lambda result: finish(result[0], result[1], details)
    return plan


# --------------------------------------------------------------------------------------------
# adaptive noising


def _objective_fn(objective, objective_options, model, inputs, target, problem):
    """``J(attributions list, seed) -> numpy [B]`` for the chosen objective."""
    opts = dict(objective_options or {})
    if callable(objective):
        return lambda attr, seed: np.asarray(objective(problem.pack(attr), inputs), np.float64).reshape(-1)
    check_choice(objective, "objective", OBJECTIVES)
    if len(problem.flat_x) != 1:
        raise ValueError(f"objective={objective!r} needs a single image input; pass a callable objective instead")
    from ..metrics.aupc import aupc as _aupc
    from ..metrics.smoothness import total_variation as _total_variation

    if objective == "autvc":
        return lambda attr, seed: np.asarray(_total_variation(attr[0], **opts)[0], np.float64)
    raw = opts.pop("raw_inputs", None)
    x_for_metric = problem.flat_x[0] if raw is None else raw
    return lambda attr, seed: np.asarray(_aupc(model, x_for_metric, attr[0], target, seed=seed, **opts)[0], np.float64)


def _call_seed(seed, counter):
    """A fresh 31-bit seed for objective call ``counter`` of a search seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(counter)]).generate_state(1)[0] >> 1)


def adaptive_noise_search(
    problem,
    model,
    inputs,
    target,
    *,
    n_roots,
    seed,
    flat_noise,
    objective,
    objective_options,
    search_options,
    internal_batch_size,
    with_delta,
    jit_compile,
):
    """The released adaptive-noising line search, run for all examples in lock-step.

    Per example (``x`` in the model's input space)::

        sigma <- mean(|x|); obj <- J(sigma); best <- (sigma, obj, map)
        lr <- 0.1; stop <- 0; it <- 1
        while it <= 20:
            o+ <- J(|sigma + lr|)
            if o+ > obj: sigma <- |sigma - lr|; o <- J(sigma)   # probe the other side, move there
            else:        sigma <- |sigma + lr|; o <- o+
            if o > obj:                                         # worse than the previous step
                if stop < 3: lr <- 0.9 lr; stop += 1
                else: break
            else:
                stop <- 0
                if o < best.obj: best <- (sigma, o, map)
            obj <- o; it += 1
        return best

    ``J(sigma)`` computes SmoothTaylor at ``sigma`` (fresh stateless noise per call, seeded from
    ``(seed, call counter)``, unless explicit ``noise`` is given) and the objective of the maps.
    Every call evaluates all examples at once (``sigma`` is a ``[B]`` tensor, so nothing is
    retraced); examples whose search has ended, or that do not need the second probe, are
    evaluated but ignored. Returns ``(maps at the best sigma, delta, details)``.
    """
    opts = dict(_SEARCH_DEFAULTS)
    unknown = set(search_options or {}) - set(opts)
    if unknown:
        raise ValueError(f"search_options: unknown keys {sorted(unknown)}; known keys are {sorted(opts)}")
    opts.update(search_options or {})
    lr0, decay = float(opts["lr"]), float(opts["decay"])
    max_stop = check_positive_int(opts["max_stop_count"], "search_options['max_stop_count']", 0)
    max_it = check_positive_int(opts["max_iteration"], "search_options['max_iteration']", 0)
    if not (np.isfinite(lr0) and lr0 > 0):
        raise ValueError(f"search_options['lr'] must be > 0, got {lr0}")
    if not (0 < decay <= 1):
        raise ValueError(f"search_options['decay'] must be in (0, 1], got {decay}")
    J_obj = _objective_fn(objective, objective_options, model, inputs, target, problem)
    batch = problem.batch_size
    counter = [0]

    def J(sig):
        c = counter[0]
        counter[0] += 1
        s = _call_seed(seed, c) if flat_noise is None else seed
        attr, delta = _smooth_taylor_plan(
            problem,
            n_roots,
            tf.constant(np.abs(sig), tf.float32),
            s,
            flat_noise,
            False,
            internal_batch_size,
            jit_compile,
            with_delta,
        ).raw()
        return [a.numpy() for a in attr], delta.numpy(), J_obj(attr, _call_seed(seed + 1, c))

    flat_abs = np.concatenate([np.abs(x.numpy()).reshape(batch, -1) for x in problem.flat_x], axis=1)
    sigma = flat_abs.mean(axis=1).astype(np.float64)
    maps, delta, obj = J(sigma)
    best_sigma, best_obj = sigma.copy(), obj.copy()
    best_maps, best_delta = [m.copy() for m in maps], delta.copy()
    initial = (sigma.copy(), obj.copy())
    lr = np.full(batch, lr0)
    stop = np.zeros(batch, int)
    active = np.ones(batch, bool)
    traj = [[] for _ in range(batch)]
    it = 1
    while it <= max_it and active.any():
        plus = np.abs(sigma + lr)
        maps_p, delta_p, o_plus = J(np.where(active, plus, sigma))
        back = active & (o_plus > obj)
        new_sigma = np.where(back, np.abs(sigma - lr), plus)
        o, new_maps, new_delta = o_plus.copy(), [m.copy() for m in maps_p], delta_p.copy()
        if back.any():
            maps_m, delta_m, o_minus = J(np.where(back, new_sigma, sigma))
            o = np.where(back, o_minus, o)
            for m, mm in zip(new_maps, maps_m):
                m[back] = mm[back]
            new_delta[back] = delta_m[back]
        for b in np.flatnonzero(active):
            rec = {
                "iteration": it,
                "probe_sigma": float(plus[b]),
                "probe_objective": float(o_plus[b]),
                "moved_back": bool(back[b]),
                "sigma": float(new_sigma[b]),
                "objective": float(o[b]),
            }
            if o[b] > obj[b]:
                if stop[b] < max_stop:
                    lr[b] *= decay
                    stop[b] += 1
                else:
                    active[b] = False
            else:
                stop[b] = 0
                if o[b] < best_obj[b]:
                    best_obj[b], best_sigma[b] = o[b], new_sigma[b]
                    for bm, nm in zip(best_maps, new_maps):
                        bm[b] = nm[b]
                    best_delta[b] = new_delta[b]
            rec.update(
                lr=float(lr[b]),
                stop=int(stop[b]),
                stopped=not active[b],
                best_sigma=float(best_sigma[b]),
                best_objective=float(best_obj[b]),
            )
            traj[b].append(rec)
            if active[b]:
                sigma[b], obj[b] = new_sigma[b], o[b]
        it += 1
    details = {
        "sigma": best_sigma.astype(np.float32),
        "objective": best_obj,
        "initial_sigma": initial[0],
        "initial_objective": initial[1],
        "trajectory": traj,
        "n_evaluations": counter[0],
    }
    attr = [tf.constant(m) for m in best_maps]
    return attr, tf.constant(best_delta), details


SPEC = MethodSpec(
    name="smooth_taylor",
    function=smooth_taylor,
    summary=(
        "first-order Taylor terms averaged over Gaussian roots; `adaptive=True` noise-scale search on AUPC / AUTVC"
    ),
    paper="G. S. W. Goh, S. Lapuschkin, L. Weber, W. Samek, A. Binder, Understanding Integrated Gradients "
    "with SmoothTaylor for Deep Neural Network Attribution, ICPR 2020",
    completeness="F(x) − mean_n F(z_n) (exact for linear models)",
    details=True,
    stochastic=True,
    per_example_options={"noise_scale": tile_batch_axis(0, rank=lambda r: 1)},
    test_options={"n_roots": 8, "seed": 0},
)
