"""Count the Keras models built ad hoc in test files (outside the shipped zoo, tf_pathattr/testing/).

A model construction is a call to ``keras.Sequential(...)``, ``keras.Model(...)`` or ``keras.models.*(...)``
(any alias ending in ``.Sequential`` / ``.Model``) in ``tests/**/*.py``. Prints one line per file and the total;
``--list`` prints every call site.

    python tools/count_adhoc_models.py [--list]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRUCTORS = {"Sequential", "Model", "Functional"}


def constructions(path: Path) -> list[tuple[int, str]]:
    """``(line, enclosing function)`` for every Keras model construction in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []

    def visit(node, where):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else where
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
                if child.func.attr in CONSTRUCTORS and "keras" in ast.unparse(child.func.value):
                    out.append((child.lineno, where))
            visit(child, inner)

    visit(tree, "<module>")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print every call site")
    args = parser.parse_args()
    total = 0
    for path in sorted((ROOT / "tests").rglob("*.py")):
        found = constructions(path)
        if not found:
            continue
        total += len(found)
        print(f"{len(found):4d}  {path.relative_to(ROOT)}")
        if args.list:
            for line, where in found:
                print(f"        {line:5d}  {where}")
    print(f"{total:4d}  total")


if __name__ == "__main__":
    main()
