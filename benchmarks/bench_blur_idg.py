"""Blur IG and IDG: time as a multiple of the gradient floor, and Blur IG against PAIR ``saliency``.

The *gradient floor* of a method is one compiled function that computes only the same number of
input gradients in the same chunk sizes (and, for IDG, the N coarse forward-only passes in their
chunks), with none of the method's own work (blur matrices, allocation, accumulation). Target:
method / floor <= 1.2.

Usage::

    PYTHONPATH=. python benchmarks/bench_blur_idg.py            # small CNN + MobileNetV2 (96x96)
    PYTHONPATH=. python benchmarks/bench_blur_idg.py --quick    # smoke run, small CNN only
    PYTHONPATH=. python benchmarks/bench_blur_idg.py --mobilenet-size 224 --repeats 5

Writes the ``blur_idg`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import machine, table, time_interleaved, write_section  # noqa: E402

from tf_pathattr.engine import gradients as eng  # noqa: E402
from tf_pathattr.methods.blur_ig import blur_integrated_gradients  # noqa: E402
from tf_pathattr.methods.idg import integrated_decision_gradients  # noqa: E402


def small_cnn(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )


def mobilenet(size):
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(
        input_shape=(size, size, 3), weights=None, classes=10, classifier_activation=None
    )


def gradient_floor(model, x, target, n_grad, n_fwd=0, internal_batch_size=None):
    """Compiled: ``n_grad`` gradients and ``n_fwd`` forward passes, chunked exactly like the methods."""
    problem = eng.prepare(model, x, target)
    batch = problem.batch_size
    cg = eng.chunk_size(n_grad, batch, internal_batch_size)
    cf = eng.chunk_size(n_fwd, batch, internal_batch_size) if n_fwd else 1

    @tf.function
    def floor(flat_x, indices):
        x0 = flat_x[0]

        def points(start, size):
            a = 1.0 - 1e-3 * tf.cast(start + tf.range(size), tf.float32)  # distinct points
            return [eng.rows(eng.expand_like(a, x0[None]) * x0[None], size, batch)]

        def fbody(start, size, acc):
            return acc + tf.reduce_sum(eng.scores(problem, points(start, size), indices))

        def gbody(start, size, acc):
            _, g = eng.score_and_gradients(problem, points(start, size), indices)
            return acc + tf.reduce_sum(eng.unrows(g[0], size, batch), axis=0)

        f = eng.chunked_loop(n_fwd, cf, fbody, tf.zeros(())) if n_fwd else tf.zeros(())
        return eng.chunked_loop(n_grad, cg, gbody, tf.zeros_like(x0)), f

    return lambda: floor(problem.flat_x, problem.target.indices)


def pair_blur_ig(model, x, targets, steps, batch_size=32):
    """PAIR ``saliency`` BlurIG, one image at a time, on one compiled gradient function."""
    from tf_pathattr.testing import reference  # noqa: E402  (numpy-2.4 shims)

    saliency = reference.saliency
    spec = [tf.TensorSpec([None] + list(x.shape[1:]), tf.float32), tf.TensorSpec([], tf.int32)]

    @tf.function(input_signature=spec)
    def grad(z, t):
        with tf.GradientTape() as tape:
            tape.watch(z)
            s = tf.reduce_sum(tf.gather(model(z, training=False), t, axis=1))
        return tape.gradient(s, z)

    def run():
        out = []
        for b in range(x.shape[0]):
            t = tf.constant(int(targets[b]), tf.int32)

            def cmf(xb, call_model_args=None, expected_keys=None):
                return {saliency.INPUT_OUTPUT_GRADIENTS: grad(tf.constant(np.asarray(xb), tf.float32), t).numpy()}

            out.append(saliency.BlurIG().GetMask(x[b], cmf, steps=steps, batch_size=batch_size))
        return np.stack(out)

    return run


def fmt(v):
    return f"{v:.3f}"


def bench_model(name, model, batch, repeats, blur_steps, idg_steps, with_pair):
    rng = np.random.default_rng(0)
    shape = (batch,) + tuple(model.input_shape[1:])
    x = rng.random(shape).astype(np.float32)
    targets = list(rng.integers(0, 10, size=batch))
    cands = {
        "blur_ig": lambda: blur_integrated_gradients(model, x, targets, n_steps=blur_steps),
        "blur_floor": gradient_floor(model, x, targets, blur_steps),
        "idg": lambda: integrated_decision_gradients(model, x, targets, n_steps=idg_steps),
        "idg_compat": lambda: integrated_decision_gradients(
            model, x, targets, n_steps=idg_steps, reference_compat=True
        ),
        "idg_floor": gradient_floor(model, x, targets, idg_steps, n_fwd=idg_steps),
    }
    if with_pair:
        cands["pair_blur_ig"] = pair_blur_ig(model, x, targets, blur_steps)
    res = time_interleaved(cands, repeats=repeats, warmup=1)
    rows = []
    params = model.count_params()
    for meth, floor, label in (
        ("blur_ig", "blur_floor", f"Blur IG ({blur_steps} steps)"),
        ("idg", "idg_floor", f"IDG ({idg_steps}+{idg_steps} passes)"),
        ("idg_compat", "idg_floor", f"IDG reference_compat ({idg_steps}+{idg_steps})"),
    ):
        r, f = res[meth], res[floor]
        rows.append(
            [
                name,
                f"{params / 1e3:.0f}k",
                batch,
                label,
                fmt(r["wall"]),
                fmt(r["cpu"]),
                fmt(f["wall"]),
                fmt(f["cpu"]),
                f"{r['wall'] / f['wall']:.2f}x",
                f"{r['cpu'] / f['cpu']:.2f}x",
            ]
        )
    pair = None
    if with_pair:
        p = res["pair_blur_ig"]
        pair = [
            name,
            batch,
            fmt(p["wall"]),
            fmt(p["cpu"]),
            fmt(res["blur_ig"]["wall"]),
            fmt(res["blur_ig"]["cpu"]),
            f"{p['wall'] / res['blur_ig']['wall']:.1f}x",
            f"{p['cpu'] / res['blur_ig']['cpu']:.1f}x",
        ]
    return rows, pair


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small CNN, 4 explicands, 1 repeat")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--mobilenet-size", type=int, default=96, help="MobileNetV2 input size (224 on a quiet machine)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not touch RESULTS.md")
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    rows, pairs = [], []
    r, p = bench_model("CNN 32x32x3", small_cnn(), 4 if args.quick else 16, repeats, 100, 50, True)
    rows += r
    pairs.append(p)
    if not args.quick:
        s = args.mobilenet_size
        r, _ = bench_model(f"MobileNetV2 {s}x{s}x3", mobilenet(s), 4, repeats, 100, 50, False)
        rows += r
    md = "\n".join(
        [
            "### Blur IG and IDG (`benchmarks/bench_blur_idg.py`)",
            "",
            f"Machine: {machine()}. Median of {repeats} interleaved runs (after one warm-up), seconds per call for "
            "the whole batch; CPU = process time. Floor = one compiled function computing only the same gradients "
            "(and, for IDG, the same N coarse forward passes) in the same chunks (`internal_batch_size` default 256 "
            "rows). Target: <= 1.2x the floor." + (" **--quick smoke run.**" if args.quick else ""),
            "",
            table(
                rows,
                [
                    "model",
                    "params",
                    "B",
                    "method",
                    "wall",
                    "CPU",
                    "floor wall",
                    "floor CPU",
                    "wall / floor",
                    "CPU / floor",
                ],
            ),
            "",
            "PAIR `saliency` 0.2.1 `BlurIG` (one image at a time, `batch_size=32` steps, scipy blurs, the same "
            "compiled gradient function) against `blur_integrated_gradients` on the whole batch:",
            "",
            table(
                pairs,
                [
                    "model",
                    "B",
                    "PAIR wall",
                    "PAIR CPU",
                    "tf_pathattr wall",
                    "tf_pathattr CPU",
                    "speed-up wall",
                    "speed-up CPU",
                ],
            ),
        ]
    )
    print(md)
    if not args.no_write:
        write_section("blur_idg", md)


if __name__ == "__main__":
    main()
