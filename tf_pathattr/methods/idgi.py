"""IDGI, Important Direction Gradient Integration, over IG, Guided IG or Blur IG.

A path method visits points ``z_0, ..., z_N`` and sums ``g_j * (z_{j+1} - z_j)``. IDGI keeps, at
each step, only the part of the step along the gradient ``g_j``, with the length that reproduces
the observed output change ``d_j = F(z_{j+1}) - F(z_j)``:

.. math::

    \\mathrm{IDGI}_i(x) = \\sum_{j=0}^{N-1} d_j \\, \\frac{g_{j,i}^2}{\\lVert g_j \\rVert^2}

(the norm runs over every attributed element of one example). By telescoping,
``sum_i IDGI_i = F(z_N) - F(z_0)`` exactly for any path and any ``N``, as long as no step has a
zero gradient (such a step is skipped and its ``d_j`` is what ``return_convergence_delta``
reports: ``delta = -lost``). On a linear model ``F = w . z + b`` the result is
``(F(x) - F(x')) w^2 / ||w||^2`` for every path; it equals IG's ``w * (x - x')`` only when
``x - x'`` is parallel to ``w``. IDGI is not invariant to rescaling a feature and credits
features that do not move (both follow from the per-step term ``d_j g_j^2 / ||g_j||^2``).

The path, its points and their gradients are the wrapped method's own (one extra forward pass at
the end point): ``integrated_gradients`` uses ``alpha_k = k / n_steps`` (``k = 0..n_steps``),
``guided_integrated_gradients`` its guided states from the baseline to ``x`` and
``blur_integrated_gradients`` the blurred images ``blur(x, sigma_i)`` from ``x`` to
``blur(x, sigma_end)`` (negated, so the target is ``F(x) - F(blur(x, sigma_end))``). Unlike the
TMLR reproduction's released wrappers (arXiv 2409.09043) the last segment of the Guided IG and Blur IG paths is
included, so completeness holds against the methods' own targets.

Reference: R. Yang, B. Wang, M. Bilgic, "IDGI: A Framework to Eliminate Explanation Noise from
Integrated Gradients", CVPR 2023, arXiv 2303.14242; released numpy function yangruo1226/IDGI.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import gradients as eng
from ..engine.accumulators import ZERO_GRADIENT, ImportantDirection
from ..engine.shapes import check_choice
from . import registry
from .registry import MethodSpec, tile_baseline

__all__ = ["important_direction_gradient_integration", "idgi", "BASE_METHODS"]

#: The path methods IDGI can reduce (canonical names; aliases are accepted).
BASE_METHODS = ("integrated_gradients", "guided_integrated_gradients", "blur_integrated_gradients")


@overload
def important_direction_gradient_integration(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    base_method: Any = ...,
    zero_gradient: str = ...,
    **options: Any,
) -> Attributions: ...


@overload
def important_direction_gradient_integration(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    base_method: Any = ...,
    zero_gradient: str = ...,
    **options: Any,
) -> tuple[Attributions, tf.Tensor]: ...


@overload
def important_direction_gradient_integration(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: bool = ...,
    base_method: Any = ...,
    zero_gradient: str = ...,
    **options: Any,
) -> Any: ...


@eng.planned
def important_direction_gradient_integration(
    model,
    inputs,
    target=None,
    *,
    base_method="integrated_gradients",
    zero_gradient: str = "skip",
    return_convergence_delta: bool = False,
    **options,
):
    """IDGI over the path of ``base_method`` (Yang, Wang, Bilgic, CVPR 2023).

    Parameters
    ----------
    model, inputs, target
        As for every method (``target=None``: the predicted class).
    base_method : str
        ``"integrated_gradients"`` (``"ig"``), ``"guided_integrated_gradients"`` (``"guided_ig"``) or
        ``"blur_integrated_gradients"`` (``"blur_ig"``): whose path is reduced.
    zero_gradient : {"skip", "nan"}
        A step whose gradient is exactly zero adds nothing (its output change shows up in the
        convergence delta), or makes the whole map NaN as the released code does.
    **options
        The base method's options (``n_steps``, ``baseline``, ``max_dist``, ``max_sigma``,
        ``internal_batch_size``, ``return_convergence_delta``, ``jit_compile``, ...), with its
        defaults. IG's ``method`` (quadrature rule) does not apply; one baseline per example.

    Returns
    -------
    attributions : tf.Tensor (float32) shaped like ``inputs``
    delta : tf.Tensor ``[B]``, with ``return_convergence_delta=True``: ``sum(attr)`` minus the base
        method's completeness target; ``-`` the output change lost on zero-gradient steps (0 up to
        float rounding when there is none).

    Notes
    -----
    Cost: the base method's gradient evaluations plus one forward pass. The reduction runs inside
    the base method's compiled loop (:class:`tf_pathattr.engine.accumulators.ImportantDirection`),
    keeping one extra gradient-sized tensor per example.
    """
    check_choice(zero_gradient, "zero_gradient", ZERO_GRADIENT)
    name = registry.canonical(base_method) if isinstance(base_method, str) else None
    if name not in BASE_METHODS:
        raise ValueError(
            f"base_method: IDGI reduces the path of one of {list(BASE_METHODS)} (or their aliases "
            f"ig, guided_ig, blur_ig), got {base_method!r}"
        )
    spec = registry.get(name)
    if options.get("layer") is not None:
        registry.require(spec, "layer", f"layer= with base_method={name!r}")
    if "idgi" in options:
        raise TypeError(
            "important_direction_gradient_integration: idgi= is set by this function; "
            "call the base method with idgi=True instead"
        )
    return spec.function.plan(
        model,
        inputs,
        target,
        idgi=ImportantDirection(zero_gradient),
        return_convergence_delta=return_convergence_delta,
        **options,
    )


idgi = important_direction_gradient_integration


SPEC = MethodSpec(
    name="important_direction_gradient_integration",
    function=important_direction_gradient_integration,
    aliases=("idgi",),
    summary="IDGI: each path step keeps only the gradient direction, scaled to the output change "
    "(`base_method=` IG, Guided IG or Blur IG)",
    paper="R. Yang, B. Wang, M. Bilgic, IDGI: A Framework to Eliminate Explanation Noise from Integrated "
    "Gradients, CVPR 2023",
    completeness="the base method's target, exactly (telescoping; zero-gradient steps excepted)",
    layer=True,
    wraps_method=True,
    per_example_options={"baseline": tile_baseline},
    # the default base method's (IG's) option; tpa.text asks the chosen base method (wrapped_baseline_option)
    baseline_option="baseline",
    test_options={"n_steps": 8},
)
