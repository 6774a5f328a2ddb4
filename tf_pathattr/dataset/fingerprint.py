"""Fingerprints for ``run.json``: a run folder is resumed only by the same run.

A run is described by its model (the hash of its weights and architecture, or of its file), its
method and options, its target, the scale / preprocessing of image files, the table's metrics and
score, the batching and output layout, and its data (:attr:`tf_pathattr.dataset.sources.Source.fingerprint`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .sources import fingerprint_array

__all__ = ["jsonable", "model_fingerprint", "path_fingerprint", "differences"]


def _numpy(v):
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v)


def jsonable(v):
    """A JSON-ready description of an option value (arrays by shape, dtype and hash; callables by name)."""
    if isinstance(v, dict):
        return {str(k): jsonable(w) for k, w in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [jsonable(w) for w in v]
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if hasattr(v, "numpy") or isinstance(v, np.ndarray):
        a = _numpy(v)
        return {"array": list(a.shape), "dtype": str(a.dtype), "sha1": fingerprint_array(a)}
    if callable(v):
        return {"callable": f"{getattr(v, '__module__', '?')}.{getattr(v, '__qualname__', type(v).__name__)}"}
    return {"object": type(v).__name__}


def path_fingerprint(path) -> dict[str, str]:
    """sha1 of a model file, or of every file of a SavedModel folder (relative names and bytes)."""
    p = Path(path)
    h = hashlib.sha1()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return {"file": os.path.basename(os.path.normpath(str(p))), "sha1": h.hexdigest()}


def model_fingerprint(model, path=None) -> dict[str, str]:
    """The model's identity: its file's hash when loaded from ``path``; else the sha1 of its
    architecture (Keras config) and of every weight; for another callable, its qualified name and
    the hash of the variables it holds (if any)."""
    if path is not None:
        return path_fingerprint(path)
    h = hashlib.sha1()
    kind = type(model).__name__
    try:
        import keras

        if isinstance(model, keras.Model):
            h.update(_architecture(model).encode())
            for w in model.weights:  # in order; their names hold per-process counters, so they are left out
                h.update(str(tuple(w.shape)).encode() + fingerprint_array(_numpy(w)).encode())
            return {"keras": kind, "sha1": h.hexdigest(), "n_weights": str(len(model.weights))}
    except ImportError:  # pragma: no cover
        pass
    name = f"{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', kind)}"
    h.update(name.encode())
    variables = list(getattr(model, "variables", None) or getattr(model, "trainable_variables", None) or [])
    for v in variables:
        h.update(fingerprint_array(_numpy(v)).encode())
    return {"callable": name, "sha1": h.hexdigest(), "n_variables": str(len(variables))}


def _without_names(config):
    """A Keras config with the generated names (``dense_3``, ``sequential_1``) left out."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k not in ("name", "inbound_nodes", "build_config")}
    if isinstance(config, (list, tuple)):
        return [_without_names(v) for v in config]
    return config


def _architecture(model) -> str:
    """The model's architecture as text: its Keras config without layer names (the layer classes in
    order where the model has no config)."""
    import json

    try:
        return json.dumps(_without_names(model.get_config()), sort_keys=True, default=repr)
    except Exception:  # subclassed models without get_config
        return type(model).__name__ + ":" + ",".join(type(layer).__name__ for layer in model._flatten_layers())


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The keys (dotted) where two configurations differ."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out
