"""Type information for users' type checkers: py.typed ships, and the return type follows the flags.

Every registered method whose ``return_convergence_delta`` / ``return_details`` option changes what it
returns (read from the registry: ``completeness`` and ``details``) declares ``typing.overload``s: with
the flag ``Literal[True]`` the result is a tuple, with ``Literal[False]`` the attributions alone.
"""

import typing
from pathlib import Path

import pytest

import tf_pathattr
from tf_pathattr.methods import registry


def test_py_typed_marker_ships():
    assert (Path(tf_pathattr.__file__).parent / "py.typed").is_file()
    setup_py = (Path(tf_pathattr.__file__).parents[1] / "setup.py").read_text()
    assert '"py.typed"' in setup_py  # package_data: the marker goes into the wheel


def _flags(spec):
    flags = []
    if spec.completeness is not None:
        flags.append("return_convergence_delta")
    if spec.details:
        flags.append("return_details")
    return flags


@pytest.mark.parametrize("name", [s.name for s in registry.specs() if _flags(s)])
def test_overloads_follow_the_return_flags(name):
    spec = registry.get(name)
    # the public function of that name (the noise tunnel registers a by-name wrapper of tpa.noise_tunnel)
    function = getattr(tf_pathattr, name) if spec.function.__name__.startswith("_") else spec.function
    overloads = typing.get_overloads(function)
    assert overloads, f"{function.__name__} has no typing.overload declarations"
    for flag in _flags(spec):
        seen = set()
        for ov in overloads:
            hints = typing.get_type_hints(ov, globalns=vars(__import__(ov.__module__, fromlist=["_"])))
            value = hints.get(flag)
            if typing.get_origin(value) is typing.Literal:
                (literal,) = typing.get_args(value)
                returns_tuple = typing.get_origin(hints["return"]) is tuple
                if literal is True:
                    assert returns_tuple, f"{name}: {flag}=True must return a tuple"
                elif len(_flags(spec)) == 1 or all(typing.get_args(hints.get(f)) == (False,) for f in _flags(spec)):
                    assert not returns_tuple, f"{name}: {flag}=False must return the attributions alone"
                seen.add(literal)
        assert seen == {True, False}, f"{name}: overloads for {flag} cover {seen}"


@pytest.mark.parametrize("name", [s.name for s in registry.specs() if _flags(s)])
def test_overloads_match_the_implementation(name):
    """Each overload takes the implementation's positional parameters and every one of its keywords, and
    ``**options`` only where the implementation forwards options (regenerate with
    ``python tools/write_overloads.py``); the flags exist on the implementation."""
    import inspect

    spec = registry.get(name)
    function = getattr(tf_pathattr, name) if spec.function.__name__.startswith("_") else spec.function
    impl = inspect.signature(function).parameters
    positional = [p for p, v in impl.items() if v.kind == v.POSITIONAL_OR_KEYWORD]
    for flag in _flags(spec):
        assert flag in impl, f"{name} declares {flag} in the registry but does not take it"
    for ov in typing.get_overloads(function):
        params = inspect.signature(ov).parameters
        kinds = [v.kind for v in params.values()]
        assert [p for p, v in params.items() if v.kind == v.POSITIONAL_OR_KEYWORD] == positional
        keywords = [p for p, v in params.items() if v.kind == v.KEYWORD_ONLY]
        assert keywords[: len(_flags(spec))] == _flags(spec)
        assert sorted(keywords) == sorted(p for p, v in impl.items() if v.kind == v.KEYWORD_ONLY)
        forwards = any(v.kind == v.VAR_KEYWORD for v in impl.values())
        assert (kinds[-1] == inspect.Parameter.VAR_KEYWORD) == forwards, f"{name}: **options only if forwarded"


def test_public_method_names_block_is_current():
    """``tf_pathattr/__init__.py`` imports every registered name and alias (static tools read these
    lines); the block is generated from the registry: ``python tools/write_overloads.py`` rewrites it."""
    import importlib.util

    root = Path(tf_pathattr.__file__).parents[1]
    spec = importlib.util.spec_from_file_location("write_overloads", root / "tools" / "write_overloads.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src = (root / "tf_pathattr" / "__init__.py").read_text()
    start, end = src.index(tool.BEGIN), src.index(tool.END) + len(tool.END)
    assert src[start:end] == tool.public_names_block(), "run python tools/write_overloads.py"
    for name in registry.names():
        for alias in (name,) + registry.aliases_of(name):
            assert f" as {alias}  #" in src[start:end] or f" import {alias}  #" in src[start:end], alias


TYPING = Path(__file__).parent / "typing"


def _mypy(*paths):
    mypy_api = pytest.importorskip("mypy.api")
    root = Path(__file__).parents[1]
    out, err, status = mypy_api.run(["--config-file", str(root / "pyproject.toml"), *map(str, paths)])
    return status, out + err


@pytest.mark.slow
def test_mypy_accepts_the_typed_usage_example_and_the_engine():
    status, report = _mypy()  # the files of [tool.mypy] in pyproject.toml (engine/, registry, usage example)
    assert status == 0, report


@pytest.mark.slow
def test_mypy_rejects_a_misspelt_keyword():
    status, report = _mypy(TYPING / "misspelt_keyword.py")
    assert status == 1, report
    assert 'No overload variant of "integrated_gradients"' in report  # n_step=: an overloaded method
    assert 'Unexpected keyword argument "multiply_by_input" for "gradients"' in report  # a plain signature
    assert report.count("misspelt_keyword.py:") and "usage_example" not in report
