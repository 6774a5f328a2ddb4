"""Infidelity and max-sensitivity (Yeh et al., NeurIPS 2019), with captum's estimators.

**Infidelity** of an explanation ``Phi`` at ``x`` under random perturbations ``I``:

.. math:: INFD = E_I[(I^T \\Phi - (f(x) - f(x - I)))^2]

estimated over ``n_perturb_samples`` draws: ``a_k = sum(Phi * I_k)``, ``b_k = f(x) - f(x~_k)``,
``INFD = mean_k (a_k - b_k)^2``; with ``normalize=True`` the explanation is first rescaled by the
least-squares ``beta = sum a b / sum a^2`` (0 when ``sum a^2 = 0``) and the value is
``(beta^2 sum a^2 - 2 beta sum a b + sum b^2) / n`` (the authors' code always does this; captum's
default does not).

Perturbations (``x~`` = the perturbed input):

* ``"noisy_baseline"`` (default, the authors' perturbation for local explanations):
  ``x~ = baseline + noise_scale * N(0, 1)``, clipped to ``clip`` when given; with ``baseline=0``,
  ``noise_scale=0.2``, ``clip=(0, 1)`` it is the authors' MNIST setting;
* ``"gaussian"``: ``x~ = x - noise_scale * N(0, 1)``, clipped when ``clip`` is given;
* an array ``[n, B, *S]`` of perturbed inputs ``x~``, or a pair ``(I, x~)`` of such arrays used as
  given (captum's ``perturb_func`` returning ``(perturbation, perturbed input)``).

For the named perturbations and a plain array, ``I`` follows captum's
``infidelity_perturb_func_decorator``: ``I = x - x~``, or with ``multiply_by_inputs=True`` (global
attributions such as IG, whose ``Phi`` already carries ``x - x'``) ``I = (x - x~) / (x - x')``, where
``x'`` is ``baseline`` and a zero denominator is replaced by 1 (captum's ``safe_div``).

**Max-sensitivity** of an explainer: ``max_k ||Phi(x + d_k) - Phi(x)||_F / ||Phi(x)||_F`` over ``d_k``
uniform in the L-infinity ball of radius ``perturb_radius`` (a zero clean norm is replaced by 1),
captum's ``sensitivity_max`` (r = 0.02, 10 samples; the authors use r = 0.2 and 50 samples, Quantus
r = 0.2, 200 samples and drops samples whose prediction changes, ``exclude_changed_predictions``).
The explanation is recomputed for every perturbed input, all ``B n`` copies as one batch.

Differences from captum, on purpose: draws are stateless (``(seed, sample)``: the same seed gives
the same numbers whatever ``batch_size``); the target is resolved once on the clean inputs and the
perturbed copies explain the same class; ``f`` is the metric's ``score`` (default the raw
explained output, the scalar the attribution methods explain: a logit for a logits model).

References: C.-K. Yeh, C.-Y. Hsieh, A. S. Suggala, D. I. Inouye, P. Ravikumar, "On the (In)fidelity
and Sensitivity of Explanations", NeurIPS 2019, arXiv 1901.09392; captum ``captum.metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..engine import gradients as eng
from ..engine import targets as _targets
from ..engine.shapes import check_positive_int
from . import _common as C

__all__ = ["InfidelityResult", "SensitivityResult", "infidelity", "sensitivity_max"]

PERTURBATIONS = ("noisy_baseline", "gaussian")


@dataclass
class InfidelityResult:
    """``infidelity [B]``; ``beta [B]`` (the least-squares scale, also when ``normalize=False``);
    ``mean_drop [B]`` (mean ``f(x) - f(x~)``); ``target``; ``score``. Dict-style access works too."""

    infidelity: np.ndarray
    beta: np.ndarray
    mean_drop: np.ndarray
    target: np.ndarray | None
    score: str

    def __getitem__(self, key):
        return getattr(self, key)


def _attributions_like(attributions, shape, data_format, model=None):
    a = np.asarray(attributions.numpy() if hasattr(attributions, "numpy") else attributions, np.float64)
    if tuple(a.shape) == tuple(shape):
        out = a
    else:
        layout = C.resolve_layout(shape, "pixels" if len(shape) in (3, 4) else None, data_format, model=model)
        m = layout.unit_map(a)  # checks the shape
        out = np.asarray(layout.expand(tf.constant(m), 0)) * np.ones(shape)
    if not np.all(np.isfinite(out)):
        raise ValueError("attributions contains NaN or infinite values")
    return out


def infidelity(
    model,
    inputs,
    attributions,
    target=None,
    *,
    perturbation="noisy_baseline",
    baseline=0.0,
    noise_scale: float = 0.2,
    clip=None,
    n_perturb_samples: int = 10,
    normalize: bool = False,
    multiply_by_inputs: bool = True,
    score="output",
    seed=None,
    batch_size=None,
    data_format=None,
) -> InfidelityResult:
    """Infidelity per example (lower is better); see the module doc for the estimator.

    Parameters
    ----------
    model, inputs, target
        As for the attribution methods (``target=None``: the class predicted on ``inputs``).
    attributions : array shaped like ``inputs`` (or ``[B, H, W]`` maps for images, spread over
        the channels)
    perturbation : {"noisy_baseline", "gaussian"}, array ``[n, B, *S]`` or pair of arrays
    baseline : scalar or array broadcastable to ``inputs``: the noisy baseline's centre and the
        ``x'`` of ``multiply_by_inputs``
    noise_scale : float, the standard deviation of the noise (0.2, the authors')
    clip : (low, high), optional, applied to the named perturbations' ``x~``
    n_perturb_samples : int (10, captum's default; the authors use 10 000)
    normalize : bool, rescale by the least-squares ``beta`` first (captum ``normalize``)
    multiply_by_inputs : bool, captum's decorator semantic (True: global attributions such as IG)
    score : the shared scoring rule (:mod:`tf_pathattr.metrics._scoring`); default ``"output"``
    seed : int (None = 0), sample ``k`` draws with ``seed=[seed, k]``
    batch_size : most model rows per call (default 256)
    """
    C.check_score_name(score)
    problem = C.prepare_single(model, inputs, target)
    x = problem.flat_x[0]
    shape = tuple(x.shape)
    batch = problem.batch_size
    scoring = C.resolve_scoring(problem, score, default="output")
    attr = tf.constant(_attributions_like(attributions, shape, data_format, model), tf.float32)
    base = np.asarray(baseline, np.float32)
    try:
        base = np.broadcast_to(base, shape).astype(np.float32)
    except ValueError:
        raise ValueError(f"baseline must broadcast to the inputs' shape {shape}, got shape {base.shape}") from None
    base_t = tf.constant(base)
    seed = eng.as_numpy_seed(seed)
    given = None
    if isinstance(perturbation, str):
        if perturbation not in PERTURBATIONS:
            raise ValueError(
                f"perturbation must be one of {list(PERTURBATIONS)}, an array [n, B, *S] of perturbed "
                f"inputs or a pair (I, perturbed inputs), got {perturbation!r}"
            )
        n = check_positive_int(n_perturb_samples, "n_perturb_samples")
        mode = perturbation
    else:
        pair = isinstance(perturbation, (tuple, list))
        arrays = [np.asarray(p, np.float32) for p in (perturbation if pair else (perturbation,))]
        if pair and len(arrays) != 2:
            raise ValueError("perturbation: a pair (I, perturbed inputs) of arrays [n, B, *S] is expected")
        for arr in arrays:
            if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != shape:
                raise ValueError(f"perturbation arrays must have shape [n, *{shape}], got {arr.shape}")
        n = arrays[0].shape[0]
        mode = "pair" if pair else "array"
        given = tuple(tf.constant(a) for a in arrays)
    if clip is not None:
        lo, hi = (float(v) for v in clip)
    noise = float(noise_scale)

    def draw(xx, start, size):
        """(I, x~) for samples start .. start + size, each ``[size, B, *S]``."""
        if mode in ("array", "pair"):
            xt = tf.slice(given[-1], [start] + [0] * len(shape), [size] + list(shape))
            if mode == "pair":
                return tf.slice(given[0], [start] + [0] * len(shape), [size] + list(shape)), xt
        else:
            eps = tf.stack(
                [
                    tf.random.stateless_normal(shape, seed=tf.stack([tf.constant(seed, tf.int32), start + j]))
                    for j in range(size)
                ]
            )
            xt = base_t[None] + noise * eps if mode == "noisy_baseline" else xx[None] - noise * eps
            if clip is not None:
                xt = tf.clip_by_value(xt, lo, hi)
        diff = xx[None] - xt
        if multiply_by_inputs:
            den = xx - base_t
            diff = diff / tf.where(den == 0, tf.ones_like(den), den)[None]
        return diff, xt

    chunk = eng.chunk_size(n, batch, batch_size)
    axes = list(range(2, len(shape) + 1))

    def builder():
        def fn(flat_x, indices, attr_t, *extra):
            xx = flat_x[0]
            indices, out_x = eng.resolve_indices(problem, flat_x, indices)
            if out_x is None:
                out_x = problem.forward(list(flat_x))
            classes = scoring.classes(out_x, indices) if scoring.needs_classes else indices
            fx = tf.cast(scoring(problem, out_x, classes), tf.float64)

            def body(start, size, acc):
                i_k, xt = draw(xx, start, size)
                fxt = scoring(problem, problem.forward([eng.rows(xt, size, batch)]), classes)
                b = fx[None] - tf.cast(tf.reshape(fxt, [size, batch]), tf.float64)
                a = tf.reduce_sum(tf.cast(i_k, tf.float64) * tf.cast(attr_t, tf.float64)[None], axis=axes)
                sums = tf.stack(
                    [
                        tf.reduce_sum((a - b) ** 2, 0),
                        tf.reduce_sum(a * a, 0),
                        tf.reduce_sum(a * b, 0),
                        tf.reduce_sum(b * b, 0),
                        tf.reduce_sum(b, 0),
                    ]
                )
                return acc + sums

            acc = eng.chunked_loop(n, chunk, body, tf.zeros((5, batch), tf.float64))
            return acc, indices

        return fn

    key = (
        "infidelity",
        mode,
        n,
        chunk,
        scoring.key,
        bool(multiply_by_inputs),
        noise,
        clip is not None and (lo, hi),
        seed if mode not in ("array", "pair") else None,
    )
    acc, indices = eng.run(problem, key, builder, (attr,) + (given or ()))
    s_d, s_aa, s_ab, s_bb, s_b = acc.numpy()
    beta = np.where(s_aa > 0, s_ab / np.where(s_aa > 0, s_aa, 1.0), 0.0)
    value = (beta**2 * s_aa - 2 * beta * s_ab + s_bb) / n if normalize else s_d / n
    return InfidelityResult(
        infidelity=value, beta=beta, mean_drop=s_b / n, target=C.result_target(problem, indices), score=scoring.score
    )


@dataclass
class SensitivityResult:
    """``sensitivity [B]`` (the max over samples), ``ratios [B, n]`` (NaN where excluded),
    ``target``. Dict-style access works too."""

    sensitivity: np.ndarray
    ratios: np.ndarray
    target: np.ndarray | None

    def __getitem__(self, key):
        return getattr(self, key)


def sensitivity_max(
    explainer,
    model,
    inputs,
    target=None,
    *,
    perturb_radius: float = 0.02,
    n_perturb_samples: int = 10,
    norm: str = "fro",
    clip=None,
    exclude_changed_predictions: bool = False,
    perturbations=None,
    seed=None,
    batch_size=None,
    **method_options,
) -> SensitivityResult:
    """Max-sensitivity per example (lower is better); see the module doc.

    Parameters
    ----------
    explainer : str or callable
        A method name or alias from ``tpa.METHODS`` (its options go in ``method_options``), or a
        callable ``(model, inputs, target, **method_options) -> attributions``.
    model, inputs, target
        ``target=None`` is resolved once, on the clean inputs, and every perturbed copy explains
        that class; a callable target is passed on unchanged (it must work row by row).
    perturb_radius : float, the L-infinity radius (captum's 0.02)
    n_perturb_samples : int (10)
    norm : {"fro", "inf"}, the norm of the flattened difference (``"fro"`` = L2, captum's)
    clip : (low, high), optional, applied to ``x + d``
    exclude_changed_predictions : bool
        Quantus: a sample whose top-1 class differs from the explained class is left out (NaN).
    perturbations : array ``[n, B, *S]``, optional
        Explicit ``d_k`` (tests, parity with captum); replaces the uniform draws.
    seed : int (None = 0), sample ``k`` draws with ``seed=[seed, k]``
    batch_size : most rows per explainer call (default: all ``B n`` copies at once)
    """
    from ..methods import registry, resolve_method

    fn = resolve_method(explainer)
    spec = registry.spec_of(explainer)
    if spec is not None and spec.output == "split":
        raise ValueError(
            f"explainer: {spec.name} returns two maps per input; sensitivity_max compares one "
            "explanation per input (wrap it in a callable that returns one map)"
        )
    if norm not in ("fro", "inf"):
        raise ValueError(f"norm must be 'fro' or 'inf', got {norm!r}")
    problem = C.prepare_single(model, inputs, target)
    x = problem.flat_x[0]
    shape = tuple(x.shape)
    batch = problem.batch_size
    seed = eng.as_numpy_seed(seed)
    if perturbations is not None:
        deltas = np.asarray(perturbations, np.float32)
        if deltas.ndim != len(shape) + 1 or tuple(deltas.shape[1:]) != shape:
            raise ValueError(f"perturbations must have shape [n, *{shape}], got {deltas.shape}")
        n = deltas.shape[0]
    else:
        n = check_positive_int(n_perturb_samples, "n_perturb_samples")
        r = float(perturb_radius)
        deltas = np.stack(
            [tf.random.stateless_uniform(shape, seed=[seed, k], minval=-r, maxval=r).numpy() for k in range(n)]
        )
    callable_target = problem.target.kind == _targets.CALLABLE
    if callable_target:
        classes, tgt_rows = None, target
    else:
        classes = _clean_classes(problem)
        tgt_rows = np.tile(classes, n)
    y = (x.numpy()[None] + deltas).reshape((n * batch,) + shape[1:])
    if clip is not None:
        y = np.clip(y, float(clip[0]), float(clip[1]))
    clean = np.asarray(fn(model, x.numpy(), target if callable_target else classes, **method_options), np.float64)
    rows = n * batch if batch_size is None else check_positive_int(batch_size, "batch_size")
    parts = []
    for s in range(0, n * batch, rows):
        t = tgt_rows if callable_target else tgt_rows[s : s + rows]
        parts.append(np.asarray(fn(model, y[s : s + rows], t, **method_options), np.float64))
    pert = np.concatenate(parts).reshape((n, batch) + clean.shape[1:])
    diff = (pert - clean[None]).reshape(n, batch, -1)
    ref = clean.reshape(batch, -1)
    if norm == "fro":
        num, den = np.linalg.norm(diff, axis=-1), np.linalg.norm(ref, axis=-1)
    else:
        num, den = np.abs(diff).max(-1), np.abs(ref).max(-1)
    ratios = (num / np.where(den == 0, 1.0, den)[None]).T  # [B, n]
    if exclude_changed_predictions:
        if callable_target:
            raise ValueError("exclude_changed_predictions needs a class target; a callable target names none")
        scoring = C.resolve_scoring(problem, "accuracy")
        want = classes
        if scoring.single:  # one unit: the decision on the clean input
            want = scoring.decision(problem.forward(list(problem.flat_x))).numpy()
        out = problem.forward([tf.constant(y, tf.float32)])
        pred = scoring.decision(out).numpy().reshape(n, batch).T  # [B, n]
        ratios = np.where(pred == want[:, None], ratios, np.nan)
    with np.errstate(all="ignore"):
        sens = np.where(
            np.all(np.isnan(ratios), axis=1), np.nan, np.nanmax(np.where(np.isnan(ratios), -np.inf, ratios), 1)
        )
    return SensitivityResult(sensitivity=sens, ratios=ratios, target=None if callable_target else classes)


def _single(out):
    if isinstance(out, dict) and len(out) == 1:
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)) and len(out) == 1:
        out = out[0]
    return tf.convert_to_tensor(out)


def _clean_classes(problem):
    """The explained class per example (predicted on the clean inputs for ``target=None``)."""
    if problem.target.kind == _targets.PREDICTED:
        out = _single(problem.forward(list(problem.flat_x)))
        if problem.target.single_unit:
            return np.zeros(problem.batch_size, np.int64)
        return np.asarray(tf.argmax(out, axis=-1)).astype(np.int64)
    return problem.target.indices.numpy().astype(np.int64)
