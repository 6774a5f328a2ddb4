"""Guided IG: batched device loop vs the gradient floor and vs PAIR saliency's per-image GuidedIG.

Writes the ``guided_ig`` section of ``benchmarks/RESULTS.md``.

* **gradient floor**: one compiled function that computes only the same ``T`` batched gradient
  calls of ``B`` rows (a ``tf.while_loop`` over ``T`` points on the straight line), nothing else.
* **tf_pathattr**: ``guided_integrated_gradients`` at PAIR's defaults (q = 0.25, D = 0.02) in fast
  (float32) and parity (float64) mode, and unbounded (D = 1).
* **saliency**: ``saliency.core.GuidedIG().GetMask`` image by image, on a compiled batch-1
  gradient function (``tf_pathattr/testing/reference.py``), i.e. ``B x T`` host round trips.

Usage: ``python benchmarks/bench_guided_ig.py [--quick | --full] [--repeats N] [--no-mobilenet]``.
The default run takes about 4 minutes on 2 shared cores (MobileNetV2's 200 gradient calls of 8
rows alone take ~40 s); ``--full`` adds parity and unbounded GIG on MobileNetV2 (~10 min).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import machine, table, time_interleaved, write_section  # noqa: E402

import tf_pathattr as tpa  # noqa: E402
from tf_pathattr.engine import gradients as eng  # noqa: E402


def small_cnn():
    """~100k parameters, 32x32x3 -> 10 logits."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(128, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def mobilenet():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None, classifier_activation=None, input_shape=(224, 224, 3))


def gradient_floor(model, x, target, n_steps):
    """A compiled function doing only the T batched gradient calls (B rows each) GIG makes."""
    problem = eng.prepare(model, x, target)
    batch = problem.batch_size

    @tf.function
    def floor(flat_x, indices):
        def body(t, acc):
            a = tf.cast(t, tf.float32) / n_steps
            pts = [tf.ensure_shape(xi * a, xi.shape) for xi in flat_x]
            _, grads = eng.score_and_gradients(problem, pts, indices)
            return t + 1, acc + tf.reduce_sum(grads[0])

        return tf.while_loop(
            lambda t, acc: t < n_steps, body, [tf.constant(0), tf.constant(0.0)], parallel_iterations=1
        )[1]

    del batch
    return lambda: floor(problem.flat_x, problem.target.indices)


def saliency_runner(model, images, target, n_steps, **kw):
    from tf_pathattr.testing import reference

    fn = reference.call_model_function(model, target)
    gig = reference.saliency.GuidedIG()

    def run():
        return [gig.GetMask(img, fn, x_steps=n_steps, **kw) for img in images]

    return run


def fmt(v):
    return f"{v:.2f}"


def bench_model(name, model, n_images, n_steps, repeats, n_saliency, parity=True, unbounded=True):
    rng = np.random.default_rng(0)
    shape = tuple(model.input_shape[1:])
    x = rng.uniform(0, 1, (n_images,) + shape).astype(np.float32)
    target = 3
    cands = {
        "gradient floor": gradient_floor(model, x, target, n_steps),
        "GIG fast (q=0.25, D=0.02)": lambda: tpa.guided_integrated_gradients(model, x, target, n_steps=n_steps),
    }
    if unbounded:
        cands["GIG fast unbounded (D=1)"] = lambda: tpa.guided_integrated_gradients(
            model, x, target, n_steps=n_steps, max_dist=1.0
        )
    if parity:
        cands["GIG parity (q=0.25, D=0.02)"] = lambda: tpa.guided_integrated_gradients(
            model, x, target, n_steps=n_steps, parity=True
        )
    t0 = time.perf_counter()
    res = time_interleaved(cands, repeats=repeats, warmup=1)
    # rounds per step of the default flavour (for the record)
    _, rounds = tpa.guided_integrated_gradients(model, x, target, n_steps=n_steps, return_details=True)
    # saliency: per image, on n_saliency images, extrapolated to n_images
    sal = saliency_runner(model, x[:n_saliency], target, n_steps)
    sal()  # warm the compiled gradient
    w0, c0 = time.perf_counter(), time.process_time()
    sal()
    sal_wall = (time.perf_counter() - w0) * n_images / n_saliency
    sal_cpu = (time.process_time() - c0) * n_images / n_saliency
    floor = res["gradient floor"]
    rows = []
    for k, v in res.items():
        rows.append(
            [
                k,
                fmt(v["wall"]),
                fmt(v["cpu"]),
                fmt(v["wall"] / floor["wall"]),
                fmt(v["cpu"] / floor["cpu"]),
                fmt(sal_wall / v["wall"]) if k.startswith("GIG") else "",
            ]
        )
    extrap = "" if n_saliency == n_images else f" (timed on {n_saliency} image(s), scaled to {n_images})"
    rows.append(
        [
            f"saliency GuidedIG per image{extrap}",
            fmt(sal_wall),
            fmt(sal_cpu),
            fmt(sal_wall / floor["wall"]),
            fmt(sal_cpu / floor["cpu"]),
            "1.00",
        ]
    )
    md = (
        f"**{name}**: {n_images} images, T = {n_steps}, target {target}, median of {repeats} "
        f"(interleaved, 1 warm-up); default flavour used {rounds['mean_rounds']:.2f} selection rounds per step "
        f"(max {rounds['max_rounds']}, bound {rounds['bound']}); section took {time.perf_counter() - t0:.0f} s.\n\n"
    )
    md += table(rows, ["candidate", "wall s", "CPU s", "wall / floor", "CPU / floor", "speed-up vs saliency (wall)"])
    return md


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer images and steps, 1 repeat")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-mobilenet", action="store_true")
    ap.add_argument(
        "--full",
        action="store_true",
        help="also time parity mode and unbounded GIG on MobileNetV2 (about 10 min on 2 cores)",
    )
    ap.add_argument("--no-write", action="store_true", help="print only, do not touch RESULTS.md")
    args = ap.parse_args()
    quick = args.quick
    sections = []
    t0 = time.perf_counter()
    sections.append(
        bench_model(
            "Small CNN (32x32x3, ~100k parameters, ReLU + max-pool)",
            small_cnn(),
            n_images=4 if quick else 8,
            n_steps=50 if quick else 200,
            repeats=args.repeats or (1 if quick else 3),
            n_saliency=2 if quick else 8,
        )
    )
    if not args.no_mobilenet:
        sections.append(
            bench_model(
                "MobileNetV2 (224x224x3, weights=None, logits)",
                mobilenet(),
                n_images=2 if quick else 8,
                n_steps=10 if quick else 200,
                repeats=args.repeats or 1,
                n_saliency=1,
                parity=args.full,
                unbounded=args.full,
            )
        )
    md = (
        "Guided IG (`bench_guided_ig.py`): the batched device loop against the gradient floor (a compiled "
        "function computing only the same T batched gradient calls of B rows) and against PAIR `saliency`'s "
        "per-image `GuidedIG` on a compiled batch-1 gradient function. Target: GIG fast within 1.2x of the "
        "floor; the speed-up over saliency is bounded by about 3x on 2 cores (batching only). "
        f"{'QUICK smoke run. ' if quick else ''}{'Run with --full. ' if args.full else ''}No GPU was available, so there is no GPU comparison.\n\n"
        f"Machine: {machine()}. Total {time.perf_counter() - t0:.0f} s.\n\n" + "\n\n".join(sections)
    )
    print(md)
    if not args.no_write:
        write_section("guided_ig", md)


if __name__ == "__main__":
    main()
