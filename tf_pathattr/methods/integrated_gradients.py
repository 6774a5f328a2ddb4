"""Integrated Gradients on the straight path, with any quadrature rule and any baseline(s).

.. math::

    IG_i(x) = (x_i - x'_i) \\int_0^1 \\partial_i F(x' + \\alpha (x - x'))\\, d\\alpha
            \\approx (x_i - x'_i) \\sum_k w_k\\, \\partial_i F(x' + \\alpha_k (x - x'))

With several baselines ``x'_1..x'_K`` the result is the mean of the K maps, and completeness reads
``sum_i IG_i = F(x) - mean_k F(x'_k)`` up to the quadrature error.

Reference: M. Sundararajan, A. Taly, Q. Yan, "Axiomatic Attribution for Deep Networks", ICML 2017,
arXiv 1703.01365.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import accumulators as _acc
from ..engine import adaptive as _adaptive
from ..engine import gradients as eng
from ..engine.paths import completeness_delta, straight_path_sum
from ..engine.quadrature import RULES, quadrature
from ..engine.shapes import check_choice, prepare_baselines, renamed_option
from .registry import MethodSpec, tile_baseline

__all__ = ["integrated_gradients", "straight_path_sum"]


@overload
def integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    return_details: Literal[False] = ...,
    baseline: Any = ...,
    n_steps: int | Literal["auto"] = ...,
    rule: str | None = ...,
    internal_batch_size: int | None = ...,
    multiply_by_inputs: bool = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
    method: str | None = ...,
    rtol: float = ...,
    max_steps: int = ...,
    idgi: Any = ...,
) -> Attributions: ...


@overload
def integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    return_details: Literal[True],
    baseline: Any = ...,
    n_steps: int | Literal["auto"] = ...,
    rule: str | None = ...,
    internal_batch_size: int | None = ...,
    multiply_by_inputs: bool = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
    method: str | None = ...,
    rtol: float = ...,
    max_steps: int = ...,
    idgi: Any = ...,
) -> tuple[Attributions, dict]: ...


@overload
def integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    return_details: Literal[False] = ...,
    baseline: Any = ...,
    n_steps: int | Literal["auto"] = ...,
    rule: str | None = ...,
    internal_batch_size: int | None = ...,
    multiply_by_inputs: bool = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
    method: str | None = ...,
    rtol: float = ...,
    max_steps: int = ...,
    idgi: Any = ...,
) -> tuple[Attributions, tf.Tensor]: ...


@overload
def integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    return_details: Literal[True],
    baseline: Any = ...,
    n_steps: int | Literal["auto"] = ...,
    rule: str | None = ...,
    internal_batch_size: int | None = ...,
    multiply_by_inputs: bool = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
    method: str | None = ...,
    rtol: float = ...,
    max_steps: int = ...,
    idgi: Any = ...,
) -> tuple[Attributions, tf.Tensor, dict]: ...


@overload
def integrated_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: bool = ...,
    return_details: bool = ...,
    baseline: Any = ...,
    n_steps: int | Literal["auto"] = ...,
    rule: str | None = ...,
    internal_batch_size: int | None = ...,
    multiply_by_inputs: bool = ...,
    jit_compile: bool = ...,
    layer: Any = ...,
    seed: int | None = ...,
    method: str | None = ...,
    rtol: float = ...,
    max_steps: int = ...,
    idgi: Any = ...,
) -> Any: ...


@eng.planned
def integrated_gradients(
    model,
    inputs,
    target=None,
    *,
    baseline=0.0,
    n_steps: int = 64,
    rule=None,
    internal_batch_size=None,
    multiply_by_inputs: bool = True,
    return_convergence_delta: bool = False,
    jit_compile: bool = False,
    layer=None,
    seed=None,
    method=None,
    rtol: float = 1e-3,
    max_steps: int = 1023,
    return_details: bool = False,
    idgi=False,
):
    """Integrated Gradients along the straight line from ``baseline`` to ``inputs``.

    Parameters
    ----------
    model : keras.Model or callable
        Maps a batch (or a list / dict of batches) to outputs; called with ``training=False``
        when it is a Keras model or layer.
    inputs : array-like ``[B, ...]``, or list / tuple / dict of them
        The explicands (float). Attributions come back in the same structure.
    target : None, int, sequence of B ints, or callable ``score(outputs) -> [B]``
        What is explained (see :mod:`tf_pathattr.engine.targets`); ``None`` = predicted class.
    baseline : scalar, array, per-example array, stack of K baselines, or a ``tpa.baselines`` recipe
        Several baselines are averaged (see :func:`tf_pathattr.engine.shapes.prepare_baselines`).
    n_steps : int or "auto"
        Quadrature nodes (default 64). ``"auto"``: refine a nested Fejér (open Clenshaw–Curtis) rule
        per example (3, 7, 15, 31, ... nodes) until the attributions change by at most ``rtol`` of their
        L1 norm between nested levels and ``|delta| <= rtol * max(|F(x) - F(x')|, ||attr||_1)``, or
        ``max_steps`` gradient evaluations; examples that have converged stop costing gradient calls (see
        :mod:`tf_pathattr.engine.adaptive`; ``rule`` is then not used).
    rule : {"gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "pair"}
        Quadrature rule (default ``"gausslegendre"``); all weights sum to 1. ``pair`` reproduces PAIR
        ``saliency``'s IG.
    internal_batch_size : int, optional
        Most model rows per call (default 256): ``internal_batch_size // B`` path points per call.
        Peak memory depends on it, not on ``n_steps``.
    multiply_by_inputs : bool
        ``False`` returns the path-averaged gradient ``sum_k w_k g_k`` without the ``(x - x')``
        factor (captum's "local" attribution; completeness does not apply).
    return_convergence_delta : bool
        Also return ``delta = sum(attr) - (F(x) - mean_k F(x'_k))`` per example.
    jit_compile : bool
        Compile the whole method, path loop included, with XLA.
    layer : keras layer, layer name or callable(model) -> layer, optional
        Attribute to this layer's output instead of the inputs (e.g. the ``Embedding`` of a text
        model, whose integer inputs have no gradient). ``baseline`` then lives in the layer's output
        space (default zeros; ``tpa.layer_activations(model, layer, pad_ids)`` gives padding
        embeddings) and the attributions have the layer output's shape.
    seed : int, optional
        Seed of a random ``tpa.baselines`` recipe's draws (e.g. ``tpa.baselines.uniform()``); ``None``
        keeps the recipe's own seed. Same seed, same result. Without a random recipe IG draws nothing.
    method : str, optional
        Deprecated name of ``rule`` (kept for one release; ``DeprecationWarning``).

    rtol : float
        ``n_steps="auto"`` only: relative tolerance on the per-feature change between levels and
        on the convergence delta (default 1e-3).
    max_steps : int
        ``n_steps="auto"`` only: most gradient evaluations per example and baseline (default 1023;
        levels of 3, 7, 15, ..., 1023 nodes).
    return_details : bool
        Also return a dict: ``n_steps`` (gradient evaluations per example, ``[B]``), ``delta``
        (the convergence delta ``[B]``) and, for ``n_steps="auto"``, ``converged`` (``[B]`` bool;
        False where the budget ran out), ``rounds`` and ``evaluations`` (total over the batch).
    idgi : bool or engine.accumulators.ImportantDirection
        Reduce the path with IDGI instead of the quadrature sum (``tpa.idgi`` documents it): the
        points are ``alpha_k = k / n_steps``, ``k = 0..n_steps`` (gradients at ``k < n_steps``,
        one forward pass at ``alpha = 1``), so ``method`` must be the default or ``riemann_left``;
        one baseline only.

    Returns
    -------
    attributions : tf.Tensor (float32), shaped like ``inputs`` (same structure for multi-input)
    delta : tf.Tensor ``[B]``, only with ``return_convergence_delta=True``
    details : dict, only with ``return_details=True`` (always last)

    Notes
    -----
    The whole computation, the loop over path chunks included, is one ``tf.function`` cached per
    model and static options; new inputs of the same shape and new targets reuse the trace.
    """
    rule = renamed_option(rule, method, "rule", "method", default="gausslegendre")
    check_choice(rule, "rule", RULES)
    if return_convergence_delta and not multiply_by_inputs:
        raise ValueError("return_convergence_delta needs multiply_by_inputs=True (local attributions are not complete)")
    accumulator = _acc.as_accumulator(idgi)
    if isinstance(n_steps, str):
        if n_steps != "auto":
            raise ValueError(f"n_steps must be an int or 'auto', got {n_steps!r}")
        if accumulator is not None:
            raise ValueError("n_steps='auto' refines a quadrature rule; IDGI (idgi=True) needs a fixed n_steps")
        return _adaptive.integrated_gradients_auto(
            model,
            inputs,
            target,
            baseline=baseline,
            rtol=rtol,
            max_steps=max_steps,
            internal_batch_size=internal_batch_size,
            multiply_by_inputs=multiply_by_inputs,
            return_convergence_delta=return_convergence_delta,
            return_details=return_details,
            jit_compile=jit_compile,
            layer=layer,
            seed=seed,
        )
    if accumulator is not None:
        if rule not in ("gausslegendre", "riemann_left"):
            raise ValueError(
                f"rule={rule!r}: IDGI (idgi=True) uses the points k/n_steps, k = 0..n_steps, "
                "not a quadrature rule; leave rule at its default"
            )
        if not multiply_by_inputs:
            raise ValueError("idgi=True has no local (multiply_by_inputs=False) form")
        rule = "riemann_left"
    alphas, weights = quadrature(rule, n_steps)
    problem = eng.prepare(model, inputs, target, layer=layer)
    flat_base = prepare_baselines(baseline, problem.flat_x, problem.structure, seed=seed)
    k_count = int(flat_base[0].shape[0])
    if accumulator is not None and k_count != 1:
        raise ValueError(f"baseline: IDGI (idgi=True) takes one baseline per example, got {k_count} stacked baselines")
    chunk = eng.chunk_size(n_steps * k_count, problem.batch_size, internal_batch_size)
    want_delta = bool(return_convergence_delta or return_details)
    key = (
        "integrated_gradients",
        rule,
        int(n_steps),
        chunk,
        k_count,
        bool(multiply_by_inputs),
        want_delta,
        problem.batch_size,
        _acc.cache_token(accumulator),
    )

    def builder():
        def fn(flat_x, indices, flat_base):
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)
            if accumulator is not None:
                state = straight_path_sum(
                    problem, flat_x, flat_base, indices, alphas, weights, chunk, accumulator=accumulator
                )
                attr, _ = accumulator.finish(state, eng.scores_at_x(problem, flat_x, indices, out_x))
            else:
                attr = straight_path_sum(
                    problem, flat_x, flat_base, indices, alphas, weights, chunk, multiply_by_inputs
                )
            if want_delta:
                return attr, completeness_delta(problem, flat_x, flat_base, indices, attr, out_x)
            return attr, tf.zeros((problem.batch_size,), tf.float32)

        return fn

    def finish(result):
        attr, delta = result
        attr = problem.pack(attr)
        out = [attr] + ([delta] if return_convergence_delta else [])
        if return_details:
            out.append({"n_steps": np.full((problem.batch_size,), int(n_steps) * k_count), "delta": delta})
        return out[0] if len(out) == 1 else tuple(out)

    return eng.Plan(problem, key, builder, (flat_base,), jit_compile, finish)


SPEC = MethodSpec(
    name="integrated_gradients",
    function=integrated_gradients,
    aliases=("ig",),
    summary=(
        "straight path from a baseline; quadrature `rule=` `gausslegendre` (default, 64 steps), "
        "`riemann_left/right/middle/trapezoid` (weights sum to 1), `pair` (PAIR parity); any baseline, "
        'several averaged; `n_steps="auto"` refines per example until the attributions (per feature) and the delta settle within `rtol`'
    ),
    paper="M. Sundararajan, A. Taly, Q. Yan, Axiomatic Attribution for Deep Networks, ICML 2017",
    completeness="F(x) − mean_k F(x'_k)",
    details=True,
    per_example_options={"baseline": tile_baseline},
    baseline_option="baseline",
    test_options={"n_steps": 8},
)
