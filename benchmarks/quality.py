"""Attribution quality benchmark: every registered path method on data sets with ground truth.

    python benchmarks/quality.py            # full run (>= 100 explicands per data set)
    python benchmarks/quality.py --quick    # smoke run (16 explicands, fewer epochs)

Trains three small models (CNN on ``tpa.data.pattern_images``, CNN on scikit-learn digits, MLP on
an XAI-Bench-style additive tabular set, plus the exact Keras model of the tabular function), runs
every method of ``METHOD_CONFIGS`` that is registered in ``tpa.METHODS`` (others are skipped and
listed) and writes ``benchmarks/QUALITY.md``: methods x metrics with mean +- std over the
explicands, the models' accuracies, and a statement, generated from the numbers, of whether the
papers' claims (Guided IG, IDG, IG2, SmoothTaylor better than IG on their metrics) hold here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import keras  # noqa: E402

import tf_pathattr as tpa  # noqa: E402
from tf_pathattr import data as tdata  # noqa: E402
from tf_pathattr import metrics as tmetrics  # noqa: E402
from tf_pathattr.methods import registry, resolve_method  # noqa: E402

OUT = Path(__file__).with_name("QUALITY.md")

# ------------------------------------------------------------------------------------------------
# methods: label -> options ("method" = registered name; "@name" values are resolved per data set)

METHOD_CONFIGS = {
    "IG (zero baseline)": {"method": "integrated_gradients", "baseline": 0.0, "n_steps": 64},
    "IG (MEB baseline)": {"method": "integrated_gradients", "baseline": "@meb", "n_steps": 64},
    "Expected Gradients": {"method": "expected_gradients", "background": "@background", "n_samples": 64, "seed": 0},
    "Guided IG (max_dist 0.02)": {"method": "guided_integrated_gradients", "max_dist": 0.02, "n_steps": 100},
    "Guided IG (anchors)": {"method": "guided_integrated_gradients", "anchors": 3, "n_steps": 100},
    "Blur IG": {"method": "blur_integrated_gradients", "max_sigma": "@max_sigma", "n_steps": 64, "_images_only": True},
    "IDG": {"method": "integrated_decision_gradients", "n_steps": 50},
    "IG2": {"method": "ig2", "references": "@other_class", "step_size": "@ig2_step", "n_steps": 101, "clip": "@clip"},
    "SmoothTaylor": {"method": "smooth_taylor", "n_roots": 64, "noise_scale": 0.15, "percent": True, "seed": 0},
    "NoiseTunnel(IG)": {
        "method": "noise_tunnel",
        "base_method": "integrated_gradients",
        "nt_type": "smoothgrad",
        "nt_samples": 8,
        "stdevs": 0.15,
        "n_steps": 32,
        "seed": 0,
    },
    "IDGI (IG)": {
        "method": "important_direction_gradient_integration",
        "base_method": "integrated_gradients",
        "n_steps": 64,
    },
    "IDGI (Guided IG)": {
        "method": "important_direction_gradient_integration",
        "base_method": "guided_integrated_gradients",
        "max_dist": 0.02,
        "n_steps": 100,
    },
    "IDGI (Blur IG)": {
        "method": "important_direction_gradient_integration",
        "base_method": "blur_integrated_gradients",
        "max_sigma": "@max_sigma",
        "n_steps": 64,
        "_images_only": True,
    },
    # AGI walks towards other classes: classifiers only (the tabular model is a regression, so "_images_only")
    "AGI": {
        "method": "adversarial_gradient_integration",
        "epsilon": 0.05,
        "max_iter": 20,
        "clip": "@clip",
        "seed": 0,
        "_images_only": True,
    },
    # XRAI returns one map per pixel [B, H, W] (registry: output="pixels"); its Felzenszwalb segments need
    # images larger than the digits' 8x8, so it runs on the pattern images only
    "XRAI (over IG)": {"method": "xrai", "n_steps": 32, "min_pixel_diff": 8, "_pattern_only": True},
}
REFERENCE = "IG (zero baseline)"
SANITY_N = 16  # digits in the sanity check (each method explains them once per randomized layer)
IG2_REFS = 4


def registered(name: str) -> bool:
    try:
        registry.get(name)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------------
# models


def predict(model, x, batch=512):
    """Model outputs as numpy, in fixed-size batches called directly (no Keras predict retracing)."""
    return np.concatenate([np.asarray(model(x[i : i + batch], training=False)) for i in range(0, len(x), batch)])


def _compile(model, loss, lr=3e-3, metrics=("accuracy",)):
    model.compile(keras.optimizers.Adam(lr), loss, metrics=list(metrics))
    return model


def pattern_cnn(size=32, classes=4):
    return keras.Sequential(
        [
            keras.Input((size, size, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(classes),
        ],
        name="pattern_cnn",
    )


def digits_cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="digits_cnn",
    )


def tabular_mlp(d):
    return keras.Sequential(
        [
            keras.Input((d,)),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(1),
        ],
        name="tabular_mlp",
    )


def train_pattern(n_train=3000, n_test=400, epochs=2, seed=0):
    """CNN on pattern images; returns (model, (x_tr, y_tr), (x_te, y_te, masks_te), test accuracy)."""
    keras.utils.set_random_seed(seed)
    x, y, _ = tdata.pattern_images(n_train, seed=seed)
    xt, yt, mt = tdata.pattern_images(n_test, seed=seed + 1)
    model = _compile(pattern_cnn(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    acc = float(np.mean(predict(model, xt).argmax(1) == yt))
    return model, (x, y), (xt, yt, mt), acc


def train_digits(epochs=12, seed=0):
    keras.utils.set_random_seed(seed)
    x, y = tdata.load_digits_images()
    perm = np.random.default_rng(seed).permutation(len(x))
    tr, te = perm[:1400], perm[1400:]
    model = _compile(digits_cnn(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[tr], y[tr], batch_size=32, epochs=epochs, verbose=0)
    acc = float(np.mean(predict(model, x[te]).argmax(1) == y[te]))
    return model, (x[tr], y[tr]), (x[te], y[te]), acc


def train_tabular(n_train=4000, n_test=400, d=8, rho=0.5, epochs=30, seed=0):
    keras.utils.set_random_seed(seed)
    prob = tdata.tabular_gaussian(n_train + n_test, d=d, rho=rho, function="additive", seed=seed, noise=0.05)
    x, yv = prob.x, prob.y
    model = _compile(tabular_mlp(d), "mse", metrics=())
    model.fit(x[:n_train], yv[:n_train], batch_size=128, epochs=epochs, verbose=0)
    pred = predict(model, x[n_train:])[:, 0]
    f = prob.function(x[n_train:])
    r2 = float(1 - np.mean((pred - f) ** 2) / np.var(f))
    return model, prob, n_train, r2


# ------------------------------------------------------------------------------------------------
# running methods


class Lazy:
    """A context value computed on first use (e.g. IG2 references, only when IG2 runs)."""

    def __init__(self, fn):
        self.fn, self.done, self.value = fn, False, None

    def get(self):
        if not self.done:
            self.value, self.done = self.fn(), True
        return self.value


def resolve_options(opts, ctx):
    out = {}
    for k, v in opts.items():
        if k.startswith("_") or k == "method":
            continue
        if isinstance(v, str) and v.startswith("@"):
            v = ctx[v[1:]]
            v = v.get() if isinstance(v, Lazy) else v
        out[k] = v
    return out


def run_method(model, x, target, opts, ctx):
    """(attributions numpy, completeness delta numpy or None, seconds)."""
    name = opts["method"]
    fn = resolve_method(name)
    kw = resolve_options(opts, ctx)
    want_delta = registry.get(name).completeness is not None
    t0 = time.perf_counter()
    out = fn(model, x, target, return_convergence_delta=True, **kw) if want_delta else fn(model, x, target, **kw)
    if want_delta:
        attr, delta = out
        delta = np.asarray(delta)
    else:
        attr, delta = out, None
    attr = np.asarray(attr, np.float64)
    return attr, delta, time.perf_counter() - t0


def pixel_map(name, attr):
    """Signed per-pixel map [B, H, W]: the channel sum, or the method's own map (registry output="pixels")."""
    return attr if registry.get(name).output == "pixels" else attr.sum(-1)


def faithfulness(model, x, attr, y, res):
    """The captum / xplique / ROAD metrics on one image set (scale-free infidelity, so that methods with
    different sums compare), added to ``res``."""
    res["infidelity"] = tmetrics.infidelity(
        model, x, attr, y, n_perturb_samples=20, noise_scale=0.2, clip=(0.0, 1.0), normalize=True, seed=0
    ).infidelity
    res["mu_fidelity"] = tmetrics.mu_fidelity(model, x, attr, y, nb_samples=100, seed=0).mu_fidelity
    rd = tmetrics.road(model, x, attr, y, order="both", seed=0)
    span = rd.fractions[-1] - rd.fractions[0]
    for o in ("morf", "lerf"):
        res[f"road_{o}"] = np.trapezoid(rd.correct[o], rd.fractions, axis=1) / span
    res["road_gap"] = res["road_lerf"] - res["road_morf"]


def ig2_step(x, refs, n_steps):
    """IG2 step size from the data scale: twice the median explicand-reference L2 distance over K steps."""
    d = np.linalg.norm((x[:, None] - refs).reshape(x.shape[0], refs.shape[1], -1), axis=-1)
    return float(2.0 * np.median(d) / n_steps)


def image_context(x, target, x_pool, y_pool, low, high, size):
    other_class = Lazy(lambda: tpa.references.other_class(x_pool, y_pool, target, IG2_REFS, seed=0))
    step = Lazy(lambda: ig2_step(x, other_class.get(), METHOD_CONFIGS["IG2"]["n_steps"]))

    return {
        "meb": tpa.baselines.uniform(low, high, n=4, seed=0),
        "background": x_pool[:200],
        "max_sigma": float(max(1.0, size / 4)),
        "other_class": other_class,
        "ig2_step": step,
        "clip": (low, high),
    }


# ------------------------------------------------------------------------------------------------
# statistics and tables


def mean_std(v):
    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "n/a"
    return f"{v.mean():.3f} ± {v.std():.3f}"


def paired(a, b):
    """Mean of a - b over examples where both are finite and its standard error."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    if d.size < 2:
        return np.nan, np.nan
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


def pearson_rows(a, b):
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(den > 0, (a * b).sum(1) / np.maximum(den, 1e-300), np.nan)


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# evaluations


def eval_pattern(model, train, test, n, methods, log):
    xt, yt, mt = test
    pred = predict(model, xt).argmax(1)
    ok = np.flatnonzero(pred == yt)[:n]
    x, y, masks = xt[ok], yt[ok], mt[ok]
    ctx = image_context(x, y, train[0], train[1], 0.0, 1.0, 32)
    res = {}
    aupc = getattr(tmetrics, "aupc", None)
    tv = getattr(tmetrics, "total_variation", None)
    for label, opts in methods.items():
        log(f"  pattern: {label}")
        attr, delta, secs = run_method(model, x, y, opts, ctx)
        sal = np.abs(pixel_map(opts["method"], attr))
        tot = sal.reshape(len(x), -1).sum(1)
        inside = (sal * masks).reshape(len(x), -1).sum(1)
        flat_arg = sal.reshape(len(x), -1).argmax(1)
        r = {
            # 4 pixels per step (257-point curves): a class pattern has 9-13 lit pixels, so one image row
            # per step (the RISE default) reveals or removes it in one or two steps and saturates the curves
            "deletion": tmetrics.deletion(model, x, attr, y, pixels_per_step=4).auc,
            "insertion": tmetrics.insertion(model, x, attr, y, pixels_per_step=4).auc,
            "insertion_const": tmetrics.insertion(
                model, x, attr, y, substrate="constant", substrate_value=0.0, pixels_per_step=4
            ).auc,
            "mask_mass": np.where(tot > 0, inside / np.maximum(tot, 1e-300), np.nan),
            "pointing": masks.reshape(len(x), -1)[np.arange(len(x)), flat_arg].astype(float),
            "delta": None if delta is None else np.abs(delta),
            "time": secs,
        }
        p = tmetrics.pic(model, x, attr, y, seed=0, min_pred_value=0.5)
        r["sic"], r["aic"] = p.auc["sic"], p.auc["aic"]
        r["sic_median_curve"] = p.aggregate["sic"].auc if p.aggregate["sic"] is not None else np.nan
        r["aic_median_curve"] = p.aggregate["aic"].auc if p.aggregate["aic"] is not None else np.nan
        if aupc is not None:
            try:
                r["aupc"] = np.asarray(aupc(model, x, attr, y, window=4, n_regions=16, n_candidates=10, seed=0)[0])
            except Exception as exc:  # the other metric module's options may differ
                log(f"    aupc skipped: {exc}")
        if tv is not None:
            try:
                r["autvc"] = np.asarray(tv(attr, min_size=8)[0])
            except Exception as exc:
                log(f"    total_variation skipped: {exc}")
        faithfulness(model, x, attr, y, r)
        res[label] = r
    return res, len(x)


def eval_digits(model, train, test, n, methods, log):
    xt, yt = test
    pred = predict(model, xt).argmax(1)
    ok = np.flatnonzero(pred == yt)[:n]
    x, y = xt[ok], yt[ok]
    ctx = image_context(x, y, train[0], train[1], 0.0, 1.0, 8)
    res = {}
    for label, opts in methods.items():
        if opts.get("_pattern_only"):
            continue
        log(f"  digits: {label}")
        attr, delta, secs = run_method(model, x, y, opts, ctx)
        ab = tmetrics.meb_ablation(model, x, attr, y, low=0.0, high=1.0, order="both", n_draws=5, seed=0)
        res[label] = {
            "deletion": tmetrics.deletion(model, x, attr, y, pixels_per_step=4).auc,
            "insertion": tmetrics.insertion(model, x, attr, y, pixels_per_step=4, blur_size=5, blur_sigma=2.0).auc,
            "meb_morf": ab.auc["morf"],
            "meb_lerf": ab.auc["lerf"],
            "meb_gap": ab.gap,
            "delta": None if delta is None else np.abs(delta),
            "time": secs,
        }
        faithfulness(model, x, attr, y, res[label])
    return res, len(x)


def eval_softmax_head(model, test, n, methods, log):
    """The digits CNN with a softmax head (as keras.applications models end): deletion / insertion AUC by the
    shared scoring rule (the head's probabilities) and by the rule before issue #10 (the probabilities
    softmaxed again, reproduced with a second Softmax layer)."""
    xt, yt = test
    pred = predict(model, xt).argmax(1)
    ok = np.flatnonzero(pred == yt)[:n]
    x, y = xt[ok], yt[ok]
    head = keras.Sequential([model, keras.layers.Softmax()], name="digits_softmax_head")
    double = keras.Sequential([head, keras.layers.Softmax()], name="digits_double_softmax")
    ctx = image_context(x, y, xt, yt, 0.0, 1.0, 8)
    res = {}
    for label, opts in methods.items():
        if opts.get("_pattern_only"):
            continue
        log(f"  softmax head: {label}")
        attr, _, _ = run_method(head, x, y, opts, ctx)
        r = {}
        for tag, m in (("new", head), ("old", double)):
            r[f"deletion_{tag}"] = tmetrics.deletion(m, x, attr, y, pixels_per_step=4).auc
            r[f"insertion_{tag}"] = tmetrics.insertion(
                m, x, attr, y, pixels_per_step=4, blur_size=5, blur_sigma=2.0
            ).auc
        res[label] = r
    return res, len(x)


def eval_sanity(model, train, test, n, methods, log):
    """Cascading model-parameter randomization (Adebayo et al., NeurIPS 2018) of every method on the digits
    CNN: :func:`tpa.metrics.model_randomization` re-initialises the layers from the output down and compares
    each new map with the trained model's (Spearman of |map|, Spearman, SSIM), the class fixed to the label."""
    xt, yt = test
    pred = predict(model, xt).argmax(1)
    ok = np.flatnonzero(pred == yt)[:n]
    x, y = xt[ok], yt[ok]
    ctx = image_context(x, y, train[0], train[1], 0.0, 1.0, 8)
    res = {}
    for label, opts in methods.items():
        if opts.get("_pattern_only"):
            continue
        log(f"  sanity: {label}")
        res[label] = tmetrics.model_randomization(
            model, x, y, method=opts["method"], options=resolve_options(opts, ctx), seed=0
        )
    return res, len(x)


def sanity_section(sanity, n):
    """The sanity-check section of QUALITY.md: one row per method."""
    from tf_pathattr.report import sanity_status

    md = [
        f"## Sanity check: model-parameter randomization ({n} digits)",
        "",
        "`tpa.metrics.model_randomization` (Adebayo et al., *Sanity Checks for Saliency Maps*, NeurIPS 2018) on "
        "the digits CNN: the weighted layers are re-initialised with their own initializers from the output "
        "down (cascading), and each method's maps are compared with the trained model's. Mean over the digits "
        "of the similarity after the top layer and after every layer is random; a method that explains the "
        "model loses it. Verdict (as in `tpa.report`): *failed* when the signed maps still correlate "
        "(Spearman > 0.5) with every layer random, *partial* when only their magnitudes do (Spearman of |map| "
        "or SSIM > 0.5: the input shows through, e.g. IG's (x − x′) factor), *passed* otherwise. Regenerate "
        "this section alone with `python benchmarks/quality.py --sanity-only`.",
        "",
    ]
    rows = []
    for label, r in sanity.items():
        top, last = r.mean("spearman_abs")[0], r.mean("spearman_abs")[-1]
        rows.append(
            [
                label,
                f"{top:.3f}",
                f"{last:.3f}",
                f"{r.mean('spearman')[-1]:.3f}",
                f"{r.mean('ssim')[-1]:.3f}",
                {"fail": "**failed**", "partial": "partial", "pass": "passed", "n/a": "n/a"}[sanity_status(r)],
            ]
        )
    headers = [
        "method",
        "Spearman abs, top layer random",
        "Spearman abs, all random",
        "Spearman, all random",
        "SSIM, all random",
        "verdict",
    ]
    return md + [table(headers, rows), ""]


def splice_section(path, lines, before="## Do the papers' claims hold here?"):
    """Replace the sanity-check section of an existing QUALITY.md (or insert it before ``before``)."""
    text = path.read_text().split("\n")
    start = next((i for i, ln in enumerate(text) if ln.startswith("## Sanity check")), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(text)) if text[i].startswith("## ")), len(text))
        text[start:end] = lines
    else:
        at = next((i for i, ln in enumerate(text) if ln.startswith(before)), len(text))
        text[at:at] = lines
    path.write_text("\n".join(text))


def eval_tabular(mlp, prob, n_train, n, methods, log):
    x_all = prob.x
    x = x_all[n_train : n_train + n]
    labels = prob.labels[n_train : n_train + n]
    pool, pool_y = x_all[:n_train], prob.labels[:n_train]
    lo, hi = pool.min(0), pool.max(0)
    exact = prob.keras_model()
    background = pool[:200]
    gt_path = prob.ground_truth(x, 0.0)
    gt_shap = prob.shapley_marginal(x, background)

    def ctx_for():
        other_class = Lazy(lambda: tpa.references.other_class(pool, pool_y, labels, IG2_REFS, seed=0))
        return {
            "meb": tpa.baselines.uniform(lo, hi, n=4, seed=0),
            "background": background,
            "max_sigma": 1.0,
            "other_class": other_class,
            "ig2_step": Lazy(lambda: ig2_step(x, other_class.get(), METHOD_CONFIGS["IG2"]["n_steps"])),
            "clip": (float(lo.min()), float(hi.max())),
        }

    res = {}
    for label, opts in methods.items():
        if opts.get("_images_only") or opts.get("_pattern_only"):
            continue
        log(f"  tabular: {label}")
        r = {}
        for mname, model in (("exact", exact), ("mlp", mlp)):
            attr, delta, secs = run_method(model, x, None, opts, ctx_for())
            r[f"{mname}_gt_path"] = pearson_rows(attr, gt_path)
            r[f"{mname}_gt_shap"] = pearson_rows(attr, gt_shap)
            r[f"{mname}_mse_path"] = ((attr - gt_path) ** 2).mean(1)
            if mname == "exact":
                r["delta"] = None if delta is None else np.abs(delta)
                r["time"] = secs
        res[label] = r
    return res, len(x)


# ------------------------------------------------------------------------------------------------
# claims


def claim_lines(pattern, digits, tabular):
    lines = []
    ref = REFERENCE

    def verdict(res, label, key, higher_better, what):
        if label not in res or ref not in res or key not in res[label]:
            return None
        m, se = paired(res[label][key], res[ref][key])
        if not np.isfinite(m):
            return f"- {label} vs {ref}, {what}: not enough comparable examples."
        better = m > 0 if higher_better else m < 0
        sig = abs(m) > 2 * se
        word = ("better" if better else "worse") if sig else "not significantly different"
        return (
            f"- {label} vs {ref}, {what} ({'higher' if higher_better else 'lower'} is better): "
            f"mean paired difference {m:+.4f} ± {se:.4f} (s.e.) → **{word}**."
        )

    checks = [
        (
            "Guided IG",
            [
                ("pattern", "sic", True, "SIC AUC on pattern images"),
                ("pattern", "aic", True, "AIC AUC on pattern images"),
            ],
        ),
        (
            "IDG",
            [
                ("pattern", "insertion", True, "insertion AUC (blur start) on pattern images"),
                ("pattern", "insertion_const", True, "insertion AUC (zero start) on pattern images"),
                ("pattern", "deletion", False, "deletion AUC on pattern images"),
                ("digits", "insertion", True, "insertion AUC on digits"),
                ("digits", "deletion", False, "deletion AUC on digits"),
            ],
        ),
        (
            "IG2",
            [
                ("tabular", "mlp_gt_path", True, "correlation with g(x) - g(0) on the tabular MLP"),
                ("tabular", "mlp_gt_shap", True, "correlation with marginal Shapley values on the tabular MLP"),
                ("pattern", "deletion", False, "deletion AUC on pattern images"),
                ("digits", "deletion", False, "deletion AUC on digits"),
            ],
        ),
        (
            "SmoothTaylor",
            [
                ("pattern", "aupc", False, "AUPC on pattern images"),
                ("pattern", "autvc", False, "AUTVC on pattern images"),
            ],
        ),
        (
            "IDGI",
            [
                ("pattern", "insertion", True, "insertion AUC (blur start) on pattern images"),
                ("pattern", "sic", True, "SIC AUC on pattern images"),
                ("pattern", "aic", True, "AIC AUC on pattern images"),
                ("digits", "insertion", True, "insertion AUC on digits"),
            ],
        ),
        (
            "AGI",
            [
                ("pattern", "deletion", False, "deletion AUC on pattern images"),
                ("pattern", "insertion", True, "insertion AUC (blur start) on pattern images"),
                ("digits", "deletion", False, "deletion AUC on digits"),
                ("digits", "insertion", True, "insertion AUC on digits"),
            ],
        ),
    ]
    sets = {"pattern": pattern, "digits": digits, "tabular": tabular}
    for prefix, items in checks:
        labels = sorted({lab for s in sets.values() for lab in s if lab.startswith(prefix)})
        if not labels:
            lines.append(f"- {prefix}: not registered on this branch, claim not tested.")
            continue
        for lab in labels:
            for set_name, key, hb, what in items:
                v = verdict(sets[set_name], lab, key, hb, what)
                if v is None and set_name == "pattern" and key in ("aupc", "autvc"):
                    v = f"- {lab}: {what} not available (metric not registered)."
                if v:
                    lines.append(v)
    return lines


# ------------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 16 explicands, short training")
    ap.add_argument("--n", type=int, default=None, help="explicands per data set (default 100, quick 16)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--note", default="", help="a line added under the title (e.g. which tree was run)")
    ap.add_argument(
        "--sanity-only", action="store_true", help="only the sanity-check section (digits CNN), spliced into --out"
    )
    args = ap.parse_args(argv)
    n = args.n or (16 if args.quick else 100)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)

    methods, skipped = {}, []
    for label, opts in METHOD_CONFIGS.items():
        (methods if registered(opts["method"]) else skipped.append(label) or {})[label] = opts
    if skipped:
        log(f"skipping (not registered): {', '.join(skipped)}")
    if "ig2" in {o["method"] for o in methods.values()} and not hasattr(tpa, "references"):
        methods = {k: v for k, v in methods.items() if v["method"] != "ig2"}
        skipped.append("IG2 (tpa.references missing)")

    if args.sanity_only:
        log("training digits CNN")
        d_model, d_train, d_test, d_acc = train_digits(epochs=6 if args.quick else 12)
        log(f"digits CNN test accuracy {d_acc:.3f}")
        sanity, n_san = eval_sanity(d_model, d_train, d_test, min(n, SANITY_N), methods, log)
        splice_section(Path(args.out), sanity_section(sanity, n_san))
        log(f"wrote the sanity-check section of {args.out} in {time.perf_counter() - t_start:.0f} s")
        return

    log("training pattern CNN")
    p_model, p_train, p_test, p_acc = train_pattern(n_train=1500 if args.quick else 3000, epochs=2)
    log(f"pattern CNN test accuracy {p_acc:.3f}")
    log("training digits CNN")
    d_model, d_train, d_test, d_acc = train_digits(epochs=6 if args.quick else 12)
    log(f"digits CNN test accuracy {d_acc:.3f}")
    log("training tabular MLP")
    t_model, t_prob, t_ntrain, t_r2 = train_tabular(epochs=10 if args.quick else 30)
    log(f"tabular MLP test R^2 {t_r2:.3f}")

    pattern, n_p = eval_pattern(p_model, p_train, p_test, n, methods, log)
    digits, n_d = eval_digits(d_model, d_train, d_test, n, methods, log)
    soft, n_s = eval_softmax_head(d_model, d_test, n, methods, log)
    sanity, n_san = eval_sanity(d_model, d_train, d_test, min(n, SANITY_N), methods, log)
    tabular, n_t = eval_tabular(t_model, t_prob, t_ntrain, n, methods, log)

    elapsed = time.perf_counter() - t_start
    write_report(
        Path(args.out),
        args.note,
        args.quick,
        n_p,
        n_d,
        n_t,
        p_acc,
        d_acc,
        t_r2,
        t_prob,
        pattern,
        digits,
        tabular,
        skipped,
        elapsed,
        soft,
        n_s,
        sanity,
        n_san,
    )
    log(f"wrote {args.out}")


FAITH_KEYS = [
    ("infidelity", "infidelity ↓"),
    ("mu_fidelity", "MuFidelity ↑"),
    ("road_morf", "ROAD MoRF ↓"),
    ("road_lerf", "ROAD LeRF"),
    ("road_gap", "ROAD gap ↑"),
]


def _cell(r, key):
    v = r.get(key)
    return "n/a" if v is None else mean_std(v)


def write_report(
    path,
    note,
    quick,
    n_p,
    n_d,
    n_t,
    p_acc,
    d_acc,
    t_r2,
    prob,
    pattern,
    digits,
    tabular,
    skipped,
    elapsed,
    soft=None,
    n_s=0,
    sanity=None,
    n_san=0,
):
    sys.path.insert(0, str(Path(__file__).parent))
    from _harness import machine

    md = (
        ["# Attribution quality benchmark", ""]
        + ([note, ""] if note else [])
        + [
            f"Generated by `python benchmarks/quality.py{' --quick' if quick else ''}` in {elapsed:.0f} s on: "
            f"{machine()}.",
            "",
            "Mean ± std over the explicands (correctly classified test examples). Deletion: lower is better; "
            "insertion, SIC, AIC, mask mass, pointing, ground-truth correlation, MEB LeRF−MoRF gap: higher is better; "
            "MEB MoRF: lower is better. |δ| is the method's own convergence delta (|Σa − completeness target|, "
            "logit units; n/a where the method has none). Time: wall seconds for all explicands, first call "
            "(tracing) included. Scores follow the metrics' shared rule (`tf_pathattr/metrics/_scoring.py`): "
            "the probability of the explained class, read from a softmax head as it is and computed from "
            "logits otherwise.",
            "",
            "Faithfulness columns: infidelity (Yeh et al.; noisy baseline N(0, 0.2²) clipped to [0, 1], 20 "
            "samples, β-normalised, on the logit; lower is better), MuFidelity (Bhatt et al.; Pearson, 9×9 grid "
            "— pixel-wise on 8×8 digits — Bernoulli(0.2) cells, baseline 0, 100 subsets; higher is better), "
            "ROAD (Rong et al.; noisy linear imputation, fractions 0.1–0.9, accuracy against the label; area of the "
            "MoRF curve, lower is better, of the LeRF curve, and their gap, higher is better).",
            "",
            "## Models",
            "",
            table(
                ["model", "data", "quality"],
                [
                    ["pattern CNN", "tpa.data.pattern_images 32×32, 4 classes", f"test accuracy {p_acc:.3f}"],
                    ["digits CNN", "scikit-learn digits 8×8", f"test accuracy {d_acc:.3f}"],
                    [
                        "tabular MLP",
                        f"tpa.data.tabular_gaussian d={prob.n_features}, rho={prob.rho}, additive",
                        f"test R² {t_r2:.3f}",
                    ],
                    ["tabular exact", "Keras model of the known additive function", "exact"],
                ],
            ),
            "",
        ]
    )
    if skipped:
        md += [f"Skipped (not registered on this branch): {', '.join(skipped)}.", ""]

    md += [
        f"## Pattern images ({n_p} explicands; ground-truth mask = the class pattern)",
        "",
        "Deletion / insertion: 4 pixels per step (256 steps); insertion starts from the RISE blur "
        "(11×11, σ 5) or from zeros.",
        "",
    ]
    keys = [
        ("deletion", "deletion ↓"),
        ("insertion", "insertion (blur) ↑"),
        ("insertion_const", "insertion (zeros) ↑"),
        ("sic", "SIC ↑"),
        ("aic", "AIC ↑"),
        ("mask_mass", "mask mass ↑"),
        ("pointing", "pointing ↑"),
        ("delta", "|δ|"),
    ]
    extra = [k for k in ("aupc", "autvc") if any(k in r for r in pattern.values())]
    keys += [(k, k.upper() + " ↓") for k in extra]
    keys += FAITH_KEYS
    rows = []
    for label, r in pattern.items():
        rows.append(
            [label]
            + [_cell(r, k) for k, _ in keys]
            + [f"{r['sic_median_curve']:.3f} / {r['aic_median_curve']:.3f}", f"{r['time']:.1f}"]
        )
    md += [table(["method"] + [h for _, h in keys] + ["SIC / AIC of median curve", "time (s)"], rows), ""]

    md += [
        f"## Digits ({n_d} explicands)",
        "",
        "Deletion / insertion: 4 pixels per step (16 steps), insertion "
        "from a 5×5, σ 2 blur; MEB ablation: uniform noise on [0, 1], 5 draws, q = 0, 0.1, …, 1.",
        "",
    ]
    keys = [
        ("deletion", "deletion ↓"),
        ("insertion", "insertion ↑"),
        ("meb_morf", "MEB MoRF ↓"),
        ("meb_lerf", "MEB LeRF"),
        ("meb_gap", "MEB gap ↑"),
        ("delta", "|δ|"),
    ] + FAITH_KEYS
    rows = [[label] + [_cell(r, k) for k, _ in keys] + [f"{r['time']:.1f}"] for label, r in digits.items()]
    md += [table(["method"] + [h for _, h in keys] + ["time (s)"], rows), ""]

    if soft:
        md += [
            f"## Digits CNN with a softmax head ({n_s} explicands)",
            "",
            "The same digits CNN ending in `Softmax()` (as `keras.applications` models do by default); "
            'attributions explain the probability. "new": the shared scoring rule reads the head\'s '
            'probabilities; "old": the probabilities softmaxed again, which is what the metrics did before '
            "issue #10 (for 10 classes every point is squeezed into [1/(e + 9), e/(e + 9)] ≈ [0.085, 0.232]). "
            "Spread = max − min of the method means.",
            "",
        ]
        keys = [
            ("deletion_old", "deletion (old) ↓"),
            ("deletion_new", "deletion ↓"),
            ("insertion_old", "insertion (old) ↑"),
            ("insertion_new", "insertion ↑"),
        ]
        rows = [[label] + [_cell(r, k) for k, _ in keys] for label, r in soft.items()]
        spread = ["spread"] + [f"{np.ptp([np.nanmean(r[k]) for r in soft.values()]):.3f}" for k, _ in keys]
        md += [table(["method"] + [h for _, h in keys], rows + [spread]), ""]

    md += [
        f"## Tabular ({n_t} explicands; ground truth g_i(x_i) − g_i(0) for paths from 0, "
        "and the marginal Shapley value g_i(x_i) − E g_i(X_i))",
        "",
    ]
    keys = [
        ("exact_gt_path", "exact: corr GT(0) ↑"),
        ("exact_gt_shap", "exact: corr Shapley ↑"),
        ("exact_mse_path", "exact: MSE GT(0) ↓"),
        ("mlp_gt_path", "MLP: corr GT(0) ↑"),
        ("mlp_gt_shap", "MLP: corr Shapley ↑"),
        ("delta", "|δ| (exact)"),
    ]
    rows = [[label] + [_cell(r, k) for k, _ in keys] + [f"{r['time']:.1f}"] for label, r in tabular.items()]
    md += [table(["method"] + [h for _, h in keys] + ["time (s)"], rows), ""]

    if sanity:
        md += sanity_section(sanity, n_san)

    md += [
        "## Do the papers' claims hold here?",
        "",
        f"Paired comparison with {REFERENCE} over the same explicands; a difference counts when it exceeds "
        "two standard errors.",
        "",
    ]
    md += claim_lines(pattern, digits, tabular)
    md += [
        "",
        "These are small models on synthetic / tiny data; they test the claims' direction, not the "
        "papers' ImageNet numbers.",
    ]
    path.write_text("\n".join(md) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
