"""The one-line verdict: rank the methods on this model and data, with the caveats that apply.

Ranking: each faithfulness figure that was computed for at least two methods (deletion AUC,
lower is better; insertion AUC and SIC AUC, higher is better) ranks the methods by their mean
over the examples; a method's score is its mean rank over those figures (lower is better).

Sanity check (:func:`tf_pathattr.metrics.model_randomization`, cascading, every weighted layer
randomized): ``"fail"`` when the signed maps still correlate with the trained model's maps
(mean Spearman > 0.5: what the picture shows survives the destruction of the model); ``"partial"``
when only the magnitudes do (mean Spearman of ``|map|`` or SSIM > 0.5: typical of maps that
multiply by the input, such as IG's ``(x - x') * gradient``); ``"pass"`` otherwise.
"""

from __future__ import annotations

import math

import numpy as np

THRESHOLD = 0.5
GAP_CAVEAT = 0.05
FIGURES = (("deletion", "deletion AUC", False), ("insertion", "insertion AUC", True), ("pic", "SIC AUC", True))


def nanmean(values) -> float:
    if values is None:
        return float("nan")
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def nanmedian(values) -> float:
    if values is None:
        return float("nan")
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def standard_error(values) -> float:
    if values is None:
        return float("nan")
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")


def sanity_status(result) -> str:
    """``"pass"``, ``"partial"``, ``"fail"`` or ``"n/a"`` from a cascading randomization result."""
    if result is None:
        return "n/a"
    final = {name: result.mean(name)[-1] for name in result.similarity}
    if final.get("spearman", float("nan")) > THRESHOLD:
        return "fail"
    if any(final.get(n, float("nan")) > THRESHOLD for n in ("spearman_abs", "ssim")):
        return "partial"
    return "pass"


def mean_ranks(runs) -> dict[str, float]:
    """``{method: mean rank}`` over the faithfulness figures computed for at least two methods."""
    ranks: dict[str, list[float]] = {r.name: [] for r in runs}
    for attr, _, higher_better in FIGURES:
        scored = [(r.name, nanmean(getattr(r, attr))) for r in runs]
        scored = [(n, v) for n, v in scored if math.isfinite(v)]
        if len(scored) < 2:
            continue
        order = sorted(scored, key=lambda item: -item[1] if higher_better else item[1])
        for position, (name, _) in enumerate(order, start=1):
            ranks[name].append(position)
    return {n: float(np.mean(v)) for n, v in ranks.items() if v}


def verdict(runs, n_examples: int):
    """``(sentence, caveats)``: the ranking in one line and the caveats that apply."""
    runs = [r for r in runs if r.maps is not None]
    if not runs:
        return "No method could run on this model and these inputs.", []
    ranks = mean_ranks(runs)
    status = {r.name: sanity_status(r.sanity) for r in runs}
    used = [label for attr, label, _ in FIGURES if sum(math.isfinite(nanmean(getattr(r, attr))) for r in runs) >= 2]
    caveats = []
    if not ranks:
        sentence = "No faithfulness figure could be computed for two methods or more, so the methods are not ranked."
    else:
        order = sorted(ranks, key=lambda n: (ranks[n], n))
        short = {r.name: r.short for r in runs}
        listed = ", ".join(f"{short[n]} ({ranks[n]:.1f})" for n in order[1:4])
        sentence = (
            f"On this model and these {n_examples} examples, {short[order[0]]} ranks first "
            f"(mean rank {ranks[order[0]]:.1f} over {', '.join(used)})" + (f", then {listed}." if listed else ".")
        )
        trusted = [n for n in order if status[n] in ("pass", "partial")]
        if status[order[0]] == "fail" and trusted:
            sentence += f" It fails the sanity check; the best method that passes is {short[trusted[0]]}."
        if len(order) > 1:
            caveats.extend(_close_call(runs, order[0], order[1], short))
    failed = [r.short for r in runs if status[r.name] == "fail"]
    partial = [r.short for r in runs if status[r.name] == "partial"]
    if failed:
        caveats.append(
            f"Failed the sanity check (maps unchanged when every layer is random): {', '.join(failed)}; "
            "a good rank on the figures does not make them explanations of this model."
        )
    if partial:
        caveats.append(
            f"Magnitudes survive randomization for {', '.join(partial)}: part of what they show is the input "
            "itself (signs do change)."
        )
    loose = [r.short for r in runs if nanmedian(r.gap) > GAP_CAVEAT]
    if loose:
        caveats.append(f"Completeness gap above {GAP_CAVEAT:.0%} for {', '.join(loose)}: more steps would change them.")
    if n_examples < 8:
        caveats.append(f"Only {n_examples} examples: rankings may change with more (max_examples=).")
    caveats.append("The figures hold for this model and these inputs only.")
    return sentence, caveats


def _close_call(runs, first, second, short) -> list[str]:
    by_name = {r.name: r for r in runs}
    out = []
    for attr, label, _ in FIGURES[:2]:
        a, b = getattr(by_name[first], attr), getattr(by_name[second], attr)
        diff = abs(nanmean(a) - nanmean(b))
        se = math.hypot(standard_error(a), standard_error(b))
        if math.isfinite(diff) and math.isfinite(se) and diff < se:
            out.append(f"{short[first]} and {short[second]} are within one standard error on {label}.")
    return out
