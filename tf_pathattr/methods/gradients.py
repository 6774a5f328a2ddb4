"""Plain input gradients (saliency) and gradient x input, the floor every path method builds on.

``gradient(x)_i = dF/dx_i`` at the explicand; ``multiply_by_inputs=True`` gives gradient x input.
Wrapped in :func:`tf_pathattr.noise_tunnel` this is the original SmoothGrad / VarGrad.

Reference: K. Simonyan, A. Vedaldi, A. Zisserman, "Deep Inside Convolutional Networks", 2014.
"""

from __future__ import annotations

from ..engine import gradients as eng
from ..engine.shapes import check_optional_positive_int
from .registry import MethodSpec

__all__ = ["gradients"]


@eng.planned
def gradients(
    model,
    inputs,
    target=None,
    *,
    multiply_by_inputs: bool = False,
    internal_batch_size=None,
    jit_compile: bool = False,
    layer=None,
):
    """Gradient of the explained scalar with respect to the inputs (optionally times the inputs).

    Parameters
    ----------
    model, inputs, target
        As for :func:`tf_pathattr.integrated_gradients`.
    multiply_by_inputs : bool
        Return gradient x input.
    internal_batch_size : int, optional
        Validated only: one forward and one backward pass over the ``B`` examples.
    jit_compile : bool
        Compile with XLA.
    layer : keras layer, layer name or callable(model) -> layer, optional
        Take the gradient with respect to that layer's output (e.g. an ``Embedding``).
    """
    check_optional_positive_int(internal_batch_size, "internal_batch_size")
    problem = eng.prepare(model, inputs, target, layer=layer)
    key = ("gradients", bool(multiply_by_inputs), problem.batch_size)

    def builder():
        def fn(flat_x, indices):
            indices, _ = eng.resolve_indices(problem, flat_x, indices)
            _, grads = eng.score_and_gradients(problem, flat_x, indices)
            return [g * x for g, x in zip(grads, flat_x)] if multiply_by_inputs else list(grads)

        return fn

    return eng.Plan(problem, key, builder, (), jit_compile, problem.pack)


SPEC = MethodSpec(
    name="gradients",
    function=gradients,
    aliases=("saliency", "vanilla_gradients"),
    summary="input gradients (× input with `multiply_by_inputs=True`)",
    paper="K. Simonyan, A. Vedaldi, A. Zisserman, Deep Inside Convolutional Networks, ICLR workshop 2014",
)
