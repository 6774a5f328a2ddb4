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
:func:`tf_pathattr.dataset.read_results`); ``tf-pathattr explain-dataset --runner ...`` runs it.

``import tf_pathattr`` does not import this module (nor Beam).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

from ..engine.shapes import check_choice, check_positive_int
from ..files import (
    FILE_SUFFIXES,
    ImageTransform,
    Record,
    decode_file,
    first_line,
    load_model,
)
from .beam_handler import NAMESPACE, AttributionModelHandler, Example, ExplainRecords  # noqa: F401
from .beam_options import LOCAL_RUNNERS, check_pipeline_args, default_pipeline_args  # noqa: F401
from .explainer import BatchExplainer
from .fingerprint import differences, jsonable, path_fingerprint
from .output import RESULT_GLOBS, arrays_bytes, dead_letters_bytes, table_bytes, table_columns
from .run import FORMATS

__all__ = [
    "AttributionModelHandler",
    "ExplainRecords",
    "explain_files",
    "shard_of",
    "check_pipeline_args",
    "default_pipeline_args",
    "default_num_shards",
    "BeamJobError",
    "NAMESPACE",
]

INFLIGHT = "_inflight"


class BeamJobError(RuntimeError):
    """The Beam job failed; the message is one line naming the cause (and the records in flight)."""


# --------------------------------------------------------------------------------------------
# the file job


def shard_of(record_id: str, num_shards: int) -> int:
    """A stable shard for a record id (md5), so reruns write the same records to the same files."""
    return int(hashlib.md5(record_id.encode("utf-8")).hexdigest(), 16) % num_shards


class _DecodeFile(beam.DoFn):
    def __init__(self, shape, use_labels, transform):
        self.shape, self.use_labels, self.transform = shape, use_labels, transform
        self.records = Metrics.counter(NAMESPACE, "records")

    def process(self, readable):
        path = readable.metadata.path
        try:
            data = readable.read()
        except Exception as exc:
            recs = [Record(path, error=f"cannot read the file: {first_line(exc)}")]
        else:
            recs = decode_file(path, data, self.shape, self.transform)
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
    """One shard: results sorted by id (a repeated id after the first is a dead letter), dead letters."""

    def __init__(self, out, num_shards, fmt, array_names, metrics):
        self.out, self.num_shards, self.fmt = out, num_shards, fmt
        self.array_names, self.metrics = tuple(array_names), tuple(metrics)
        self.results = Metrics.counter(NAMESPACE, "results")
        self.dead = Metrics.counter(NAMESPACE, "dead_letters")
        self.shards = Metrics.counter(NAMESPACE, "shards_written")

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
                arrays_bytes(ids, arrays, self.fmt),
            )
            rows = {c: [row[c] for _, row in good] for c in ("target", "score") + self.metrics}
            _write(
                FileSystems.join(self.out, f"examples-{name}.parquet"),
                table_bytes(table_columns(ids, rows, self.metrics), "parquet"),
            )
        if dead:
            _write(FileSystems.join(self.out, f"dead_letters-{name}.jsonl"), dead_letters_bytes(dead))
        self.results.inc(len(good))
        self.dead.inc(len(dead))
        self.shards.inc()
        yield k


def _existing_results(out: str) -> list[str]:
    found = []
    for pat in RESULT_GLOBS:
        for m in FileSystems.match([FileSystems.join(out, pat)])[0].metadata_list:
            found.append(m.path)
    return sorted(set(found))


# --------------------------------------------------------------------------------------------
# explain_files


def _match_files(patterns) -> list[str]:
    files = []
    for pat in patterns:
        if os.path.isdir(pat):
            pat = os.path.join(pat, "*")
        files += [m.path for m in FileSystems.match([pat])[0].metadata_list]
    files = sorted({f for f in files if os.path.splitext(f)[1].lower() in FILE_SUFFIXES})
    if not files:
        raise FileNotFoundError(f"inputs: no {'/'.join(FILE_SUFFIXES)} files match {patterns}")
    return files


def _files_fingerprint(files: list[str]) -> dict[str, Any]:
    listing = [[m.path, m.size_in_bytes, getattr(m, "last_updated_in_seconds", None)] for m in _metadata(files)]
    return {
        "kind": "files",
        "n_files": len(files),
        "files_sha1": hashlib.sha1(repr(listing).encode()).hexdigest(),
    }


def _metadata(files):
    out = []
    for f in files:
        out.extend(FileSystems.match([f])[0].metadata_list)
    return out


def _count_records(files: list[str], shape) -> int:
    """Records in local files (``.npy`` batches and TFRecords counted from their contents); a remote
    file counts as one."""
    from .sources import FileSource

    local = [f for f in files if os.path.exists(f)]
    return FileSource(local, shape).count() + (len(files) - len(local))


RECORDS_PER_SHARD = 1024


def default_num_shards(files: list[str], shape) -> int:
    """One output shard per :data:`RECORDS_PER_SHARD` records (a ``.npy`` batch counts its rows), at least one."""
    return max(1, -(-_count_records(files, shape) // RECORDS_PER_SHARD))


def _claim_beam_folder(out: str, config: dict, overwrite: bool) -> None:
    """One run per folder: a finished run or another run is refused (``--overwrite``); the same run that
    did not finish (a failed job) is redone from scratch."""
    if not FileSystems.exists(out):
        FileSystems.mkdirs(out)
    existing = _existing_results(out)
    if existing and not overwrite:
        run_file = FileSystems.join(out, "run.json")
        old = json.loads(FileSystems.open(run_file).read().decode()) if FileSystems.exists(run_file) else None
        finished = FileSystems.exists(FileSystems.join(out, "summary.json"))
        if old is None or old != config:
            diff = ", ".join(differences(old, config)) if old is not None else "no run.json"
            raise ValueError(
                f"out: {out} already holds results of another run ({diff}); use a new folder or "
                "overwrite=True (--overwrite)"
            )
        if finished:
            raise ValueError(
                f"out: {out} already holds results of this run (finished); use a new folder or overwrite=True "
                "(--overwrite)"
            )
    if existing:
        FileSystems.delete(existing)
    inflight = FileSystems.join(out, INFLIGHT)
    if FileSystems.exists(inflight):
        FileSystems.delete([inflight])
    _write(FileSystems.join(out, "run.json"), json.dumps(config, indent=1, sort_keys=True).encode())


def _inflight_ids(out: str) -> list[str]:
    ids = []
    for m in FileSystems.match([FileSystems.join(out, INFLIGHT, "run-*.json")])[0].metadata_list:
        try:
            ids += json.loads(FileSystems.open(m.path).read().decode())
        except Exception:
            continue
    return sorted(set(ids))


def _failure_line(exc, out: str) -> str:
    from .explainer import failure_reason

    ids = _inflight_ids(out)
    text = str(exc)
    cause = failure_reason(exc)
    for line in text.splitlines()[::-1]:  # Beam wraps the worker's error: keep its last line
        line = line.strip()
        if line and not line.startswith(("File ", "[while running", "Traceback")):
            cause = line
            break
    if len(cause) > 300:
        cause = cause[:300] + "..."
    where = f" while explaining records {ids[:10]}{' ...' if len(ids) > 10 else ''}" if ids else ""
    return (
        f"the Beam job failed{where}: {cause}. Finished shards are kept in {out}; rerun the same command to "
        "redo the job, or add --overwrite (overwrite=True) to replace it with another run"
    )


def _pipeline(p, files, shape, use_labels, transform, handler, out, num_shards, fmt, explainer):
    readable = (
        p
        | "Files" >> beam.Create(files)
        | "Match" >> fileio.MatchAll()
        | "Read" >> fileio.ReadMatches()
        | "Spread" >> beam.Reshuffle()
    )
    decoded = readable | "Decode" >> beam.ParDo(_DecodeFile(shape, use_labels, transform)).with_outputs(
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


def _counters(result) -> dict[str, int]:
    counters: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + int(value or 0)
    return counters


def _job_config(model, explainer, target, score, batch_size, num_shards, fmt, files, shape, transform, args):
    """What ``run.json`` records for a Beam job (as :func:`tf_pathattr.dataset.explain_dataset` does)."""
    return jsonable(
        {
            "version": 2,
            "model": path_fingerprint(model) if os.path.exists(str(model)) else {"path": str(model)},
            "method": explainer.method_name,
            "options": explainer.options,
            "target": target,
            "metrics": list(explainer.metrics),
            "score": score,
            "batch_size": batch_size,
            "num_shards": num_shards,
            "format": fmt,
            "table": "parquet",
            "data": _files_fingerprint(files),
            "input_shape": list(shape) if shape is not None else None,
            "images": transform.describe(),
            "runner": "beam",
            "pipeline_args": args,
        }
    )


def explain_files(
    model,
    inputs,
    out,
    *,
    method="integrated_gradients",
    target=None,
    options=None,
    metrics=("completeness_gap",),
    score=None,
    batch_size: int = 32,
    num_shards: int | None = None,
    format: str = "npz",
    input_shape=None,
    scale: str = "0,1",
    preprocess: str | None = None,
    pipeline_args: Sequence[str] = (),
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Explain every record of ``inputs`` (glob patterns or files) on a Beam runner; write into ``out``.

    Parameters
    ----------
    model : str
        ``.keras`` / ``.h5`` file or SavedModel folder, readable from every worker.
    inputs : str or sequence of str
        Glob patterns or files (PNG / JPEG, ``.npy``, TFRecord; see
        :func:`tf_pathattr.files.decode_file`).
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
        Default: one per 1,024 records (counted in local files: a ``.npy`` batch counts its rows).
    scale : {"0,1", "-1,1", "0,255", "caffe", "torch"}
        Image files only: the model's input range (see :func:`tf_pathattr.files.scale_pixels`).
    preprocess : str, optional
        Image files only, instead of ``scale``: ``"module:function"`` (importable on the workers).
    pipeline_args : sequence of str
        Beam pipeline options (``--runner=DataflowRunner --project=...``), checked against Beam's
        own option list (an unknown option is an error naming it); see
        :func:`default_pipeline_args` for the local default.
    overwrite : bool
        Delete earlier results in ``out`` first. Without it, a folder holding another run or a
        finished run is refused; the same run that did not finish (a failed job) is redone.
    progress : bool
        Print a progress line (records explained so far) on stderr while the job runs.

    Returns
    -------
    dict : ``records``, ``results``, ``dead_letters`` (Beam counters), ``seconds``, ``num_shards``, ``out``.

    Raises
    ------
    BeamJobError
        The job failed: one line with the cause, the ids of the records being explained when it
        failed (a worker that died), and what to do next. Shards written before are kept.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    batch_size = check_positive_int(batch_size, "batch_size")
    fmt = check_choice(format, "format", FORMATS)
    transform = ImageTransform(scale, preprocess)
    use_labels = isinstance(target, str) and target == "labels"
    if isinstance(target, str) and not use_labels:
        raise ValueError(f"target: expected None, an int or 'labels', got {target!r}")
    args = default_pipeline_args(check_pipeline_args(pipeline_args))
    patterns = [str(inputs)] if isinstance(inputs, (str, Path)) else [str(i) for i in inputs]
    files = _match_files(patterns)
    shape = tuple(input_shape) if input_shape is not None else load_model(model)[1]
    if num_shards is None:
        num_shards = default_num_shards(files, shape)
    num_shards = check_positive_int(num_shards, "num_shards")
    out = str(out)
    handler = AttributionModelHandler(
        str(model),
        method,
        target=None if use_labels else target,
        options=options,
        metrics=metrics,
        score=score,
        input_shape=shape,
        inflight_dir=FileSystems.join(out, INFLIGHT),
        min_batch_size=batch_size,
        max_batch_size=batch_size,
    )
    explainer = BatchExplainer(None, method, options, metrics, score=score)
    config = _job_config(model, explainer, target, score, batch_size, num_shards, fmt, files, shape, transform, args)
    _claim_beam_folder(out, config, overwrite)
    FileSystems.mkdirs(FileSystems.join(out, INFLIGHT))

    t0 = time.perf_counter()
    p = beam.Pipeline(options=PipelineOptions(args))
    _pipeline(p, files, shape, use_labels, transform, handler, out, num_shards, fmt, explainer)
    line = _ProgressLine(out, _count_records(files, shape) if progress else None) if progress else None
    try:
        result = p.run()
        result.wait_until_finish()
    except Exception as exc:
        raise BeamJobError(_failure_line(exc, out)) from exc
    finally:
        if line is not None:
            line.stop()
    seconds = time.perf_counter() - t0
    FileSystems.delete([FileSystems.join(out, INFLIGHT)])
    counters = _counters(result)
    summary = {
        "records": int(counters.get("records", 0)),
        "results": int(counters.get("results", 0)),
        "dead_letters": int(counters.get("dead_letters", 0)),
        "shards": num_shards,
        "seconds": round(seconds, 3),
        "runner": "beam",
        "out": out,
    }
    _write(FileSystems.join(out, "summary.json"), json.dumps(summary, indent=1, sort_keys=True).encode())
    return summary


class _ProgressLine:
    """A line on stderr, redrawn every 2 s while the job runs: records explained (counted from the notes
    finished batches leave in ``out/_inflight``), of the total, and the ETA."""

    def __init__(self, out: str, total: int | None):
        import threading

        self.out, self.total, self.t0 = out, total, time.perf_counter()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def explained(self) -> int:
        pattern = FileSystems.join(self.out, INFLIGHT, "done-*")
        try:
            names = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        except Exception:
            return 0
        return sum(int(os.path.basename(n).split("-")[1]) for n in names)

    def text(self) -> str:
        n, elapsed = self.explained(), time.perf_counter() - self.t0
        if self.total and n:
            eta = (self.total - n) * elapsed / n
            return f"Beam: {n}/{self.total} records explained, {elapsed:.0f} s, ETA {eta:.0f} s"
        return f"Beam: {n} records explained, {elapsed:.0f} s"

    def _run(self):
        import sys

        while not self.done.wait(2.0):
            print("\r" + self.text(), end="", file=sys.stderr, flush=True)

    def stop(self):
        import sys

        self.done.set()
        self.thread.join()
        print("\r" + self.text(), file=sys.stderr, flush=True)
