"""The speed and memory guard: every registered method against its floor, and the installed peers.

    python -m benchmarks --quick     # <= 10 minutes on 2 cores; prints the table, writes RESULTS.md
    python -m benchmarks             # 3 fresh processes per case, 7 rounds each

Run it after any change to ``tf_pathattr/engine/`` or to a method's loop. Timings stay out of the
test suite; this is where they are checked.

How it measures
---------------
* Each case runs in a **fresh process** (``--worker``); inside it, every candidate is run right next
  to its **floor** in interleaved rounds (the order alternates between rounds) after one warm-up,
  and each round gives a ratio ``candidate / floor`` measured seconds apart on the same loaded
  machine. Where the calls are shorter than ``MIN_SAMPLE_S`` (0.25 s), a round repeats the
  candidate / floor sequence until its slowest member has run about that long (the others longer)
  and takes the mean per call (candidate and floor alternate call by call), so a 30 ms call is not
  measured at the resolution of the machine's noise. The table reports the **median of the per-round
  ratios** over all rounds of all processes (``n``), wall time and CPU (process) time, per call;
  absolute seconds are medians too.
* **Floor** = a compiled function doing only the model work of the candidate: the same number of
  input-gradient rows in the same number of model calls (and the same forward-only rows), nothing
  else. For the registry sweep the work is *counted*, not declared: the method runs once on a
  wrapper of the model that counts forward rows / calls and, through an identity with a custom
  gradient, backward rows / calls, so no per-method knowledge is needed (the sweep reads the
  registry and each method's ``test_options``).
* **Targets** (issue 21): IG <= 1.05x its floor (CNN 88k parameters, B = 16, 64 steps,
  ``internal_batch_size`` 64 / 128 / 256, every quadrature rule, numpy and tensor inputs); Guided IG
  <= 1.5x its floor and >= 3.5x faster than PAIR ``saliency`` (8 images 32x32x3, 200 steps);
  ``tpa.text.token_attributions`` <= 1.2x its floor at T = 32.
* **Memory**: peak RSS (``ru_maxrss``) after the method minus peak RSS after its floor, in one
  process per (method, n_steps), on MobileNetV2 (``weights=None``, B = 4); it must not grow with
  ``n_steps``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._harness import machine

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SECTION = "guard"


# --------------------------------------------------------------------------------------------
# timing


def _force(result):
    import tensorflow as tf

    for t in tf.nest.flatten(result):
        if hasattr(t, "numpy"):
            t.numpy()
    return result


MIN_SAMPLE_S = 0.25  # a round repeats short calls until its slowest member has run about this long


def _run(fn):
    """Wall and CPU seconds of one call of ``fn`` (its results fetched)."""
    w0, c0 = time.perf_counter(), time.process_time()
    _force(fn())
    return time.perf_counter() - w0, time.process_time() - c0


def _reps(fn) -> int:
    """Calls for a sample of about ``MIN_SAMPLE_S`` (one for calls that long), from one timed call."""
    took = _run(fn)[0]
    return max(1, min(50, math.ceil(MIN_SAMPLE_S / max(took, 1e-6))))


def interleaved(rows: dict, rounds: int) -> dict:
    """``rows``: name -> (candidate, floor) callables; rows may share a floor. Each round runs, per floor,
    its candidates with the floor in their middle (the order reversed every round), so each candidate runs
    within a few calls of the floor it is divided by; one wall and one CPU ratio per candidate and round.
    Where the group's calls are short, a round repeats that sequence until its slowest member has run for
    about ``MIN_SAMPLE_S`` and gives each member's mean time per call: candidate and floor alternate call
    by call, so a drift of the machine's speed reaches both. Returns name -> lists of the raw numbers."""
    groups = {}
    for name, (cand, floor) in rows.items():
        groups.setdefault(id(floor), (floor, []))[1].append((name, cand))
    reps = {}
    for floor, cands in groups.values():  # warm-up: traces and first-call costs, then the calls per round
        _force(floor())
        for _, cand in cands:
            _force(cand())
        reps[id(floor)] = min([_reps(floor)] + [_reps(cand) for _, cand in cands])
    out = {name: {"wall": [], "cpu": [], "floor_wall": [], "floor_cpu": []} for name in rows}
    for r in range(rounds):
        for floor, cands in groups.values():
            order = list(cands) if r % 2 == 0 else list(reversed(cands))
            half = len(order) // 2 if len(order) > 1 else (r % 2)
            sequence = order[:half] + [(None, floor)] + order[half:]
            n = reps[id(floor)]
            times = {name: (0.0, 0.0) for name, _ in sequence}
            for _ in range(n):
                for name, fn in sequence:
                    w, c = _run(fn)
                    times[name] = (times[name][0] + w / n, times[name][1] + c / n)
            fw, fc = times[None]
            for name, _ in cands:
                cw, cc = times[name]
                rec = out[name]
                rec["wall"].append(cw)
                rec["cpu"].append(cc)
                rec["floor_wall"].append(fw)
                rec["floor_cpu"].append(fc)
    return out


# --------------------------------------------------------------------------------------------
# floors


def straight_floor(model, x, n_points: int, chunk: int):
    """``n_points`` path points of ``B`` rows each, ``chunk`` points per model call: gradients only."""
    import numpy as np
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    batch = int(x.shape[0])
    n_full, rem = divmod(n_points, chunk)
    cols = tf.constant(np.arange(batch) % int(model.output_shape[-1]), tf.int32)

    def grad(rows_x, size):
        t = tf.tile(cols, [size])
        with tf.GradientTape() as tape:
            tape.watch(rows_x)
            s = tf.reduce_sum(tf.gather(model(rows_x, training=False), t, axis=1, batch_dims=1))
        return tf.reduce_sum(tape.gradient(s, rows_x))

    @tf.function(autograph=False)
    def floor(x):
        rows_x = tf.tile(x, [chunk] + [1] * (x.shape.rank - 1))
        acc = tf.while_loop(
            lambda i, a: i < n_full,
            lambda i, a: (i + 1, a + grad(rows_x * (tf.cast(i + 1, tf.float32) / n_full), chunk)),
            (tf.constant(0), tf.constant(0.0)),
            parallel_iterations=1,
        )[1]
        if rem:
            acc += grad(tf.tile(x, [rem] + [1] * (x.shape.rank - 1)), rem)
        return acc

    return lambda: floor(x)


def counting_model(model):
    """``(keras model, counters)``: ``model`` behind an input layer that counts, at run time, the rows and
    calls of the forward passes and of the input-gradient (backward) passes through it. A Keras model, so
    methods that inspect the model's layers (IG2's default representation) see the same layers."""
    import keras
    import tensorflow as tf

    names = ("fwd_rows", "fwd_calls", "bwd_rows", "bwd_calls")
    counters = {k: tf.Variable(0, dtype=tf.int64, trainable=False) for k in names}

    @tf.custom_gradient
    def tap(t):
        def grad(dy):
            with tf.control_dependencies(
                [
                    counters["bwd_rows"].assign_add(tf.cast(tf.shape(dy)[0], tf.int64)),
                    counters["bwd_calls"].assign_add(1),
                ]
            ):
                return tf.identity(dy)

        return tf.identity(t), grad

    def count(inputs):
        with tf.control_dependencies(
            [
                counters["fwd_rows"].assign_add(tf.cast(tf.shape(inputs)[0], tf.int64)),
                counters["fwd_calls"].assign_add(1),
            ]
        ):
            return tap(tf.identity(inputs))

    inp = keras.Input(model.input_shape[1:])
    counted = keras.Model(inp, model(keras.layers.Lambda(count, name="count_rows")(inp)))
    return counted, counters


def counted_floor(model, x, counts: dict):
    """The model work ``counts`` describes (per method call), in as many compiled calls.

    ``g = min(forward calls, backward calls)`` forward passes of the mean backward rows, each followed by
    ``ceil(backward calls / g)`` input-gradient passes (one tape, several outputs: methods such as IG2 take
    two gradients of one forward pass), then the remaining forward-only calls of the mean remaining rows.
    """
    import tensorflow as tf

    b_calls, b_rows = int(counts["bwd_calls"]), int(counts["bwd_rows"])
    g_calls = min(int(counts["fwd_calls"]), b_calls)
    per_forward = math.ceil(b_calls / g_calls) if g_calls else 0
    f_calls = max(0, int(counts["fwd_calls"]) - g_calls)
    f_rows_total = max(
        0, int(counts["fwd_rows"]) - round(b_rows * g_calls / b_calls) if b_calls else int(counts["fwd_rows"])
    )
    g_size = max(1, round(b_rows / b_calls)) if b_calls else 0
    f_size = max(1, round(f_rows_total / f_calls)) if f_calls and f_rows_total else 0
    x = tf.convert_to_tensor(x)
    batch = int(x.shape[0])
    classes = int(model.output_shape[-1])

    def tiled(n):
        return tf.tile(x, [math.ceil(n / batch)] + [1] * (x.shape.rank - 1))[:n] if n else None

    gx, fx = tiled(g_size), tiled(f_size)

    @tf.function(autograph=False)
    def floor():
        acc = tf.constant(0.0)
        if g_calls:

            def gbody(i, a):
                p = gx * (tf.cast(i + 1, tf.float32) / g_calls)
                with tf.GradientTape(persistent=per_forward > 1) as tape:
                    tape.watch(p)
                    out = model(p, training=False)
                    scores = [tf.reduce_sum(out[:, j % classes]) for j in range(per_forward)]
                for s in scores:
                    a = a + tf.reduce_sum(tape.gradient(s, p))
                return i + 1, a

            acc = tf.while_loop(lambda i, a: i < g_calls, gbody, (tf.constant(0), acc), parallel_iterations=1)[1]
        if f_size:

            def fbody(i, a):
                p = fx * (tf.cast(i + 1, tf.float32) / f_calls)
                return i + 1, a + tf.reduce_sum(model(p, training=False)[:, 0])

            acc = tf.while_loop(lambda i, a: i < f_calls, fbody, (tf.constant(0), acc), parallel_iterations=1)[1]
        return acc

    return floor


# --------------------------------------------------------------------------------------------
# cases (each runs in its own process)


def case_registry(rounds: int) -> dict:
    """Every registered method (registry order, its ``test_options``) on a 16x16x3 CNN, B = 4."""
    import numpy as np

    from tf_pathattr.methods import registry

    from .bench_models import cnn_100k

    model = cnn_100k(input_shape=(16, 16, 3))
    x = np.random.default_rng(0).uniform(0.0, 1.0, (4, 16, 16, 3)).astype(np.float32)
    target = [0, 1, 2, 3]
    rows, notes = {}, {}
    for spec in registry.specs():
        opts = spec.options_for(x)
        name = spec.name

        def run(m=model, spec=spec, opts=opts):
            return spec.function(m, x, target, **opts)

        try:
            counted, counters = counting_model(model)
            _force(spec.function(counted, x, target, **opts))  # trace and first call
            for v in counters.values():
                v.assign(0)
            _force(spec.function(counted, x, target, **opts))
            counts = {k: int(v.numpy()) for k, v in counters.items()}
            floor = counted_floor(model, x, counts)
            rows[name] = (run, floor)
            notes[name] = (
                f"forward {counts['fwd_rows']} rows in {counts['fwd_calls']} calls, input gradients "
                f"{counts['bwd_rows']} rows in {counts['bwd_calls']} calls; options {_short(opts)}"
                + ("; host-side" if spec.host_side else "")
            )
        except Exception as exc:  # a method that cannot run on this model is reported, not hidden
            notes[name] = f"not measured: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    res = interleaved(rows, rounds)
    return {
        "rows": res,
        "notes": notes,
        "title": (
            f"registry sweep: every registered method with its registry test_options (small: per-call costs show) "
            f"on a CNN 16x16x3 ({model.count_params():,} parameters), B = 4"
        ),
    }


def _short(opts):
    return ", ".join(
        f"{k}={v if isinstance(v, (int, float, str, bool)) else type(v).__name__}" for k, v in opts.items()
    )


def case_ig(rounds: int) -> dict:
    """IG on the issue-21 configuration: CNN 88k, B = 16, 64 steps; ibs 64/128/256, every rule, numpy/tensor."""
    import numpy as np
    import tensorflow as tf

    import tf_pathattr as tpa
    from tf_pathattr.engine.gradients import chunk_size
    from tf_pathattr.engine.quadrature import RULES

    from .bench_models import cnn_100k

    model = cnn_100k()
    x = np.random.default_rng(0).uniform(0.0, 1.0, (16, 32, 32, 3)).astype(np.float32)
    xt = tf.constant(x)
    target = np.arange(16) % 10
    floors = {ibs: straight_floor(model, x, 64, chunk_size(64, 16, ibs)) for ibs in (64, 128, 256)}

    def ig(inputs, ibs, rule):
        return lambda: tpa.integrated_gradients(model, inputs, target, n_steps=64, internal_batch_size=ibs, rule=rule)

    rows = {
        "IG trapezoid, ibs 128, numpy": (ig(x, 128, "riemann_trapezoid"), floors[128]),
        "IG trapezoid, ibs 128, tensor": (ig(xt, 128, "riemann_trapezoid"), floors[128]),
        "IG trapezoid, ibs 64, numpy": (ig(x, 64, "riemann_trapezoid"), floors[64]),
        "IG trapezoid, ibs 256, numpy": (ig(x, 256, "riemann_trapezoid"), floors[256]),
    }
    for rule in RULES:
        if rule != "riemann_trapezoid":
            rows[f"IG {rule}, ibs 128, numpy"] = (ig(x, 128, rule), floors[128])
    peers = {}
    saliency = _pair()
    if saliency is not None:
        from ._peers import pair_gradient_function

        fns = [pair_gradient_function(saliency, model, int(t)) for t in target]
        pair_ig = saliency.IntegratedGradients()
        rows["PAIR saliency IG (per image, batch_size 8)"] = (
            lambda: [pair_ig.GetMask(x[i], fns[i], x_steps=64, batch_size=8) for i in range(len(x))],
            floors[128],
        )
        peers["PAIR saliency IG (per image, batch_size 8)"] = "IG trapezoid, ibs 128, numpy"
    res = interleaved(rows, rounds)
    return {
        "rows": res,
        "peers": peers,
        "title": f"Integrated Gradients (CNN 32x32x3, {model.count_params():,} parameters, B = 16, 64 steps)",
        "target": {k: 1.05 for k in rows if k.startswith("IG ")},
    }


def batch_alone(model, x, n_steps: int) -> float:
    """Guided IG's batch = alone figure: ``max_i max|attr_i(batch) - attr_i(alone)| / max|attr_i(alone)|``."""
    import numpy as np

    import tf_pathattr as tpa

    batch = tpa.guided_integrated_gradients(model, x, 0, n_steps=n_steps).numpy()
    worst = 0.0
    for i in range(len(x)):
        alone = tpa.guided_integrated_gradients(model, x[i : i + 1], 0, n_steps=n_steps).numpy()[0]
        worst = max(worst, float(np.abs(batch[i] - alone).max() / max(np.abs(alone).max(), 1e-30)))
    return worst


def case_guided_ig(rounds: int) -> dict:
    """Guided IG (8 images 32x32x3, 200 steps) against its batched-gradient floor and PAIR saliency."""
    import numpy as np

    import tf_pathattr as tpa

    from .bench_models import cnn_100k

    model = cnn_100k()
    x = np.random.default_rng(0).uniform(0.0, 1.0, (8, 32, 32, 3)).astype(np.float32)
    target = 3
    floor = straight_floor(model, x, 200, 1)
    rows = {"Guided IG (fast, q=0.25, D=0.02)": (lambda: tpa.guided_integrated_gradients(model, x, target), floor)}
    peers = {}
    saliency = _pair()
    if saliency is not None:
        from ._peers import pair_gradient_function

        fn = pair_gradient_function(saliency, model, target)
        gig = saliency.GuidedIG()
        rows["PAIR saliency GuidedIG (per image)"] = (lambda: [gig.GetMask(img, fn, x_steps=200) for img in x], floor)
        peers["PAIR saliency GuidedIG (per image)"] = "Guided IG (fast, q=0.25, D=0.02)"
    res = interleaved(rows, rounds)
    # the floor gives every example its own target column (np.arange(B) % 10); Guided IG explains class 3:
    # the same model work
    from tf_pathattr.testing import models as zoo

    small = np.random.default_rng(1).uniform(0.0, 1.0, (3, 16, 16, 3)).astype(np.float32)
    notes = {
        "batch = alone": (
            "max over 3 examples of max|attribution in a batch of 3 - attribution alone| / max|alone|, fast mode: "
            f"{batch_alone(zoo.maxpool_cnn(16), small, 50):.2e} on the contract suite's max-pool CNN "
            f"(zoo.maxpool_cnn(16), 50 steps), {batch_alone(model, x[:3], 200):.2e} on this CNN (200 steps); "
            "registry batch_tolerance 0.3"
        )
    }
    return {
        "rows": res,
        "notes": notes,
        "peers": peers,
        "title": f"Guided IG (CNN 32x32x3, {model.count_params():,} parameters, 8 images, 200 steps)",
        "target": {"Guided IG (fast, q=0.25, D=0.02)": 1.5},
        "speedup_target": {"PAIR saliency GuidedIG (per image)": 3.5},
    }


class _FirstCallReplaced:
    """Within the block, the first call of ``layer`` returns ``value`` (the embedding lookup of a GPT-2)."""

    def __init__(self, layer, value):
        self.layer, self.value = layer, value

    def __enter__(self):
        original = self.layer.call
        state = {"n": 0}

        def call(*args, **kwargs):
            state["n"] += 1
            return self.value if state["n"] == 1 else original(*args, **kwargs)

        object.__setattr__(self.layer, "call", call)
        return self

    def __exit__(self, *exc):
        object.__delattr__(self.layer, "call")
        return False


def case_text(rounds: int) -> dict:
    """``tpa.text.token_attributions`` on a 2-layer GPT-2 at T = 32 against its gradient floor."""
    import keras
    import numpy as np
    import tensorflow as tf

    import tf_pathattr as tpa
    from tf_pathattr.engine.gradients import chunk_size

    if not _available("keras_hub"):
        return {"rows": {}, "notes": {"text": "keras_hub not installed"}, "title": "text"}
    import keras_hub

    keras.utils.set_random_seed(0)
    model = keras_hub.models.GPT2CausalLM(
        backbone=keras_hub.models.GPT2Backbone(
            vocabulary_size=1000,
            num_layers=2,
            num_heads=4,
            hidden_dim=64,
            intermediate_dim=256,
            max_sequence_length=512,
        ),
        preprocessor=None,
    )
    rows = {}
    for length, n_steps, ibs in ((32, 32, 16), (512, 32, 16)):
        x = {
            "token_ids": np.random.default_rng(0).integers(1, 1000, size=(1, length)).astype("int32"),
            "padding_mask": np.ones((1, length), "int32"),
        }
        pos = length - 1
        tok = int(np.argmax(model(x).numpy()[0, -1]))
        emb = model.backbone.token_embedding
        acts = tf.gather(emb.embeddings, x["token_ids"])
        chunk = chunk_size(n_steps, 1, ibs)
        n_full, rem = divmod(n_steps, chunk)

        def grad(size, emb=emb, acts=acts, x=x, pos=pos, tok=tok):
            pts = tf.tile(acts, [size, 1, 1])
            ctx = {k: tf.tile(tf.constant(v), [size, 1]) for k, v in x.items()}
            with tf.GradientTape() as tape:
                tape.watch(pts)
                with _FirstCallReplaced(emb, pts):
                    logits = model(ctx, training=False)
                s = tf.reduce_sum(tf.nn.log_softmax(logits[:, pos])[:, tok])
            return tf.reduce_sum(tape.gradient(s, pts))

        def make_floor(grad=grad, n_full=n_full, rem=rem, chunk=chunk):
            @tf.function(autograph=False)
            def floor():
                acc = tf.while_loop(
                    lambda i, a: i < n_full,
                    lambda i, a: (i + 1, a + grad(chunk)),
                    (tf.constant(0), tf.constant(0.0)),
                    parallel_iterations=1,
                )[1]
                if rem:
                    acc += grad(rem)
                return acc

            return floor

        target = tpa.text.next_token(tok, position=pos)
        rows[f"token_attributions T={length} (IG {n_steps} steps, {ibs} rows/call)"] = (
            lambda x=x, target=target, n_steps=n_steps, ibs=ibs: (
                tpa.text.token_attributions(model, x, target, n_steps=n_steps, internal_batch_size=ibs).attributions
            ),
            make_floor(),
        )
    res = interleaved(rows, rounds)
    return {
        "rows": res,
        "title": "text (keras-hub GPT-2, 2 layers, hidden 64, vocabulary 1000, batch 1)",
        "target": {k: 1.2 for k in rows if "T=32 " in k},
    }


def case_memory(method: str, n_steps: int) -> dict:
    """Peak RSS after ``method`` minus peak RSS after its floor, MobileNetV2 (weights=None), B = 4."""
    import numpy as np

    import tf_pathattr as tpa
    from tf_pathattr.engine.gradients import chunk_size

    from .bench_models import mobilenet_v2

    model = mobilenet_v2()
    x = np.random.default_rng(0).uniform(-1.0, 1.0, (4, 224, 224, 3)).astype(np.float32)
    target = [0, 1, 2, 3]
    if method == "integrated_gradients":
        ibs = 64
        floor = straight_floor(model, x, n_steps, chunk_size(n_steps, 4, ibs))

        def run():
            return tpa.integrated_gradients(model, x, target, n_steps=n_steps, internal_batch_size=ibs)
    else:
        floor = straight_floor(model, x, n_steps, 1)

        def run():
            return tpa.guided_integrated_gradients(model, x, target, n_steps=n_steps)

    fw, fc = _run(floor)  # includes the trace: the floor's peak is the reference
    peak_floor = _maxrss_mib()
    mw, mc = _run(run)
    peak_method = _maxrss_mib()
    return {
        "method": method,
        "n_steps": n_steps,
        "peak_floor_mib": peak_floor,
        "over_floor_mib": max(0.0, peak_method - peak_floor),
        "floor_wall": fw,
        "method_wall": mw,
        "ratio_wall_first_call": mw / fw,
    }


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _available(name):
    from ._peers import available

    return available(name)


def _pair():
    from ._peers import pair_saliency

    return pair_saliency()


CASES = {"registry": case_registry, "ig": case_ig, "guided_ig": case_guided_ig, "text": case_text}
MEMORY_METHODS = ("integrated_gradients", "guided_integrated_gradients")
MEMORY_STEPS = {"quick": (64, 128), "full": (64, 256)}  # more steps: the peak over the floor must not grow


# --------------------------------------------------------------------------------------------
# driver


def _worker(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--worker", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.worker in CASES:
        res = CASES[a.worker](a.rounds)
    else:
        res = case_memory(a.worker, a.steps)
    Path(a.out).write_text(json.dumps(res))


def _spawn(args, timeout):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, "-m", "benchmarks.guard", *args, "--out", out]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t0, c0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    took = time.perf_counter() - t0
    print(f"    (process CPU time {_children_cpu() - c0:.0f} s)", flush=True)
    try:
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, took, " / ".join(tail)
        return json.loads(Path(out).read_text()), took, ""
    finally:
        Path(out).unlink(missing_ok=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _median_ratio(rec, key="wall"):
    fkey = "floor_" + key
    return statistics.median(c / f for c, f in zip(rec[key], rec[fkey]))


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--worker" in argv:
        return _worker(argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one fresh process per case, 5 rounds (<= 10 min on 2 cores)")
    p.add_argument("--processes", type=int, default=None, help="fresh processes per case (default 1 quick, 3 full)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per process (default 5 quick, 7)")
    p.add_argument("--cases", default=",".join(list(CASES) + ["memory"]), help="comma-separated subset")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    a = p.parse_args(argv)
    processes = a.processes or (1 if a.quick else 3)
    rounds = a.rounds or (5 if a.quick else 7)
    wanted = [c.strip() for c in a.cases.split(",") if c.strip()]
    start, load0 = time.perf_counter(), _load()
    sections, problems = [], []
    for case in wanted:
        if case == "memory":
            continue
        merged, meta = {}, None
        for i in range(processes):
            res, took, err = _spawn(["--worker", case, "--rounds", str(rounds)], timeout=900)
            print(f"[{case}] process {i + 1}/{processes}: {took:.0f} s {'ERROR ' + err if err else ''}", flush=True)
            if res is None:
                problems.append(f"{case}: {err}")
                continue
            meta = res
            for name, rec in res["rows"].items():
                dst = merged.setdefault(name, {k: [] for k in rec})
                for k, v in rec.items():
                    dst[k].extend(v)
        if meta is not None:
            sections.append(_case_table(case, merged, meta))
    if "memory" in wanted:
        mem_rows = []
        for method, steps in [(m, n) for m in MEMORY_METHODS for n in MEMORY_STEPS["quick" if a.quick else "full"]]:
            res, took, err = _spawn(["--worker", method, "--steps", str(steps)], timeout=900)
            print(f"[memory] {method} {steps} steps: {took:.0f} s {'ERROR ' + err if err else ''}", flush=True)
            if res is None:
                problems.append(f"memory {method} {steps}: {err}")
                continue
            mem_rows.append(res)
        sections.append(_memory_table(mem_rows))
    total = time.perf_counter() - start
    head = (
        "## Guard: every method against its floor, and the peers (`python -m benchmarks"
        + (" --quick" if a.quick else "")
        + "`)\n\n"
        f"Machine: {machine()}; load average (1, 5, 15 min) {load0} at the start, {_load()} at the end. "
        f"{processes} fresh process(es) per case, {rounds} interleaved rounds each after a warm-up; ratios are the "
        f"median of the per-round ratios (candidate / its floor, run next to each other; calls under "
        f"{MIN_SAMPLE_S} s are repeated, candidate and floor alternating, and averaged). Total {total:.0f} s.\n"
    )
    text = head + "\n" + "\n\n".join(sections)
    if problems:
        text += "\n\nNot measured: " + "; ".join(problems)
    print(text)
    if not a.no_write:
        from ._harness import write_section

        write_section(SECTION, text)
    return 0


def _case_table(case, merged, meta) -> str:
    targets = meta.get("target", {})
    peers = meta.get("peers", {})
    lines = [
        f"**{meta['title']}**",
        "",
        "| candidate | wall s | floor wall s | wall / floor | CPU / floor | target | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rec in merged.items():
        rw, rc = _median_ratio(rec, "wall"), _median_ratio(rec, "cpu")
        tgt = targets.get(name)
        mark = "" if tgt is None else (f"<= {tgt} {'ok' if rw <= tgt else 'MISSED'}")
        lines.append(
            f"| {name} | {statistics.median(rec['wall']):.3f} | {statistics.median(rec['floor_wall']):.3f} | "
            f"{rw:.3f} | {rc:.3f} | {mark} | {len(rec['wall'])} |"
        )
    for peer, ours in peers.items():
        if peer in merged and ours in merged:
            pr, orr = merged[peer], merged[ours]
            speed = statistics.median(p / o for p, o in zip(pr["wall"], orr["wall"]))
            tgt = meta.get("speedup_target", {}).get(peer)
            mark = "" if tgt is None else f" (target >= {tgt}: {'ok' if speed >= tgt else 'MISSED'})"
            lines.append(f"\n{ours} is **{speed:.2f}x** faster than {peer} (median of per-round wall ratios){mark}.")
    notes = meta.get("notes", {})
    if notes:
        lines.append("")
        lines.extend(f"- `{k}`: {v}" for k, v in notes.items())
    return "\n".join(lines)


def _memory_table(rows) -> str:
    lines = [
        "**Memory (MobileNetV2, weights=None, 224x224x3, B = 4; IG `internal_batch_size=64`)**: peak RSS after the "
        "method minus peak RSS after its floor, one fresh process per row (first calls, traces included)",
        "",
        "| method | n_steps | floor peak RSS MiB | method peak over the floor MiB | floor wall s | method wall s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['n_steps']} | {r['peak_floor_mib']:.0f} | {r['over_floor_mib']:.0f} | "
            f"{r['floor_wall']:.2f} | {r['method_wall']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
