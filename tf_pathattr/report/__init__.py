"""``tpa.report``: one self-contained HTML page that compares the attribution methods on a model.

The page shows, for a handful of the user's examples, the prediction and every method's map; per
method the completeness gap, deletion and insertion AUC (SIC for images), the time per example,
and the model-parameter randomization sanity check; and a one-line verdict that ranks the methods
on this model and these inputs, with its caveats. Style sheet, script and pictures are inline
(PNG data URIs, SVG): the file opens from disk, offline, and can be attached to a review.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from . import _html, _run
from ._run import MethodRun, ReportData
from ._verdict import sanity_status, verdict

__all__ = ["report", "MethodRun", "ReportData", "sanity_status", "verdict", "build"]


def _class_names(labels):
    if labels is None:
        return {}
    if isinstance(labels, dict):
        return {int(k): str(v) for k, v in labels.items()}
    if isinstance(labels, (str, bytes)):
        raise TypeError("labels: expected a sequence of class names or a dict {class index: name}, got a string")
    return {i: str(v) for i, v in enumerate(labels)}


def _target_text(target) -> str:
    if target is None:
        return "the predicted class"
    if callable(target):
        return f"the score {getattr(target, '__name__', type(target).__name__)}"
    if np.ndim(target) == 0:
        return f"class {int(target)}"
    return "the classes given (target=)"


def _progress(names, enabled: bool):
    if not enabled:
        return names
    from .._progress import progress

    return progress(names, desc="report", unit="method")


def _inputs(inputs, layer, max_examples):
    if isinstance(inputs, (list, tuple, dict)) and layer is None:
        raise ValueError("inputs: tpa.report explains single-input models; pass one array [B, ...]")
    if not isinstance(max_examples, int) or isinstance(max_examples, bool) or max_examples < 1:
        raise ValueError(f"max_examples must be a positive int, got {max_examples!r}")
    if isinstance(inputs, dict):  # keras-hub style inputs for text models
        return {k: np.asarray(v)[:max_examples] for k, v in inputs.items()}
    x = np.asarray(inputs.numpy() if hasattr(inputs, "numpy") else inputs)
    if x.ndim < 2:
        raise ValueError(f"inputs: expected a batch [B, ...], got shape {x.shape}")
    x = x[:max_examples]
    return x if layer is not None else x.astype(np.float32)


def build(
    model,
    inputs,
    target=None,
    *,
    methods=None,
    labels=None,
    baseline=None,
    max_examples: int = 16,
    sanity_check: bool = True,
    options=None,
    layer=None,
    tokenizer=None,
    display=None,
    fast: bool = False,
    sanity_examples: int = 4,
    seed: int = 0,
    progress: bool = True,
    title: str = "tf_pathattr report",
) -> ReportData:
    """Run everything the page shows and return it (:func:`report` writes it); same arguments."""
    x = _inputs(inputs, layer, max_examples)
    batch = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    kind = _run.input_kind(np.asarray(x["token_ids"] if isinstance(x, dict) else x), layer)
    names, skipped = _run.choose_methods(methods, kind)
    classes, probs = _run.predictions(model, x)
    fixed = target
    if target is None and classes is not None:
        fixed = classes
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        fixed = np.full(batch, int(target), np.int64)
    elif target is not None and not callable(target):
        fixed = np.asarray(target)[:batch]
    text_args = {"layer": layer, "tokenizer": tokenizer} if kind == "text" else {}
    runs = []
    for name in _progress(names, progress):
        opts = _run.method_options(name, x, options, baseline, fast, kind)
        try:
            run = _run.explain(name, model, x, fixed, opts, kind, text_args)
        except Exception as exc:  # a method that cannot run here is listed with its reason
            if methods is not None and not isinstance(exc, (ValueError, TypeError, NotImplementedError)):
                raise
            runs.append(MethodRun(name=name, short=name, error=_run.first_line(exc)))
            continue
        _run.faithfulness(run, model, x, fixed, kind, seed)
        if sanity_check:
            _run.sanity(run, model, x, fixed, opts, kind, min(sanity_examples, batch), seed)
        runs.append(run)
    tokens = None
    if kind == "text" and tokenizer is not None:
        from .. import text as _text

        ids = np.asarray(x["token_ids"] if isinstance(x, dict) else x)
        tokens = _text.token_strings(tokenizer, ids)
    shown = x if display is None else np.asarray(display)[:batch]
    return ReportData(
        kind=kind,
        x=np.asarray(x["token_ids"]) if isinstance(x, dict) else x,
        display=shown if kind == "image" else None,
        classes=classes,
        probabilities=probs,
        target=fixed if isinstance(fixed, np.ndarray) else None,
        class_names=_class_names(labels),
        runs=runs,
        skipped=skipped,
        model_name=str(getattr(model, "name", type(model).__name__)),
        tokens=tokens,
        target_text=_target_text(target),
        title=title,
    )


def report(
    model,
    inputs,
    target=None,
    *,
    methods=None,
    out="tf_pathattr_report.html",
    labels=None,
    baseline=None,
    max_examples: int = 16,
    sanity_check: bool = True,
    options=None,
    layer=None,
    tokenizer=None,
    display=None,
    fast: bool = False,
    sanity_examples: int = 4,
    seed: int = 0,
    progress: bool = True,
    title: str = "tf_pathattr report",
) -> Path:
    """Write one self-contained HTML page comparing attribution methods on ``model`` and ``inputs``.

    For every example: the input, the predicted class and its probability, and each method's
    signed overlay (token heatmaps for text models). For every method: the median relative
    completeness gap ``|δ| / |F(x) − F(start)|`` (from the method's own convergence delta), the
    mean deletion and insertion AUC (:func:`tf_pathattr.metrics.deletion` / ``insertion``; RISE,
    Petsiuk et al., BMVC 2018), the SIC AUC of :func:`tf_pathattr.metrics.pic` for images in
    ``[0, 1]`` (Kapishnikov et al., ICCV 2019), the time per example, and the cascading
    model-randomization sanity check (:func:`tf_pathattr.metrics.model_randomization`; Adebayo et
    al., NeurIPS 2018) as a small plot. A verdict ranks the methods by their mean rank over the
    faithfulness figures and names the caveats (failed sanity checks, loose completeness, few
    examples). The page needs no server and no network: methods can be hidden and shown, the
    table sorted, and an example enlarged, and that state lives in the URL fragment
    (``#methods=a,b&sort=deletion&dir=asc&example=0``).

    Parameters
    ----------
    model : keras.Model (or callable)
    inputs : images ``[B, H, W, C]``, tabular rows ``[B, d]``, or token ids / keras-hub inputs with ``layer=``
    target : None (the predicted class), int, ``[B]`` ints or callable
    methods : sequence of method names / aliases, optional
        Default: every registered method that applies (image-only methods on images only, methods
        that take ``layer=`` for text); the others are listed with the registry's reason.
    out : str or path
        The HTML file to write.
    labels : sequence of class names or dict ``{index: name}``, optional
    baseline : optional
        Passed to the methods whose path starts at ``baseline=`` (IG, Guided IG, IDG, ...).
    max_examples : int
        Only the first ``max_examples`` examples are explained (bounds the work).
    sanity_check : bool
        Run the randomization test (on the first ``sanity_examples`` examples).
    options : dict ``{method name: {option: value}}``, optional
        Per-method options, over the defaults (the methods' own, ``background`` / ``references``
        taken from the explained inputs, and the registry's small options with ``fast=True``).
    layer, tokenizer : optional
        Text models: the embedding layer (as for :func:`tf_pathattr.text.token_attributions`) and
        a tokenizer for token strings.
    display : array, optional
        Images to draw under the maps (e.g. the 0..1 pixels of preprocessed inputs); default ``inputs``.
    fast : bool
        Use the registry's small test options (few steps): a quick look, not a measurement.
    seed : int
        Seeds the sanity check and PIC's random masks.
    progress : bool
        A progress bar over the methods on stderr.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    data = build(
        model,
        inputs,
        target,
        methods=methods,
        labels=labels,
        baseline=baseline,
        max_examples=max_examples,
        sanity_check=sanity_check,
        options=options,
        layer=layer,
        tokenizer=tokenizer,
        display=display,
        fast=fast,
        sanity_examples=sanity_examples,
        seed=seed,
        progress=progress,
        title=title,
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_html.render(data), encoding="utf-8")
    if progress:
        print(f"wrote {path}", file=sys.stderr)
    return path
