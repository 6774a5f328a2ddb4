"""Write the report page: one HTML string with its style sheet, script and pictures inline.

Pictures are PNG data URIs (inputs and :func:`tf_pathattr.viz.overlay` signed overlays) or inline
SVG (tabular bars, sanity-check plots, the colour legend); token maps are
:func:`tf_pathattr.viz.text_html` fragments. Every text that comes from the user (labels, class
names, tokens, model and method names, error messages) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np

from . import _assets
from ._verdict import nanmean, nanmedian, sanity_status, verdict

MAX_SIDE = 128  # longest side of an embedded picture, in pixels


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def png_uri(image, max_side: int = MAX_SIDE) -> str:
    """``data:image/png;base64,...`` of an ``[H, W, 3]`` picture in ``[0, 1]`` (down-scaled to ``max_side``)."""
    from PIL import Image

    from .. import viz

    img = Image.fromarray(viz.to_uint8(image))
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.BOX)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def bars_svg(values, width: int = 120, height: int = 48) -> str:
    """Signed bars (red positive, blue negative) of a 1-D array, scaled to its largest ``|value|``."""
    v = np.asarray(values, np.float64).reshape(-1)
    scale = float(np.max(np.abs(v))) if v.size else 0.0
    n = max(v.size, 1)
    w = width / n
    mid = height / 2
    rects = []
    for i, value in enumerate(v):
        h = 0.0 if scale == 0 else abs(value) / scale * (mid - 1)
        y = mid - h if value > 0 else mid
        colour = "#c0392b" if value > 0 else "#2e5fb3"
        rects.append(
            f'<rect x="{i * w:.2f}" y="{y:.2f}" width="{max(w - 0.5, 0.5):.2f}" height="{h:.2f}" fill="{colour}"/>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<line x1="0" y1="{mid}" x2="{width}" y2="{mid}" stroke="#999" stroke-width="0.5"/>{"".join(rects)}</svg>'
    )


LEGEND = (
    '<svg class="legend" xmlns="http://www.w3.org/2000/svg" width="96" height="22" viewBox="0 0 96 22">'
    '<defs><linearGradient id="tpa-signed" x1="0" x2="1" y1="0" y2="0"><stop offset="0" stop-color="#0000ff"/>'
    '<stop offset="0.5" stop-color="#ffffff"/><stop offset="1" stop-color="#ff0000"/></linearGradient></defs>'
    '<rect x="0" y="0" width="96" height="10" fill="url(#tpa-signed)" stroke="#999" stroke-width="0.5"/>'
    '<text x="0" y="21" font-size="9">−</text><text x="45" y="21" font-size="9">0</text>'
    '<text x="89" y="21" font-size="9">+</text></svg>'
)

SANITY_STYLES = (("spearman_abs", "#1d2330", ""), ("spearman", "#c0392b", "4 2"), ("ssim", "#2e5fb3", "1 2"))


def sanity_svg(result, width: int = 130, height: int = 40) -> str:
    """Similarity to the trained model's maps (y, 0..1) against the number of randomized layers (x)."""
    if result is None:
        return ""
    n = len(result.layers)
    pad = 4

    def xy(i, value):
        x = pad + i * (width - 2 * pad) / max(n, 1)
        y = pad + (1.0 - max(-0.2, min(1.0, value))) / 1.2 * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<line x1="{pad}" x2="{width - pad}" y1="{xy(0, 0.5).split(",")[1]}" y2="{xy(0, 0.5).split(",")[1]}" '
        'stroke="#aaa" stroke-dasharray="2 2" stroke-width="0.7"/>',
        f'<line x1="{pad}" x2="{width - pad}" y1="{xy(0, 0.0).split(",")[1]}" y2="{xy(0, 0.0).split(",")[1]}" '
        'stroke="#ddd" stroke-width="0.7"/>',
    ]
    lines = []
    for name, colour, dash in SANITY_STYLES:
        if name not in result.similarity:
            continue
        means = [1.0] + [float(v) for v in result.mean(name)]
        points = " ".join(xy(i, v) for i, v in enumerate(means) if math.isfinite(v))
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.4"{dashed}/>')
        lines.append(f"{name}: " + ", ".join(f"{v:.2f}" for v in means[1:]))
    title = "randomized top-down: " + " > ".join(result.layers) + "\n" + "\n".join(lines)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"<title>{esc(title)}</title>{''.join(parts)}</svg>"
    )


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _class_name(names, c) -> str:
    return names.get(int(c), str(int(c)))


def _example_cells(data, i: int):
    """The input cell and one cell per method for example ``i``."""
    from .. import viz

    runs = [r for r in data.runs if r.maps is not None]
    if data.kind == "image":
        cells = [
            f'<td data-caption="input"><img alt="input {i}" src="{png_uri(viz._image_rgb(data.display[i]))}"></td>'
        ]
        for r in runs:
            uri = png_uri(viz.overlay(data.display[i], r.maps[i], "signed"))
            cells.append(
                f'<td data-method="{esc(r.name)}" data-caption="{esc(r.short)}">'
                f'<img alt="{esc(r.short)} {i}" src="{uri}"></td>'
            )
        return cells
    if data.kind == "tabular":
        cells = [f'<td data-caption="input">{bars_svg(data.x[i])}</td>']
        for r in runs:
            cells.append(f'<td data-method="{esc(r.name)}" data-caption="{esc(r.short)}">{bars_svg(r.maps[i])}</td>')
        return cells
    tokens = data.tokens[i] if data.tokens is not None else [str(t) for t in np.asarray(data.x)[i]]
    cells = [f'<td class="text" data-caption="input">{esc(" ".join(map(str, tokens)))}</td>']
    for r in runs:
        fragment = viz.text_html(tokens, r.maps[i], r.mask[i])
        cells.append(f'<td class="text" data-method="{esc(r.name)}" data-caption="{esc(r.short)}">{fragment}</td>')
    return cells


def examples_table(data) -> str:
    runs = [r for r in data.runs if r.maps is not None]
    head = "<th>input</th><th>prediction</th>" + "".join(
        f'<th data-method="{esc(r.name)}" title="{esc(r.name)}">{esc(r.short)}</th>' for r in runs
    )
    rows = []
    for i in range(len(data.x)):
        if data.classes is not None:
            pred = f"{esc(_class_name(data.class_names, data.classes[i]))}<br>p = {data.probabilities[i]:.3f}"
            title = f"example {i}: {_class_name(data.class_names, data.classes[i])} ({data.probabilities[i]:.3f})"
        else:
            pred, title = "—", f"example {i}"
        if data.target is not None and data.classes is not None and int(data.target[i]) != int(data.classes[i]):
            pred += f"<br>explained: {esc(_class_name(data.class_names, data.target[i]))}"
        pred += "<br>" + LEGEND
        cells = _example_cells(data, i)
        cells.insert(1, f'<td class="pred">{pred}</td>')
        rows.append(f'<tr class="example" data-example="{i}" data-title="{esc(title)}">{"".join(cells)}</tr>')
    return f'<table class="examples"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


METRIC_COLUMNS = (
    ("gap", "completeness gap", "median |δ| / |F(x) − F(start)| (lower is better)"),
    ("deletion", "deletion AUC ↓", "mean over examples; lower is better"),
    ("insertion", "insertion AUC ↑", "mean over examples; higher is better"),
    ("pic", "SIC AUC ↑", "PIC softmax information curve (images in [0, 1]); higher is better"),
    ("time", "s / example", "wall time of one call divided by the examples (tf.function tracing included)"),
)


def metrics_table(runs) -> str:
    head = '<th data-sort="method">method</th>' + "".join(
        f'<th data-sort="{key}" title="{esc(tip)}">{esc(label)}</th>' for key, label, tip in METRIC_COLUMNS
    )
    head += '<th data-sort="sanity" title="cascading randomization, output layer first; solid: Spearman |map|, '
    head += 'dashed: Spearman, dotted: SSIM; grey dashes at 0.5">sanity check</th><th>notes</th>'
    rows = []
    for r in runs:
        values = {
            "gap": nanmedian(r.gap),
            "deletion": nanmean(r.deletion),
            "insertion": nanmean(r.insertion),
            "pic": nanmean(r.pic),
            "time": r.seconds_per_example,
        }
        status = sanity_status(r.sanity)
        final = r.sanity.mean("spearman_abs")[-1] if r.sanity is not None else float("nan")
        attrs = f'data-method="{esc(r.name)}" data-v-method="{esc(r.short)}" data-v-sanity="{final}"'
        attrs += "".join(f' data-v-{k}="{v}"' for k, v in values.items())
        full = f"<br><span class='muted small'>{esc(r.name)}</span>" if r.name != r.short else ""
        cells = [f"<td><b>{esc(r.short)}</b>{full}</td>"]
        cells += [
            f"<td>{_fmt(values['gap'], 4) if r.gap is not None else '—'}</td>",
            f"<td>{_fmt(values['deletion'])}</td>",
            f"<td>{_fmt(values['insertion'])}</td>",
            f"<td>{_fmt(values['pic'])}</td>",
            f"<td>{_fmt(values['time'], 4)}</td>",
        ]
        label = {"n/a": "n/a", "pass": "passed", "partial": "partial", "fail": "FAILED"}[status]
        badge = f'<span class="badge {"na" if status == "n/a" else status}">{label}</span>'
        cells.append(f'<td class="sanity">{sanity_svg(r.sanity)} {badge}</td>')
        cells.append(f'<td class="muted" style="text-align:left">{esc("; ".join(r.notes))}</td>')
        rows.append(f"<tr {attrs}>{''.join(cells)}</tr>")
    return f'<table id="metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def controls(runs) -> str:
    boxes = "".join(
        f'<label title="{esc(r.name)}"><input type="checkbox" checked data-toggle="{esc(r.name)}"> {esc(r.short)}</label>'
        for r in runs
    )
    return (
        f'<div id="controls"><b>methods shown:</b>{boxes}'
        '<button type="button" data-all="1">all</button><button type="button" data-all="0">none</button></div>'
    )


def render(data) -> str:
    """The whole page."""
    runs = [r for r in data.runs if r.maps is not None]
    sentence, caveats = verdict(data.runs, len(data.x))
    failed = [r for r in data.runs if r.maps is None]
    skipped = [f"<li><b>{esc(n)}</b>: {esc(why)}</li>" for n, why in data.skipped.items()]
    skipped += [f"<li><b>{esc(r.name)}</b>: could not run: {esc(r.error)}</li>" for r in failed]
    summary = (
        f"Model <code>{esc(data.model_name)}</code> · {len(data.x)} {esc(data.kind)} examples · "
        f"{len(runs)} methods · explained output: {esc(data.target_text)}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(data.title)}</title><style>{_assets.CSS}</style></head><body>",
        f'<header><h1>{esc(data.title)}</h1><div class="muted">{summary}</div></header>',
        f'<section class="verdict"><p>{esc(sentence)}</p><ul>'
        + "".join(f"<li>{esc(c)}</li>" for c in caveats)
        + "</ul></section>",
        controls(runs),
        "<h2>Figures per method</h2>",
        '<p class="muted">Click a column title to sort. Sanity check: similarity of each map to the trained '
        "model's as the layers are re-initialised from the output down (Adebayo et al., NeurIPS 2018); "
        "a method whose maps do not change does not explain the model. Solid line: Spearman of |map|, red dashes: "
        "Spearman of the signed map, blue dots: SSIM; grey dashes at 0.5; hover for the layers.</p>",
        metrics_table(runs),
        '<p class="muted">Token maps: completeness and time only (deletion, insertion, SIC and the sanity check '
        "are computed for images and tabular rows).</p>"
        if data.kind == "text"
        else "",
        "<h2>Examples</h2>",
        '<p class="muted">Signed overlays (red: raises the explained output, blue: lowers it), each map scaled '
        "to its 99.5th percentile of |a| as in <code>tpa.viz</code>. Click a row to enlarge it.</p>",
        f'<div style="overflow-x: auto">{examples_table(data)}</div>',
    ]
    if skipped:
        parts.append("<h2>Methods not shown</h2><ul>" + "".join(skipped) + "</ul>")
    parts += [
        "<footer>Written by tf_pathattr (<code>tpa.report</code>). Self-contained: no network access. "
        "Figures: deletion / insertion (RISE, Petsiuk et al. 2018), SIC (Kapishnikov et al. 2019), "
        "completeness (Sundararajan et al. 2017), sanity check (Adebayo et al. 2018).</footer>",
        '<div id="modal" hidden></div>',
        f"<script>{_assets.JS}</script></body></html>",
    ]
    return "\n".join(parts)
