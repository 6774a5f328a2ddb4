"""Ground truth for token attributions: a small transformer trained on ``tpa.data.trigger_tokens``.

A sequence is labelled 1 exactly when it holds one of the trigger tokens (ids 1..3). Every method
that takes ``layer=`` explains class 1 on the positive test sequences through
``tpa.text.token_attributions`` (padding baseline, token id 0, for the path methods); the top-k
precision is the fraction of the k highest-scoring tokens that are triggers, with k the number of
triggers in the sequence. Writes the ``text`` section of QUALITY.md.

Run: ``python benchmarks/quality_text.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_pathattr as tpa  # noqa: E402
from tf_pathattr.methods import registry  # noqa: E402

QUALITY = Path(__file__).with_name("QUALITY.md")


def trigger_transformer(vocab=50, length=16, dim=16, seed=0):
    """Embedding + learned positions -> one self-attention block -> max-pool -> logits [B, 2]."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((length,), dtype="int32")
    tok = keras.layers.Embedding(vocab, dim, name="token_embedding")(ids)
    pos = keras.layers.Embedding(length, dim)(keras.ops.arange(length)[None])
    h = tok + pos
    att = keras.layers.MultiHeadAttention(2, dim // 2)(h, h)
    h = keras.layers.LayerNormalization()(h + att)
    h = keras.layers.Dense(32, activation="gelu")(h)
    out = keras.layers.Dense(2)(keras.layers.GlobalMaxPooling1D()(h))
    model = keras.Model(ids, out)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train(n_train=3000, epochs=6, seed=0):
    x, y, _ = tpa.data.trigger_tokens(n_train, seed=seed)
    model = trigger_transformer(seed=seed)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def top_k_precision(scores, masks):
    """Mean over sequences of |top-k tokens ∩ triggers| / k, k = number of triggers."""
    out = []
    for s, m in zip(scores, masks):
        k = int(m.sum())
        top = np.argsort(-s, kind="stable")[:k]
        out.append(m[top].mean())
    return float(np.mean(out))


def options_for(spec, model, x_bg, n_steps):
    opts = {}
    if spec.name == "expected_gradients":
        opts = {
            "background": tpa.layer_activations(model, "token_embedding", x_bg).numpy(),
            "n_samples": n_steps,
            "seed": 0,
        }
    elif spec.name == "discretized_integrated_gradients":
        opts = {"n_steps": 30, "n_neighbors": 49}
    elif "n_steps" in spec.test_options:
        opts = {"n_steps": n_steps}
    elif spec.name == "smooth_taylor":
        opts = {"n_roots": n_steps, "seed": 0}
    return opts


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--note", default="")
    a = p.parse_args(argv)
    t0 = time.time()
    model = train(epochs=4 if a.quick else 6)
    x, y, masks = tpa.data.trigger_tokens(200 if a.quick else 400, seed=1)
    acc = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
    pos = y == 1
    xp, mp = x[pos], masks[pos]
    x_bg, _, _ = tpa.data.trigger_tokens(16, seed=2)
    rows = []
    rng = np.random.default_rng(0)
    rand = top_k_precision(rng.random(mp.shape), mp)
    for spec in registry.specs():
        if spec.layer is not True:
            continue
        t = time.time()
        res = tpa.text.token_attributions(
            model,
            xp,
            1,
            method=spec.name,
            baseline="pad" if spec.baseline_option == "baseline" else "auto",
            **options_for(spec, model, x_bg, 16 if a.quick else 32),
        )
        rows.append((spec.name, top_k_precision(res.scores, mp), top_k_precision(res.l2, mp), time.time() - t))
    lines = [
        "## Text: trigger-token recovery (`benchmarks/quality_text.py`)",
        "",
        f"{a.note} A transformer (token + position embeddings, one 2-head self-attention block, max-pool, "
        f"{model.count_params()} parameters) trained in seconds on `tpa.data.trigger_tokens` (3000 sequences of 16 "
        f"tokens, vocabulary 50, triggers 1..3); test accuracy {acc:.3f}. {int(pos.sum())} positive test sequences, "
        "class 1 explained, padding-token (id 0) baseline where the method takes one. Top-k precision: the share "
        "of the k best-scored tokens that are triggers (k = triggers in the sequence); signed sum over the "
        "embedding and L2 norm. Random scores give "
        f"{rand:.3f}. Total {time.time() - t0:.0f} s.",
        "",
        "| method | top-k precision (sum) | top-k precision (L2) | seconds |",
        "|---|---|---|---|",
    ]
    for name, ps, pl, sec in rows:
        lines.append(f"| {name} | {ps:.3f} | {pl:.3f} | {sec:.1f} |")
    text = "\n".join(lines)
    begin, end = "<!-- BEGIN text -->", "<!-- END text -->"
    old = QUALITY.read_text() if QUALITY.exists() else "# Quality\n"
    block = f"{begin}\n{text}\n{end}"
    pat = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    QUALITY.write_text(pat.sub(lambda _: block, old) if pat.search(old) else old.rstrip() + "\n\n" + block + "\n")
    print(text)


if __name__ == "__main__":
    main()
