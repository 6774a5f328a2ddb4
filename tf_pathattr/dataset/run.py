"""The in-process run: :func:`explain_dataset` explains a whole dataset into one resumable output folder.

The run reads its :mod:`~tf_pathattr.dataset.sources` record by record, gathers shards of
``shard_size`` records, explains each shard in batches with a
:class:`~tf_pathattr.dataset.explainer.BatchExplainer` and writes it through a
:class:`~tf_pathattr.dataset.output.RunFolder`. ``run.json`` holds the run's fingerprint
(:mod:`~tf_pathattr.dataset.fingerprint`); a rerun into the same folder resumes only the same run.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import progress as _progress_bar
from ..engine.shapes import check_choice, check_positive_int
from ..files import ImageTransform, Record, RecordError, check_example, load_model, model_input_shape
from .explainer import BatchExplainer
from .fingerprint import differences, jsonable, model_fingerprint
from .output import RunFolder, have_pyarrow, read_results
from .sources import make_source, record_digest

__all__ = ["explain_dataset", "DatasetResult", "FORMATS", "CONFIG_VERSION"]

FORMATS = ("npz", "tfrecord")
CONFIG_VERSION = 2
#: A run stops when this many records, the first of the run, all fail alike (see ``_Run._no_result_yet``).
MISCONFIGURED_AFTER = 64


class MisconfiguredRun(ValueError):
    """Every record so far failed the same way: the method's configuration, not the data."""


@dataclass
class DatasetResult:
    """What :func:`explain_dataset` did. ``read()`` loads the results (:func:`read_results`).

    ``column_errors``: table columns that could not be computed for some records, ``{name:
    {"records": n, "reason": first reason}}`` (those cells are NaN; the records are kept).
    """

    out: Path
    n_records: int
    n_results: int
    n_dead_letters: int
    n_shards: int
    shards_skipped: int
    n_explained: int
    seconds: float
    files: list[str] = field(default_factory=list)
    column_errors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def read(self):
        return read_results(self.out)

    @property
    def examples_per_second(self) -> float:
        return self.n_explained / self.seconds if self.seconds > 0 else float("nan")


def _claim_folder(folder: RunFolder, config: dict, overwrite: bool) -> None:
    """Make ``folder`` this run's: clear it (``overwrite``), resume the same run, or refuse another."""
    if overwrite:
        folder.clear()
    else:
        old = folder.read_config()
        new = jsonable(config)
        if old is not None and old != new:
            diff = differences(old, new)
            raise ValueError(
                f"out: {folder.out} holds another run (it differs in {', '.join(diff)}); use a new folder, "
                "or overwrite=True (--overwrite on the command line) to replace it"
            )
        if old is None and folder.result_files():
            raise ValueError(
                f"out: {folder.out} holds results without a run.json; use a new folder, "
                "or overwrite=True (--overwrite) to replace them"
            )
    folder.write_config(jsonable(config))


class _Run:
    """One pass over the source: shards gathered, explained, written, and counted."""

    def __init__(self, folder, explainer, source, shape, batch_size, shard_size, target, progress):
        self.folder, self.explainer, self.source = folder, explainer, source
        self.shape, self.batch_size, self.shard_size = shape, batch_size, shard_size
        self.use_labels = isinstance(target, str) and target == "labels"
        self.target = None if self.use_labels else target
        self.per_example_target = None
        if target is not None and not self.use_labels and not callable(target) and np.ndim(target) == 1:
            self.per_example_target = np.asarray(target)
            if source.n is not None and len(self.per_example_target) != source.n:
                raise ValueError(f"target: has {len(self.per_example_target)} entries for {source.n} examples")
        self.counts = {"records": 0, "results": 0, "dead": 0, "explained": 0, "skipped": 0}
        self.files: list[str] = []
        self.seen: dict[str, int] = {}
        self.done = set(folder.finished())
        self.n_shards = 0
        self.failures: dict[str, int] | None = {} if not self.done else None
        self.bar = None
        if progress:
            total = source.n if source.n is not None else getattr(source, "count", lambda: None)()
            self.bar = _progress_bar(None, total=total, desc=f"explaining ({explainer.method_name})", unit="ex")

    # the finished shards of an earlier run ------------------------------------------------
    def _load_finished(self):
        if self.done and not self.source.replayable:
            k_max = max(self.done)
            if sorted(self.done) != list(range(k_max + 1)):
                raise ValueError(
                    f"out: {self.folder.out}: the finished shards {sorted(self.done)} are not the first ones of the "
                    "stream; a stream cannot be resumed around holes (overwrite=True to start again)"
                )
        for k in sorted(self.done):
            n_res, n_dead, ids = self.folder.shard_counts(k)
            self.counts["results"] += n_res
            self.counts["dead"] += n_dead
            for rid in ids:
                self.seen.setdefault(rid, -1)

    def _check_replayed_shard(self, k, digest):
        if self.folder.shard_digest(k) != digest.hexdigest():
            raise ValueError(
                f"data: the stream gives other records than the run that wrote shard {k} in {self.folder.out} "
                "(its order or content changed, e.g. a shuffle without a seed); nothing was written. "
                "Give the stream a fixed order (shuffle(..., seed=..., reshuffle_each_iteration=False)) "
                "or use overwrite=True (--overwrite) to start again"
            )

    # one record ---------------------------------------------------------------------------
    def _checked(self, pos: int, rec: Record) -> Record:
        if rec.id in self.seen:
            first = self.seen[rec.id]
            where = "a finished shard" if first < 0 else f"record {first}"
            raise ValueError(
                f"data: duplicate id {rec.id!r} (record {pos} and {where}); every record needs its own id. "
                f"Nothing of the shard holding record {pos} was written"
            )
        self.seen[rec.id] = pos
        if rec.error is not None:
            return rec
        try:
            return Record(rec.id, check_example(rec.x, self.shape), rec.target)
        except RecordError as exc:
            return Record(rec.id, target=rec.target, error=str(exc))

    # one shard ----------------------------------------------------------------------------
    def _batches(self, good):
        """Batches of ``batch_size`` good records; with an unknown input shape, records of one shape
        per batch (so a wrongly shaped record fails alone, wherever it stands)."""
        if self.shape is not None:
            groups = [good]
        else:
            by_shape: dict[tuple, list] = {}
            for item in good:
                by_shape.setdefault(tuple(item[1].x.shape), []).append(item)
            groups = list(by_shape.values())
        for g in groups:
            for s in range(0, len(g), self.batch_size):
                yield g[s : s + self.batch_size]

    def _batch_target(self, chunk):
        if self.use_labels:
            missing = [r.id for _, r in chunk if r.target is None]
            if missing:
                raise ValueError(f"target='labels': records {missing[:3]} carry no label")
            return [r.target for _, r in chunk], None
        if self.per_example_target is not None:
            return [None] * len(chunk), self.per_example_target[[pos for pos, _ in chunk]]
        return [None] * len(chunk), self.target

    def _flush(self, k: int, shard: list, digest) -> None:
        """Explain and write shard ``k`` (a list of (position, Record))."""
        explainer = self.explainer
        dead = {pos: (r.id, r.error) for pos, r in shard if r.error is not None}
        good = [(pos, r) for pos, r in shard if r.error is None]
        rows: dict[int, dict] = {}
        for chunk in self._batches(good):
            targets, batch_target = self._batch_target(chunk)
            results = explainer.explain_records([r.x for _, r in chunk], targets, batch_target, pad_to=self.batch_size)
            for (pos, r), (row, reason) in zip(chunk, results):
                if row is None:
                    dead[pos] = (r.id, reason)
                    self._no_result_yet(reason)
                else:
                    rows[pos] = row
                    self.failures = None
            self.counts["explained"] += len(chunk)
            if self.bar is not None:
                self.bar.update(len(chunk))
        if self.bar is not None and len(good) < len(shard):
            self.bar.update(len(shard) - len(good))
        order = sorted(rows)
        by_pos = dict(shard)
        ids = [by_pos[pos].id for pos in order]
        arrays = {
            name: np.stack([rows[p][name] for p in order]) if order else np.zeros((0,), np.float32)
            for name in explainer.array_names()
        }
        cols = {c: [rows[p][c] for p in order] for c in ("target", "score") + explainer.metrics}
        self.files += self.folder.write_shard(
            k, ids, arrays, cols, explainer.metrics, [dead[p] for p in sorted(dead)], digest.hexdigest()
        )
        self.counts["results"] += len(ids)
        self.counts["dead"] += len(dead)

    def _no_result_yet(self, reason: str) -> None:
        """Stop a run whose method has failed the same way on its first :data:`MISCONFIGURED_AFTER`
        records and on every batch size alike, before any result: that is the configuration (an option's
        value), not the records. One bad record, wherever it stands, never trips this."""
        if self.failures is None:  # a record was explained: failures are the records' own
            return
        self.failures[reason] = self.failures.get(reason, 0) + 1
        if len(self.failures) == 1 and self.failures[reason] >= MISCONFIGURED_AFTER:
            raise MisconfiguredRun(
                f"{self.explainer.method_name}: the first {MISCONFIGURED_AFTER} records all failed with the same "
                f"error and none was explained; check the method and its options: {reason}"
            )

    # the pass -----------------------------------------------------------------------------
    def go(self) -> None:
        self._load_finished()
        skip = [k in self.done for k in range(max(self.done) + 1)] if self.done else []
        shard, cur, digest = [], 0, hashlib.sha1()
        for pos, rec in enumerate(self.source.records(skip, self.shard_size)):
            k = pos // self.shard_size
            if k != cur:
                self._end_shard(cur, shard, digest)
                shard, cur, digest = [], k, hashlib.sha1()
            self.counts["records"] += 1
            self.n_shards = k + 1
            if k in self.done:  # a finished shard: read past (a stream's records are checked against it)
                if rec is not None:
                    record_digest(digest, rec.id, rec.x, rec.target)
                if pos % self.shard_size == 0:
                    self.counts["skipped"] += 1
                if self.bar is not None:
                    self.bar.update(1)
                continue
            if self.per_example_target is not None and pos >= len(self.per_example_target):
                raise ValueError(f"target: has {len(self.per_example_target)} entries but the data has more examples")
            rec = self._checked(pos, rec)
            record_digest(digest, rec.id, rec.x, rec.target)
            shard.append((pos, rec))
        self._end_shard(cur, shard, digest)
        if self.bar is not None:
            self.bar.close()

    def _end_shard(self, k, shard, digest):
        if k in self.done:
            if not self.source.replayable:
                self._check_replayed_shard(k, digest)
        elif shard:
            self._flush(k, shard, digest)


def _resolve_model(model, input_shape):
    """``(model, per-example input shape or None, path or None)``."""
    path = None
    if isinstance(model, (str, Path)):
        path = model
        model, shape = load_model(model)
    else:
        shape = model_input_shape(model)
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
    return model, shape, path


def _warn_stochastic(explainer) -> None:
    if explainer.spec is not None and explainer.spec.stochastic and "seed" not in explainer.options:
        warnings.warn(
            f"{explainer.method_name} is stochastic and no seed= is set: a resumed run mixes different noise draws",
            stacklevel=3,
        )


def _run_config(model, model_path, explainer, target, score, batch_size, shard_size, folder, source, shape):
    """What ``run.json`` records: everything a resumed run must share with the run it resumes."""
    return {
        "version": CONFIG_VERSION,
        "model": model_fingerprint(model, model_path),
        "method": explainer.method_name,
        "options": explainer.options,
        "target": target,
        "metrics": list(explainer.metrics),
        "score": score,
        "batch_size": batch_size,
        "shard_size": shard_size,
        "format": folder.fmt,
        "table": folder.table,
        "data": source.fingerprint,
        "input_shape": list(shape) if shape is not None else None,
    }


def explain_dataset(
    model,
    data,
    target=None,
    *,
    method="integrated_gradients",
    out,
    options=None,
    batch_size: int = 32,
    shard_size: int | None = None,
    format: str = "npz",
    table: str | None = None,
    metrics=("completeness_gap",),
    score=None,
    strategy=None,
    batched: bool | None = None,
    input_shape=None,
    scale: str = "0,1",
    preprocess: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> DatasetResult:
    """Explain every example of a dataset with one method; write sharded, resumable results into ``out``.

    Parameters
    ----------
    model : keras.Model, callable, or a path
        A single-input model; a path (``.keras`` / ``.h5`` file or SavedModel folder) is loaded
        with :func:`tf_pathattr.files.load_model`.
    data : tf.data.Dataset, array, (x, labels) arrays, iterable, or files
        * a ``tf.data.Dataset`` of examples or of batches (told apart by the model's input rank;
          ``batched=`` when the model's input shape is unknown), elements ``x``, ``(x, label)`` or
          dicts ``{"x", "id", "target"}``;
        * a numpy array ``[N, *S]``, a tuple ``(x, labels)``, or a dict ``{"x", "id", "target"}``;
        * any other iterable of examples (as for datasets; ``batched=True`` for batches);
        * a glob pattern, a file, a folder, or a list of them: PNG / JPEG images, ``.npy`` arrays
          (one example, or a batch ``[n, *S]``), TFRecord files of ``tf.train.Example``
          (``x`` float list or ``image`` bytes; optional ``id``, ``label``). See
          :func:`tf_pathattr.files.decode_file`.

        Ids must be unique: repeated ids in ``{"id": ...}`` arrays are refused before anything
        runs; in a stream or in files, the run stops at the first repeated id (naming it) before
        writing the shard that holds it.
    target : None, int, N ints, callable, or "labels"
        As for every method (``None``: the predicted class); an array gives one class per example
        of the stream; ``"labels"`` explains the label each record carries.
    method : str
        A name from ``tpa.METHODS`` (or an alias).
    out : str or path
        Output folder (created). It holds one run (see ``overwrite``).
    options : dict, optional
        The method's options (checked against the method's signature before any record is read).
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
        Table columns besides id/target/score: any of :data:`tf_pathattr.dataset.METRICS`. A column
        that cannot be computed for some records is NaN there, with the reason in
        ``summary.json`` and :attr:`DatasetResult.column_errors`; the records keep their attributions.
    score : {None, "probability", "logit", "output", "accuracy"}
        The score of the ``deletion_auc`` / ``insertion_auc`` columns, as for
        :func:`tf_pathattr.metrics.deletion` (``None``: chosen from the model's outputs there).
    strategy : tf.distribute.Strategy, optional
        Split each batch across the strategy's replicas (default: the strategy whose scope is
        active, if any).
    input_shape : tuple, optional
        Per-example input shape, where the model does not say (checked for every record).
    scale : {"0,1", "-1,1", "0,255", "caffe", "torch"}
        Image files only: the model's input range (see :func:`tf_pathattr.files.scale_pixels`).
    preprocess : str, optional
        Image files only, instead of ``scale``: ``"module:function"`` mapping 0..255 pixels
        ``[B, H, W, C]`` to model inputs.
    progress : bool
        A progress bar on stderr with the total and an ETA (tqdm, when installed).
    overwrite : bool
        Delete the results of an earlier run in ``out`` first. Without it, a folder holding the
        same run (same model, method, options, target, data, ... as recorded in ``run.json``) is
        resumed; a folder holding another run is refused, naming what differs.

    Returns
    -------
    DatasetResult : counts (records in = results + dead letters), shards written and skipped, time.

    Notes
    -----
    Stochastic methods (``seed=``) draw their noise per batch, so their results depend on
    ``batch_size`` (and, under Beam, on the batches the runner forms); deterministic methods give
    each example the attributions ``tpa.attribute`` gives it alone, up to float rounding.
    A stream (``tf.data``, an iterable) is fingerprinted by its first records, and on resume every
    record of a finished shard is checked against that shard's digest (``inputs-SSSSS.sha1``): a
    stream that changed order (an unseeded shuffle) is refused, never written twice or skipped.
    """
    t0 = time.perf_counter()
    import tensorflow as tf

    from ..methods import registry

    batch_size = check_positive_int(batch_size, "batch_size")
    shard_size = check_positive_int(shard_size if shard_size is not None else 8 * batch_size, "shard_size")
    fmt = check_choice(format, "format", FORMATS)
    table = check_choice(
        table if table is not None else ("parquet" if have_pyarrow() else "csv"), "table", ("parquet", "csv")
    )
    if table == "parquet" and not have_pyarrow():
        raise ImportError("table='parquet' needs pyarrow (pip install pyarrow), or pass table='csv'")
    if isinstance(target, str) and target != "labels":
        raise ValueError(f"target: expected None, an int, one int per example, a callable or 'labels', got {target!r}")
    if isinstance(method, str):
        method = registry.canonical(method)
    transform = ImageTransform(scale, preprocess)
    model, shape, model_path = _resolve_model(model, input_shape)
    if strategy is None and tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    explainer = BatchExplainer(model, method, options, metrics, strategy=strategy, score=score)
    _warn_stochastic(explainer)
    source = make_source(data, shape, batched, transform)
    folder = RunFolder(out, fmt, table)
    config = _run_config(model, model_path, explainer, target, score, batch_size, shard_size, folder, source, shape)
    config["images"] = transform.describe()
    _claim_folder(folder, config, overwrite)
    run = _Run(folder, explainer, source, shape, batch_size, shard_size, target, progress)
    try:
        run.go()
    except MisconfiguredRun:
        if not folder.finished():  # nothing written: leave no run.json that would block the corrected rerun
            folder.clear()
        raise
    return _finish(run, folder, explainer, strategy, time.perf_counter() - t0)


def _finish(run: _Run, folder: RunFolder, explainer, strategy, seconds: float) -> DatasetResult:
    c = run.counts
    column_errors = {k: {"records": int(n), "reason": r} for k, (n, r) in sorted(explainer.column_errors.items())}
    result = DatasetResult(
        out=folder.out,
        n_records=c["records"],
        n_results=c["results"],
        n_dead_letters=c["dead"],
        n_shards=run.n_shards,
        shards_skipped=c["skipped"],
        n_explained=c["explained"],
        seconds=seconds,
        files=run.files,
        column_errors=column_errors,
    )
    folder.write_summary(
        {
            "records": result.n_records,
            "results": result.n_results,
            "dead_letters": result.n_dead_letters,
            "shards": result.n_shards,
            "shards_skipped": result.shards_skipped,
            "explained_this_run": result.n_explained,
            "seconds": round(seconds, 3),
            "runner": "in-process",
            "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
            "column_errors": column_errors,
        }
    )
    if result.n_records != result.n_results + result.n_dead_letters:  # pragma: no cover - an internal invariant
        raise RuntimeError(
            f"internal error: {result.n_records} records != {result.n_results} results + "
            f"{result.n_dead_letters} dead letters"
        )
    return result
