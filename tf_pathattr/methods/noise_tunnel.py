"""SmoothGrad, SmoothGrad-squared and VarGrad over any attribution method (a noise tunnel).

With ``eps_j ~ N(0, sigma^2 I)`` and any method ``A``:

.. math::

    SG(x) = \\frac1n \\sum_j A(x + \\epsilon_j), \\quad
    SG^2(x) = \\frac1n \\sum_j A(x + \\epsilon_j)^2, \\quad
    VarGrad(x) = SG^2(x) - SG(x)^2 .

The noise goes on the inputs only (baselines are not perturbed); with ``layer=`` it goes on that
layer's output instead (the token embeddings of a text model, as AllenNLP's ``SmoothGradient``
does), scaled to each example's activations, and the wrapped method attributes to that output. ``stdevs`` is a *fraction of each
example's value range*, ``sigma_b = stdevs * (max x_b - min x_b)`` (PAIR's ``stdev_spread``
semantics; captum's ``stdevs`` is an absolute standard deviation). Noise samples are batched: the
wrapped method runs once on ``nt_samples_batch_size * B`` noisy rows instead of once per sample.
VarGrad is accumulated with a pairwise (Chan) update, so it is non-negative element-wise.

References: D. Smilkov, N. Thorat, B. Kim, F. Viegas, M. Wattenberg, "SmoothGrad: removing noise by
adding noise", arXiv 1706.03825 (2017); J. Adebayo et al., "Local explanation methods for deep
neural networks lack sensitivity to parameter randomization", 2018 (VarGrad).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import gradients as eng
from ..engine import shapes as _shapes
from ..engine import targets as tgt
from ..engine.shapes import check_choice, check_optional_positive_int, check_positive_int
from . import registry
from .registry import MethodSpec, TileContext

__all__ = ["noise_tunnel", "smoothgrad", "NT_TYPES"]

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def _noise_scales(flat_x, stdevs):
    """Per-example sigma ``[B]`` for each input: ``stdevs * (max - min)`` over the example."""
    out = []
    for x in flat_x:
        flat = tf.reshape(x, [x.shape[0], -1])
        out.append(float(stdevs) * (tf.reduce_max(flat, axis=1) - tf.reduce_min(flat, axis=1)))
    return out


def _example_noise(x, seed):
    """Standard normal noise shaped like ``x`` ``[B, *S]``: one draw shared by every example, so an
    example's result does not depend on the batch it is explained in."""
    one = tf.concat([[1], tf.shape(x)[1:]], 0)
    return tf.broadcast_to(tf.random.stateless_normal(one, seed=seed), tf.shape(x))


class _LayerSpace:
    """The model as a function of one layer's output: ``points [g * B, *S] -> outputs``, the real model
    inputs (token ids, masks) fed unchanged, tiled to the ``g`` groups of ``B`` rows.

    The noise tunnel runs the wrapped method on this callable with the noisy activations as its
    inputs. Rows must come in point-major groups of all ``B`` examples (as with ``layer=`` itself);
    ``grouped_rows`` tells ``n_steps="auto"`` not to reorder them. Holds the model only for the
    duration of one call (a fresh object per call; what the engine caches on it goes with it).
    """

    grouped_rows = True

    def __init__(self, problem):
        self._forward = problem.forward
        self._batch = problem.batch_size

    def __call__(self, points):
        rows = points.shape[0]
        if rows is not None and 0 < rows < self._batch:  # a probe of the first examples (output shape)
            pad = tf.zeros(tf.concat([[self._batch - rows], tf.shape(points)[1:]], 0), points.dtype)
            out = self._forward([tf.concat([points, pad], 0)])
            return tf.nest.map_structure(lambda o: o[:rows], out)
        if rows is None or rows % self._batch:
            raise ValueError(
                f"noise_tunnel(layer=): the wrapped method called the model on {rows} rows, not a multiple "
                f"of the batch ({self._batch})"
            )
        return self._forward([points])


def inner_seed(seed, start: int) -> int:
    """The seed a stochastic wrapped method gets for the noise samples ``start, start + 1, ...`` of one
    call: derived from the tunnel's ``seed`` and ``start`` (independent of the noise draws, which use
    ``(seed, j)``, and different for every group of samples)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EED, int(start)]).generate_state(1)[0] >> 1)


def _tile_options(method, options, problem, reps):
    """The wrapped method's options for ``reps * B`` rows (point-major).

    Exactly the options its registry entry declares per-example (``MethodSpec.per_example_options``)
    are tiled, each by its declared tiler; every other option is passed unchanged. An unregistered
    callable declares nothing, so nothing is tiled for it.
    """
    spec = registry.spec_of(method)
    tilers = spec.per_example_options if spec is not None else {}
    ctx = TileContext(
        batch=problem.batch_size, reps=int(reps), flat_x=tuple(problem.flat_x), structure=problem.structure
    )
    return {k: (tilers[k](v, ctx) if k in tilers else v) for k, v in options.items()}


@overload
def noise_tunnel(
    method: Any,
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    nt_type: str = ...,
    nt_samples: int = ...,
    stdevs: float = ...,
    internal_batch_size: int | None = ...,
    seed: int | None = ...,
    noise: Any = ...,
    nt_samples_batch_size: Any = ...,
    **method_options: Any,
) -> Attributions: ...


@overload
def noise_tunnel(
    method: Any,
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    nt_type: str = ...,
    nt_samples: int = ...,
    stdevs: float = ...,
    internal_batch_size: int | None = ...,
    seed: int | None = ...,
    noise: Any = ...,
    nt_samples_batch_size: Any = ...,
    **method_options: Any,
) -> tuple[Attributions, tf.Tensor]: ...


@overload
def noise_tunnel(
    method: Any,
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: bool = ...,
    nt_type: str = ...,
    nt_samples: int = ...,
    stdevs: float = ...,
    internal_batch_size: int | None = ...,
    seed: int | None = ...,
    noise: Any = ...,
    nt_samples_batch_size: Any = ...,
    **method_options: Any,
) -> Any: ...


def noise_tunnel(
    method,
    model,
    inputs,
    target=None,
    *,
    nt_type: str = "smoothgrad",
    nt_samples: int = 25,
    stdevs: float = 0.15,
    internal_batch_size=None,
    seed=None,
    noise=None,
    return_convergence_delta: bool = False,
    nt_samples_batch_size=None,
    **method_options,
):
    """Average an attribution method over Gaussian-perturbed copies of the inputs.

    Parameters
    ----------
    method : str or callable
        The wrapped method: a name from ``tpa.METHODS`` or an attribution function.
    model, inputs, target
        As for every method. ``target=None`` is resolved once on the *clean* inputs, so every noisy
        copy explains the same class.
    nt_type : {"smoothgrad", "smoothgrad_sq", "vargrad"}
    nt_samples : int
        Noise samples ``n`` (default 25).
    stdevs : float
        Noise standard deviation as a fraction of each example's value range (default 0.15).
    internal_batch_size : int, optional
        Most model rows per call, as for every method: the wrapped method runs on
        ``max(1, internal_batch_size // B)`` noisy copies at a time (default: all ``nt_samples``) and
        gets the same ``internal_batch_size`` for its own path chunks. A callable target forces one
        copy per call, because a score written for ``B`` rows cannot be tiled.
    seed : int, optional
        Stateless noise seed; sample ``j`` uses ``(seed, j)``, so results do not depend on the
        batching of samples. A stochastic wrapped method (``stochastic=True`` in its registry entry:
        Expected Gradients, SmoothTaylor, ...) gets its own seed derived from ``seed`` and the first
        sample of each call (:func:`inner_seed`); its draws then depend on how samples are batched.
    noise : array ``[n, B, *S]`` (structure for multi-input), optional
        Standard-normal noise to use instead of drawing (scaled by the per-example sigma).
    return_convergence_delta : bool
        ``smoothgrad`` only: the mean of the wrapped method's deltas, i.e.
        ``sum(SG) - (mean_j F(x + eps_j) - F(x'))`` for IG.
    nt_samples_batch_size : int, optional
        Deprecated (one release, ``DeprecationWarning``): noise samples per call of the wrapped
        method; use ``internal_batch_size`` (model rows per call).
    layer : keras layer, layer name or ``(layer, call_index)``, optional
        Perturb and attribute that layer's output ``h`` (e.g. the token ``Embedding``; the model
        inputs may then be integer ids): the wrapped method explains ``h + eps_j`` with
        ``sigma_b = stdevs * (max h_b - min h_b)`` over example ``b``'s activations, and
        ``noise`` has the activations' shape ``[n, B, *S]``. The wrapped method must support
        ``layer=`` (its registry entry); its ``baseline`` lives in the layer's space
        (``"zero_input"``: the activations at an all-zero model input). Not embeddable in a
        SavedModel.
    **method_options
        Passed to the wrapped method (``n_steps``, ``baseline``...). The options its registry entry
        declares per-example (``tpa.methods.registry.get(name).per_example_options``: a per-example
        ``baseline`` of IG / Guided IG / IDG / Split IG for every input of a list or dict model,
        SmoothTaylor's ``noise_scale [B]``, IG2's ``references [B, R, *S]``, Expected Gradients'
        ``sample_indices`` / ``sample_alphas [n_samples, B]``...) are tiled along with the noisy
        rows; all other options are passed unchanged.
    """
    from . import resolve_method  # late import: the registry imports this module

    layer = method_options.pop("layer", None)
    fn = resolve_method(method)
    wrapped = registry.spec_of(method)
    if layer is not None:
        if wrapped is None:
            raise ValueError(
                "layer=: the noise tunnel over layer= needs a registered method (a name from tpa.METHODS) "
                "whose registry entry declares layer= support; got an unregistered callable"
            )
        registry.require(wrapped, "layer", f"layer= with method {wrapped.name!r}")
    check_choice(nt_type, "nt_type", NT_TYPES)
    n = check_positive_int(nt_samples, "nt_samples")
    if not np.isfinite(stdevs) or stdevs < 0:
        raise ValueError(f"stdevs must be a finite number >= 0 (a fraction of the value range), got {stdevs!r}")
    ibs = check_optional_positive_int(internal_batch_size, "internal_batch_size")
    if nt_samples_batch_size is not None:
        warnings.warn(
            "nt_samples_batch_size= is deprecated and has been replaced by internal_batch_size= (model rows "
            "per call: internal_batch_size // B noise samples per call); it will be removed in the next "
            "release",
            DeprecationWarning,
            stacklevel=2,
        )
        if ibs is not None:
            raise TypeError("pass internal_batch_size= or the deprecated nt_samples_batch_size=, not both")
    group = check_optional_positive_int(nt_samples_batch_size, "nt_samples_batch_size") or n
    if return_convergence_delta and nt_type != "smoothgrad":
        raise ValueError("return_convergence_delta is only defined for nt_type='smoothgrad'")

    if layer is None:
        problem = eng.prepare(model, inputs, target)
        run_model = model
    else:  # noise in the layer's output space: the wrapped method runs on the model after the layer
        problem = eng.prepare(model, inputs, target, layer=layer)
        run_model = _LayerSpace(problem)
        if isinstance(method_options.get("baseline"), str):  # "zero_input": resolved here, in the layer space
            (base,) = _shapes.prepare_baselines(method_options["baseline"], problem.flat_x, problem.structure)
            method_options = dict(method_options, baseline=base[0])
    batch = problem.batch_size
    if ibs is not None:
        group = max(1, ibs // batch)
        method_options = dict(method_options, internal_batch_size=ibs)
    spec = problem.target
    if spec.kind == tgt.CALLABLE:
        group = 1
        target_rows = lambda reps: spec.fn  # noqa: E731
    else:
        if spec.kind == tgt.PREDICTED:
            out = problem.forward(problem.flat_x)
            idx = tgt.predicted_indices(out, spec).numpy()
        else:
            idx = spec.indices.numpy()
        target_rows = lambda reps: np.tile(idx, reps)  # noqa: E731
    group = min(group, n)
    stochastic = wrapped is not None and wrapped.stochastic
    seed_int = eng.as_numpy_seed(seed)

    sigmas = _noise_scales(problem.flat_x, stdevs)
    if noise is not None:
        flat_noise = problem.structure.flatten(noise, "noise")
        flat_noise = [tf.convert_to_tensor(np.asarray(e), tf.float32) for e in flat_noise]
        for e, x in zip(flat_noise, problem.flat_x):
            if tuple(e.shape) != (n,) + tuple(x.shape):
                raise ValueError(
                    f"noise must have shape {(n,) + tuple(x.shape)} (nt_samples, *inputs.shape), got {tuple(e.shape)}"
                )
    else:
        flat_noise = None
    s = seed_int

    def noise_for(i, start, stop):
        if flat_noise is not None:
            return flat_noise[i][start:stop]
        x = problem.flat_x[i]
        return tf.stack([_example_noise(x, [s + 1000003 * i, j]) for j in range(start, stop)])

    mean = count = m2 = None
    delta_sum = tf.zeros((batch,), tf.float32)
    for start in range(0, n, group):
        stop = min(n, start + group)
        g = stop - start
        noisy = []
        for i, x in enumerate(problem.flat_x):
            eps = noise_for(i, start, stop) * eng.expand_like(sigmas[i], x)[None]
            noisy.append(eng.rows(x[None] + eps, g, batch))
        options = _tile_options(method, method_options, problem, g)
        if stochastic:
            options["seed"] = inner_seed(seed_int, start)
        if return_convergence_delta:
            options["return_convergence_delta"] = True
        res = fn(run_model, problem.pack(noisy), target_rows(g), **options)
        if return_convergence_delta:
            res, delta = res
            delta_sum = delta_sum + tf.reduce_sum(tf.reshape(delta, [g, batch]), axis=0)
        flat_attr = problem.structure.flatten(res, "attributions") if problem.structure.kind != "single" else [res]
        flat_attr = [eng.unrows(tf.convert_to_tensor(a, tf.float32), g, batch) for a in flat_attr]
        # pairwise (Chan et al.) merge of group mean / sum of squared deviations
        g_mean = [tf.reduce_mean(a, axis=0) for a in flat_attr]
        g_m2 = [tf.reduce_sum(tf.square(a - gm[None]), axis=0) for a, gm in zip(flat_attr, g_mean)]
        if mean is None:
            mean, m2, count = g_mean, g_m2, g
        else:
            tot = count + g
            d = [gm - m for gm, m in zip(g_mean, mean)]
            mean = [m + dd * (g / tot) for m, dd in zip(mean, d)]
            m2 = [a + b + tf.square(dd) * (count * g / tot) for a, b, dd in zip(m2, g_m2, d)]
            count = tot

    if nt_type == "smoothgrad":
        out = mean
    elif nt_type == "vargrad":
        out = [v / n for v in m2]
    else:  # smoothgrad_sq = E[A^2] = Var + mean^2
        out = [v / n + tf.square(m) for v, m in zip(m2, mean)]
    out = problem.pack(out)
    if return_convergence_delta:
        return out, delta_sum / n
    return out


def plan_noise_tunnel(
    method,
    model,
    inputs,
    target=None,
    *,
    nt_type: str = "smoothgrad",
    nt_samples: int = 25,
    stdevs: float = 0.15,
    seed=None,
    **method_options,
) -> eng.Plan:
    """The noise tunnel as one embeddable body (``tpa.saved_model.export``): the noise is drawn in-graph
    with the same stateless draws as :func:`noise_tunnel`, and the wrapped method's body runs once on
    all ``nt_samples * B`` noisy rows. Needs a wrapped method with a planner and an index target."""
    from . import resolve_method  # late import: the registry imports this module

    if method_options.get("layer") is not None:
        raise ValueError(
            "layer=: an embedded noise_tunnel perturbs the model inputs in-graph; noise in a layer's output "
            "space (noise_tunnel(..., layer=)) runs eagerly only and cannot be exported"
        )
    fn = resolve_method(method)
    check_choice(nt_type, "nt_type", NT_TYPES)
    n = check_positive_int(nt_samples, "nt_samples")
    if not np.isfinite(stdevs) or stdevs < 0:
        raise ValueError(f"stdevs must be a finite number >= 0 (a fraction of the value range), got {stdevs!r}")
    for option in ("noise", "return_convergence_delta"):
        if method_options.pop(option, None) not in (None, False):
            raise ValueError(
                f"{option}: an embedded noise_tunnel draws seeded noise in-graph and returns "
                f"attributions only; remove {option}"
            )
    method_options.pop("nt_samples_batch_size", None)  # all samples run in one body
    planner = getattr(fn, "plan", None)
    if planner is None:
        raise ValueError(
            f"method: {getattr(fn, '__name__', fn)!r} hands over no plan, so noise_tunnel over it cannot be embedded"
        )
    problem = eng.prepare(model, inputs, target)
    if problem.target.kind == tgt.CALLABLE:
        raise ValueError("target: an embedded noise_tunnel needs class indices, not a callable")
    batch = problem.batch_size
    seed = eng.as_numpy_seed(seed)
    tiled = [eng.rows(tf.tile(x[None], [n] + [1] * x.shape.rank), n, batch) for x in problem.flat_x]
    options = _tile_options(method, method_options, problem, n)
    spec = registry.spec_of(method)
    if spec is not None and spec.stochastic:
        options["seed"] = inner_seed(seed, 0)
    inner = planner(model, problem.pack(tiled), tf.tile(problem.target.indices, [n]), **options)

    def builder():
        inner_fn = inner.python_fn

        def body(flat_x, indices, seed_t, *extra):
            noisy = []
            for i, (x, sigma) in enumerate(zip(flat_x, _noise_scales(flat_x, stdevs))):
                eps = tf.stack([_example_noise(x, tf.stack([seed_t + 1000003 * i, j])) for j in range(n)])
                noisy.append(eng.rows(x[None] + eps * eng.expand_like(sigma, x)[None], n, batch))
            res = inner_fn(noisy, tf.tile(indices, [n]), *extra)
            attr = res[0] if isinstance(res, tuple) else res
            out = []
            for a in attr:
                a = eng.unrows(a, n, batch)
                mean = tf.reduce_mean(a, axis=0)
                if nt_type == "smoothgrad":
                    out.append(mean)
                elif nt_type == "vargrad":
                    out.append(tf.reduce_mean(tf.square(a - mean[None]), axis=0))
                else:
                    out.append(tf.reduce_mean(tf.square(a), axis=0))
            return out

        return body

    return eng.Plan(
        problem, None, builder, (tf.constant(seed, tf.int32),) + tuple(inner.extra_args), finish=problem.pack
    )


noise_tunnel.plan = plan_noise_tunnel


def _noise_tunnel_by_name(model, inputs, target=None, *, base_method="integrated_gradients", **options):
    """``attribute(..., method="noise_tunnel", base_method=NAME, nt_type=...)``."""
    return noise_tunnel(base_method, model, inputs, target, **options)


_noise_tunnel_by_name.plan = lambda model, inputs, target=None, *, base_method="integrated_gradients", **options: (
    plan_noise_tunnel(base_method, model, inputs, target, **options)
)


def smoothgrad(model, inputs, target=None, *, nt_type: str = "smoothgrad", **options):
    """SmoothGrad (Smilkov et al. 2017): plain input gradients averaged over noisy copies of the inputs.

    ``noise_tunnel("gradients", ...)``; ``nt_type="smoothgrad_sq"`` / ``"vargrad"`` give SG² and
    VarGrad of the gradients. Options are those of :func:`noise_tunnel` and :func:`gradients`;
    with ``layer=`` the noise goes on that layer's output (see :func:`noise_tunnel`).
    """
    return noise_tunnel("gradients", model, inputs, target, nt_type=nt_type, **options)


smoothgrad.plan = lambda model, inputs, target=None, *, nt_type="smoothgrad", **options: plan_noise_tunnel(
    "gradients", model, inputs, target, nt_type=nt_type, **options
)


SPEC = MethodSpec(
    name="noise_tunnel",
    function=_noise_tunnel_by_name,
    summary="SmoothGrad, SmoothGrad², VarGrad over any method (`base_method=`), noise samples batched",
    paper="D. Smilkov, N. Thorat, B. Kim, F. Viégas, M. Wattenberg, SmoothGrad: removing noise by adding noise, "
    "arXiv 1706.03825 (2017); J. Adebayo et al., Local explanation methods for deep neural networks lack "
    "sensitivity to parameter randomization, 2018",
    completeness="SmoothGrad over a complete method: mean_j F(x + ε_j) − F(x')",
    stochastic=True,
    wraps_method=True,
    # the default base method's (IG's) option, passed through unchanged (not perturbed)
    baseline_option="baseline",
    test_options={"nt_samples": 2, "n_steps": 8, "seed": 0},
)

SMOOTHGRAD_SPEC = MethodSpec(
    name="smoothgrad",
    function=smoothgrad,
    summary="SmoothGrad: plain gradients averaged over noisy copies (`nt_type=` for SG² and VarGrad)",
    paper="D. Smilkov, N. Thorat, B. Kim, F. Viégas, M. Wattenberg, SmoothGrad: removing noise by adding noise, "
    "arXiv 1706.03825 (2017)",
    stochastic=True,
    test_options={"nt_samples": 2, "seed": 0},
)
