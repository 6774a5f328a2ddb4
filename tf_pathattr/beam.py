"""Apache Beam: attribution over whole datasets on any Beam runner (``pip install 'tf_pathattr[beam]'``).

Beam's own TensorFlow model handlers cannot load a Keras 3 SavedModel (apache/beam#30616) and
import ``tensorflow_hub``, so :class:`AttributionModelHandler` is a ``RunInference`` model handler
of its own. It loads a ``.keras`` file, a SavedModel folder (``model.export``) or a SavedModel written
by :func:`tf_pathattr.saved_model.export` (through its ``serve`` endpoint) once per worker process,
and runs any registered method on the batches ``RunInference`` forms::

    import apache_beam as beam
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
    from tf_pathattr.beam import AttributionModelHandler

    handler = AttributionModelHandler("model.keras", method="guided_ig", options={"n_steps": 64},
                                      min_batch_size=32, max_batch_size=32)
    with beam.Pipeline() as p:
        results = (p | beam.Create([("a", x_a), ("b", x_b)])
                     | RunInference(KeyedModelHandler(handler)))   # (key, PredictionResult)

Each ``PredictionResult.inference`` is a dict: the attributions (``"attributions"``, or
``"attributions_left"`` / ``"attributions_right"`` for Split IG), ``"target"`` (the explained
class), ``"score"`` (``F_target(x)``) and the requested metrics (``"completeness_gap"``, ...), or
``{"error": reason}`` for a record that could not be explained. Records are checked one by one
(shape, numbers, finiteness) and a batch whose method call fails is retried example by example,
so one bad record never takes its batch down: :class:`ExplainRecords` splits the results from the
dead letters, and records in = results + dead letters.

:func:`explain_files` is the whole job (read images / ``.npy`` / TFRecord files, explain, write
sharded ``.npz`` or TFRecord attributions, a Parquet table and JSON-lines dead letters in the
layout of :func:`tf_pathattr.dataset.explain_dataset`, readable by
:func:`tf_pathattr.dataset.read_results`); ``tf-pathattr explain-dataset`` runs it.

``import tf_pathattr`` does not import this module (nor Beam).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

try:
    import apache_beam as beam
except ImportError as exc:  # the optional extra is missing
    raise ImportError(
        "tf_pathattr.beam needs Apache Beam: pip install 'tf_pathattr[beam]' (apache-beam>=2.76); "
        "tf_pathattr.dataset.explain_dataset runs in-process without it"
    ) from exc
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from . import dataset as _ds

__all__ = ["AttributionModelHandler", "ExplainRecords", "explain_files", "shard_of", "NAMESPACE"]

NAMESPACE = "tf_pathattr"


def _split_example(example):
    """``(x, target or None)`` from an example: an array, or an ``(array, int target)`` pair."""
    if (
        isinstance(example, tuple)
        and len(example) == 2
        and np.ndim(example[1]) == 0
        and not isinstance(example[1], (str, bytes))
    ):
        return example[0], (None if example[1] is None else int(example[1]))
    return example, None


class _Loaded:
    """What ``load_model`` returns: the model wrapped in a :class:`~tf_pathattr.dataset.BatchExplainer`.

    ``strict`` stays on until the first example is explained in this process: a failure before
    then is reported as an error of the pipeline (most likely bad options), not as dead letters.
    """

    def __init__(self, explainer, shape):
        self.explainer, self.shape, self.strict = explainer, shape, True


class AttributionModelHandler(ModelHandler):
    """A ``RunInference`` model handler that explains each example with a tf_pathattr method.

    Parameters
    ----------
    model : str, path or keras.Model
        A ``.keras`` / ``.h5`` file, or a SavedModel folder (Keras ``model.export``,
        ``tf.saved_model.save`` or :func:`tf_pathattr.saved_model.export`), loaded on each worker in
        ``load_model`` (paths on shared storage such as ``gs://`` need TensorFlow's file systems);
        or a Keras model, pickled into the pipeline.
    method : str
        A name from ``tpa.METHODS`` (or an alias); checked here.
    target : None, int or callable
        As for every method (``None``: the predicted class). An example given as ``(x, k)``
        is explained for class ``k``.
    options : dict, optional
        The method's options.
    metrics : sequence of str
        Any of :data:`tf_pathattr.dataset.METRICS`.
    model_loader : callable, optional
        Instead of ``model``: a picklable ``loader() -> model`` called on each worker.
    input_shape : tuple, optional
        Per-example input shape, when the model does not tell.
    **batching
        Passed to ``ModelHandler``: ``min_batch_size``, ``max_batch_size``, ``max_batch_duration_secs``,
        ``max_batch_weight``, ``element_size_fn``, ``large_model``, ``model_copies``, ``env_vars``.
    """

    def __init__(
        self,
        model=None,
        method="integrated_gradients",
        *,
        target=None,
        options=None,
        metrics=("completeness_gap",),
        model_loader=None,
        input_shape=None,
        **batching,
    ):
        super().__init__(**batching)
        from .methods import registry

        if (model is None) == (model_loader is None):
            raise ValueError("model: give a model path (or Keras model), or model_loader=, not both or neither")
        if isinstance(model, (str, Path)):
            model = str(model)
        elif model is not None:
            import keras

            if not isinstance(model, keras.layers.Layer):
                raise TypeError(
                    "model: expected a .keras / SavedModel path or a Keras model; wrap other callables "
                    f"in model_loader=lambda: ..., got {type(model).__name__}"
                )
        if model_loader is not None and not callable(model_loader):
            raise TypeError("model_loader: expected a callable loader() -> model")
        self._model, self._loader = model, model_loader
        self._method = registry.canonical(method)
        if isinstance(target, str) or (target is not None and not callable(target) and np.ndim(target) != 0):
            raise ValueError("target: expected None, an int or a callable; give per-example classes as (x, k) examples")
        self._target = target
        self._options = dict(options or {})
        self._metrics = tuple(metrics or ())
        self._input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        # fixed-size batches: pad the last, partial batch of a bundle rather than tracing the method again
        self._pad_to = (
            batching.get("max_batch_size") if batching.get("max_batch_size") == batching.get("min_batch_size") else None
        )
        # check options and metrics now (in the driver) rather than on the workers
        _ds.BatchExplainer(None, self._method, self._options, self._metrics)

    # ModelHandler contract -----------------------------------------------------------------
    def load_model(self):
        if self._loader is not None:
            model, shape = self._loader(), None
            shape = _ds.model_input_shape(model)
        elif isinstance(self._model, str):
            model, shape = _ds.load_model(self._model)
        else:
            model, shape = self._model, _ds.model_input_shape(self._model)
        if self._input_shape is not None:
            shape = self._input_shape
        return _Loaded(_ds.BatchExplainer(model, self._method, self._options, self._metrics), shape)

    def run_inference(self, batch: Sequence[Any], model: _Loaded, inference_args=None) -> Iterable[PredictionResult]:
        results: List[Optional[PredictionResult]] = [None] * len(batch)
        xs, ts, idx = [], [], []
        for i, example in enumerate(batch):
            x, t = _split_example(example)
            try:
                x = _ds.check_example(x, model.shape)
                if model.shape is None:
                    model.shape = tuple(x.shape)
            except _ds.RecordError as exc:
                results[i] = PredictionResult(example, {"error": str(exc)})
                continue
            xs.append(x)
            ts.append(t)
            idx.append(i)
        if any(t is not None for t in ts) and any(t is None for t in ts):
            # mixed: explain the labelled and the unlabelled examples separately
            groups = [[j for j, t in enumerate(ts) if t is not None], [j for j, t in enumerate(ts) if t is None]]
        else:
            groups = [list(range(len(xs)))]
        for g in groups:
            if not g:
                continue
            outs = model.explainer.explain_records(
                [xs[j] for j in g], [ts[j] for j in g], self._target, strict=model.strict, pad_to=self._pad_to
            )
            for j, (row, reason) in zip(g, outs):
                if row is not None:
                    model.strict = False
                results[idx[j]] = PredictionResult(batch[idx[j]], row if row is not None else {"error": reason})
        return results

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        total = 0
        for example in batch:
            x, _ = _split_example(example)
            total += int(getattr(x, "nbytes", 0))
        return total

    def get_metrics_namespace(self) -> str:
        return NAMESPACE


class _SplitErrors(beam.DoFn):
    def process(self, element):
        key, result = element
        inference = result.inference
        if "error" in inference:
            yield beam.pvalue.TaggedOutput("dead_letters", (key, inference["error"]))
        else:
            yield key, inference


class ExplainRecords(beam.PTransform):
    """``(id, example)`` records -> ``results`` ``(id, inference dict)`` and ``dead_letters`` ``(id, reason)``.

    Apply as ``out = records | ExplainRecords(handler)``; ``out.results`` and ``out.dead_letters``.
    """

    def __init__(self, handler: AttributionModelHandler, inference_args=None):
        super().__init__()
        self.handler, self.inference_args = handler, inference_args

    def expand(self, records):
        explained = records | "RunInference" >> RunInference(
            KeyedModelHandler(self.handler), inference_args=self.inference_args
        )
        return explained | "SplitErrors" >> beam.ParDo(_SplitErrors()).with_outputs("dead_letters", main="results")


# --------------------------------------------------------------------------------------------
# the file job


def shard_of(record_id: str, num_shards: int) -> int:
    """A stable shard for a record id (md5), so reruns write the same records to the same files."""
    return int(hashlib.md5(record_id.encode("utf-8")).hexdigest(), 16) % num_shards


class _DecodeFile(beam.DoFn):
    def __init__(self, shape, use_labels, scale="0,1"):
        self.shape, self.use_labels, self.scale = shape, use_labels, scale
        self.records = Metrics.counter(NAMESPACE, "records")

    def process(self, readable):
        path = readable.metadata.path
        try:
            data = readable.read()
        except Exception as exc:
            recs = [_ds.Record(path, error=f"cannot read the file: {_ds._first_line(exc)}")]
        else:
            recs = _ds.decode_file(path, data, self.shape, self.scale)
        for r in recs:
            self.records.inc()
            if r.error is not None:
                yield beam.pvalue.TaggedOutput("dead_letters", (r.id, r.error))
            elif self.use_labels:
                if r.target is None:
                    yield beam.pvalue.TaggedOutput("dead_letters", (r.id, "target='labels': the record has no label"))
                else:
                    yield r.id, (r.x, r.target)
            else:
                yield r.id, r.x


def _write(path: str, data: bytes):
    """Write through Beam's file systems (local, gs://, ...): a temporary name, then a rename."""
    tmp = path + ".tmp"
    with FileSystems.create(tmp) as fh:
        fh.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


class _WriteShard(beam.DoFn):
    def __init__(self, out, num_shards, fmt, array_names, metrics):
        self.out, self.num_shards, self.fmt = out, num_shards, fmt
        self.array_names, self.metrics = tuple(array_names), tuple(metrics)
        self.results = Metrics.counter(NAMESPACE, "results")
        self.dead = Metrics.counter(NAMESPACE, "dead_letters")

    def process(self, element):
        k, items = element
        good = sorted((kv for tag, kv in items if tag == "r"), key=lambda kv: kv[0])
        dead = sorted((kv for tag, kv in items if tag == "d"), key=lambda kv: kv[0])
        name = f"{k:05d}-of-{self.num_shards:05d}"
        ids = [rid for rid, _ in good]
        if good:
            arrays = {a: np.stack([row[a] for _, row in good]) for a in self.array_names}
            _write(
                FileSystems.join(self.out, f"attributions-{name}.{'npz' if self.fmt == 'npz' else 'tfrecord'}"),
                _ds.arrays_bytes(ids, arrays, self.fmt),
            )
            rows = {c: [row[c] for _, row in good] for c in ("target", "score") + self.metrics}
            _write(
                FileSystems.join(self.out, f"examples-{name}.parquet"),
                _ds.table_bytes(_ds.table_columns(ids, rows, self.metrics), "parquet"),
            )
        if dead:
            _write(FileSystems.join(self.out, f"dead_letters-{name}.jsonl"), _ds.dead_letters_bytes(dead))
        self.results.inc(len(good))
        self.dead.inc(len(dead))
        yield k


_RESULT_GLOBS = ("attributions-*", "examples-*", "dead_letters-*", "run.json", "summary.json")


def _existing_results(out: str) -> List[str]:
    found = []
    for pat in _RESULT_GLOBS:
        for m in FileSystems.match([FileSystems.join(out, pat)])[0].metadata_list:
            found.append(m.path)
    return sorted(set(found))


def default_pipeline_args(args: Sequence[str] = ()) -> List[str]:
    """``args`` plus the local defaults: Beam's Python direct runner engine (``FnApiRunner``) in
    multi-processing mode with one worker per core, unless ``args`` choose a runner or the mode."""
    args = list(args)
    given = " ".join(args)
    if "--runner" not in given:
        args.append("--runner=FnApiRunner")
    runner = next((a.split("=", 1)[1] for a in args if a.startswith("--runner=")), None)
    if runner is None and "--runner" in args:
        runner = args[args.index("--runner") + 1]
    if runner in ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner"):
        if "--direct_running_mode" not in given:
            args.append("--direct_running_mode=multi_processing")
        if "--direct_num_workers" not in given and "--direct_running_mode=in_memory" not in args:
            args.append(f"--direct_num_workers={_cores()}")
    return args


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def explain_files(
    model,
    inputs,
    out,
    *,
    method="integrated_gradients",
    target=None,
    options=None,
    metrics=("completeness_gap",),
    batch_size: int = 32,
    num_shards: Optional[int] = None,
    format: str = "npz",
    input_shape=None,
    scale: str = "0,1",
    pipeline_args: Sequence[str] = (),
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Explain every record of ``inputs`` (glob patterns or files) on a Beam runner; write into ``out``.

    Parameters
    ----------
    model : str
        ``.keras`` / ``.h5`` file or SavedModel folder, readable from every worker.
    inputs : str or sequence of str
        Glob patterns or files (PNG / JPEG, ``.npy``, TFRecord; see
        :func:`tf_pathattr.dataset.decode_file`).
    out : str
        Output folder (local or any Beam file system). The layout of
        :func:`tf_pathattr.dataset.explain_dataset`, shards named ``-SSSSS-of-NNNNN``; records go
        to shard ``md5(id) % num_shards`` and are sorted by id within it, so a rerun rewrites the
        same files with the same content.
    target : None, int or "labels"
        ``"labels"`` explains the ``label`` feature of TFRecord examples.
    batch_size : int
        The batches ``RunInference`` forms (``min_batch_size = max_batch_size``).
    num_shards : int, optional
        Default: one per 256 matched files.
    scale : {"0,1", "-1,1", "0,255", "caffe", "torch"}
        Image files only: the model's input range (see :func:`tf_pathattr.dataset.decode_file`).
    pipeline_args : sequence of str
        Beam pipeline options (``--runner=DataflowRunner --project=...``); see
        :func:`default_pipeline_args` for the local default.
    overwrite : bool
        Delete earlier results in ``out`` first (otherwise a folder with results is refused, because
        shards of a different count would be mixed).

    Returns
    -------
    dict : ``records``, ``results``, ``dead_letters`` (Beam counters), ``seconds``, ``num_shards``, ``out``.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    from .engine.shapes import check_choice, check_positive_int

    batch_size = check_positive_int(batch_size, "batch_size")
    fmt = check_choice(format, "format", _ds.FORMATS)
    scale = _ds.check_scale(scale)
    use_labels = isinstance(target, str) and target == "labels"
    if isinstance(target, str) and not use_labels:
        raise ValueError(f"target: expected None, an int or 'labels', got {target!r}")
    patterns = [str(inputs)] if isinstance(inputs, (str, Path)) else [str(i) for i in inputs]
    files = []
    for pat in patterns:
        if os.path.isdir(pat):
            pat = os.path.join(pat, "*")
        files += [m.path for m in FileSystems.match([pat])[0].metadata_list]
    files = sorted({f for f in files if os.path.splitext(f)[1].lower() in _ds.FILE_SUFFIXES})
    if not files:
        raise FileNotFoundError(f"inputs: no {'/'.join(_ds.FILE_SUFFIXES)} files match {patterns}")
    num_shards = check_positive_int(num_shards if num_shards is not None else -(-len(files) // 256), "num_shards")
    shape = tuple(input_shape) if input_shape is not None else _ds.load_model(model)[1]
    handler = AttributionModelHandler(
        str(model),
        method,
        target=None if use_labels else target,
        options=options,
        metrics=metrics,
        input_shape=shape,
        min_batch_size=batch_size,
        max_batch_size=batch_size,
    )
    explainer = _ds.BatchExplainer(None, method, options, metrics)
    out = str(out)
    if not FileSystems.exists(out):
        FileSystems.mkdirs(out)
    existing = _existing_results(out)
    if existing and not overwrite:
        raise ValueError(f"out: {out} already holds results ({len(existing)} files); use a new folder or overwrite")
    if existing:
        FileSystems.delete(existing)
    args = default_pipeline_args(pipeline_args)
    config = {
        "version": 1,
        "method": explainer.method_name,
        "options": _ds._jsonable(explainer.options),
        "target": _ds._jsonable(target),
        "metrics": list(explainer.metrics),
        "batch_size": batch_size,
        "num_shards": num_shards,
        "format": fmt,
        "table": "parquet",
        "inputs": patterns,
        "n_files": len(files),
        "input_shape": list(shape) if shape is not None else None,
        "scale": scale,
        "runner": "beam",
        "pipeline_args": args,
    }
    _write(FileSystems.join(out, "run.json"), json.dumps(config, indent=1).encode())

    t0 = time.perf_counter()
    p = beam.Pipeline(options=PipelineOptions(args))
    readable = (
        p
        | "Files" >> beam.Create(files)
        | "Match" >> fileio.MatchAll()
        | "Read" >> fileio.ReadMatches()
        | "Spread" >> beam.Reshuffle()
    )
    decoded = readable | "Decode" >> beam.ParDo(_DecodeFile(shape, use_labels, scale)).with_outputs(
        "dead_letters", main="records"
    )
    # spread the records of a file (a .npy batch, a TFRecord file) over the workers before explaining
    explained = decoded.records | "SpreadRecords" >> beam.Reshuffle() | "Explain" >> ExplainRecords(handler)
    n = num_shards
    keyed_good = explained.results | "KeyResults" >> beam.Map(lambda kv: (shard_of(kv[0], n), ("r", kv)))
    keyed_dead = (
        (decoded.dead_letters, explained.dead_letters)
        | "AllDead" >> beam.Flatten()
        | "KeyDead" >> beam.Map(lambda kv: (shard_of(kv[0], n), ("d", kv)))
    )
    _ = (
        (keyed_good, keyed_dead)
        | "Both" >> beam.Flatten()
        | "ByShard" >> beam.GroupByKey()
        | "Write" >> beam.ParDo(_WriteShard(out, num_shards, fmt, explainer.array_names(), explainer.metrics))
    )
    result = p.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - t0
    counters: Dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + int(value or 0)
    summary = {
        "records": int(counters.get("records", 0)),
        "results": int(counters.get("results", 0)),
        "dead_letters": int(counters.get("dead_letters", 0)),
        "shards": num_shards,
        "seconds": round(seconds, 3),
        "runner": "beam",
        "out": out,
    }
    _write(FileSystems.join(out, "summary.json"), json.dumps(summary, indent=1).encode())
    return summary
