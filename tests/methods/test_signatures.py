"""One signature style for every registered method, and declarations that match the signatures (issue 9, Build)."""

import inspect

import pytest

from tf_pathattr.methods import registry


def _params(spec):
    return inspect.signature(spec.function).parameters


def _takes(spec, name):
    params = _params(spec)
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@pytest.mark.parametrize("name", registry.names())
def test_everything_after_target_is_keyword_only(name):
    params = list(_params(registry.get(name)).values())
    assert [p.name for p in params[:3]] == ["model", "inputs", "target"]
    assert params[2].default is None
    for p in params[3:]:
        assert p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD), f"{name}: {p.name} is not keyword-only"


@pytest.mark.parametrize("name", registry.names())
def test_declared_capabilities_match_the_signature(name):
    spec = registry.get(name)
    assert _takes(spec, "internal_batch_size"), "internal_batch_size is the memory cap everywhere"
    assert _takes(spec, "layer"), "layer= is taken (and refused with the declared reason where unsupported)"
    if spec.stochastic:
        assert _takes(spec, "seed")
    if spec.details:
        assert _takes(spec, "return_details")
    if spec.completeness is not None:
        assert _takes(spec, "return_convergence_delta")
    if "baseline" in spec.per_example_options:
        assert _takes(spec, "seed"), "methods with a baseline take seed= for random baseline recipes"
    for option in spec.per_example_options:
        assert _takes(spec, option)


def test_no_method_keeps_the_old_option_names_as_primary():
    ig = registry.get("integrated_gradients")
    assert "rule" in _params(ig) and _params(ig)["method"].default is None  # deprecated alias only
    assert "max_batch" in _params(registry.get("ig2")) and _params(registry.get("ig2"))["max_batch"].default is None
