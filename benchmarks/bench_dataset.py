"""Dataset-scale throughput: explain_dataset in-process (the command line's default) vs the Beam direct runner
in multi-threading mode (Beam's local default) and in multi-processing mode (opt-in) vs a plain Python loop of
tpa.attribute calls.

Workloads: 2,000 digits (scikit-learn's 1,797, the first 203 repeated) through the demo's digits CNN
architecture, and 64 MobileNetV2 224x224x3 images (random weights and images, nothing downloaded).
Every candidate explains the same examples with Integrated Gradients; the in-process and Beam runs read
the same ``.npy`` file and write the same outputs (npz shards, Parquet table with the completeness gap),
the loop only calls ``tpa.attribute`` batch by batch and keeps the arrays in memory. Each candidate
runs once, in a fresh process whose imports (TensorFlow, Keras, tf_pathattr, Beam) are done before the
clock starts; the time runs from loading the model to the last output, so it includes the model load,
tracing, and for Beam the start of its worker processes (each imports TensorFlow and loads the model).

Run: ``python benchmarks/bench_dataset.py [--quick]``; writes the ``dataset`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

CHILD = textwrap.dedent("""
    import json, os, sys, time
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    kind, model_path, data_path, out, method, n_steps, batch = sys.argv[1:8]
    n_steps, batch = int(n_steps), int(batch)
    import keras, numpy as np
    import tf_pathattr as tpa
    from tf_pathattr import dataset as D
    if kind.startswith("beam"):
        from tf_pathattr.beam import explain_files
    t0 = time.perf_counter()  # imports done: the clock runs from loading the model to the last file written
    if kind == "loop":
        model = keras.models.load_model(model_path, compile=False)
        x = np.load(data_path)
        parts = [np.asarray(tpa.attribute(model, x[s:s + batch], None, method=method, n_steps=n_steps))
                 for s in range(0, len(x), batch)]
        n = sum(len(p) for p in parts)
    elif kind == "in-process":
        r = D.explain_dataset(model_path, data_path, method=method, out=out, options={"n_steps": n_steps},
                              batch_size=batch, progress=False, overwrite=True)
        n = r.n_results
    else:
        mode = "multi_threading" if kind == "beam-threads" else "multi_processing"
        s = explain_files(model_path, data_path, out, method=method, options={"n_steps": n_steps},
                          batch_size=batch, num_shards=2, overwrite=True,
                          pipeline_args=["--direct_running_mode=" + mode])
        n = s["results"]
    print(json.dumps({"n": n, "seconds": time.perf_counter() - t0}))
""")


KINDS = ("in-process", "beam", "beam-threads", "loop")
LABELS = {
    "in-process": "`explain_dataset` in-process (CLI default)",
    "beam": "Beam, multi-processing (2 workers, opt-in)",
    "beam-threads": "Beam, multi-threading (2 workers, Beam default)",
    "loop": "`tpa.attribute` loop",
}


def run_child(kind, model_path, data_path, out, method, n_steps, batch):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    load0 = os.getloadavg()[0]
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            kind,
            str(model_path),
            str(data_path),
            str(out),
            method,
            str(n_steps),
            str(batch),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if res.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{res.stderr[-3000:]}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    info["load"] = (load0, os.getloadavg()[0])
    return info


def workloads(tmp: Path, quick: bool):
    import keras
    import numpy as np

    import tf_pathattr as tpa
    from tf_pathattr.demo import build_digits_cnn

    x, _ = tpa.data.load_digits_images()
    n = 400 if quick else 2000
    idx = np.arange(n) % len(x)
    np.save(tmp / "digits.npy", x[idx])
    build_digits_cnn().save(tmp / "digits.keras")
    yield "digits CNN 8x8x1", n, tmp / "digits.keras", tmp / "digits.npy", 32, 64
    n_img = 8 if quick else 64
    keras.utils.set_random_seed(0)
    mobilenet = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classes=10)
    mobilenet.save(tmp / "mobilenet.keras")
    imgs = np.random.default_rng(0).uniform(-1, 1, size=(n_img, 224, 224, 3)).astype(np.float32)
    np.save(tmp / "images.npy", imgs)
    yield "MobileNetV2 224x224x3", n_img, tmp / "mobilenet.keras", tmp / "images.npy", 16, 8


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    from _harness import machine, write_section

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, n, model_path, data_path, n_steps, batch in workloads(tmp, args.quick):
            res = {}
            for kind in KINDS:
                res[kind] = run_child(kind, model_path, data_path, tmp / f"out_{kind}", "ig", n_steps, batch)
                assert res[kind]["n"] == n, (kind, res[kind])
                print(name, kind, res[kind], flush=True)
            base = n / res["in-process"]["seconds"]
            for kind in KINDS:
                eps = n / res[kind]["seconds"]
                rows.append(
                    f"| {name} | {n} | IG {n_steps} steps, batch {batch} | {kind} | {res[kind]['seconds']:.1f} "
                    f"| {eps:.1f} | {eps / base:.2f}x | {res[kind]['load'][0]:.1f} / {res[kind]['load'][1]:.1f} |"
                )
    for kind, label in LABELS.items():
        rows = [r.replace(f"| {kind} |", f"| {label} |") for r in rows]
    body = [
        "## Dataset-scale attribution (`benchmarks/bench_dataset.py`)",
        "",
        f"Machine: {machine()}. Shared with other jobs while it ran (the 1-minute load average before / after each "
        "run is in the last column; 2 means both cores busy with this run alone). One run per candidate, each in a "
        "fresh process, driver imports done before the clock starts; the time includes model loading, tracing, "
        "reading the `.npy` file and (for the first two) writing npz shards and the Parquet table with the "
        "completeness gap; for Beam also the start of its worker processes (TensorFlow import and model load in "
        "each); the loop only calls "
        "`tpa.attribute` per batch. `tf-pathattr explain-dataset` runs in-process unless given `--runner` or Beam "
        "options. Beam: `explain_files` on `--runner=FnApiRunner --direct_num_workers=2` with "
        "`--direct_running_mode=multi_threading` (Beam's local default: one process, one model, TensorFlow "
        "releases the GIL) or `multi_processing` (opt-in: two worker processes that each import TensorFlow and "
        "load the model).",
        "",
        "| workload | examples | method | runner | wall s | examples/s | vs in-process | load before / after |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Reading it: the command line's default (in-process) is the reference; Beam's local default "
        "(multi-threading) keeps one process and one model; multi-processing (opt-in) pays the start of its worker "
        "processes (a TensorFlow import and a model load in each) once per job. Single runs on a shared machine: see "
        "the load column before comparing close numbers.",
    ]
    write_section("dataset", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
