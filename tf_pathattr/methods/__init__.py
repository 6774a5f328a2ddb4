"""One module per method; :func:`attribute` dispatches by name."""
from .guided_ig import guided_integrated_gradients
from .integrated_gradients import integrated_gradients

_REGISTRY = {
    "integrated_gradients": integrated_gradients,
    "guided_integrated_gradients": guided_integrated_gradients,
}
_ALIASES = {
    "ig": "integrated_gradients",
    "guided_ig": "guided_integrated_gradients",
}

METHODS = tuple(sorted(_REGISTRY))


def resolve_method(method):
    """The attribution function for a name, an alias or a callable."""
    if callable(method):
        return method
    name = _ALIASES.get(method, method)
    if name not in _REGISTRY:
        known = sorted(set(_REGISTRY) | set(_ALIASES))
        raise ValueError(f"method: unknown method {method!r}; known methods are {known}")
    return _REGISTRY[name]


def attribute(model, inputs, target=None, method="integrated_gradients", **options):
    """Run the attribution method called ``method`` (a name from :data:`METHODS` or an alias)."""
    return resolve_method(method)(model, inputs, target, **options)
