"""The package's import graph, read from the source with ``ast`` (imports inside functions included):
no circle between modules of ``tf_pathattr``, and no library module imports the command line.

A module's own ancestor packages are left out of its edges (Python imports them before the module
itself, so an edge to them is no dependency of the module's code).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "tf_pathattr"
ROOT = "tf_pathattr"


def _modules():
    """``{module name: path}`` for every ``.py`` file of the package."""
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR).with_suffix("")
        parts = [ROOT, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _ancestors(name):
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _imports(name, path, modules):
    """The package modules ``name`` imports anywhere in its source (module level or inside functions)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets.add(origin)
            for alias in node.names:
                targets.add(f"{origin}.{alias.name}")
    deps = set()
    for t in targets:
        # the longest prefix of t that is a module of the package
        parts = t.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        if parts:
            deps.add(".".join(parts))
    return deps - {name} - _ancestors(name) - {ROOT}


def import_graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph):
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def test_the_graph_is_read():
    graph = import_graph()
    assert "tf_pathattr.cli" in graph and "tf_pathattr.methods.registry" in graph
    # a relative import, a function-level import and a from-package import are all seen
    assert "tf_pathattr.methods.registry" in graph["tf_pathattr.methods"]
    # cli imports the demo only inside cmd_demo: function-level imports are edges too
    assert "tf_pathattr.demo" in graph["tf_pathattr.cli"]


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    cycles = _cycles(import_graph())
    assert cycles == [], f"import circles inside tf_pathattr: {cycles}"


def test_no_library_module_imports_the_command_line():
    offenders = sorted(
        name for name, deps in import_graph().items() if "tf_pathattr.cli" in deps and name != "tf_pathattr.cli"
    )
    assert offenders == [], f"library modules importing tf_pathattr.cli: {offenders}"
