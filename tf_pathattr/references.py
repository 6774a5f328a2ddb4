"""Reference pickers for IG2: real samples the model should treat as "not the explicand's class".

* :func:`other_class`: per explicand, ``k`` random pool samples whose label differs from the
  explicand's target (the release's ImageNet default, 8 references, and its TREC setting).
* :func:`top_k_classes`: per explicand, pool samples of the classes the model ranks 2nd-4th (the
  release's ImageNet "choice trick", a modest noise reduction according to the notebook).

Both return ``[B, R, *S]`` float32 arrays that :func:`tf_pathattr.ig2` takes as per-explicand
``references``. Reference: Y. Zhuo, Z. Ge, IG2, IEEE TPAMI 2024 (arXiv 2406.10852), released
notebooks of github.com/JoeZhuo-ZY/IG2.
"""

from __future__ import annotations

import numpy as np

from .engine import gradients as _eng
from .engine.shapes import check_optional_positive_int, check_positive_int

__all__ = ["other_class", "top_k_classes"]


def _pool(x_pool, y_pool):
    x = np.asarray(x_pool, np.float32)
    y = np.asarray(y_pool)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x_pool must be a non-empty batch [P, ...], got shape {x.shape}")
    if y.ndim == 2:  # one-hot / probability labels
        y = np.argmax(y, axis=1)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y_pool must hold one label per pool sample, shape ({x.shape[0]},) or one-hot ({x.shape[0]}, C); "
            f"got shape {np.asarray(y_pool).shape}"
        )
    if y.dtype.kind == "f":
        if not np.all(y == np.round(y)):
            raise TypeError("y_pool must hold integer class labels")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise TypeError(f"y_pool must hold integer class labels, got dtype {y.dtype}")
    return x, y.astype(np.int64)


def other_class(x_pool, y_pool, target, k: int, seed=None):
    """``k`` pool samples per explicand whose label differs from that explicand's target class.

    Parameters
    ----------
    x_pool : array ``[P, *S]``
        Candidate references (real data).
    y_pool : array ``[P]`` of int labels (or one-hot ``[P, C]``)
    target : int or sequence of ``B`` ints
        The class of each explicand (typically the model's prediction, as in the release).
    k : int
        References per explicand, drawn without replacement.
    seed : int, optional
        Seed of the numpy generator (``None`` = 0, so results are reproducible by default).

    Returns
    -------
    numpy.ndarray ``[B, k, *S]`` float32

    Raises
    ------
    ValueError
        When fewer than ``k`` pool samples have a label different from an explicand's target.
    """
    x, y = _pool(x_pool, y_pool)
    k = check_positive_int(k, "k")
    t = np.atleast_1d(np.asarray(target))
    if t.ndim != 1 or t.dtype.kind not in "iu":
        raise TypeError(f"target must be an int or a sequence of ints (one per explicand), got {target!r}")
    rng = np.random.default_rng(_eng.as_numpy_seed(seed))
    out = []
    for b, cls in enumerate(t):
        candidates = np.flatnonzero(y != cls)
        if candidates.size < k:
            raise ValueError(
                f"other_class: explicand {b} (target {int(cls)}) has only {candidates.size} pool samples of other "
                f"classes, but k={k} were requested"
            )
        out.append(x[np.sort(rng.choice(candidates, size=k, replace=False))])
    return np.stack(out).astype(np.float32)


def top_k_classes(model, inputs, x_pool, y_pool, classes=slice(1, 4), per_class=None, k=None, seed=None):
    """References from the classes the model ranks ``classes`` (default 2nd-4th) for each explicand.

    Parameters
    ----------
    model : keras.Model or callable
        Classifier returning ``[B, C]`` scores (logits or probabilities: only the ranking is used).
    inputs : array ``[B, *S]``
        The explicands.
    x_pool, y_pool : arrays ``[P, *S]`` and ``[P]`` (or one-hot ``[P, C]``)
        Labelled candidate references.
    classes : slice or sequence of ints
        Ranks (0 = the predicted class) whose classes supply references; default ``slice(1, 4)``,
        the release's "choice trick" (classes ranked 2nd to 4th).
    per_class : int, optional
        Samples drawn from each selected class. Default: the largest number every selected class
        of every explicand can supply (the release uses all local images of those classes).
    k : int, optional
        Instead of ``per_class``: ``k`` samples drawn from the union of the selected classes.
    seed : int, optional
        Seed of the numpy generator used for drawing.

    Returns
    -------
    numpy.ndarray ``[B, R, *S]`` float32, ``R = per_class * len(ranks)`` or ``k``.
    """
    if per_class is not None and k is not None:
        raise ValueError("top_k_classes: pass per_class or k, not both")
    per_class = check_optional_positive_int(per_class, "per_class")
    k = check_optional_positive_int(k, "k")
    x, y = _pool(x_pool, y_pool)
    problem = _eng.prepare(model, inputs, None)
    out = problem.forward(problem.flat_x)
    scores = np.asarray(out)
    if scores.ndim != 2:
        raise ValueError(f"top_k_classes needs a classifier with [B, C] outputs, got shape {scores.shape}")
    n_classes = scores.shape[1]
    order = np.argsort(-scores, axis=1, kind="stable")  # ranked classes per explicand
    ranks = np.arange(n_classes)[classes] if isinstance(classes, slice) else np.asarray(classes, np.int64)
    ranks = np.atleast_1d(ranks)
    if ranks.size == 0 or ranks.min() < 0 or ranks.max() >= n_classes:
        raise ValueError(f"classes: ranks must be within 0..{n_classes - 1} and not empty, got {ranks.tolist()}")
    rng = np.random.default_rng(_eng.as_numpy_seed(seed))
    chosen = order[:, ranks]  # [B, n_ranks]
    if k is None and per_class is None:
        per_class = min(int(np.sum(y == c)) for c in np.unique(chosen))
        if per_class == 0:
            missing = sorted(int(c) for c in np.unique(chosen) if not np.any(y == c))
            raise ValueError(
                f"top_k_classes: the pool has no samples of classes {missing}, which the model ranks "
                f"at {ranks.tolist()} for some explicand"
            )
    refs = []
    for b in range(scores.shape[0]):
        if k is not None:
            candidates = np.flatnonzero(np.isin(y, chosen[b]))
            if candidates.size < k:
                raise ValueError(
                    f"top_k_classes: explicand {b} has only {candidates.size} pool samples of classes "
                    f"{chosen[b].tolist()}, but k={k} were requested"
                )
            idx = np.sort(rng.choice(candidates, size=k, replace=False))
        else:
            idx = []
            for cls in chosen[b]:
                candidates = np.flatnonzero(y == cls)
                if candidates.size < per_class:
                    raise ValueError(
                        f"top_k_classes: class {int(cls)} has only {candidates.size} pool samples, but "
                        f"per_class={per_class} were requested"
                    )
                idx.extend(np.sort(rng.choice(candidates, size=per_class, replace=False)).tolist())
            idx = np.asarray(idx)
        refs.append(x[idx])
    return np.stack(refs).astype(np.float32)
