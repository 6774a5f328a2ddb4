"""One module per method; each declares itself with a ``SPEC`` (:class:`registry.MethodSpec`).

:data:`METHODS` lists the canonical names, :func:`attribute` dispatches by name or alias, and
:mod:`.registry` answers what each method supports.
"""

from . import (
    agi,
    blur_ig,
    dig,
    expected_gradients,
    gradients,
    guided_ig,
    idg,
    idgi,
    ig2,
    integrated_gradients,
    noise_tunnel,
    registry,
    sig,
    smooth_taylor,
    split_ig,
    xrai,
)

# The registry: one entry per method module (the noise tunnel module also declares SmoothGrad).
for _spec in (
    integrated_gradients.SPEC,
    expected_gradients.SPEC,
    gradients.SPEC,
    guided_ig.SPEC,
    blur_ig.SPEC,
    idg.SPEC,
    ig2.SPEC,
    smooth_taylor.SPEC,
    split_ig.SPEC,
    xrai.SPEC,
    noise_tunnel.SPEC,
    noise_tunnel.SMOOTHGRAD_SPEC,
    idgi.SPEC,
    agi.SPEC,
    dig.SPEC,
    sig.SPEC,
):
    registry.register(_spec)
del _spec

METHODS = registry.names()


from .calling import attribute, completeness_mode, explain_with_gap, resolve_method  # noqa: E402,F401
