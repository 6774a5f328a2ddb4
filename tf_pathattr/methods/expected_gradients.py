"""Expected Gradients: Integrated Gradients averaged over baselines drawn from data.

.. math::

    EG_i(x) = E_{x' \\sim D,\\ \\alpha \\sim U(0,1)}
              \\big[(x_i - x'_i)\\, \\partial_i F(x' + \\alpha (x - x'))\\big]
            \\approx \\frac{1}{K} \\sum_k (x_i - x'_{k,i})\\, \\partial_i F(x'_k + \\alpha_k (x - x'_k))

Each Monte-Carlo sample draws one background example (with replacement) and one alpha, per
explicand. Completeness holds in expectation: ``sum_i EG_i = F(x) - E_D[F(x')]``; the convergence
delta compares with the mean of ``F`` over the baselines actually drawn.

Reference: G. Erion, J. Janizek, P. Sturmfels, S. Lundberg, S.-I. Lee, "Improving performance of deep
learning models with axiomatic attribution priors and expected gradients", Nature Machine
Intelligence 2021, arXiv 1906.10670.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import tensorflow as tf

from .._typing import Attributions, Inputs, Model, Target
from ..engine import gradients as eng
from ..engine.shapes import check_positive_int, prepare_inputs
from .registry import MethodSpec, tile_batch_axis

__all__ = ["expected_gradients", "draw_samples"]


def draw_samples(n_samples: int, batch_size: int, n_background: int, seed: int):
    """Stateless draws: background indices ``[n_samples, B]`` and alphas ``[n_samples, B]``.

    Every example gets the same ``n_samples`` draws (one column tiled over the batch), so an
    example's attribution does not depend on the batch it is explained in (contract: batch =
    per-example); each example's estimate is unbiased either way.
    """
    idx = tf.random.stateless_uniform([n_samples, 1], seed=[seed, 0], maxval=n_background, dtype=tf.int32)
    alpha = tf.random.stateless_uniform([n_samples, 1], seed=[seed, 1], dtype=tf.float32)
    idx, alpha = tf.tile(idx, [1, batch_size]), tf.tile(alpha, [1, batch_size])
    return idx, alpha


def _flat_background(background, structure):
    """One ``[M, *S_i]`` tensor per model input, in the inputs' order: a dict background is matched to
    the inputs by key (never by the dict's order), a list / tuple by position."""
    if structure.kind == "dict":
        if not isinstance(background, dict):
            raise ValueError(
                f"background: the inputs are a dict with keys {list(structure.keys)}, so background must "
                f"be a dict with the same keys, got a {type(background).__name__}"
            )
        missing = [k for k in structure.keys if k not in background]
        extra = [k for k in background if k not in structure.keys]
        if missing or extra:
            raise ValueError(
                f"background: missing entries for inputs {missing}, unknown keys {extra}; expected "
                f"keys {list(structure.keys)}"
            )
        background = {k: background[k] for k in structure.keys}
    flat_bg, bg_structure, n_bg = prepare_inputs(background, "background")
    if (bg_structure.kind == "single") != (structure.kind == "single") or len(flat_bg) != len(structure.keys or (0,)):
        raise ValueError("background must have the same structure as inputs (one array per model input)")
    return flat_bg, n_bg


@overload
def expected_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[False] = ...,
    background: Any = ...,
    n_samples: int = ...,
    seed: int | None = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    sample_indices: Any = ...,
    sample_alphas: Any = ...,
    layer: Any = ...,
) -> Attributions: ...


@overload
def expected_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: Literal[True],
    background: Any = ...,
    n_samples: int = ...,
    seed: int | None = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    sample_indices: Any = ...,
    sample_alphas: Any = ...,
    layer: Any = ...,
) -> tuple[Attributions, tf.Tensor]: ...


@overload
def expected_gradients(
    model: Model,
    inputs: Inputs,
    target: Target = ...,
    *,
    return_convergence_delta: bool = ...,
    background: Any = ...,
    n_samples: int = ...,
    seed: int | None = ...,
    internal_batch_size: int | None = ...,
    jit_compile: bool = ...,
    sample_indices: Any = ...,
    sample_alphas: Any = ...,
    layer: Any = ...,
) -> Any: ...


@eng.planned
def expected_gradients(
    model,
    inputs,
    target=None,
    *,
    background=None,
    n_samples: int = 100,
    seed=None,
    internal_batch_size=None,
    return_convergence_delta: bool = False,
    jit_compile: bool = False,
    sample_indices=None,
    sample_alphas=None,
    layer=None,
):
    """Expected Gradients (IG with baselines and alphas sampled from a background set).

    Parameters
    ----------
    model, inputs, target, internal_batch_size, jit_compile
        As in :func:`tf_pathattr.integrated_gradients`.
    background : array-like ``[M, *S]`` (list / dict of them for multi-input models)
        Reference samples, typically training data.
    n_samples : int
        Monte-Carlo samples per explicand (default 100), each one baseline and one alpha.
    seed : int, optional
        Seed of the stateless draws (``None`` -> 0): same seed, same result.
    return_convergence_delta : bool
        Also return ``sum(attr) - (F(x) - mean_k F(x'_k))`` over the drawn baselines.
    sample_indices, sample_alphas : array-like ``[n_samples, B]``, optional
        Inject the draws (tests, or reproducing another implementation).
    layer : optional
        Attribute to a layer's output (see :func:`tf_pathattr.integrated_gradients`); the
        background is then given in that layer's output space.

    Returns
    -------
    attributions (and delta ``[B]``)
    """
    if background is None:
        raise ValueError("background is required: an array [M, ...] of reference samples (e.g. training data)")
    n_samples = check_positive_int(n_samples, "n_samples")
    problem = eng.prepare(model, inputs, target, layer=layer)
    flat_bg, n_bg = _flat_background(background, problem.structure)
    for b, x in zip(flat_bg, problem.flat_x):
        if tuple(b.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(f"background examples have shape {tuple(b.shape[1:])}, inputs {tuple(x.shape[1:])}")
    batch = problem.batch_size
    idx, alpha = draw_samples(n_samples, batch, n_bg, eng.as_numpy_seed(seed))
    if sample_indices is not None:
        idx = tf.convert_to_tensor(np.asarray(sample_indices), tf.int32)
        if tuple(idx.shape) != (n_samples, batch):
            raise ValueError(f"sample_indices must have shape ({n_samples}, {batch}), got {tuple(idx.shape)}")
        if bool(tf.reduce_any((idx < 0) | (idx >= n_bg))):
            raise ValueError(f"sample_indices must lie in 0..{n_bg - 1}")
    if sample_alphas is not None:
        alpha = tf.convert_to_tensor(np.asarray(sample_alphas), tf.float32)
        if tuple(alpha.shape) != (n_samples, batch):
            raise ValueError(f"sample_alphas must have shape ({n_samples}, {batch}), got {tuple(alpha.shape)}")
    chunk = eng.chunk_size(n_samples, batch, internal_batch_size)
    key = ("expected_gradients", n_samples, chunk, bool(return_convergence_delta), batch, n_bg)

    def builder():
        def fn(flat_x, indices, flat_bg, idx, alpha):
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)

            def body(start, size, carry):
                acc, f_sum = carry
                ii = tf.slice(idx, [start, 0], [size, batch])
                aa = tf.slice(alpha, [start, 0], [size, batch])
                bases = [tf.gather(b, ii) for b in flat_bg]  # [size, B, *S]
                dxs = [x[None] - b for x, b in zip(flat_x, bases)]
                pts = [eng.rows(b + eng.expand_like(aa, d) * d, size, batch) for b, d in zip(bases, dxs)]
                _, grads = eng.score_and_gradients(problem, pts, indices)
                acc = [a + tf.reduce_sum(eng.unrows(g, size, batch) * d, axis=0) for a, g, d in zip(acc, grads, dxs)]
                if return_convergence_delta:
                    fb = eng.scores(problem, [eng.rows(b, size, batch) for b in bases], indices)
                    f_sum = f_sum + tf.reduce_sum(tf.reshape(fb, [size, batch]), axis=0)
                return acc, f_sum

            acc, f_sum = eng.chunked_loop(
                n_samples, chunk, body, ([tf.zeros_like(x) for x in flat_x], tf.zeros((batch,), tf.float32))
            )
            attr = [a / n_samples for a in acc]
            if not return_convergence_delta:
                return attr, tf.zeros((batch,), tf.float32)
            f_x = eng.scores_at_x(problem, flat_x, indices, out_x)
            total = tf.add_n([tf.reduce_sum(tf.reshape(a, [batch, -1]), axis=1) for a in attr])
            return attr, total - (f_x - f_sum / n_samples)

        return fn

    return eng.Plan(
        problem, key, builder, (flat_bg, idx, alpha), jit_compile, eng.packed_finish(problem, return_convergence_delta)
    )


def _test_background(x):
    """Four fixed uniform background samples shaped like the probe's examples (contract tests)."""
    return np.random.default_rng(1).uniform(0.0, 1.0, size=(4,) + tuple(x.shape[1:])).astype(np.float32)


SPEC = MethodSpec(
    name="expected_gradients",
    function=expected_gradients,
    aliases=("eg",),
    summary="baselines and path positions sampled from a background set (stateless draws)",
    paper="G. Erion, J. Janizek, P. Sturmfels, S. Lundberg, S.-I. Lee, Improving performance of deep learning "
    "models with axiomatic attribution priors and expected gradients, Nature Machine Intelligence 2021",
    completeness="F(x) − mean F(drawn baselines)",
    stochastic=True,
    per_example_options={"sample_indices": tile_batch_axis(1), "sample_alphas": tile_batch_axis(1)},
    baseline_option="background",
    test_options={"background": _test_background, "n_samples": 8, "seed": 0},
)
