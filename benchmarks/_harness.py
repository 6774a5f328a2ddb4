"""Timing helpers shared by the benchmark scripts.

* :func:`time_interleaved` runs several candidates round-robin (so drift and noisy neighbours hit
  them all alike) and reports the median wall time and CPU time per candidate.
* :func:`write_section` replaces one named section of ``benchmarks/RESULTS.md`` (between
  ``<!-- BEGIN name -->`` and ``<!-- END name -->``), so each script owns its own tables.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import tensorflow as tf

        tfv = tf.__version__
        gpus = len(tf.config.list_physical_devices("GPU"))
    except Exception:  # pragma: no cover
        tfv, gpus = "?", 0
    return f"{cpu}, {os.cpu_count()} logical cores, {gpus} GPU(s), Python {platform.python_version()}, TensorFlow {tfv}"


def _result(x):
    """Force evaluation of tensors / nested results."""
    import tensorflow as tf

    for t in tf.nest.flatten(x):
        if hasattr(t, "numpy"):
            t.numpy()
    return x


def time_interleaved(candidates: dict, repeats: int = 7, warmup: int = 1) -> dict:
    """Median wall and CPU seconds per candidate (callables without arguments), run round-robin."""
    for _ in range(warmup):
        for fn in candidates.values():
            _result(fn())
    walls = {k: [] for k in candidates}
    cpus = {k: [] for k in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            w0, c0 = time.perf_counter(), time.process_time()
            _result(fn())
            walls[name].append(time.perf_counter() - w0)
            cpus[name].append(time.process_time() - c0)
    return {
        k: {"wall": statistics.median(walls[k]), "cpu": statistics.median(cpus[k]), "n": repeats} for k in candidates
    }


def table(rows, headers) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\nEach section is written by the script named in it; rerun that script to refresh it.\n"
    )
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
