"""Integrated Gradients against the raw gradient floor, a plain eager loop and PAIR `saliency`.

The *floor* is a compiled function that computes only the same number of input gradients in the
same chunk sizes (no path construction, no weighting, no accumulation beyond a sum). Candidates
run interleaved (round-robin) and we report medians of wall and CPU time.

    python benchmarks/bench_ig.py            # full run, writes the `ig` section of RESULTS.md
    python benchmarks/bench_ig.py --quick    # smoke run, prints only
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import machine, table, time_interleaved, write_section  # noqa: E402
from bench_models import cnn_100k, mobilenet_v2  # noqa: E402

import tf_pathattr as tpa  # noqa: E402
from tf_pathattr.engine.gradients import chunk_size  # noqa: E402


def gradient_floor(model, x, target, n_steps, ibs):
    """Same number of gradients, same rows per call, nothing else."""
    b = x.shape[0]
    chunk = chunk_size(n_steps, b, ibs)
    n_full, rem = divmod(n_steps, chunk)
    rows = tf.tile(x, [chunk, 1, 1, 1])
    rem_rows = tf.tile(x, [rem, 1, 1, 1]) if rem else None
    t_rows = tf.constant(np.tile(target, chunk), tf.int32)
    t_rem = tf.constant(np.tile(target, rem), tf.int32) if rem else None

    def grad(p, t):
        with tf.GradientTape() as tape:
            tape.watch(p)
            s = tf.reduce_sum(tf.gather(model(p, training=False), t, axis=1, batch_dims=1))
        return tf.reduce_sum(tape.gradient(s, p))

    @tf.function
    def floor():
        acc = tf.while_loop(
            lambda i, a: i < n_full,
            lambda i, a: (i + 1, a + grad(rows, t_rows)),
            (tf.constant(0), tf.constant(0.0)),
            parallel_iterations=1,
        )[1]
        if rem:
            acc += grad(rem_rows, t_rem)
        return acc

    return floor


def eager_loop(model, x, target, n_steps):
    """What users write by hand: one tape per path step, Python loop, no tf.function."""
    alphas, weights = tpa.engine.quadrature.quadrature("gausslegendre", n_steps)
    t = tf.constant(target, tf.int32)
    x = tf.convert_to_tensor(x)

    def run():
        acc = tf.zeros_like(x)
        for a, w in zip(alphas, weights):
            p = a * x
            with tf.GradientTape() as tape:
                tape.watch(p)
                s = tf.reduce_sum(tf.gather(model(p, training=False), t, axis=1, batch_dims=1))
            acc += w * tape.gradient(s, p)
        return acc * x

    return run


def saliency_ig(model, x, target, n_steps, batch_size):
    from tf_pathattr.testing import reference  # tf_pathattr/testing/reference.py: PAIR saliency with numpy 2.4 shims

    fns = [reference.call_model_function(model, int(t)) for t in target]
    ig = reference.saliency.IntegratedGradients()
    return lambda: [ig.GetMask(x[i], fns[i], x_steps=n_steps, batch_size=batch_size) for i in range(len(x))]


def bench(name, model, n_expl, n_steps, ibs, repeats, with_peers):
    rng = np.random.default_rng(0)
    x = rng.random((n_expl,) + tuple(model.input_shape[1:])).astype("float32")
    target = np.argmax(model(x[:n_expl]).numpy(), axis=1).astype(np.int32)
    cands = {
        "gradient floor": gradient_floor(model, tf.constant(x), target, n_steps, ibs),
        "tf_pathattr IG": lambda: tpa.integrated_gradients(model, x, target, n_steps=n_steps, internal_batch_size=ibs),
    }
    if with_peers:
        cands["plain eager loop"] = eager_loop(model, x, target, n_steps)
        cands["saliency 0.2.1 IG (per image)"] = saliency_ig(model, x, target, n_steps, min(n_steps, ibs))
    res = time_interleaved(cands, repeats=repeats)
    floor = res["gradient floor"]
    rows = [
        [k, f"{v['wall']:.3f}", f"{v['cpu']:.3f}", f"{v['wall'] / floor['wall']:.3f}", f"{v['cpu'] / floor['cpu']:.3f}"]
        for k, v in res.items()
    ]
    chunk = chunk_size(n_steps, n_expl, ibs)
    head = (
        f"**{name}** ({model.count_params():,} parameters), {n_expl} explicands, {n_steps} Gauss-Legendre steps, "
        f"internal_batch_size={ibs} ({chunk} points x {n_expl} = {chunk * n_expl} rows per call), "
        f"median of {repeats} interleaved runs"
    )
    return head + "\n\n" + table(rows, ["candidate", "wall s", "CPU s", "wall / floor", "CPU / floor"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    parts = [bench("CNN 32x32x3", cnn_100k(), 16, 64, 256, 3 if args.quick else 9, True)]
    if not args.quick:
        parts.append(bench("MobileNetV2(weights=None)", mobilenet_v2(), 4, 64, 64, 5, True))
    text = (
        "## Integrated Gradients vs the gradient floor (`benchmarks/bench_ig.py`)\n\n"
        f"Machine: {machine()}.\n\n"
        + "\n\n".join(parts)
        + "\n\nThe floor computes the same number of gradients with the same rows per call and nothing else. "
        "The eager loop makes one tape call per step for all explicands; the saliency package makes "
        "one call per chunk of steps per image. No GPU was available for these runs."
    )
    print(text)
    if not args.quick:
        write_section("ig", text)


if __name__ == "__main__":
    main()
