"""Calling a registered method by name: :func:`resolve_method`, :func:`attribute`, and
:func:`explain_with_gap` (attributions together with the per-example completeness residual).

Used by the callbacks, the demo, the dataset runs and the command line; it reads only the registry.
"""

from __future__ import annotations

import inspect

import numpy as np

from . import registry

__all__ = ["resolve_method", "attribute", "completeness_mode", "explain_with_gap", "check_options"]


def resolve_method(method):
    """The attribution function for a name, an alias or a callable."""
    if callable(method):
        return method
    return registry.get(method).function


def attribute(model, inputs, target=None, method="integrated_gradients", **options):
    """Run the attribution method called ``method`` (a name from :data:`METHODS` or an alias).

    ``options`` are the method's keyword options (see ``tpa.methods.registry.get(method)``).
    """
    return resolve_method(method)(model, inputs, target, **options)


def check_options(method, options) -> None:
    """Raise ``TypeError`` naming the first option the method's signature does not take.

    Lets a run refuse a misspelt option before any record is read, instead of mistaking the
    method's failure on the first record for a bad record. A method taking ``**kwargs`` is not checked.
    """
    fn = resolve_method(method)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins, some callables
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for name in options or {}:
        if name not in known:
            extra = [n for n in known if n not in ("model", "inputs", "target")]
            raise TypeError(
                f"options: {getattr(fn, '__name__', 'the method')} takes no option {name!r}; it takes {extra}"
            )


def completeness_mode(method) -> str:
    """How a method reports completeness, from its registry entry: ``"delta"``
    (``return_convergence_delta``), ``"details"`` (a ``completeness_residual`` in ``return_details``,
    e.g. IG2) or ``"none"`` (no completeness target, or a callable that is not registered)."""
    spec = registry.spec_of(method)
    if spec is None:
        return "none"
    if spec.completeness is not None:
        return "delta"
    if spec.details:
        return "details"
    return "none"


def first_array(attr) -> np.ndarray:
    """The first input's attributions as a numpy array (a dict's first value, a list's first item)."""
    if isinstance(attr, dict):
        attr = next(iter(attr.values()))
    if isinstance(attr, (list, tuple)):
        attr = attr[0]
    return np.asarray(attr.numpy() if hasattr(attr, "numpy") else attr)


def _numpy(t):
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


def explain_with_gap(method, model, inputs, target, options, want_gap=True):
    """Run ``method`` and return ``(attributions, delta)``; ``delta`` is the per-example completeness
    residual ``sum(attr) - (F(x) - F(path start))`` when the method reports one, else ``None``."""
    opts = dict(options or {})
    mode = completeness_mode(method) if want_gap else "none"
    if mode == "delta":
        opts["return_convergence_delta"] = True
    elif mode == "details":
        opts["return_details"] = True
    out = method(model, inputs, target, **opts)
    if mode == "delta":
        attr, delta = out
        return attr, _numpy(delta)
    if mode == "details":
        attr, details = out
        residual = details.get("completeness_residual") if isinstance(details, dict) else None
        if residual is None:
            return attr, None
        residual = _numpy(residual).astype(np.float64)
        # per example: the residual of the mean attribution is the mean of the per-reference residuals
        return attr, residual.reshape(residual.shape[0], -1).mean(axis=1)
    return out, None
