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
* ``inputs-SSSSS.sha1``: the digest of the shard's records (ids, targets, inputs);
* ``run.json`` (the run's fingerprint) and ``summary.json`` (counts, failed table columns, timing).

A folder holds one run: a rerun resumes it only when ``run.json`` matches (same model, method,
options, target, data, ...), skipping the finished shards and producing the files an
uninterrupted run writes; another run is refused, naming what differs (``overwrite=True`` clears
the folder). See ``docs/dataset_scale.md``.

The package: :mod:`.run` (the in-process run), :mod:`.sources` (what can be read),
:mod:`.explainer` (the per-batch explainer), :mod:`.output` (the folder), :mod:`.fingerprint`
(``run.json``), and :mod:`.beam` (the same job on Apache Beam; not imported here).
"""

from __future__ import annotations

from ..files import (
    FILE_SUFFIXES,
    Record,
    RecordError,
    check_example,
    check_scale,
    decode_file,
    list_files,
    load_model,
    model_input_shape,
)
from .explainer import METRICS, BatchExplainer
from .output import arrays_bytes, dead_letters_bytes, read_results, table_bytes, table_columns
from .run import FORMATS, DatasetResult, explain_dataset

__all__ = [
    "explain_dataset",
    "read_results",
    "BatchExplainer",
    "DatasetResult",
    "RecordError",
    "Record",
    "check_example",
    "check_scale",
    "decode_file",
    "list_files",
    "load_model",
    "model_input_shape",
    "arrays_bytes",
    "table_bytes",
    "table_columns",
    "dead_letters_bytes",
    "FILE_SUFFIXES",
    "FORMATS",
    "METRICS",
]
