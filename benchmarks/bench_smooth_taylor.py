"""SmoothTaylor against a compiled SmoothGrad (noise tunnel of plain gradients) and the gradient floor.

All three candidates compute the same number of input gradients (``n_roots`` per example) in the
same chunk sizes (``internal_batch_size // B`` roots per model call):

* ``smooth_taylor``: ``tpa.smooth_taylor`` (per-root stateless noise keyed by ``[seed, n]``, so
  the result does not depend on the chunking);
* ``smoothgrad``: a compiled noise tunnel of plain gradients written here, ``mean_n grad F(x +
  sigma eps_n)``, with the usual per-chunk noise (one ``stateless_normal`` per chunk);
* ``floor``: a compiled function that only computes the gradients at ``x`` in the same chunks
  (no noise, no weighting).

    python benchmarks/bench_smooth_taylor.py            # writes the `smooth_taylor` section of RESULTS.md
    python benchmarks/bench_smooth_taylor.py --quick    # smoke run, prints only
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import machine, table, time_interleaved, write_section  # noqa: E402

import tf_pathattr as tpa  # noqa: E402
from tf_pathattr.engine.gradients import chunk_size  # noqa: E402


def small_cnn(size=32, classes=10, seed=0):
    """~60k-parameter CNN (ReLU, max pooling, logits) with random weights."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(classes),
        ]
    )


def _grad(model, p, t):
    with tf.GradientTape() as tape:
        tape.watch(p)
        s = tf.reduce_sum(tf.gather(model(p, training=False), t, axis=1, batch_dims=1))
    return tape.gradient(s, p)


def _chunked(n, chunk, step, shape):
    """``sum_c step(c, size)`` over ``n`` points in chunks, as a while loop plus a remainder call."""
    n_full, rem = divmod(n, chunk)

    def run():
        acc = tf.while_loop(
            lambda i, a: i < n_full,
            lambda i, a: (i + 1, a + step(i, chunk)),
            (tf.constant(0), tf.zeros(shape)),
            parallel_iterations=1,
        )[1]
        if rem:
            acc += step(tf.constant(n_full), rem)
        return acc

    return run


def smoothgrad(model, x, target, n, ibs, sigma, seed=0):
    b = x.shape[0]
    chunk = chunk_size(n, b, ibs)
    xs = tf.constant(x)
    tgt = tf.constant(target, tf.int32)

    def step(i, size):
        eps = tf.random.stateless_normal([size] + list(x.shape), seed=tf.stack([seed, i]))
        p = tf.reshape(xs[None] + sigma * eps, [size * b] + list(x.shape[1:]))
        g = _grad(model, p, tf.tile(tgt, [size]))
        return tf.reduce_sum(tf.reshape(g, [size] + list(x.shape)), axis=0)

    body = _chunked(n, chunk, step, x.shape)
    fn = tf.function(lambda: body() / n)
    return fn


def gradient_floor(model, x, target, n, ibs):
    b = x.shape[0]
    chunk = chunk_size(n, b, ibs)
    xs = tf.constant(x)
    tgt = tf.constant(target, tf.int32)

    def step(i, size):
        g = _grad(model, tf.tile(xs, [size, 1, 1, 1]), tf.tile(tgt, [size]))
        return tf.reduce_sum(tf.reshape(g, [size] + list(x.shape)), axis=0)

    return tf.function(_chunked(n, chunk, step, x.shape))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    configs = [(4, 150, 256), (1, 150, 64)] if not args.quick else [(2, 20, 16)]
    repeats = 1 if args.quick else args.repeats
    model = small_cnn()
    rng = np.random.default_rng(0)
    rows = []
    for b, n, ibs in configs:
        x = rng.uniform(-1, 1, (b, 32, 32, 3)).astype(np.float32)
        target = np.argmax(model(x).numpy(), axis=1)
        cands = {
            "smooth_taylor": lambda: tpa.smooth_taylor(
                model, x, target, n_roots=n, noise_scale=0.5, seed=1, internal_batch_size=ibs
            ),
            "smoothgrad": smoothgrad(model, x, target, n, ibs, 0.5),
            "floor": gradient_floor(model, x, target, n, ibs),
        }
        res = time_interleaved(cands, repeats=repeats, warmup=1)
        floor = res["floor"]["wall"]
        for name, r in res.items():
            rows.append(
                (
                    b,
                    n,
                    chunk_size(n, b, ibs),
                    name,
                    f"{r['wall'] * 1e3:.1f}",
                    f"{r['cpu'] * 1e3:.1f}",
                    f"{r['wall'] / floor:.2f}",
                )
            )
    md = table(rows, ["B", "roots", "roots/call", "candidate", "median wall ms", "median CPU ms", "wall / floor"])
    text = (
        f"### SmoothTaylor vs compiled SmoothGrad and the gradient floor\n\n"
        f"Machine: {machine()}. Small random-weight CNN (32x32x3, ReLU, max pooling), noise_scale 0.5; "
        f"{repeats} interleaved repeats after a warm-up (trace excluded). Every candidate computes "
        f"`roots` gradients per example in the same chunks.\n\n{md}\n"
    )
    print(text)
    if not args.quick:
        write_section("smooth_taylor", text)


if __name__ == "__main__":
    main()
