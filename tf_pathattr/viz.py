"""Pictures of attributions: heatmaps, overlays on the input image, and a grid of methods.

Colour maps are written out in numpy (no matplotlib needed for :func:`heatmap` / :func:`overlay`),
so their pixel values are exact and documented:

* ``kind="signed"`` (diverging): attributions are summed over channels and divided by the
  ``percentile``-th percentile of their absolute value (clipped to ``[-1, 1]``); ``v > 0`` is drawn
  red ``(1, 1 - v, 1 - v)``, ``v < 0`` blue ``(1 - |v|, 1 - |v|, 1)``, ``0`` white.
* ``kind="absolute"``: ``v = |sum over channels| / percentile`` in ``[0, 1]``, drawn with a
  black-red-yellow-white ramp ``(min(1, 3v), clip(3v - 1), clip(3v - 2))``.

:func:`overlay` blends that colour into the image with weight ``alpha * |v|``, so pixels with no
attribution keep the image's own colour. :func:`plot_attributions` (matplotlib, Agg backend) draws
examples as rows and methods as columns; :func:`save_png` writes arrays with Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "normalize",
    "heatmap",
    "overlay",
    "to_uint8",
    "save_png",
    "plot_attributions",
    "text_html",
    "text_terminal",
    "token_colours",
]

KINDS = ("signed", "absolute")


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "numpy"):
        a = a.numpy()
    return np.asarray(a, dtype=np.float64)


def _to_2d(attributions) -> np.ndarray:
    """``[H, W]`` or ``[H, W, C]`` (channels summed) -> ``[H, W]``."""
    a = _as_numpy(attributions)
    if a.ndim == 3:
        a = a.sum(axis=-1)
    if a.ndim != 2:
        raise ValueError(f"attributions: expected one image's attributions [H, W] or [H, W, C], got shape {a.shape}")
    return a


def normalize(attributions, kind: str = "signed", percentile: float = 99.5) -> np.ndarray:
    """Channel-summed attributions scaled to ``[-1, 1]`` (signed) or ``[0, 1]`` (absolute).

    The scale is the ``percentile``-th percentile of ``|a|`` (values above it saturate); an
    all-zero map stays zero.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    a = _to_2d(attributions)
    scale = float(np.percentile(np.abs(a), percentile))
    v = a / scale if scale > 0 else np.zeros_like(a)
    if kind == "absolute":
        return np.clip(np.abs(v), 0.0, 1.0)
    return np.clip(v, -1.0, 1.0)


def _colour(v: np.ndarray, kind: str) -> np.ndarray:
    if kind == "signed":
        pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
        r = 1.0 - neg
        g = 1.0 - pos - neg
        b = 1.0 - pos
        return np.stack([r, g, b], axis=-1)
    return np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)


def heatmap(attributions, kind: str = "signed", percentile: float = 99.5) -> np.ndarray:
    """RGB heatmap ``[H, W, 3]`` float32 in ``[0, 1]`` (see the module docstring for the colours)."""
    return _colour(normalize(attributions, kind, percentile), kind).astype(np.float32)


def _image_rgb(image) -> np.ndarray:
    img = _as_numpy(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image: expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got shape {img.shape}")
    img = img[..., :3]
    lo, hi = float(img.min()), float(img.max())
    if lo < 0.0 or hi > 1.0:  # not a [0, 1] image (e.g. 0..255 or standardised): min-max scale
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return img


def overlay(image, attributions, kind: str = "signed", alpha: float = 0.7, percentile: float = 99.5) -> np.ndarray:
    """Blend the heatmap into the image: ``out = (1 - w) * image + w * colour`` with ``w = alpha * |v|``.

    Parameters
    ----------
    image : ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]`` array; values in ``[0, 1]`` are used as they
        are, anything else is min-max scaled. Grayscale is repeated to RGB.
    attributions : ``[H, W]`` or ``[H, W, C]`` (summed over channels).
    kind : ``"signed"`` (red positive, blue negative) or ``"absolute"``.
    alpha : float in ``[0, 1]``, the blend weight at saturated attribution.

    Returns
    -------
    ``[H, W, 3]`` float32 in ``[0, 1]``.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    img = _image_rgb(image)
    v = normalize(attributions, kind, percentile)
    if v.shape != img.shape[:2]:
        raise ValueError(f"attributions have spatial shape {v.shape} but the image is {img.shape[:2]}")
    w = (float(alpha) * np.abs(v))[..., None]
    out = (1.0 - w) * img + w * _colour(v, kind)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def to_uint8(image) -> np.ndarray:
    """Float ``[0, 1]`` -> uint8 (rounded); uint8 passes through."""
    arr = np.asarray(image.numpy() if hasattr(image, "numpy") else image)
    if arr.dtype == np.uint8:
        return arr
    return np.round(np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(image, path) -> Path:
    """Write ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` (float in [0, 1] or uint8) as PNG."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is in the viz extra
        raise ImportError("save_png needs Pillow: pip install 'tf_pathattr[viz]'") from exc
    arr = to_uint8(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"image: expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got shape {arr.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")
    return path


def plot_attributions(
    images,
    attributions: dict,
    kind: str = "signed",
    path=None,
    cell_inches: float = 1.6,
    dpi: int = 100,
    alpha: float = 0.7,
    percentile: float = 99.5,
    titles=None,
):
    """A grid: one row per example, the input then one overlay per method.

    Parameters
    ----------
    images : ``[B, H, W, C]`` (or ``[B, H, W]``) array
    attributions : dict ``{method name: [B, H, W(, C)] array}`` (insertion order = column order)
    kind, alpha, percentile : see :func:`overlay`
    path : optional file name; the figure is saved there as PNG at ``dpi`` without tight cropping,
        so the picture is exactly ``(1 + n_methods) * cell_inches * dpi`` pixels wide and
        ``B * cell_inches * dpi`` high.
    titles : optional column titles (default: ``"input"`` and the method names)

    Returns
    -------
    matplotlib.figure.Figure
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is in the viz extra
        raise ImportError("plot_attributions needs matplotlib: pip install 'tf_pathattr[viz]'") from exc
    imgs = _as_numpy(images)
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    if imgs.ndim != 4:
        raise ValueError(f"images: expected [B, H, W, C], got shape {imgs.shape}")
    if not isinstance(attributions, dict) or not attributions:
        raise ValueError("attributions: expected a non-empty dict {method name: [B, H, W, C] array}")
    maps = {k: _as_numpy(v) for k, v in attributions.items()}
    for k, v in maps.items():
        if v.shape[0] != imgs.shape[0]:
            raise ValueError(f"attributions[{k!r}] has {v.shape[0]} examples but there are {imgs.shape[0]} images")
    n_rows, n_cols = imgs.shape[0], 1 + len(maps)
    titles = list(titles) if titles is not None else ["input"] + list(maps)
    fig = Figure(figsize=(n_cols * cell_inches, n_rows * cell_inches), dpi=dpi)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92 if n_rows == 1 else 0.96, wspace=0.05, hspace=0.05)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r in range(n_rows):
        axes[r, 0].imshow(_image_rgb(imgs[r]), interpolation="nearest")
        for c, (_name, a) in enumerate(maps.items(), start=1):
            axes[r, c].imshow(overlay(imgs[r], a[r], kind, alpha, percentile), interpolation="nearest")
        for c in range(n_cols):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(titles[c], fontsize=7)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(str(path), dpi=dpi, format="png")
    return fig


# --------------------------------------------------------------------------------------------
# text


NON_FINITE_RGB = (0.75, 0.75, 0.75)  # the colour of a token whose score is NaN or infinite


def _token_rows(tokens, scores, mask=None):
    toks = [str(t) for t in tokens]
    sc = _as_numpy(scores).reshape(-1)
    if len(toks) != sc.shape[0]:
        raise ValueError(f"tokens and scores differ in length: {len(toks)} tokens, {sc.shape[0]} scores")
    keep = np.ones(len(toks), bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    if keep.shape[0] != len(toks):
        raise ValueError(f"mask has {keep.shape[0]} entries for {len(toks)} tokens")
    return toks, sc, keep


def token_colours(scores, mask=None, kind: str = "signed") -> np.ndarray:
    """RGB in ``[0, 1]`` per token (``[T, 3]``), the same colour map as :func:`heatmap`.

    Scores are divided by the largest finite ``|score|`` among the shown tokens (``mask``), so the
    strongest token is fully saturated; hidden tokens are white. A NaN or infinite score is left out
    of the scale and gets its own colour, :data:`NON_FINITE_RGB` (grey), so one bad score neither
    whitens the others nor passes for a zero.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    sc = _as_numpy(scores).reshape(-1)
    keep = np.ones(sc.shape[0], bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    finite = np.isfinite(sc)
    scaled = keep & finite
    scale = float(np.max(np.abs(sc[scaled]))) if scaled.any() else 0.0
    v = np.where(finite, sc, 0.0) / scale if scale > 0 else np.zeros_like(sc)
    v = np.where(keep, v, 0.0)
    v = np.clip(np.abs(v), 0, 1) if kind == "absolute" else np.clip(v, -1, 1)
    rgb = _colour(v, kind)
    rgb[keep & ~finite] = NON_FINITE_RGB
    return rgb


def text_html(tokens, scores, mask=None, kind: str = "signed", title: str = None) -> str:
    """An HTML fragment with every token on a background coloured by its score.

    Every token string, the title and the tooltips are HTML-escaped, so a token such as
    ``<script>`` is displayed, never run. Tokens outside ``mask`` (padding) are left out. A token
    whose score is NaN or infinite is shown grey and hatched with a tooltip saying so, and is left
    out of the colour scale (:func:`token_colours`). Accepts a
    ``tpa.text.TokenAttributions`` row through ``text_html(res.tokens[i], res.scores[i], res.mask[i])``.
    Show it in a notebook with ``IPython.display.HTML``.
    """
    import html

    toks, sc, keep = _token_rows(tokens, scores, mask)
    rgb = token_colours(sc, keep, kind)
    parts = []
    if title is not None:
        parts.append(f"<div><b>{html.escape(str(title))}</b></div>")
    spans = []
    for t, v, c, k in zip(toks, sc, rgb, keep):
        if not k:
            continue
        r, g, b = (int(round(255 * float(ch))) for ch in c)
        label = html.escape(t) if t.strip() else "&nbsp;"
        if np.isfinite(v):
            mark, tip = "", f"{v:.4g}"
        else:  # its own mark: grey, hatched, and a title that says why
            mark = "background-image: repeating-linear-gradient(45deg, transparent 0 3px, rgba(0,0,0,.35) 3px 4px); "
            tip = f"{v} (no score: left out of the colour scale)"
        spans.append(
            f'<span style="background-color: rgb({r}, {g}, {b}); {mark}color: black; padding: 1px 2px; '
            f'margin: 1px; border-radius: 3px; white-space: pre" title="{html.escape(tip)}">'
            f"{label}</span>"
        )
    parts.append('<div style="line-height: 1.9; font-family: monospace">' + "".join(spans) + "</div>")
    return "\n".join(parts)


def text_terminal(tokens, scores, mask=None, kind: str = "signed", colour: bool = True) -> str:
    """The tokens with their scores for a terminal: 24-bit ANSI backgrounds (``colour=True``) or plain
    ``token(+0.123)`` text. Control characters in tokens are shown escaped, never sent to the terminal."""
    toks, sc, keep = _token_rows(tokens, scores, mask)
    rgb = token_colours(sc, keep, kind)
    out = []
    for t, v, c, k in zip(toks, sc, rgb, keep):
        if not k:
            continue
        safe = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in t)
        if colour:
            r, g, b = (int(round(255 * float(ch))) for ch in c)
            out.append(f"\x1b[48;2;{r};{g};{b}m\x1b[30m{safe}\x1b[0m")
        else:
            out.append(f"{safe}({v:+.3g})")
    return " ".join(out)
