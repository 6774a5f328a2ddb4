"""The floors of the package and what may import what (docs/architecture.md), checked on the source.

* the engine (``tf_pathattr.engine``) knows no method: it imports nothing from ``tf_pathattr.methods``
  and nothing above it;
* a method (``tf_pathattr.methods``) knows no workflow: no text, dataset, Beam, callback, SavedModel,
  command-line, demo or picture module;
* the library never imports the command line (``tf_pathattr.cli``) or the test zoo
  (``tf_pathattr.testing``).

Every import statement counts, module-level or inside a function (a lazy import is still a
dependency), ``from . import x`` included. Pure ``ast``: nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tf_pathattr"

#: modules (and packages) above the methods: what a method must not import
WORKFLOWS = (
    "tf_pathattr.text",
    "tf_pathattr.dataset",
    "tf_pathattr.beam",
    "tf_pathattr.callbacks",
    "tf_pathattr.saved_model",
    "tf_pathattr.cli",
    "tf_pathattr.demo",
    "tf_pathattr.viz",
    "tf_pathattr.files",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every tf_pathattr module ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if _is_package(path) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            for alias in node.names:  # `from . import layers`: a submodule
                found.add(f"{source}.{alias.name}")
    return {m for m in found if m == "tf_pathattr" or m.startswith("tf_pathattr.")}


def _existing(modules: set[str]) -> set[str]:
    """Only names that are modules or packages (``from .x import some_function`` adds ``x.some_function``)."""
    out = set()
    for m in modules:
        rel = Path(*m.split("."))
        if (PACKAGE.parent / rel).with_suffix(".py").is_file() or (PACKAGE.parent / rel / "__init__.py").is_file():
            out.add(m)
    return out


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {module_name(p): _existing(imported_modules(p)) for p in SOURCES}


def _violations(floor: str, forbidden) -> list[str]:
    return sorted(
        f"{src} imports {dst}"
        for src, targets in GRAPH.items()
        if _under(src, floor)
        for dst in targets
        if any(_under(dst, f) for f in forbidden)
    )


def test_the_graph_is_read():
    # the checks below cannot pass vacuously: the parser sees the imports that are known to exist
    assert "tf_pathattr.engine.gradients" in GRAPH["tf_pathattr.methods.integrated_gradients"]
    assert "tf_pathattr.engine.layers" in GRAPH["tf_pathattr.engine.gradients"]  # a function-level import
    assert "tf_pathattr.methods.registry" in GRAPH["tf_pathattr.text"]


def test_the_engine_imports_no_method_and_nothing_above_it():
    above = ("tf_pathattr.methods", "tf_pathattr.metrics", "tf_pathattr.baselines", "tf_pathattr.references")
    assert _violations("tf_pathattr.engine", above + WORKFLOWS) == []


def test_methods_import_no_workflow_text_or_dataset_module():
    assert _violations("tf_pathattr.methods", WORKFLOWS) == []


#: known violations, each with the issue that removes it (a strict ledger: delete the entry when it is fixed)
KNOWN_VIOLATIONS: dict = {}  # empty: issue 17 moved model loading and pixel scaling into tf_pathattr/files.py


@pytest.mark.parametrize("lower", ["tf_pathattr.cli", "tf_pathattr.testing"])
def test_the_library_never_imports_the_command_line_or_the_test_zoo(lower):
    users = sorted(
        f"{src} imports {dst}"
        for src, targets in GRAPH.items()
        if not _under(src, lower) and src != "tf_pathattr.__main__"
        for dst in targets
        if _under(dst, lower)
    )
    known = sorted(v for v in KNOWN_VIOLATIONS if v.endswith(f"imports {lower}"))
    assert users == known, "a new violation, or a fixed one still in KNOWN_VIOLATIONS"


def test_a_violation_is_seen(tmp_path, monkeypatch):
    # the checker itself: a function-level import of a method inside the engine is reported
    fake = {"tf_pathattr.engine.fake": {"tf_pathattr.methods.integrated_gradients"}}
    monkeypatch.setattr(__import__(__name__), "GRAPH", {**GRAPH, **fake}, raising=True)
    assert _violations("tf_pathattr.engine", ("tf_pathattr.methods",)) == [
        "tf_pathattr.engine.fake imports tf_pathattr.methods.integrated_gradients"
    ]
