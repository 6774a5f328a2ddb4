"""Keras callback that explains a fixed probe batch during ``fit`` and logs to TensorBoard.

Example
-------
>>> logger = tpa.callbacks.AttributionLogger(x_val[:8], target=None, method="integrated_gradients",
...                                          method_options={"n_steps": 32}, log_dir="logs/attr")
>>> model.fit(x, y, epochs=5, callbacks=[logger])   # doctest: +SKIP

What is logged every ``every_n_epochs`` epochs (and every ``every_n_batches`` training batches
when set; batch-level tags start with ``batch/``), under ``log_dir``:

* ``attributions/overlay``: heatmap overlays (:func:`tf_pathattr.viz.overlay`, signed) of the first
  ``max_images`` probes, for image inputs (``[B, H, W]`` or ``[B, H, W, C]`` with C in 1, 3, 4);
* ``attributions/histogram`` (``attributions/histogram/<input>`` for several inputs);
* scalars: ``completeness_gap`` (mean over probes of ``|sum(attr) - (F(x) - F(path start))|``, the
  method's convergence delta, or the mean ``completeness_residual`` from ``return_details`` for
  methods that report one (IG2); other methods skip it with one warning)
  and ``deletion_auc`` (mean deletion AUC from :func:`tf_pathattr.metrics.deletion`, when that
  function exists);
* ``arrays/epoch_XXXX.npz`` (or ``arrays/batch_XXXXXXX.npz``) with ``inputs``, ``attributions``
  (``attributions_<i>`` for several inputs), ``target``, ``completeness_gap`` when computed.

The explain function is compiled once: the engine caches the traced method per model and static
options, and the weights are read as variables, so later epochs reuse the same trace. Writers are
created lazily and closed in ``on_train_end`` (as Keras' ``TensorBoard`` callback does). The logger
draws no random numbers from Keras', TensorFlow's or numpy's global generators (stochastic methods
use their stateless ``seed``), so training with it is bit-identical to training without it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import keras
import numpy as np

from .engine.shapes import check_positive_int
from .methods import registry, resolve_method

# completeness_mode / explain_with_gap live beside the registry; importable from here for one release
from .methods.calling import completeness_mode, explain_with_gap  # noqa: F401

__all__ = ["AttributionLogger", "TextAttributionLogger", "text_markdown"]

METRICS = ("completeness_gap", "deletion_auc")


def _deletion_fn():
    try:
        from . import metrics as _metrics  # noqa: WPS433 - optional, built by another module
    except ImportError:
        return None
    return getattr(_metrics, "deletion", None)


def _mean_auc(result):
    """Per-example AUC from a deletion result (dict, object with ``.auc``, or a tuple whose first item is it)."""
    if isinstance(result, dict):
        auc = result["auc"]
    elif hasattr(result, "auc"):
        auc = result.auc
    elif isinstance(result, (tuple, list)):
        auc = result[0]
    else:
        auc = result
    return float(np.mean(np.asarray(auc.numpy() if hasattr(auc, "numpy") else auc, dtype=np.float64)))


def _numpy(t):
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


def _write_histogram(tf_summary, tag, values, step):
    """A TensorBoard histogram with the buckets counted in numpy (one write op instead of ~100 eager ops)."""
    try:
        from tensorboard.plugins.histogram.summary_v2 import histogram_pb
    except ImportError:  # pragma: no cover - older tensorboard: the regular (slower) summary op
        tf_summary.histogram(tag, values)
        return
    pb = histogram_pb(tag, np.asarray(values, np.float64).reshape(-1))
    tf_summary.experimental.write_raw_pb(pb.SerializeToString(), step=step)


def _is_image(shape) -> bool:
    return len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3, 4))


class AttributionLogger(keras.callbacks.Callback):
    """Explain fixed probe inputs during training and log pictures, histograms, metrics and arrays.

    Parameters
    ----------
    inputs : array ``[B, ...]`` (or list / dict for multi-input models)
        The probe batch, explained at every logging step (copied once: float as float32, integer
        token ids unchanged, for ``method_options={"layer": ...}``).
    target : None, int, B ints or callable
        As for every method (``None``: the class predicted at that step).
    method : str or callable
        A name from ``tpa.METHODS`` (or an alias, or an attribution function).
    method_options : dict, optional
        Passed to the method (e.g. ``{"n_steps": 32}``).
    log_dir : str or path, optional
        TensorBoard log folder (default ``"logs/attributions"``).
    every_n_epochs : int or None
        Log at the end of every N-th epoch (``None``: no epoch logging).
    every_n_batches : int or None
        Also log every N training batches (global batch count).
    metrics : sequence of ``"completeness_gap"``, ``"deletion_auc"``
    save_arrays : bool
        Write the raw arrays as ``.npz`` under ``log_dir/arrays``.
    max_images : int
        Most probe overlays per image summary.
    """

    def __init__(
        self,
        inputs,
        target=None,
        method="integrated_gradients",
        method_options=None,
        log_dir=None,
        every_n_epochs=1,
        every_n_batches=None,
        metrics=("completeness_gap",),
        save_arrays=True,
        max_images=8,
    ):
        super().__init__()
        self._method = resolve_method(method)
        spec = registry.spec_of(method)
        if spec is not None and spec.output == "split":
            raise ValueError(f"method: {spec.name} returns two maps; log integrated_gradients instead")
        self.method_name = method if isinstance(method, str) else getattr(method, "__name__", "method")
        self.method_options = dict(method_options or {})
        for k in ("return_convergence_delta", "return_details"):  # set by the logger where it uses them
            if k in self.method_options:
                raise ValueError(f"method_options: {k!r} is set by the logger itself; remove it")
        self.every_n_epochs = None if every_n_epochs is None else check_positive_int(every_n_epochs, "every_n_epochs")
        self.every_n_batches = (
            None if every_n_batches is None else check_positive_int(every_n_batches, "every_n_batches")
        )
        if self.every_n_epochs is None and self.every_n_batches is None:
            raise ValueError("every_n_epochs and every_n_batches are both None: nothing would be logged")
        if isinstance(metrics, str):
            metrics = (metrics,)
        metrics = tuple(metrics or ())
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"metrics: unknown {unknown}; available: {list(METRICS)}")
        if "deletion_auc" in metrics and _deletion_fn() is None:
            raise ValueError("metrics: 'deletion_auc' needs tf_pathattr.metrics.deletion, which is not available")
        self.metrics = metrics
        self.save_arrays = bool(save_arrays)
        self.max_images = check_positive_int(max_images, "max_images")
        self.log_dir = Path(log_dir if log_dir is not None else os.path.join("logs", "attributions"))
        self.inputs = self._copy_inputs(inputs)
        self.target = target
        if "completeness_gap" in metrics and completeness_mode(self._method) == "none":
            warnings.warn(
                f"{self.method_name} has no completeness target (see its registry entry); "
                "the completeness_gap scalar is not logged",
                stacklevel=2,
            )
        self._writer = None
        self._global_batch = 0
        if self.every_n_batches is not None:
            self.on_train_batch_end = self._batch_end
        self.n_explanations = 0  # how many times the probes were explained (for tests and users)

    # ----------------------------------------------------------------------------------------
    @staticmethod
    def _copy_inputs(inputs):
        def conv(v):
            # float probes become float32; integer probes (token ids for layer= attribution) stay integers:
            # ids cast to float have no gradient path through an Embedding
            a = _numpy(v)
            if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
                return np.array(a, copy=True)
            return np.array(a, dtype=np.float32, copy=True)

        if isinstance(inputs, dict):
            return {k: conv(v) for k, v in inputs.items()}
        if isinstance(inputs, (list, tuple)) and len(inputs) and hasattr(inputs[0], "shape"):
            return type(inputs)(conv(v) for v in inputs)
        return conv(inputs)

    def _flat_inputs(self):
        if isinstance(self.inputs, dict):
            return list(self.inputs.items())
        if isinstance(self.inputs, (list, tuple)):
            return [(str(i), v) for i, v in enumerate(self.inputs)]
        return [(None, self.inputs)]

    @property
    def summary(self):
        """``tf.summary``, imported lazily; a clear error when TensorBoard is missing."""
        try:
            import tensorboard  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "AttributionLogger writes TensorBoard summaries and needs the tensorboard package: "
                "pip install 'tf_pathattr[tensorboard]' (or pip install tensorboard)"
            ) from exc
        import tensorflow as tf

        return tf.summary

    @property
    def writer(self):
        if self._writer is None:
            self._writer = self.summary.create_file_writer(str(self.log_dir))
        return self._writer

    # ----------------------------------------------------------------------------------------
    def explain(self):
        """Explain the probes with the current weights: ``(attributions, per-example delta or None)``."""
        want = "completeness_gap" in self.metrics
        out = explain_with_gap(self._method, self.model, self.inputs, self.target, self.method_options, want)
        self.n_explanations += 1
        return out

    def _log(self, step: int, prefix: str, array_name: str):
        tf_summary = self.summary
        attr, delta = self.explain()
        flat_attr = _flat_arrays(attr)
        scalars = {}
        if delta is not None:
            scalars["completeness_gap"] = float(np.mean(np.abs(delta)))
        if "deletion_auc" in self.metrics:
            # rank-3 probes are grayscale images here (as for the overlays); deletion needs that said
            kw = {"units": "pixels"} if getattr(self.inputs, "ndim", None) == 3 else {}
            scalars["deletion_auc"] = _mean_auc(_deletion_fn()(self.model, self.inputs, attr, self.target, **kw))
        with self.writer.as_default(step=int(step)):
            for name, value in scalars.items():
                tf_summary.scalar(prefix + name, value)
            named = self._flat_inputs()
            for (key, x), a in zip(named, flat_attr):
                suffix = "" if key is None else f"/{key}"
                _write_histogram(tf_summary, prefix + "attributions/histogram" + suffix, a, int(step))
                if _is_image(x.shape):
                    from . import viz

                    n = min(self.max_images, x.shape[0])
                    pics = np.stack([viz.overlay(x[i], a[i], "signed") for i in range(n)])
                    tf_summary.image(prefix + "attributions/overlay" + suffix, pics, max_outputs=n)
        self.writer.flush()
        if self.save_arrays:
            arrays = {}
            for (key, x), a in zip(self._flat_inputs(), flat_attr):
                suffix = "" if key is None else f"_{key}"
                arrays["inputs" + suffix] = x
                arrays["attributions" + suffix] = a
            if self.target is not None and not callable(self.target):
                arrays["target"] = np.asarray(self.target)
            if delta is not None:
                arrays["completeness_gap"] = delta
            for name, value in scalars.items():
                arrays.setdefault(name, np.asarray(value))
            folder = self.log_dir / "arrays"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"{array_name}.npz"
            tmp = folder / f"{array_name}.npz.tmp"
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, final)

    # ----------------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        _ = self.summary  # fail early, before the first epoch, if tensorboard is missing

    def _batch_end(self, batch, logs=None):
        # installed as on_train_batch_end only when every_n_batches is set: Keras turns off asynchronous
        # batch dispatch for callbacks that override the batch hooks, which would slow every fit
        self._global_batch += 1
        if self.every_n_batches is not None and self._global_batch % self.every_n_batches == 0:
            self._log(self._global_batch, "batch/", f"batch_{self._global_batch:07d}")

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs is not None and (epoch + 1) % self.every_n_epochs == 0:
            self._log(epoch, "", f"epoch_{epoch:04d}")

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _flat_arrays(attr):
    """Attributions in the user's structure -> list of numpy arrays (one per input)."""
    if isinstance(attr, dict):
        return [_numpy(v) for v in attr.values()]
    if isinstance(attr, (list, tuple)):
        return [_numpy(v) for v in attr]
    return [_numpy(attr)]


def _md_escape(token: str) -> str:
    """A token as literal markdown text: HTML and markdown syntax escaped, control characters shown."""
    import html

    safe = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(token))
    safe = html.escape(safe)
    for ch in "\\`*_{}[]()#+-.!|~":
        safe = safe.replace(ch, "\\" + ch)
    return safe if safe.strip() else "&nbsp;"


def text_markdown(result, max_examples: int = 4, kind: str = "scores") -> str:
    """Markdown for TensorBoard's text dashboard: per example, a table of tokens and their scores
    (attributed positions only; tokens escaped), with the convergence delta when there is one."""
    vals = getattr(result, kind)
    blocks = []
    for i in range(min(max_examples, vals.shape[0])):
        pairs = result.pairs(i, kind)
        head = f"**example {i}**"
        if result.delta is not None:
            head += f" (delta {float(np.mean(np.abs(np.asarray(result.delta)[i]))):.3g})"
        if not pairs:
            blocks.append(head + "\n\n(no attributed tokens)")
            continue
        rows = [
            "| " + " | ".join(_md_escape(t) for t, _ in pairs) + " |",
            "|" + "---|" * len(pairs),
            "| " + " | ".join(f"{v:+.3g}" for _, v in pairs) + " |",
        ]
        blocks.append(head + "\n\n" + "\n".join(rows))
    return "\n\n".join(blocks)


class TextAttributionLogger(AttributionLogger):
    """Explain fixed token inputs during ``fit`` with :func:`tf_pathattr.text.token_attributions`.

    Logs, every ``every_n_epochs`` epochs (and ``every_n_batches`` batches when set):

    * ``attributions/text``: a text summary (markdown table of tokens and per-token scores, tokens
      escaped) for the first ``max_examples`` probes;
    * ``attributions/histogram`` of the per-token scores and the ``completeness_gap`` scalar (methods
      with a completeness target);
    * ``arrays/...npz`` with ``token_ids``, ``scores``, ``mask``, ``attributions`` ``[B, T, E]``.

    Parameters
    ----------
    inputs : token ids ``[B, T]`` or the model's dict / list of inputs (ids stay integers)
    target : as for :func:`tf_pathattr.text.token_attributions` (class index, ``next_token()``, ...)
    method, method_options, log_dir, every_n_epochs, every_n_batches, save_arrays
        As for :class:`AttributionLogger`.
    tokenizer : optional, for token strings (ids are shown otherwise)
    max_examples : int
        Probes shown in the text summary.
    text_options : dict
        Extra keyword options of :func:`tf_pathattr.text.token_attributions` (``baseline``, ``layer``,
        ``pad_id``, ...).
    """

    def __init__(
        self,
        inputs,
        target=None,
        method="integrated_gradients",
        method_options=None,
        log_dir=None,
        every_n_epochs=1,
        every_n_batches=None,
        metrics=("completeness_gap",),
        save_arrays=True,
        tokenizer=None,
        max_examples=4,
        text_options=None,
    ):
        super().__init__(
            inputs,
            target=target,
            method=method,
            method_options=method_options,
            log_dir=log_dir,
            every_n_epochs=every_n_epochs,
            every_n_batches=every_n_batches,
            metrics=metrics,
            save_arrays=save_arrays,
        )
        self.tokenizer = tokenizer
        self.max_examples = check_positive_int(max_examples, "max_examples")
        self.text_options = dict(text_options or {})

    @staticmethod
    def _copy_inputs(inputs):
        def conv(v):
            return np.array(_numpy(v), copy=True)  # token ids keep their integer dtype

        if isinstance(inputs, dict):
            return {k: conv(v) for k, v in inputs.items()}
        if isinstance(inputs, (list, tuple)) and len(inputs) and hasattr(inputs[0], "shape"):
            return type(inputs)(conv(v) for v in inputs)
        return conv(inputs)

    def explain(self):
        from . import text

        want = "completeness_gap" in self.metrics and completeness_mode(self._method) == "delta"
        res = text.token_attributions(
            self.model,
            self.inputs,
            self.target,
            method=self._method,
            tokenizer=self.tokenizer,
            return_convergence_delta=want,
            **self.text_options,
            **self.method_options,
        )
        self.n_explanations += 1
        return res

    def _log(self, step: int, prefix: str, array_name: str):
        tf_summary = self.summary
        res = self.explain()
        with self.writer.as_default(step=int(step)):
            if res.delta is not None:
                tf_summary.scalar(prefix + "completeness_gap", float(np.mean(np.abs(res.delta))))
            tf_summary.text(prefix + "attributions/text", text_markdown(res, self.max_examples))
            _write_histogram(tf_summary, prefix + "attributions/histogram", res.scores[res.mask], int(step))
        self.writer.flush()
        if self.save_arrays:
            arrays = {
                "token_ids": res.token_ids,
                "scores": res.scores,
                "mask": res.mask,
                "attributions": res.attributions,
            }
            if res.delta is not None:
                arrays["completeness_gap"] = res.delta
            folder = self.log_dir / "arrays"
            folder.mkdir(parents=True, exist_ok=True)
            tmp, final = folder / f"{array_name}.npz.tmp", folder / f"{array_name}.npz"
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, final)
