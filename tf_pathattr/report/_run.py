"""Run the methods, the metrics and the sanity check for :func:`tf_pathattr.report.report`.

Nothing here computes a metric itself: completeness comes from each method's own convergence
delta (:func:`tf_pathattr.callbacks.explain_with_gap`), faithfulness from
:func:`tf_pathattr.metrics.deletion`, :func:`~tf_pathattr.metrics.insertion` and
:func:`~tf_pathattr.metrics.pic`, the sanity check from
:func:`tf_pathattr.metrics.model_randomization`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

KINDS = ("image", "tabular", "text")


@dataclass
class MethodRun:
    """One method's maps and figures on the report's examples (``None``: not available, see ``notes``)."""

    name: str
    short: str
    maps: np.ndarray | None = None  # [B, ...] attributions; text: per-token scores [B, T]
    mask: np.ndarray | None = None  # text: attributed positions [B, T]
    seconds_per_example: float = float("nan")
    gap: np.ndarray | None = None  # [B] relative completeness gap |delta| / |F(x) - F(start)|
    deletion: np.ndarray | None = None  # [B] AUC (lower is better)
    insertion: np.ndarray | None = None  # [B] AUC (higher is better)
    pic: np.ndarray | None = None  # [B] SIC AUC (higher is better; NaN for skipped images)
    sanity: object = None  # RandomizationResult
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class ReportData:
    """Everything the page shows."""

    kind: str
    x: np.ndarray
    display: np.ndarray | None
    classes: np.ndarray | None
    probabilities: np.ndarray | None
    target: np.ndarray | None
    class_names: dict[int, str]
    runs: list[MethodRun]
    skipped: dict[str, str]
    model_name: str
    tokens: list | None = None
    target_text: str = "the predicted class"
    title: str = "tf_pathattr report"


def first_line(exc) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def input_kind(x, layer) -> str:
    """``"text"`` with ``layer=``, ``"image"`` for ``[B, H, W, C]`` (C in 1, 3, 4), else ``"tabular"``."""
    if layer is not None:
        return "text"
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4):
        return "image"
    if x.ndim == 2:
        return "tabular"
    raise ValueError(
        f"inputs: expected images [B, H, W, C], tabular rows [B, d] or token ids with layer=, got shape {x.shape}"
    )


def choose_methods(methods, kind: str):
    """``(names to run, {name: why not})`` from the registry (every method that applies for ``None``)."""
    from ..methods import registry

    if methods is not None:
        names = [methods] if isinstance(methods, str) else list(methods)
        if not names:
            raise ValueError("methods: expected at least one method name, got an empty list")
        out = [registry.canonical(n) for n in names]
        for name in out:
            spec = registry.get(name)
            if kind != "image" and spec.image_only is not False:
                reason = spec.image_only if isinstance(spec.image_only, str) else "needs image inputs [B, H, W, C]"
                raise ValueError(f"methods: {name}: {reason}")
            if kind == "text":
                registry.require(spec, "layer", f"methods={name!r} with layer=")
        return list(dict.fromkeys(out)), {}
    chosen, skipped = [], {}
    for spec in registry.specs():
        if spec.output == "split":
            skipped[spec.name] = (
                "returns two maps (left and right parts); ask for it with tpa.split_integrated_gradients"
            )
        elif spec.image_only is not False and kind != "image":
            skipped[spec.name] = spec.image_only if isinstance(spec.image_only, str) else "needs image inputs"
        elif kind == "text" and spec.layer is not True:
            skipped[spec.name] = spec.layer if isinstance(spec.layer, str) else "does not take layer="
        else:
            chosen.append(spec.name)
    return chosen, skipped


def method_options(name: str, x, user_options, baseline, fast: bool, kind: str = "image") -> dict:
    """Options for one method: data it needs (background, references) from the explained inputs,
    the registry's small options with ``fast=True``, ``baseline=``, then the user's options. Text
    models get no data options from the token ids (``tpa.text`` builds them in embedding space)."""
    from ..methods import registry

    spec = registry.get(name)
    opts = {}
    for key, value in spec.test_options.items():
        if kind == "text":
            if fast and not callable(value):
                opts[key] = value
            continue
        if key in ("background", "references") and len(x) >= 2:
            opts[key] = np.asarray(x)  # the explained examples stand in for the data distribution
        elif fast or callable(value):
            opts[key] = value(np.asarray(x)) if callable(value) else value
    if baseline is not None and spec.baseline_option == "baseline":
        opts["baseline"] = baseline
    user = dict((user_options or {}).get(name, {}))
    for alias in registry.aliases_of(name):
        user.update((user_options or {}).get(alias, {}))
    opts.update(user)
    return opts


def predictions(model, x):
    """``(classes [B], probabilities [B])`` of a classifier ``[B, C]`` (softmax of logits), else ``(None, None)``."""
    from ..metrics import _scoring

    try:
        out = model(x, training=False) if hasattr(model, "layers") else model(x)
    except Exception:  # e.g. a keras-hub model fed strings through a preprocessor: no prediction column
        return None, None
    if isinstance(out, (list, tuple, dict)):
        return None, None
    out = np.asarray(out, np.float64)
    if out.ndim != 2 or out.shape[1] < 2:
        return None, None
    activation = _scoring.output_activation(model) if hasattr(model, "layers") else None
    probs = out
    if activation != "softmax":
        z = np.exp(out - out.max(axis=1, keepdims=True))
        probs = z / z.sum(axis=1, keepdims=True)
    classes = probs.argmax(axis=1)
    return classes, probs[np.arange(len(classes)), classes]


def relative_gap(delta, attr_sum) -> np.ndarray:
    """``|delta| / |F(x) - F(start)|`` with ``F(x) - F(start) = sum(attr) - delta`` (the delta's own definition)."""
    delta = np.asarray(delta, np.float64)
    if delta.ndim > 1:  # per-token deltas (SIG): their mean absolute value
        return np.abs(delta).reshape(delta.shape[0], -1).mean(axis=1)
    change = np.abs(np.asarray(attr_sum, np.float64) - delta)
    return np.abs(delta) / np.maximum(change, 1e-12)


def explain(name, model, x, target, opts, kind, text_args) -> MethodRun:
    """Run one method (timed) and keep its maps and completeness gap."""
    from .. import text as _text
    from ..methods import registry, resolve_method
    from ..methods.calling import explain_with_gap, first_array

    run = MethodRun(name=name, short=registry.short_name(name))
    t0 = time.perf_counter()
    if kind == "text":
        want = registry.get(name).completeness is not None
        res = _text.token_attributions(
            model, x, target, method=name, return_convergence_delta=want, **text_args, **opts
        )
        run.seconds_per_example = (time.perf_counter() - t0) / len(res.scores)
        run.maps, run.mask = np.asarray(res.scores), np.asarray(res.mask)
        if res.delta is not None:
            run.gap = relative_gap(res.delta, res.scores.sum(axis=1))
        return run
    attr, delta = explain_with_gap(resolve_method(name), model, x, target, opts)
    run.seconds_per_example = (time.perf_counter() - t0) / len(x)
    run.maps = first_array(attr).astype(np.float32)
    if delta is not None:
        run.gap = relative_gap(delta, run.maps.reshape(len(x), -1).sum(axis=1))
    else:
        run.notes.append("no completeness target")
    return run


def faithfulness(run: MethodRun, model, x, target, kind: str, seed: int) -> None:
    """Deletion / insertion AUC (and SIC for images in [0, 1]) of ``run.maps``, by the library's metrics."""
    from .. import metrics

    if kind == "text":  # the page says once that token maps get completeness and time only
        return
    # tabular rows: insertion starts from the same constant substrate (0) as deletion (no blur there)
    insertion_args = {} if kind == "image" else {"substrate": "constant"}
    for attr_name, fn, kwargs in (("deletion", metrics.deletion, {}), ("insertion", metrics.insertion, insertion_args)):
        try:
            res = fn(model, x, run.maps, target, **kwargs)
            setattr(run, attr_name, np.where(res.valid, res.auc, np.nan))
        except Exception as exc:  # a metric that cannot read this model: say why, go on
            run.notes.append(f"{attr_name}: {first_line(exc)}")
    if kind == "image" and float(np.min(x)) >= 0.0 and float(np.max(x)) <= 1.0:
        try:
            res = metrics.pic(model, x, run.maps, target, kind="sic", seed=seed)
            run.pic = np.where(res.valid, res.auc["sic"], np.nan)
        except Exception as exc:
            run.notes.append(f"PIC: {first_line(exc)}")


def sanity(run: MethodRun, model, x, target, opts, kind: str, n_examples: int, seed: int) -> None:
    """The cascading randomization test on the first ``n_examples`` examples."""
    from ..metrics import model_randomization

    if kind == "text":
        return
    similarity = ("spearman_abs", "spearman", "ssim") if kind == "image" else ("spearman_abs", "spearman")
    try:
        sub_target = target[:n_examples] if isinstance(target, np.ndarray) else target
        sub_opts = {k: (v[:n_examples] if _per_example(v, len(x)) else v) for k, v in opts.items()}
        run.sanity = model_randomization(
            model, x[:n_examples], sub_target, method=run.name, similarity=similarity, seed=seed, options=sub_opts
        )
    except Exception as exc:
        run.notes.append(f"sanity check: {first_line(exc)}")


def _per_example(value, batch: int) -> bool:
    return isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == batch and batch > 1
