"""Model-parameter randomization test (the "sanity check" of saliency maps).

An explanation that is faithful to the model must change when the model's learned weights are
destroyed. The test re-initialises the weights of the model's layers one at a time, from the
output layer down, explains the same inputs again and measures how similar each new map
``A_l`` is to the original map ``A_0``:

* ``cascade=True`` (the paper's *cascading* randomization): after step ``l`` the top ``l``
  weighted layers are all random;
* ``cascade=False`` (*independent* randomization): only layer ``l`` is random, every other layer
  keeps its trained weights.

Similarities, per example (maps are first summed over the channel axis of images, as in
:mod:`tf_pathattr.viz`; other inputs are flattened):

* ``"spearman_abs"``: Spearman rank correlation of ``|A_0|`` and ``|A_l|``;
* ``"spearman"``: Spearman rank correlation of the signed maps;
* ``"ssim"``: structural similarity (``skimage.metrics.structural_similarity``) of the absolute
  maps, each divided by its own maximum (images only).

Spearman's rho is the Pearson correlation of the ranks (ties get their average rank):

.. math:: \\rho(a, b) = \\frac{\\mathrm{cov}(R(a), R(b))}{\\sigma_{R(a)} \\sigma_{R(b)}}

(NaN when one map is constant: a constant map ranks nothing). A method that passes keeps a low
similarity once the layers are random; one whose maps barely move (similarity near 1) shows the
input, not the model. A map that does not depend on the model at all (the input itself) keeps
similarity 1 at every layer.

The user's model is never changed: the weights of a clone (``keras.models.clone_model`` plus
``set_weights``) are re-initialised in place with each layer's own initializers
(``kernel_initializer``, ``bias_initializer``, ... seeded from ``seed``; a truncated normal with
the trained weights' standard deviation where a layer names none). Non-trainable weights (batch
norm statistics) keep their values. The class explained is fixed to the one the trained model
predicts (``target=None``), so every map explains the same output.

Reference: J. Adebayo, J. Gilmer, M. Muelly, I. Goodfellow, M. Hardt, B. Kim, "Sanity Checks for
Saliency Maps", NeurIPS 2018, arXiv 1810.03292.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Union

import numpy as np

__all__ = ["RandomizationResult", "SIMILARITIES", "model_randomization", "spearman_rows", "ssim_maps"]

SIMILARITIES = ("spearman_abs", "spearman", "ssim")


@dataclass
class RandomizationResult:
    """Similarity of each re-explained map to the original one.

    Attributes
    ----------
    layers : tuple of str
        Names of the randomized layers in the order they were randomized (output layer first).
    similarity : dict ``{similarity name: ndarray [L, B]}``
        Row ``l``: the maps after randomizing ``layers[: l + 1]`` (cascade) or only ``layers[l]``.
    cascade : bool
    method : str
        The method's name (or the callable's ``__name__``).
    original : ndarray
        The maps of the trained model, ``[B, ...]``.
    target : ndarray ``[B]`` or None
        The explained classes (the trained model's prediction for ``target=None``).
    """

    layers: tuple[str, ...]
    similarity: dict[str, np.ndarray]
    cascade: bool
    method: str
    original: np.ndarray = field(repr=False, default=None)
    target: np.ndarray = None

    def mean(self, name: str = "spearman_abs") -> np.ndarray:
        """Mean similarity over the examples per layer ``[L]`` (NaN entries skipped)."""
        values = self.similarity[name]
        out = np.full(values.shape[0], np.nan)
        for i, row in enumerate(values):
            finite = row[np.isfinite(row)]
            if finite.size:
                out[i] = finite.mean()
        return out

    def __getitem__(self, key):
        return getattr(self, key)


def spearman_rows(a, b) -> np.ndarray:
    """Spearman's rho between the rows of ``a [B, N]`` and ``b [B, N]`` (average ranks for ties).

    NaN for a row where either map is constant.
    """
    from scipy.stats import rankdata

    ra = rankdata(np.asarray(a, np.float64), axis=1)
    rb = rankdata(np.asarray(b, np.float64), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=1) / denom
    return np.where(denom > 0, np.clip(rho, -1.0, 1.0), np.nan)


def ssim_maps(a, b) -> np.ndarray:
    """SSIM between ``a [B, H, W]`` and ``b [B, H, W]``, each map's ``|value|`` divided by its maximum.

    Uses ``skimage.metrics.structural_similarity`` with ``data_range=1`` and the largest odd
    window up to 7 that fits the map. NaN where both maps are all zero.
    """
    try:
        from skimage.metrics import structural_similarity
    except ImportError as exc:  # pragma: no cover - scikit-image is in the metrics extra
        raise ImportError("similarity='ssim' needs scikit-image: pip install 'tf_pathattr[metrics]'") from exc
    a, b = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    if a.ndim != 3 or min(a.shape[1:]) < 3:
        raise ValueError(f"similarity 'ssim' needs image maps [B, H, W] with H, W >= 3, got maps of shape {a.shape}")
    win = min(7, min(a.shape[1:]) - (1 - min(a.shape[1:]) % 2))
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        ma, mb = a[i].max(), b[i].max()
        if ma == 0 and mb == 0:
            out[i] = np.nan
            continue
        na = a[i] / ma if ma > 0 else a[i]
        nb = b[i] / mb if mb > 0 else b[i]
        out[i] = structural_similarity(na, nb, data_range=1.0, win_size=win)
    return out


def _as_map(attributions, is_image: bool) -> np.ndarray:
    """One array per example: ``[B, H, W]`` for images (channels summed), ``[B, N]`` otherwise."""
    if isinstance(attributions, dict):
        raise ValueError("model_randomization: the method returned a dict; explain single-input models")
    if isinstance(attributions, (list, tuple)):
        attributions = attributions[0]
    a = np.asarray(attributions.numpy() if hasattr(attributions, "numpy") else attributions, np.float64)
    if is_image and a.ndim == 4:
        return a.sum(axis=-1)
    if is_image and a.ndim == 3:
        return a
    return a.reshape(a.shape[0], -1)


def _similarities(original, current, names, is_image) -> dict[str, np.ndarray]:
    b = original.shape[0]
    out = {}
    for name in names:
        if name == "spearman_abs":
            out[name] = spearman_rows(np.abs(original.reshape(b, -1)), np.abs(current.reshape(b, -1)))
        elif name == "spearman":
            out[name] = spearman_rows(original.reshape(b, -1), current.reshape(b, -1))
        else:
            out[name] = ssim_maps(original, current)
    return out


def _clone(model):
    """A clone with the same weights and no variable shared with ``model``."""
    import keras

    try:
        clone = keras.models.clone_model(model)
    except Exception as exc:
        raise ValueError(
            "model_randomization: model must be a Functional or Sequential Keras model that "
            f"keras.models.clone_model can copy ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    clone.set_weights(model.get_weights())
    own = {id(v) for v in model.weights}
    if any(id(v) in own for v in clone.weights):
        raise ValueError("model_randomization: the clone shares variables with the model; it cannot be randomized")
    return clone


def _weighted_layers(model):
    """Layers with trainable weights, innermost first inside nested models, in forward order."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_weighted_layers(layer))
        elif layer.trainable_weights:
            out.append(layer)
    return out


def _initializer_for(layer, variable, seed: int):
    """The layer's own initializer for ``variable`` (seeded), else a truncated normal."""
    import keras

    short = variable.path.split("/")[-1] if hasattr(variable, "path") else variable.name
    init = getattr(layer, f"{short}_initializer", None)
    if isinstance(init, keras.initializers.Initializer):
        config = init.get_config()
        if "seed" in config:
            config["seed"] = seed
        return type(init).from_config(config)
    std = float(np.std(np.asarray(variable))) or 0.05
    return keras.initializers.TruncatedNormal(stddev=std, seed=seed)


def _randomize_layer(layer, seed: int) -> None:
    seeds = np.random.SeedSequence(seed).generate_state(len(layer.trainable_weights))
    for variable, s in zip(layer.trainable_weights, seeds):
        init = _initializer_for(layer, variable, int(s) % (2**31 - 1))
        variable.assign(np.asarray(init(tuple(variable.shape), dtype=variable.dtype)))


def _fixed_target(model, x, target):
    """The trained model's predicted classes for ``target=None`` (``[B, C]`` outputs), else ``target``."""
    if target is not None:
        return target
    out = model(x, training=False)
    if isinstance(out, (list, tuple, dict)):
        return None
    out = np.asarray(out)
    if out.ndim == 2 and out.shape[1] > 1:
        return out.argmax(axis=1).astype(np.int64)
    return None


def model_randomization(
    model,
    inputs,
    target=None,
    *,
    method: Union[str, Callable] = "integrated_gradients",
    cascade: bool = True,
    similarity=SIMILARITIES,
    seed: int = 0,
    options=None,
) -> RandomizationResult:
    """Cascading (or independent) model-parameter randomization test of Adebayo et al. (2018).

    Parameters
    ----------
    model : keras.Model
        A Functional or Sequential model (it is cloned; the clone is randomized, never ``model``).
    inputs : array ``[B, ...]`` (a single input)
    target : None, int, ``[B]`` ints or callable
        As for every method; ``None`` is fixed to the trained model's predicted class.
    method : str or callable
        A registered method name / alias, or ``f(model, inputs, target, **options) -> attributions``.
    cascade : bool
        ``True``: randomize cumulatively from the output layer down; ``False``: one layer at a
        time, the others trained.
    similarity : sequence of {"spearman_abs", "spearman", "ssim"}
        ``"ssim"`` needs image inputs ``[B, H, W, C]`` (or ``[B, H, W]``).
    seed : int
        Seeds the re-initialisation (the same seed gives the same random weights).
    options : dict, optional
        Keyword options of the method.

    Returns
    -------
    RandomizationResult
        ``layers`` (output layer first) and ``similarity[name]`` ``[L, B]``.
    """
    from ..methods import resolve_method

    names = (similarity,) if isinstance(similarity, str) else tuple(similarity)
    unknown = [n for n in names if n not in SIMILARITIES]
    if unknown or not names:
        raise ValueError(f"similarity: expected names from {list(SIMILARITIES)}, got {list(names)}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if isinstance(inputs, (list, tuple, dict)):
        raise ValueError("model_randomization: inputs must be one array [B, ...] (single-input models)")
    fn = resolve_method(method)
    method_name = method if isinstance(method, str) else getattr(method, "__name__", "callable")
    opts = dict(options or {})
    x = np.asarray(inputs.numpy() if hasattr(inputs, "numpy") else inputs)
    is_image = x.ndim in (3, 4)
    if "ssim" in names and not is_image:
        raise ValueError(
            f"similarity 'ssim' needs image inputs [B, H, W, C], got inputs of shape {x.shape}; "
            "pass similarity=('spearman_abs', 'spearman')"
        )
    clone = _clone(model)
    layers = _weighted_layers(clone)[::-1]
    if not layers:
        raise ValueError("model_randomization: the model has no layer with trainable weights")
    fixed = _fixed_target(clone, x, target)
    original = _as_map(fn(clone, x, fixed, **opts), is_image)
    trained = [[np.asarray(v) for v in layer.trainable_weights] for layer in layers]
    rows = {n: [] for n in names}
    for index, layer in enumerate(layers):
        if not cascade and index > 0:  # put the previous layer's trained weights back
            for variable, value in zip(layers[index - 1].trainable_weights, trained[index - 1]):
                variable.assign(value)
        _randomize_layer(layer, seed * 7919 + index)
        current = _as_map(fn(clone, x, fixed, **opts), is_image)
        for n, v in _similarities(original, current, names, is_image).items():
            rows[n].append(v)
    return RandomizationResult(
        layers=tuple(layer.name for layer in layers),
        similarity={n: np.stack(v) for n, v in rows.items()},
        cascade=bool(cascade),
        method=str(method_name),
        original=original,
        target=None if fixed is None or callable(fixed) else np.asarray(fixed),
    )
