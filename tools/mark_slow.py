"""Write tests/slow_tests.txt, the tests the default ``pytest`` skips, from measured durations.

The default ``pytest`` (the README's fast loop) must stay under 5 minutes on 2 cores; CI runs everything
(``pytest --run-slow --durations=25``). Tests marked ``@pytest.mark.slow`` in the code stay slow; this list adds
the tests (or single parametrizations) that are expensive by measurement, read by ``tests/conftest.py``.

Measure, then write the list (re-run after merging branches that add tests)::

    pytest --durations=0 -q -p no:randomly > durations.txt        # a quiet machine, the default run
    python tools/mark_slow.py durations.txt --threshold 1.5       # seconds per test (setup + call + teardown)

``--scale`` divides measured times first (e.g. ``--scale 3`` for a machine loaded three times over).
Reads pytest's ``--durations`` lines (``1.23s call tests/x.py::test_y[p]``) or tab-separated
``when<TAB>seconds<TAB>outcome<TAB>nodeid`` lines. A test already in the list stays unless ``--replace``.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "tests" / "slow_tests.txt"
HEADER = (
    "# Tests the default `pytest` skips (run them with --run-slow; CI does). Written by tools/mark_slow.py from\n"
    "# measured durations; one pytest node id per line (a function id covers all its parametrizations), then\n"
    "# the seconds measured. Tests that are slow by design carry @pytest.mark.slow in the code instead.\n"
)
DURATION_LINE = re.compile(r"^\s*([0-9.]+)s\s+(setup|call|teardown)\s+(\S+)")


def read_durations(path: Path) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] in ("setup", "call", "teardown"):
            totals[parts[3]] += float(parts[1])
            continue
        m = DURATION_LINE.match(line)
        if m:
            totals[m.group(3)] += float(m.group(1))
    return dict(totals)


def read_list(path: Path = LIST) -> dict[str, str]:
    out = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                node, _, note = line.partition("#")
                out[node.strip()] = note.strip()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("durations", type=Path, nargs="+")
    parser.add_argument("--threshold", type=float, default=1.5, help="seconds per test, after --scale")
    parser.add_argument("--scale", type=float, default=1.0, help="divide measured seconds by this load factor")
    parser.add_argument("--replace", action="store_true", help="forget the tests already listed")
    args = parser.parse_args()
    listed = {} if args.replace else read_list()
    for path in args.durations:
        for node, seconds in read_durations(path).items():
            seconds /= args.scale
            if seconds >= args.threshold:
                listed[node] = f"{seconds:.1f} s"
    lines = [f"{node}  # {note}" if note else node for node, note in sorted(listed.items())]
    LIST.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{LIST.relative_to(ROOT)}: {len(lines)} tests")


if __name__ == "__main__":
    main()
