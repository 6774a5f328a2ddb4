"""Rewrite tests and benchmarks to import the shipped zoo (``tf_pathattr.testing``) instead of ``tests/`` modules.

Idempotent; run it after merging a branch that still uses the old imports::

    python tools/rewrite_zoo_imports.py            # rewrites in place, lists the files it changed
    python tools/rewrite_zoo_imports.py --check    # exit 1 (listing the files) if anything is left to rewrite

Rewrites, in ``tests/**/*.py``, ``benchmarks/**/*.py`` and ``colab/*.py``:

* ``import models as zoo`` -> ``from tf_pathattr.testing import models as zoo``;
* ``from text_models import a, b`` -> ``from tf_pathattr.testing.text_models import a, b``;
* ``import reference`` (any indentation) -> ``from tf_pathattr.testing import reference``;
* ``from conftest import make_smooth_cnn, make_linear_model`` -> the zoo import, and the old names
  ``make_smooth_cnn(`` / ``make_linear_model(`` -> ``zoo.smooth_cnn(`` / ``zoo.linear_model(``;
* ``sys.path.insert(0, <...> "tests" <...>)`` lines -> removed (the zoo is a package module now).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO_IMPORT = "from tf_pathattr.testing import models as zoo"
CONFTEST_NAMES = {"make_smooth_cnn": "smooth_cnn", "make_linear_model": "linear_model", "make_toy_cnn": "toy_cnn"}

RULES = [
    (re.compile(r"^(\s*)import models as zoo\b", re.M), r"\1" + ZOO_IMPORT),
    (re.compile(r"^(\s*)import models\s*$", re.M), r"\1from tf_pathattr.testing import models"),
    (re.compile(r"^(\s*)from models import ", re.M), r"\1from tf_pathattr.testing.models import "),
    (re.compile(r"^(\s*)from text_models import ", re.M), r"\1from tf_pathattr.testing.text_models import "),
    (re.compile(r"^(\s*)import text_models\b", re.M), r"\1from tf_pathattr.testing import text_models"),
    (re.compile(r"^(\s*)import reference\b", re.M), r"\1from tf_pathattr.testing import reference"),
    (re.compile(r"^(\s*)from reference import ", re.M), r"\1from tf_pathattr.testing.reference import "),
    # sys.path edits that reach tests/ (the zoo, text_models, reference, conftest)
    (re.compile(r"^[ \t]*sys\.path\.insert\([^\n]*[\"']tests[\"'][^\n]*\)[^\n]*\n", re.M), ""),
    (re.compile(r",\s*str\(ROOT / [\"']tests[\"']\)"), ""),
]
CONFTEST_IMPORT = re.compile(r"^(\s*)from conftest import ([\w, ]+?)(\s*#[^\n]*)?$", re.M)


def rewrite(text: str) -> str:
    for pattern, repl in RULES:
        text = pattern.sub(repl, text)

    def conftest(match):
        indent, names = match.group(1), [n.strip() for n in match.group(2).split(",")]
        unknown = [n for n in names if n not in CONFTEST_NAMES]
        if unknown:
            raise SystemExit(f"rewrite_zoo_imports: no zoo name for conftest's {unknown}")
        return indent + ZOO_IMPORT + ("  # noqa: E402" if "E402" in (match.group(3) or "") else "")

    text = CONFTEST_IMPORT.sub(conftest, text)
    for old, new in CONFTEST_NAMES.items():
        text = re.sub(rf"\b{old}\(", f"zoo.{new}(", text)
    # one zoo import per file: keep the first top-level one (a function-level one stays where it is)
    lines, seen = text.split("\n"), False
    for i, line in enumerate(lines):
        if line == ZOO_IMPORT or line == ZOO_IMPORT + "  # noqa: E402":
            if seen:
                lines[i] = None
            seen = True
    return "\n".join(line for line in lines if line is not None)


def targets():
    for folder in ("tests", "benchmarks", "colab"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file needs rewriting")
    args = parser.parse_args()
    changed = []
    for path in targets():
        if path.name == "rewrite_zoo_imports.py":
            continue
        old = path.read_text(encoding="utf-8")
        new = rewrite(old)
        if new != old:
            changed.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in changed:
        print(path)
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
