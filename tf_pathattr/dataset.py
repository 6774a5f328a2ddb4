"""Dataset-scale attribution: explain a whole dataset in batches and write sharded, resumable results.

:func:`explain_dataset` streams examples (a ``tf.data.Dataset``, numpy arrays, any iterable of
examples, or files: PNG / JPEG images, ``.npy`` arrays, TFRecord files of ``tf.train.Example``)
through any registered method, batch by batch, and writes into one output folder:

* ``attributions-SSSSS.npz`` (or ``.tfrecord``): the ids and the attributions of one shard;
* ``examples-SSSSS.parquet`` (CSV where pyarrow is absent): one row per explained example with
  ``id``, ``target`` (the explained class, -1 for a callable target), ``score`` (the explained
  output ``F_target(x)``), ``completeness_gap`` (the method's per-example convergence delta
  ``sum(attr) - (F(x) - F(path start))``, NaN where the method has no completeness target) and,
  on request, ``deletion_auc`` / ``insertion_auc`` (:mod:`tf_pathattr.metrics`);
* ``dead_letters-SSSSS.jsonl``: records that could not be explained (an unreadable image, a
  wrong shape, a NaN), one JSON object ``{"id", "reason"}`` per line; every record read ends up
  either in the table or here (records in = results + dead letters);
* ``run.json`` (the run's configuration) and ``summary.json`` (counts and timing, at the end).

Shard ``k`` holds the records ``k * shard_size`` to ``(k + 1) * shard_size - 1`` of the stream.
Each shard file is written to a temporary name and renamed, the table last, so a shard whose table
exists is complete: rerunning the same call after an interruption skips the finished shards (their
records are read past without being explained) and produces the same files an uninterrupted run
writes. A different configuration in the same folder is refused (``overwrite=True`` clears it).

Under a ``tf.distribute`` strategy (``strategy=`` or the strategy whose scope is active, e.g. a
``MirroredStrategy`` over several GPUs) each batch is split across the replicas and the parts run
through ``strategy.run``.

:mod:`tf_pathattr.beam` runs the same per-batch explainer (:class:`BatchExplainer`) inside an
Apache Beam ``RunInference`` transform, for clusters.
"""

from __future__ import annotations

import glob as _glob
import hashlib
import io
import json
import os
import struct
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from .engine.shapes import check_choice, check_positive_int

__all__ = [
    "explain_dataset",
    "read_results",
    "BatchExplainer",
    "DatasetResult",
    "RecordError",
    "Record",
    "check_example",
    "decode_file",
    "list_files",
    "load_model",
    "arrays_bytes",
    "table_bytes",
    "table_columns",
    "dead_letters_bytes",
    "FILE_SUFFIXES",
    "METRICS",
]

#: Per-example metrics the table can hold besides ``id``, ``target`` and ``score``.
METRICS = ("completeness_gap", "deletion_auc", "insertion_auc")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")
FILE_SUFFIXES = IMAGE_SUFFIXES + (".npy",) + TFRECORD_SUFFIXES
FORMATS = ("npz", "tfrecord")
TABLE_COLUMNS = ("id", "target", "score") + METRICS


class RecordError(ValueError):
    """A record that cannot be explained; ``str(exc)`` is the reason written to the dead letters."""


@dataclass
class Record:
    """One input record: ``x`` (float32, per-example shape) or ``error`` (why it cannot be explained)."""

    id: str
    x: Optional[np.ndarray] = None
    target: Optional[int] = None
    error: Optional[str] = None


# --------------------------------------------------------------------------------------------
# models


def load_model(path):
    """``(model, per-example input shape or None)`` from a ``.keras`` / ``.h5`` file or a SavedModel folder.

    A SavedModel (``model.export``, ``tf.saved_model.save`` or :func:`tf_pathattr.saved_model.export`)
    is explained through its ``serve`` endpoint. The same loader as ``tf-pathattr explain``.
    """
    from .cli import CLIError
    from .cli import load_model as _load

    try:
        return _load(path)
    except CLIError as exc:
        msg = str(exc).replace("--model: ", "model: ", 1)
        if "no such file" in msg:
            raise FileNotFoundError(msg) from None
        raise ValueError(msg) from None


def model_input_shape(model):
    """Per-example input shape of a single-input Keras model (``None`` when unknown)."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    if len(inputs) != 1:
        raise NotImplementedError(f"explain_dataset explains single-input models; this model has {len(inputs)} inputs")
    shape = tuple(inputs[0].shape[1:])
    return None if any(d is None for d in shape) else tuple(int(d) for d in shape)


# --------------------------------------------------------------------------------------------
# records: checking and decoding


def _first_line(exc) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def check_example(x, shape=None) -> np.ndarray:
    """One example as float32, checked: numeric, of ``shape`` (when given) and finite.

    Raises :class:`RecordError` with the reason otherwise.
    """
    try:
        arr = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    except Exception as exc:  # objects numpy cannot hold
        raise RecordError(f"not an array: {_first_line(exc)}") from None
    if arr.dtype.kind not in "fiub":
        raise RecordError(f"holds {arr.dtype} values, expected numbers")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise RecordError(f"wrong shape: {tuple(arr.shape)}, the model expects {tuple(shape)}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise RecordError(f"non-finite values: {bad} NaN/inf entries")
    return arr


IMAGE_SCALES = ("0,1", "-1,1", "0,255", "caffe", "torch")


def check_scale(scale) -> str:
    """``scale`` for image files: one of :data:`IMAGE_SCALES` (as ``tf-pathattr explain --scale``)."""
    return check_choice(scale, "scale", IMAGE_SCALES)


def _decode_image(data: bytes, shape, scale: str = "0,1"):
    from PIL import Image

    from .cli import CLIError, scale_pixels

    with Image.open(io.BytesIO(data)) as im:
        channels = shape[-1] if shape is not None and len(shape) == 3 else 3
        if channels not in (1, 3):
            raise RecordError(f"the model expects {channels} channels; images give 1 (grey) or 3 (RGB)")
        im = im.convert("L" if channels == 1 else "RGB")
        if shape is not None and len(shape) == 3 and im.size != (shape[1], shape[0]):
            im = im.resize((shape[1], shape[0]), Image.BILINEAR)
        pixels = np.asarray(im, dtype=np.float32)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    try:
        return scale_pixels(pixels[None], scale)[0]
    except CLIError as exc:
        raise RecordError(str(exc).replace("--scale", "scale", 1)) from None


def _tfrecord_payloads(data: bytes) -> Iterator[bytes]:
    """The records of a TFRecord file (length, masked CRC of the length, data, masked CRC of the data).

    CRCs are checked when ``google-crc32c`` is installed (the ``[beam]`` extra); a truncated or
    corrupt file raises :class:`RecordError`.
    """
    try:
        import google_crc32c  # noqa: F401

        masked = _masked_crc32c
    except ImportError:  # pragma: no cover - the [beam] extra installs it
        masked = None

    pos, n = 0, len(data)
    while pos < n:
        if pos + 12 > n:
            raise RecordError("truncated TFRecord file")
        (length,) = struct.unpack_from("<Q", data, pos)
        (len_crc,) = struct.unpack_from("<I", data, pos + 8)
        start, end = pos + 12, pos + 12 + length
        if end + 4 > n:
            raise RecordError("truncated TFRecord file")
        payload = data[start:end]
        if masked is not None:
            (data_crc,) = struct.unpack_from("<I", data, end)
            if masked(data[pos : pos + 8]) != len_crc or masked(payload) != data_crc:
                raise RecordError("corrupt TFRecord file (CRC mismatch)")
        yield payload
        pos = end + 4


def _parse_example(payload: bytes, shape, default_id: str, scale: str = "0,1"):
    """``(id, x, target)`` from a serialized ``tf.train.Example``.

    Features: ``x`` (float list, reshaped by the int64 ``shape`` feature or the model's input
    shape) or ``image`` (PNG / JPEG bytes); optional ``id`` (bytes) and ``label`` / ``target`` (int64).
    """
    import tensorflow as tf

    try:
        ex = tf.train.Example.FromString(payload)
    except Exception as exc:
        raise RecordError(f"not a tf.train.Example: {_first_line(exc)}") from None
    feats = ex.features.feature
    rid = (
        feats["id"].bytes_list.value[0].decode("utf-8", "replace")
        if "id" in feats and feats["id"].bytes_list.value
        else default_id
    )
    target = None
    for key in ("target", "label"):
        if key in feats and feats[key].int64_list.value:
            target = int(feats[key].int64_list.value[0])
            break
    try:
        if "x" in feats:
            x = np.asarray(feats["x"].float_list.value, np.float32)
            if "shape" in feats and feats["shape"].int64_list.value:
                x = x.reshape(tuple(feats["shape"].int64_list.value))
            elif shape is not None and x.size == int(np.prod(shape)):
                x = x.reshape(shape)
        elif "image" in feats and feats["image"].bytes_list.value:
            x = _decode_image(feats["image"].bytes_list.value[0], shape, scale)
        else:
            raise RecordError("the tf.train.Example has neither an 'x' (float list) nor an 'image' (bytes) feature")
    except RecordError:
        raise
    except Exception as exc:
        raise RecordError(f"cannot read the example: {_first_line(exc)}") from None
    return rid, x, target


def decode_file(path: str, data: bytes, shape=None, scale: str = "0,1") -> List[Record]:
    """The records in one file (``data`` = its bytes), each checked with :func:`check_example`.

    * image (PNG / JPEG): one record ``path``, converted to the model's channel count, resized to
      its input size when ``shape`` is known, and brought to the model's input range by ``scale``
      (``"0,1"``: ``p / 255``; ``"-1,1"``, ``"0,255"``, ``"caffe"``, ``"torch"`` as for
      ``tf-pathattr explain --scale``);
    * ``.npy``: one record ``path`` for an array of the example shape, ``path#i`` for a batch
      ``[n, *shape]``;
    * TFRecord: one record per ``tf.train.Example`` (``path#i`` unless it has an ``id`` feature).

    A file that cannot be read gives one record with its ``error``; records that fail the checks
    carry theirs.
    """
    path = str(path)
    suffix = os.path.splitext(path)[1].lower()
    out: List[Record] = []

    def add(rid, fn, target=None):
        try:
            out.append(Record(rid, check_example(fn(), shape), target))
        except RecordError as exc:
            out.append(Record(rid, target=target, error=str(exc)))

    try:
        if suffix in IMAGE_SUFFIXES:
            try:
                img = _decode_image(data, shape, scale)
            except RecordError:
                raise
            except Exception as exc:
                raise RecordError(f"cannot decode the image: {_first_line(exc)}") from None
            add(path, lambda: img)
        elif suffix == ".npy":
            try:
                arr = np.load(io.BytesIO(data), allow_pickle=False)
            except Exception as exc:
                raise RecordError(f"cannot read a .npy array: {_first_line(exc)}") from None
            if shape is not None and arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == tuple(shape):
                for i in range(arr.shape[0]):
                    add(f"{path}#{i}", lambda i=i: arr[i])
            else:
                add(path, lambda: arr)
        elif suffix in TFRECORD_SUFFIXES:
            for i, payload in enumerate(_tfrecord_payloads(data)):
                try:
                    rid, x, target = _parse_example(payload, shape, f"{path}#{i}", scale)
                except RecordError as exc:
                    out.append(Record(f"{path}#{i}", error=str(exc)))
                    continue
                add(rid, lambda x=x: x, target)
        else:
            raise RecordError(f"unsupported file type {suffix!r}; expected one of {list(FILE_SUFFIXES)}")
    except RecordError as exc:
        out.append(Record(path, error=str(exc)))
    return out


def list_files(pattern) -> List[str]:
    """The sorted files of a glob pattern, a file, a folder (its supported files) or a list of those."""
    if isinstance(pattern, (list, tuple)):
        files = [f for p in pattern for f in list_files(p)]
        return sorted(set(files))
    pattern = str(pattern)
    if os.path.isdir(pattern):
        return sorted(str(p) for p in Path(pattern).iterdir() if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
    if os.path.isfile(pattern):
        return [pattern]
    files = sorted(f for f in _glob.glob(pattern, recursive=True) if os.path.isfile(f))
    if not files:
        raise FileNotFoundError(f"data: no files match {pattern!r}")
    return files


# --------------------------------------------------------------------------------------------
# sources: everything explain_dataset accepts, as a stream of records


def _is_files(data) -> bool:
    if isinstance(data, (str, Path)):
        return True
    return isinstance(data, (list, tuple)) and len(data) > 0 and all(isinstance(d, (str, Path)) for d in data)


def _fingerprint_array(a) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha1(a.view(np.uint8).reshape(-1) if a.size else b"").hexdigest()


class _Source:
    """A stream of :class:`Record` with an optional length and a fingerprint for ``run.json``."""

    n: Optional[int] = None
    fingerprint: Dict[str, Any] = {}

    def records(self, skip: Sequence[bool] = (), shard_size: int = 1) -> Iterator[Optional[Record]]:
        """Yield records in order; ``None`` for a record of a shard listed as done in ``skip``
        (read past, not decoded where the source allows it)."""
        raise NotImplementedError


class _ArraySource(_Source):
    def __init__(self, x, labels=None, ids=None):
        self.x, self.labels, self.ids = x, labels, ids
        self.n = len(x)
        self.fingerprint = {
            "kind": "array",
            "shape": list(x.shape),
            "dtype": str(x.dtype),
            "sha1": _fingerprint_array(x),
        }

    def records(self, skip=(), shard_size=1):
        for i in range(self.n):
            k = i // shard_size
            if k < len(skip) and skip[k]:
                yield None
                continue
            rid = str(self.ids[i]) if self.ids is not None else str(i)
            target = None if self.labels is None else int(self.labels[i])
            yield Record(rid, self.x[i], target)


class _IterableSource(_Source):
    """``tf.data.Dataset`` or any iterable of examples, ``(x, label)`` pairs or ``{"x", "id", "target"}`` dicts."""

    def __init__(self, data, batched: Optional[bool]):
        self.data, self.batched = data, batched
        self.n = None
        spec = getattr(data, "element_spec", None)
        self.fingerprint = {"kind": type(data).__name__, "element_spec": repr(spec) if spec is not None else None}

    def _elements(self):
        for el in self.data:
            if isinstance(el, dict):
                x = el.get("x")
                if x is None:
                    raise ValueError("data: dict elements need an 'x' entry (and optionally 'id', 'target')")
                rid, target = el.get("id"), el.get("target", el.get("label"))
            elif isinstance(el, (tuple, list)) and len(el) == 2:
                (x, target), rid = el, None
            elif isinstance(el, (tuple, list)) and len(el) == 1:
                (x,), rid, target = el, None, None
            else:
                x, rid, target = el, None, None
            if self.batched:
                x = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
                t = None if target is None else np.asarray(target.numpy() if hasattr(target, "numpy") else target)
                r = None if rid is None else np.asarray(rid.numpy() if hasattr(rid, "numpy") else rid)
                for j in range(x.shape[0]):
                    yield x[j], None if t is None else t[j], None if r is None else r[j]
            else:
                yield x, target, rid

    def records(self, skip=(), shard_size=1):
        for i, (x, target, rid) in enumerate(self._elements()):
            k = i // shard_size
            if k < len(skip) and skip[k]:
                yield None
                continue
            if rid is None:
                rid = str(i)
            elif isinstance(rid, (bytes, np.bytes_)) or hasattr(rid, "numpy"):
                rid = rid.numpy() if hasattr(rid, "numpy") else rid
                rid = rid.decode("utf-8", "replace") if isinstance(rid, (bytes, np.bytes_)) else str(rid)
            if target is not None:
                target = int(np.asarray(target.numpy() if hasattr(target, "numpy") else target))
            yield Record(str(rid), x, target)


class _FileSource(_Source):
    def __init__(self, files: List[str], shape, scale="0,1"):
        self.files, self.shape, self.scale = files, shape, scale
        self.n = None
        h = hashlib.sha1("\n".join(files).encode()).hexdigest()
        self.fingerprint = {"kind": "files", "n_files": len(files), "sha1_of_names": h}

    def records(self, skip=(), shard_size=1):
        i = 0
        for f in self.files:
            try:
                with open(f, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                recs = [Record(f, error=f"cannot read the file: {_first_line(exc)}")]
            else:
                recs = decode_file(f, data, self.shape, self.scale)
            for r in recs:
                k = i // shard_size
                yield None if (k < len(skip) and skip[k]) else r
                i += 1


def _make_source(data, shape, batched, scale="0,1"):
    """``(source, use_labels)``; ``target="labels"`` reads the labels the data carries."""
    if _is_files(data):
        return _FileSource(list_files(data), shape, scale)
    try:
        import tensorflow as tf

        is_ds = isinstance(data, tf.data.Dataset)
    except ImportError:  # pragma: no cover
        is_ds = False
    if is_ds:
        if batched is None:
            batched = _dataset_is_batched(data, shape)
        return _IterableSource(data, batched)
    if isinstance(data, np.ndarray) or hasattr(data, "__array__") and not isinstance(data, (list, tuple, dict)):
        return _ArraySource(np.asarray(data))
    if isinstance(data, tuple) and len(data) == 2 and all(hasattr(d, "shape") for d in data):
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) != len(y):
            raise ValueError(f"data: (x, labels) have {len(x)} and {len(y)} rows")
        return _ArraySource(x, labels=y)
    if isinstance(data, dict) and "x" in data:
        x = np.asarray(data["x"])
        labels = data.get("target", data.get("label"))
        return _ArraySource(x, labels=None if labels is None else np.asarray(labels), ids=data.get("id"))
    if isinstance(data, (dict, str, bytes)) or not hasattr(data, "__iter__"):
        raise TypeError(
            "data: expected a tf.data.Dataset, a numpy array, (x, labels) arrays, an iterable of "
            f"examples, or file paths / a glob pattern; got {type(data).__name__}"
        )
    return _IterableSource(data, bool(batched))


def _dataset_is_batched(ds, shape) -> bool:
    import tensorflow as tf

    spec = ds.element_spec
    if isinstance(spec, dict):
        spec = spec.get("x")
    elif isinstance(spec, tuple):
        spec = spec[0]
    if not isinstance(spec, tf.TensorSpec):
        raise TypeError(f"data: dataset elements must be x, (x, label) or {{'x': ...}} tensors, got {ds.element_spec}")
    rank = spec.shape.rank
    if shape is not None and rank is not None:
        if rank == len(shape):
            return False
        if rank == len(shape) + 1:
            return True
        raise ValueError(
            f"data: dataset elements have shape {spec.shape}; the model expects examples of shape "
            f"{tuple(shape)} (or batches of them)"
        )
    if rank is not None and rank > 0 and spec.shape[0] is None:
        return True
    raise ValueError(
        "data: cannot tell whether the dataset yields examples or batches (the model's input shape "
        "is unknown); pass batched=True or batched=False"
    )


# --------------------------------------------------------------------------------------------
# the per-batch explainer (also used by tf_pathattr.beam)


def _numpy(t):
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


class BatchExplainer:
    """Explain a batch with one method and compute the per-example table columns.

    Parameters
    ----------
    model : keras.Model or callable
    method : str or callable
        A name from ``tpa.METHODS`` (or an alias, or a registered attribution function).
    options : dict, optional
        The method's options (``return_convergence_delta`` / ``return_details`` are set here).
    metrics : sequence of str
        Any of :data:`METRICS`; ``deletion_auc`` / ``insertion_auc`` run
        :func:`tf_pathattr.metrics.deletion` / ``insertion`` with their defaults.
    strategy : tf.distribute.Strategy, optional
        Split every batch across its replicas (``strategy.run``).

    Calling ``explainer(x, target)`` returns a dict of per-example numpy arrays: the attribution
    arrays (:meth:`array_names`) and the table columns ``target``, ``score`` and the metrics.
    """

    def __init__(
        self, model, method="integrated_gradients", options=None, metrics=("completeness_gap",), strategy=None
    ):
        from .methods import registry, resolve_method

        self.model = model
        self.fn = resolve_method(method)
        self.spec = registry.spec_of(method)
        self.method_name = self.spec.name if self.spec is not None else getattr(method, "__name__", "method")
        self.options = dict(options or {})
        for k in ("return_convergence_delta", "return_details"):
            if k in self.options:
                raise ValueError(f"options: {k!r} is set by explain_dataset itself (see metrics=); remove it")
        if isinstance(metrics, str):
            metrics = (metrics,)
        self.metrics = tuple(metrics or ())
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"metrics: unknown {unknown}; available: {list(METRICS)}")
        self.output = self.spec.output if self.spec is not None else "inputs"
        if self.output != "inputs" and any(m.endswith("_auc") for m in self.metrics):
            raise ValueError(
                f"metrics: deletion/insertion AUCs need attributions shaped like the inputs; "
                f"{self.method_name} returns {self.output!r} maps"
            )
        self.strategy = strategy
        self._score_fns = {}

    def array_names(self):
        return ("attributions_left", "attributions_right") if self.output == "split" else ("attributions",)

    # ------------------------------------------------------------------
    def _explain_part(self, x, target):
        """Attributions, target, score and completeness gap for one part (eager, on the current device)."""
        import tensorflow as tf

        from .callbacks import explain_with_gap
        from .engine import gradients as eng

        want_gap = "completeness_gap" in self.metrics
        attr, gap = explain_with_gap(self.fn, self.model, x, target, self.options, want_gap)
        arrays = tuple(attr) if self.output == "split" else (attr,)
        if any(isinstance(a, (list, tuple, dict)) for a in arrays):
            raise NotImplementedError("explain_dataset handles single-input models (one attribution array)")
        problem = eng.prepare(self.model, x, target)
        indices, score = self._score(problem)
        n = int(problem.batch_size)
        res = {name: tf.cast(a, tf.float32) for name, a in zip(self.array_names(), arrays)}
        callable_target = problem.target.kind == "callable"
        res["target"] = tf.fill((n,), -1) if callable_target else tf.cast(indices, tf.int32)
        res["score"] = tf.cast(score, tf.float32)
        if want_gap:
            res["completeness_gap"] = tf.constant(
                np.full((n,), np.nan, np.float32) if gap is None else np.asarray(gap, np.float32).reshape(n)
            )
        return res

    def _score(self, problem):
        """``(explained class, F_target(x))`` through one compiled function per target kind and batch size
        (kept on this explainer, which already holds the model)."""
        import tensorflow as tf

        from .engine import gradients as eng

        key = (problem.target.cache_token, int(problem.batch_size), problem.example_shapes[0])
        fn = self._score_fns.get(key)
        if fn is None:

            def score_fn(x, indices):
                idx, out = eng.resolve_indices(problem, [x], indices)
                return idx, eng.scores_at_x(problem, [x], idx, out)

            fn = self._score_fns[key] = tf.function(score_fn, autograph=False)
        return fn(problem.flat_x[0], problem.target.indices)

    def __call__(self, x, target=None) -> Dict[str, np.ndarray]:
        x = np.asarray(x, np.float32)
        strategy = self.strategy
        n_rep = strategy.num_replicas_in_sync if strategy is not None else 1
        if n_rep > 1 and len(x) >= n_rep:
            res = self._distributed(x, target, n_rep)
        else:
            res = {k: _numpy(v) for k, v in self._explain_part(x, target).items()}
        explained = None if callable(target) else res["target"]
        for name in ("deletion_auc", "insertion_auc"):
            if name in self.metrics:
                from . import metrics as _metrics

                fn = _metrics.deletion if name == "deletion_auc" else _metrics.insertion
                tgt = target if callable(target) else explained
                res[name] = np.asarray(fn(self.model, x, res["attributions"], tgt).auc, np.float64)
        return res

    def _distributed(self, x, target, n_rep):
        import tensorflow as tf

        bounds = np.linspace(0, len(x), n_rep + 1).astype(int)
        xs = [x[bounds[r] : bounds[r + 1]] for r in range(n_rep)]
        per_ex = target is not None and not callable(target) and np.ndim(target) == 1
        ts = [np.asarray(target)[bounds[r] : bounds[r + 1]] if per_ex else None for r in range(n_rep)]
        devices = self.strategy.extended.worker_devices

        def on_device(parts, dtype):
            def value(ctx):
                r = ctx.replica_id_in_sync_group
                with tf.device(devices[r] if len(devices) == n_rep else None):
                    return tf.identity(tf.constant(parts[r], dtype))

            return self.strategy.experimental_distribute_values_from_function(value)

        values = on_device(xs, tf.float32)
        t_values = on_device(ts, tf.int32) if per_ex else None

        def step(xr, tr=None):
            return self._explain_part(xr, tr if per_ex else target)

        args = (values, t_values) if per_ex else (values,)
        out = self.strategy.run(step, args=args)
        return {k: np.concatenate([_numpy(v) for v in self.strategy.experimental_local_results(out[k])]) for k in out}

    # ------------------------------------------------------------------
    def explain_records(
        self,
        xs: List[np.ndarray],
        targets: List[Optional[int]],
        target=None,
        strict=False,
        pad_to: Optional[int] = None,
    ):
        """Explain checked examples; one ``(per-example dict, None)`` or ``(None, reason)`` per example.

        The examples run as one batch; if the batch fails, each example runs alone so one bad
        example cannot take the others down. Non-finite attributions are an error for that example.
        With ``strict``, an example failing alone raises (a configuration error, e.g. bad options).
        ``pad_to``: a shorter batch is padded with copies of its last example (rows dropped after),
        so every call has the same batch size and the compiled method is not traced again for the
        last, partial batch of a run or of a worker.
        """
        if not xs:
            return []
        t = _batch_target(targets, target)
        n = len(xs)
        batch = np.stack(xs)
        if pad_to is not None and n < pad_to:
            batch = np.concatenate([batch, np.repeat(batch[-1:], pad_to - n, axis=0)])
            if t is not None and not callable(t) and np.ndim(t) == 1:
                t = np.concatenate([np.asarray(t), np.repeat(np.asarray(t)[-1:], pad_to - n)])
        try:
            res = self(batch, t)
            res = {k: v[:n] for k, v in res.items()}
        except Exception as exc:
            if len(xs) == 1:
                if strict:
                    raise
                return [(None, f"explaining failed: {type(exc).__name__}: {_first_line(exc)}")]
            out = []
            for i, xi in enumerate(xs):
                one = self.explain_records([xi], [targets[i]], _index_target(target, i), strict=strict)
                out.extend(one)
                strict = strict and one[0][0] is None
            return out
        out = []
        for i in range(len(xs)):
            row = {k: v[i] for k, v in res.items()}
            if not all(np.all(np.isfinite(row[a])) for a in self.array_names()):
                out.append((None, "explaining failed: non-finite attributions"))
            else:
                out.append((row, None))
        return out


def _index_target(target, i):
    if target is None or callable(target) or np.ndim(target) == 0:
        return target
    return np.asarray(target)[i : i + 1]


def _batch_target(targets, target):
    """One target argument for a batch: the records' own targets (labels) or the run's target."""
    if any(t is not None for t in targets):
        if any(t is None for t in targets):
            raise ValueError("target: some records carry a label and some do not")
        return np.asarray(targets, np.int64)
    return target


# --------------------------------------------------------------------------------------------
# writing


def _atomic_write(path: Path, data: bytes):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _masked_crc32c(data: bytes) -> int:
    import google_crc32c

    c = google_crc32c.value(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _tfrecord_bytes(payloads: List[bytes]) -> bytes:
    """TFRecord framing of ``payloads`` (google-crc32c when installed, else TensorFlow's writer)."""
    try:
        import google_crc32c  # noqa: F401
    except ImportError:
        import tempfile

        import tensorflow as tf

        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "shard.tfrecord")
            with tf.io.TFRecordWriter(f) as writer:
                for pl in payloads:
                    writer.write(pl)
            return Path(f).read_bytes()
    parts = []
    for pl in payloads:
        head = struct.pack("<Q", len(pl))
        parts += [head, struct.pack("<I", _masked_crc32c(head)), pl, struct.pack("<I", _masked_crc32c(pl))]
    return b"".join(parts)


def arrays_bytes(ids: List[str], arrays: Dict[str, np.ndarray], fmt: str) -> bytes:
    """One attributions shard: ``.npz`` (``id`` + the arrays) or TFRecord (one ``tf.train.Example``
    per example: ``id`` bytes, ``<name>`` flat floats, ``<name>_shape`` int64)."""
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez(buf, id=np.asarray(ids, dtype=str), **arrays)
        return buf.getvalue()
    import tensorflow as tf

    payloads = []
    for i, rid in enumerate(ids):
        feats = {"id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[rid.encode()]))}
        for name, a in arrays.items():
            v = np.asarray(a[i], np.float32)
            feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=v.reshape(-1)))
            feats[name + "_shape"] = tf.train.Feature(int64_list=tf.train.Int64List(value=list(v.shape)))
        payloads.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return _tfrecord_bytes(payloads)


def table_columns(ids, rows: Dict[str, Any], metrics) -> Dict[str, np.ndarray]:
    """The per-example table: ``id``, ``target``, ``score`` and the requested metrics, in that order."""
    cols = {
        "id": np.asarray(ids, dtype=object),
        "target": np.asarray(rows["target"], np.int64).reshape(-1),
        "score": np.asarray(rows["score"], np.float64).reshape(-1),
    }
    for m in METRICS:
        if m in metrics:
            cols[m] = np.asarray(rows[m], np.float64).reshape(-1)
    return cols


def table_bytes(cols: Dict[str, np.ndarray], kind: str) -> bytes:
    """The table as Parquet (pyarrow) or CSV bytes."""
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"id": pa.string(), "target": pa.int64()}
        table = pa.table(
            {k: pa.array(list(v) if k == "id" else v, type=types.get(k, pa.float64())) for k, v in cols.items()}
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return sink.getvalue().to_pybytes()
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(cols))
    for row in zip(*[cols[k] for k in cols]):
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return buf.getvalue().encode()


def dead_letters_bytes(dead: List[tuple]) -> bytes:
    """JSON lines ``{"id": ..., "reason": ...}``."""
    return "".join(json.dumps({"id": rid, "reason": reason}) + "\n" for rid, reason in dead).encode()


# --------------------------------------------------------------------------------------------
# reading results back


def _read_table(path: Path) -> Dict[str, np.ndarray]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(str(path))
        return {k: np.asarray(t.column(k).to_pylist(), dtype=object if k == "id" else None) for k in t.column_names}
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    cols = {}
    for j, k in enumerate(header):
        vals = [r[j] for r in body]
        cols[k] = (
            np.asarray(vals, dtype=object)
            if k == "id"
            else np.asarray([int(v) for v in vals], np.int64)
            if k == "target"
            else np.asarray([float(v) for v in vals], np.float64)
        )
    return cols


def _read_tfrecord_arrays(path: Path) -> Dict[str, np.ndarray]:
    import tensorflow as tf

    ids, arrays = [], {}
    for raw in tf.data.TFRecordDataset(str(path)):
        feats = tf.train.Example.FromString(raw.numpy()).features.feature
        ids.append(feats["id"].bytes_list.value[0].decode())
        for name in feats:
            if name == "id" or name.endswith("_shape"):
                continue
            shape = tuple(feats[name + "_shape"].int64_list.value)
            arrays.setdefault(name, []).append(np.asarray(feats[name].float_list.value, np.float32).reshape(shape))
    out = {"id": np.asarray(ids, dtype=str)}
    out.update({k: np.stack(v) for k, v in arrays.items()})
    return out


def read_results(out) -> Dict[str, Any]:
    """Everything an :func:`explain_dataset` (or Beam) run wrote into ``out``, concatenated over shards.

    Returns a dict: ``id`` (str array), the attribution arrays (``attributions``, or the split
    pair), ``table`` (dict of columns, rows in the same order as ``id``) and ``dead_letters``
    (list of ``(id, reason)``).
    """
    out = Path(out)
    arrays: Dict[str, list] = {}
    for f in sorted(out.glob("attributions-*")):
        if f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as z:
                part = {k: z[k] for k in z.files}
        elif f.suffix == ".tfrecord":
            part = _read_tfrecord_arrays(f)
        else:
            continue
        if len(part.get("id", ())) == 0:  # a shard whose records all became dead letters
            continue
        for k, v in part.items():
            arrays.setdefault(k, []).append(v)
    res: Dict[str, Any] = {k: np.concatenate(v) for k, v in arrays.items()}
    if "id" not in res:
        res["id"] = np.asarray([], dtype=str)
    table: Dict[str, list] = {}
    for f in sorted(list(out.glob("examples-*.parquet")) + list(out.glob("examples-*.csv"))):
        for k, v in _read_table(f).items():
            table.setdefault(k, []).append(v)
    table = {k: np.concatenate(v) for k, v in table.items()}
    if table:  # the same row order as the attributions
        pos = {rid: i for i, rid in enumerate(table["id"])}
        if len(pos) != len(table["id"]) or set(pos) != set(res["id"].tolist()):
            raise ValueError(f"{out}: the table and the attribution shards hold different ids")
        order = np.asarray([pos[r] for r in res["id"].tolist()], np.int64)
        table = {k: v[order] for k, v in table.items()}
    res["table"] = table
    dead = []
    for f in sorted(out.glob("dead_letters-*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                dead.append((d["id"], d["reason"]))
    res["dead_letters"] = dead
    return res


# --------------------------------------------------------------------------------------------
# explain_dataset


@dataclass
class DatasetResult:
    """What :func:`explain_dataset` did. ``read()`` loads the results (:func:`read_results`)."""

    out: Path
    n_records: int
    n_results: int
    n_dead_letters: int
    n_shards: int
    shards_skipped: int
    n_explained: int
    seconds: float
    files: List[str] = field(default_factory=list)

    def read(self):
        return read_results(self.out)

    @property
    def examples_per_second(self) -> float:
        return self.n_explained / self.seconds if self.seconds > 0 else float("nan")


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(w) for k, w in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_jsonable(w) for w in v]
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if hasattr(v, "numpy") or isinstance(v, np.ndarray):
        a = _numpy(v)
        return {"array": list(a.shape), "dtype": str(a.dtype), "sha1": _fingerprint_array(a)}
    if callable(v):
        return {"callable": f"{getattr(v, '__module__', '?')}.{getattr(v, '__qualname__', repr(v))}"}
    return {"object": type(v).__name__, "repr": repr(v)}


def _result_files(out: Path):
    pats = ("attributions-*", "examples-*", "dead_letters-*", "run.json", "summary.json")
    return sorted({f for p in pats for f in out.glob(p)})


def explain_dataset(
    model,
    data,
    target=None,
    *,
    method="integrated_gradients",
    out,
    options=None,
    batch_size: int = 32,
    shard_size: Optional[int] = None,
    format: str = "npz",
    table: Optional[str] = None,
    metrics=("completeness_gap",),
    strategy=None,
    batched: Optional[bool] = None,
    input_shape=None,
    scale: str = "0,1",
    progress: bool = True,
    overwrite: bool = False,
) -> DatasetResult:
    """Explain every example of a dataset with one method; write sharded, resumable results into ``out``.

    Parameters
    ----------
    model : keras.Model, callable, or a path
        A single-input model; a path (``.keras`` / ``.h5`` file or SavedModel folder) is loaded
        with :func:`load_model`.
    data : tf.data.Dataset, array, (x, labels) arrays, iterable, or files
        * a ``tf.data.Dataset`` of examples or of batches (told apart by the model's input rank;
          ``batched=`` when the model's input shape is unknown), elements ``x``, ``(x, label)`` or
          dicts ``{"x", "id", "target"}``;
        * a numpy array ``[N, *S]``, a tuple ``(x, labels)``, or a dict ``{"x", "id", "target"}``;
        * any other iterable of examples (as for datasets; ``batched=True`` for batches);
        * a glob pattern, a file, a folder, or a list of them: PNG / JPEG images, ``.npy`` arrays
          (one example, or a batch ``[n, *S]``), TFRecord files of ``tf.train.Example``
          (``x`` float list or ``image`` bytes; optional ``id``, ``label``). See :func:`decode_file`.
    target : None, int, N ints, callable, or "labels"
        As for every method (``None``: the predicted class); an array gives one class per example
        of the stream; ``"labels"`` explains the label each record carries.
    method : str
        A name from ``tpa.METHODS`` (or an alias).
    out : str or path
        Output folder (created).
    options : dict, optional
        The method's options.
    batch_size : int
        Examples per method call.
    shard_size : int, optional
        Examples per output shard (default ``8 * batch_size``). The unit of resumption.
    format : {"npz", "tfrecord"}
        Attribution shards as ``.npz`` or TFRecord (``tf.train.Example`` with ``id``, the flat
        attributions and their ``<name>_shape``).
    table : {"parquet", "csv"}, optional
        Default: Parquet when pyarrow is installed, else CSV.
    metrics : sequence of str
        Table columns besides id/target/score: any of :data:`METRICS`.
    strategy : tf.distribute.Strategy, optional
        Split each batch across the strategy's replicas (default: the strategy whose scope is
        active, if any).
    input_shape : tuple, optional
        Per-example input shape, where the model does not say (checked for every record).
    scale : {"0,1", "-1,1", "0,255", "caffe", "torch"}
        Image files only: the model's input range (see :func:`decode_file`).
    progress : bool
        A progress bar on stderr (tqdm, when installed).
    overwrite : bool
        Delete the results of an earlier run in ``out`` first. Without it, a folder holding a run
        with the same configuration is resumed; a different configuration is an error.

    Returns
    -------
    DatasetResult : counts (records in = results + dead letters), shards written and skipped, time.

    Notes
    -----
    Stochastic methods (``seed=``) draw their noise per batch, so their results depend on
    ``batch_size`` (and, under Beam, on the batches the runner forms); deterministic methods give
    each example the attributions ``tpa.attribute`` gives it alone, up to float rounding.
    """
    t0 = time.perf_counter()
    import tensorflow as tf

    from .methods import registry

    batch_size = check_positive_int(batch_size, "batch_size")
    shard_size = check_positive_int(shard_size if shard_size is not None else 8 * batch_size, "shard_size")
    fmt = check_choice(format, "format", FORMATS)
    if table is None:
        table = "parquet" if _have_pyarrow() else "csv"
    table = check_choice(table, "table", ("parquet", "csv"))
    if table == "parquet" and not _have_pyarrow():
        raise ImportError("table='parquet' needs pyarrow (pip install pyarrow), or pass table='csv'")
    if isinstance(method, str):
        method = registry.canonical(method)
    if isinstance(model, (str, Path)):
        model, shape = load_model(model)
    else:
        shape = model_input_shape(model)
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
    if strategy is None and tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    explainer = BatchExplainer(model, method, options, metrics, strategy=strategy)
    if explainer.spec is not None and explainer.spec.stochastic and "seed" not in explainer.options:
        warnings.warn(
            f"{explainer.method_name} is stochastic and no seed= is set: a resumed run mixes different noise draws",
            stacklevel=2,
        )
    use_labels = isinstance(target, str) and target == "labels"
    if isinstance(target, str) and not use_labels:
        raise ValueError(f"target: expected None, an int, one int per example, a callable or 'labels', got {target!r}")
    scale = check_scale(scale)
    source = _make_source(data, shape, batched, scale)
    per_example_target = None
    if not use_labels and target is not None and not callable(target) and np.ndim(target) == 1:
        per_example_target = np.asarray(target)
        if source.n is not None and len(per_example_target) != source.n:
            raise ValueError(f"target: has {len(per_example_target)} entries for {source.n} examples")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 1,
        "method": explainer.method_name,
        "options": _jsonable(explainer.options),
        "target": _jsonable(target),
        "metrics": list(explainer.metrics),
        "batch_size": batch_size,
        "shard_size": shard_size,
        "format": fmt,
        "table": table,
        "data": source.fingerprint,
        "input_shape": list(shape) if shape is not None else None,
        "scale": scale,
    }
    run_file = out / "run.json"
    if overwrite:
        for f in _result_files(out):
            f.unlink()
    elif run_file.exists():
        old = json.loads(run_file.read_text())
        if old != json.loads(json.dumps(config)):
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != json.loads(json.dumps(config)).get(k))
            raise ValueError(
                f"out: {out} holds a run with a different configuration ({', '.join(diff)}); "
                "use a new folder or overwrite=True"
            )
    elif _result_files(out):
        raise ValueError(f"out: {out} holds results without a run.json; use a new folder or overwrite=True")
    _atomic_write(run_file, json.dumps(config, indent=1).encode())

    a_suffix = ".npz" if fmt == "npz" else ".tfrecord"
    t_suffix = "." + table

    def shard_paths(k):
        return (
            out / f"attributions-{k:05d}{a_suffix}",
            out / f"examples-{k:05d}{t_suffix}",
            out / f"dead_letters-{k:05d}.jsonl",
        )

    done: List[bool] = []  # shard k is finished when its table exists (written last)
    for f in out.glob(f"examples-*{t_suffix}"):
        try:
            j = int(f.stem.split("-")[1])
        except (IndexError, ValueError):
            continue
        while len(done) <= j:
            done.append(False)
        done[j] = True

    bar = None
    if progress:
        from .demo import _progress

        bar = _progress(None, total=source.n, desc=f"explaining ({explainer.method_name})", unit="ex")
        if bar is None or not hasattr(bar, "update"):
            bar = None

    counts = {"records": 0, "results": 0, "dead": 0, "explained": 0, "skipped": 0, "written": 0}
    files: List[str] = []
    strict = [True]  # until one example succeeds, a failure alone is a configuration error: raise it

    def flush(k, shard):
        """Explain and write shard ``k`` (a list of (position, Record))."""
        ids, rows, dead = [], {}, []
        good = [(pos, r) for pos, r in shard if r.error is None]
        for pos, r in shard:
            if r.error is not None:
                dead.append((r.id, r.error))
        for s in range(0, len(good), batch_size):
            chunk = good[s : s + batch_size]
            xs = [r.x for _, r in chunk]
            tg = [r.target for _, r in chunk] if use_labels else [None] * len(chunk)
            if use_labels and any(t is None for t in tg):
                missing = [r.id for _, r in chunk if r.target is None]
                raise ValueError(f"target='labels': records {missing[:3]} carry no label")
            batch_target = target if not use_labels else None
            if per_example_target is not None:
                batch_target = per_example_target[[pos for pos, _ in chunk]]
            results = explainer.explain_records(xs, tg, batch_target, strict=strict[0], pad_to=batch_size)
            for (pos, r), (row, reason) in zip(chunk, results):
                if row is None:
                    dead.append((r.id, reason))
                    continue
                strict[0] = False
                ids.append(r.id)
                for key, v in row.items():
                    rows.setdefault(key, []).append(v)
            counts["explained"] += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None and len(good) < len(shard):
            bar.update(len(shard) - len(good))
        a_path, t_path, d_path = shard_paths(k)
        arrays = {name: np.stack(rows[name]) if ids else np.zeros((0,), np.float32) for name in explainer.array_names()}
        _atomic_write(a_path, arrays_bytes(ids, arrays, fmt))
        if dead:
            _atomic_write(d_path, dead_letters_bytes(dead))
        elif d_path.exists():
            d_path.unlink()
        empty = {"target": [], "score": [], **{m: [] for m in explainer.metrics}}
        cols = table_columns(ids, {key: rows.get(key, v) for key, v in empty.items()}, explainer.metrics)
        _atomic_write(t_path, table_bytes(cols, table))
        counts["results"] += len(ids)
        counts["dead"] += len(dead)
        counts["written"] += 1
        files.extend(str(p) for p in (a_path, t_path, d_path) if p.exists())

    shard, cur = [], 0
    n_shards = 0
    for pos, rec in enumerate(source.records(done, shard_size)):
        k = pos // shard_size
        if k != cur:
            if shard:
                flush(cur, shard)
            shard, cur = [], k
        counts["records"] += 1
        n_shards = k + 1
        if rec is None:  # a finished shard: read past
            if pos % shard_size == 0:
                counts["skipped"] += 1
            if bar is not None:
                bar.update(1)
            continue
        if per_example_target is not None and pos >= len(per_example_target):
            raise ValueError(f"target: has {len(per_example_target)} entries but the data has more examples")
        if rec.error is None:
            try:
                x = check_example(rec.x, shape)
                if shape is None:  # the first record fixes the shape for the rest
                    shape = tuple(x.shape)
                rec = Record(rec.id, x, rec.target)
            except RecordError as exc:
                rec = Record(rec.id, target=rec.target, error=str(exc))
        shard.append((pos, rec))
    if shard:
        flush(cur, shard)
    if bar is not None:
        bar.close()

    # records of skipped shards count as results / dead letters from their files
    if counts["skipped"]:
        for j in range(n_shards):
            if j < len(done) and done[j]:
                a_path, t_path, d_path = shard_paths(j)
                counts["results"] += len(_read_table(t_path)["id"]) if t_path.exists() else 0
                if d_path.exists():
                    counts["dead"] += sum(1 for ln in d_path.read_text().splitlines() if ln.strip())
    seconds = time.perf_counter() - t0
    result = DatasetResult(
        out=out,
        n_records=counts["records"],
        n_results=counts["results"],
        n_dead_letters=counts["dead"],
        n_shards=n_shards,
        shards_skipped=counts["skipped"],
        n_explained=counts["explained"],
        seconds=seconds,
        files=files,
    )
    summary = {
        "records": result.n_records,
        "results": result.n_results,
        "dead_letters": result.n_dead_letters,
        "shards": n_shards,
        "shards_skipped": result.shards_skipped,
        "explained_this_run": result.n_explained,
        "seconds": round(seconds, 3),
        "runner": "in-process",
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
    }
    _atomic_write(out / "summary.json", json.dumps(summary, indent=1).encode())
    if result.n_records != result.n_results + result.n_dead_letters:  # pragma: no cover - an internal invariant
        raise RuntimeError(
            f"internal error: {result.n_records} records != {result.n_results} results + "
            f"{result.n_dead_letters} dead letters"
        )
    return result
