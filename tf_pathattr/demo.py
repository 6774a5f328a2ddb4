"""The ``tf-pathattr demo``: a small digits CNN explained by every available method.

The model is a two-layer tanh CNN trained for a few seconds on scikit-learn's 8x8 digits
(``sklearn.datasets.load_digits``, pixel values scaled to ``[0, 1]``) and cached as a ``.keras``
file under ``$TF_PATHATTR_CACHE`` or ``~/.cache/tf_pathattr/``. :func:`run_demo` explains a handful
of test digits with every method in ``tpa.METHODS`` (options from :func:`demo_options`), and writes
``attributions.png`` (inputs and one signed overlay column per method), ``metrics.md`` and
``metrics.json`` (completeness gap, time per call, deletion AUC when ``tpa.metrics.deletion`` exists),
and ``report.html`` (:func:`tf_pathattr.report.report` of the same digits and methods).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

MODEL_VERSION = 1


def cache_dir() -> Path:
    """``$TF_PATHATTR_CACHE`` if set, else ``~/.cache/tf_pathattr``."""
    env = os.environ.get("TF_PATHATTR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tf_pathattr"


def load_digits_data(seed: int = 0):
    """Digits as ``x [N, 8, 8, 1]`` float32 in [0, 1], ``y [N]``, split 80/20 by a fixed permutation."""
    from .data import load_digits_images

    x, y = load_digits_images()
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order].astype(np.int64)
    n_train = int(0.8 * len(y))
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def build_digits_cnn(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="tanh"),
            keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ],
        name="digits_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def digits_model(quick: bool = False, retrain: bool = False, verbose: bool = False):
    """The cached digits CNN (trained on first use): ``(model, test accuracy, path)``."""
    import keras

    (x_tr, y_tr), (x_te, y_te) = load_digits_data()
    path = cache_dir() / f"digits_cnn_v{MODEL_VERSION}{'_quick' if quick else ''}.keras"
    model = None
    if path.exists() and not retrain:
        try:
            model = keras.models.load_model(path, safe_mode=True)
        except Exception:  # a stale or broken cache: train again
            model = None
    if model is None:
        model = build_digits_cnn()
        model.fit(x_tr, y_tr, epochs=3 if quick else 12, batch_size=32, verbose=2 if verbose else 0, shuffle=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.keras")
        model.save(tmp)
        os.replace(tmp, path)
    acc = float(np.mean(np.argmax(model.predict(x_te, verbose=0), axis=-1) == y_te))
    return model, acc, path


def demo_options(name: str, x, pool_x, pool_y, quick: bool = False) -> dict:
    """Options the demo uses per method; ``x`` the explicands, ``(pool_x, pool_y)`` training data."""
    s = 4 if quick else 1  # quick: fewer steps
    rng = np.random.default_rng(0)
    table = {
        "integrated_gradients": {"n_steps": 64 // s},
        "expected_gradients": {
            "background": pool_x[rng.choice(len(pool_x), 32, replace=False)],
            "n_samples": 64 // s,
            "seed": 0,
        },
        "guided_integrated_gradients": {"n_steps": 128 // s},
        "blur_integrated_gradients": {"n_steps": 64 // s, "max_sigma": 4.0},
        "integrated_decision_gradients": {"n_steps": 48 // s},
        "ig2": {
            "references": pool_x[rng.choice(len(pool_x), 4, replace=False)],
            "step_size": 0.05,
            "n_steps": 101 // s,
        },
        "smooth_taylor": {"n_roots": 64 // s, "noise_scale": 0.3, "seed": 0},
        "noise_tunnel": {"nt_samples": 8 // s, "seed": 0},
        "split_integrated_gradients": {"n_steps": 64 // s},
    }
    return dict(table.get(name, {}))


def _progress(iterable, **kw):
    """The shared progress bar (:func:`tf_pathattr._progress.progress`)."""
    from ._progress import progress

    return progress(iterable, **kw)


def _write_report(model, x, maps, path, x_tr, y_tr, quick: bool, warn):
    """``tpa.report`` of the methods that ran, with the demo's options (``None`` if it fails, with a warning)."""
    from .report import report

    options = {name: demo_options(name, x, x_tr, y_tr, quick=quick) for name in maps}
    try:
        return str(
            report(
                model,
                x,
                methods=list(maps),
                out=path,
                labels=[f"digit {d}" for d in range(10)],
                options=options,
                sanity_examples=2 if quick else 4,
                title="tf_pathattr demo: digits CNN",
            )
        )
    except Exception as exc:  # the report is an extra of the demo: one warning line, the rest stands
        warn(f"warning: report not written: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return None


def run_demo(out, quick: bool = False, n_examples: int = None, methods=None, warn=print):
    """Explain a few digits with every method; write the picture and the metrics table into ``out``."""
    import tf_pathattr as tpa

    from . import viz
    from .methods.calling import explain_with_gap, first_array

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, acc, model_path = digits_model(quick=quick)
    (x_tr, y_tr), (x_te, y_te) = load_digits_data()
    n_examples = n_examples or (3 if quick else 6)
    picks = [int(np.flatnonzero(y_te == c)[0]) for c in range(n_examples)]
    x = x_te[picks]
    deletion = getattr(getattr(tpa, "metrics", None), "deletion", None)
    maps, rows = {}, []
    names = list(methods) if methods else [s.name for s in tpa.methods.registry.specs() if s.output != "split"]
    for name in _progress(names, desc="methods", unit="method"):
        fn = tpa.methods.resolve_method(name)
        opts = demo_options(name, x, x_tr, y_tr, quick=quick)
        try:
            t0 = time.perf_counter()
            explain_with_gap(fn, model, x, None, opts)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            attr, delta = explain_with_gap(fn, model, x, None, opts)
            warm = time.perf_counter() - t0
        except Exception as exc:  # a method the demo cannot feed: one warning line, go on
            warn(f"warning: skipped {name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        a = first_array(attr)
        maps[name] = a
        row = {
            "method": name,
            "first_call_s": first,
            "warm_call_s": warm,
            "completeness_gap": None if delta is None else float(np.mean(np.abs(np.asarray(delta)))),
        }
        if deletion is not None:
            try:
                from .callbacks import _mean_auc

                row["deletion_auc"] = _mean_auc(deletion(model, x, a, None))
            except Exception as exc:  # the metric is optional in the demo
                warn(f"warning: deletion AUC for {name} failed: {exc}")
        rows.append(row)
    if not maps:
        raise RuntimeError("no method could run in the demo")
    viz.plot_attributions(
        x,
        maps,
        kind="signed",
        path=out / "attributions.png",
        cell_inches=1.2,
        dpi=100,
        titles=["input"] + [tpa.methods.registry.short_name(n) for n in maps],
    )
    info = {"model": str(model_path), "test_accuracy": acc, "examples": picks, "quick": bool(quick), "rows": rows}
    (out / "metrics.json").write_text(json.dumps(info, indent=2))
    has_del = any("deletion_auc" in r for r in rows)
    head = ["method", "completeness gap (mean abs)", "first call (s)", "warm call (s)"] + (
        ["deletion AUC"] if has_del else []
    )
    lines = [
        f"Digits CNN (test accuracy {acc:.3f}), {len(picks)} digits explained, target = predicted class.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        gap = "n/a" if r["completeness_gap"] is None else f"{r['completeness_gap']:.2e}"
        cells = [r["method"], gap, f"{r['first_call_s']:.2f}", f"{r['warm_call_s']:.3f}"]
        if has_del:
            cells.append("n/a" if r.get("deletion_auc") is None else f"{r['deletion_auc']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    (out / "metrics.md").write_text("\n".join(lines) + "\n")
    info["report"] = _write_report(model, x, maps, out / "report.html", x_tr, y_tr, quick, warn)
    return info
