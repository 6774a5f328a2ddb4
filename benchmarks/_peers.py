"""The installed peer libraries the guard compares against: PAIR ``saliency`` (captum is PyTorch-only).

PAIR is driven through :mod:`tf_pathattr.testing.reference`, the same shim and gradient function the parity
tests use (it aliases ``np.trapz`` / ``np.quantile(interpolation=)``, removed in numpy 2.4, on import).
"""

from __future__ import annotations

import importlib.util


def available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def pair_saliency():
    """``saliency.core`` with the numpy 2.4 aliases it needs, or ``None`` when it is not installed."""
    if not available("saliency"):
        return None
    from tf_pathattr.testing import reference

    return reference.saliency


def pair_gradient_function(saliency, model, target: int):
    """PAIR's ``call_model_function``: d logit[target] / d input from one compiled function (any batch)."""
    from tf_pathattr.testing import reference

    return reference.call_model_function(model, target)
