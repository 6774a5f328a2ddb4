"""One module per method; :func:`attribute` dispatches by name."""
from .blur_ig import blur_integrated_gradients
from .expected_gradients import expected_gradients
from .gradients import gradients
from .guided_ig import guided_integrated_gradients
from .idg import integrated_decision_gradients
from .ig2 import ig2
from .integrated_gradients import integrated_gradients
from .noise_tunnel import noise_tunnel
from .smooth_taylor import smooth_taylor
from .split_ig import split_integrated_gradients  # noqa: F401
from .xrai import xrai


def _noise_tunnel_by_name(model, inputs, target=None, base_method="integrated_gradients", **options):
    """``attribute(..., method="noise_tunnel", base_method=NAME, nt_type=...)``."""
    return noise_tunnel(base_method, model, inputs, target, **options)


# name -> (function, aliases). One entry per method.
_TABLE = {
    "integrated_gradients": (integrated_gradients, ("ig",)),
    "expected_gradients": (expected_gradients, ("eg",)),
    "gradients": (gradients, ("saliency", "vanilla_gradients")),
    "noise_tunnel": (_noise_tunnel_by_name, ("smoothgrad",)),
    "blur_integrated_gradients": (blur_integrated_gradients, ("blur_ig",)),
    "integrated_decision_gradients": (integrated_decision_gradients, ("idg",)),
    "smooth_taylor": (smooth_taylor, ()),
    "ig2": (ig2, ()),
    "guided_integrated_gradients": (guided_integrated_gradients, ("guided_ig",)),
}
_REGISTRY = {name: fn for name, (fn, _) in _TABLE.items()}
_ALIASES = {alias: name for name, (_, aliases) in _TABLE.items() for alias in aliases}

# XRAI ranks regions on the host and returns [B, H, W]: reachable through `attribute` but not listed
# in METHODS, which the callback, the exporter and the demo iterate over. Split IG returns two maps
# and is only a function (`tpa.split_integrated_gradients`).
_HOST_METHODS = {
    "xrai": xrai,
}
METHODS = tuple(sorted(_REGISTRY))


def resolve_method(method):
    """The attribution function for a name, an alias or a callable."""
    if callable(method):
        return method
    name = _ALIASES.get(method, method)
    if name in _HOST_METHODS:
        return _HOST_METHODS[name]
    if name not in _REGISTRY:
        known = sorted(set(_REGISTRY) | set(_ALIASES) | set(_HOST_METHODS))
        raise ValueError(f"method: unknown method {method!r}; known methods are {known}")
    return _REGISTRY[name]


def attribute(model, inputs, target=None, method="integrated_gradients", **options):
    """Run the attribution method called ``method`` (a name from :data:`METHODS` or an alias)."""
    return resolve_method(method)(model, inputs, target, **options)
