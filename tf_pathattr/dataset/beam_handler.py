"""The Beam ``RunInference`` model handler of tf_pathattr and the ``ExplainRecords`` transform.

See :mod:`tf_pathattr.dataset.beam` for the whole file job; ``import tf_pathattr`` imports neither.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

try:
    import apache_beam as beam
except ImportError as exc:  # the optional extra is missing
    raise ImportError(
        "tf_pathattr.beam needs Apache Beam: pip install 'tf_pathattr[beam]' (apache-beam>=2.76); "
        "tf_pathattr.dataset.explain_dataset runs in-process without it"
    ) from exc
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from ..files import RecordError, check_example, first_line, load_model, model_input_shape
from .explainer import BatchExplainer

__all__ = ["AttributionModelHandler", "ExplainRecords", "Example", "NAMESPACE"]

NAMESPACE = "tf_pathattr"


class Example(NamedTuple):
    """A record as :class:`ExplainRecords` hands it to the handler: its id travels with it."""

    id: str
    x: Any
    target: int | None = None


def _split_example(example):
    """``(x, target or None, id or None)`` from an :class:`Example`, an array, or an ``(array, int)`` pair."""
    if isinstance(example, Example):
        return example.x, example.target, example.id
    if (
        isinstance(example, tuple)
        and len(example) == 2
        and np.ndim(example[1]) == 0
        and not isinstance(example[1], (str, bytes))
    ):
        return example[0], (None if example[1] is None else int(example[1])), None
    return example, None, None


class _Loaded:
    """What ``load_model`` returns: the model wrapped in a :class:`~tf_pathattr.dataset.BatchExplainer`."""

    def __init__(self, explainer, shape):
        self.explainer, self.shape = explainer, shape


def _check_picklable(model) -> None:
    """Refuse a model that would not reach the workers (pickled into the pipeline, unpickled there)."""
    import pickle

    try:
        import cloudpickle

        pickle.loads(cloudpickle.dumps(model))
    except Exception as exc:
        raise TypeError(
            f"model: this in-memory {type(model).__name__} cannot travel to Beam workers (pickling it "
            f"failed: {type(exc).__name__}: {first_line(exc)}); give a path (.keras / SavedModel folder) "
            "or model_loader= a picklable function that builds or loads the model on each worker"
        ) from None


class AttributionModelHandler(ModelHandler):
    """A ``RunInference`` model handler that explains each example with a tf_pathattr method.

    Parameters
    ----------
    model : str, path or keras.Model
        A ``.keras`` / ``.h5`` file, or a SavedModel folder (Keras ``model.export``,
        ``tf.saved_model.save`` or :func:`tf_pathattr.saved_model.export`), loaded on each worker in
        ``load_model`` (paths on shared storage such as ``gs://`` need TensorFlow's file systems);
        or a Keras model, pickled into the pipeline (checked here: a model that does not survive
        pickling is refused, with advice).
    method : str
        A name from ``tpa.METHODS`` (or an alias); checked here.
    target : None, int or callable
        As for every method (``None``: the predicted class). An example given as ``(x, k)``
        is explained for class ``k``.
    options : dict, optional
        The method's options (checked here against the method's signature).
    metrics : sequence of str
        Any of :data:`tf_pathattr.dataset.METRICS`.
    score : str, optional
        The score of the deletion / insertion AUC columns (as for :func:`tf_pathattr.metrics.deletion`).
    model_loader : callable, optional
        Instead of ``model``: a picklable ``loader() -> model`` called on each worker.
    input_shape : tuple, optional
        Per-example input shape, when the model does not tell.
    inflight_dir : str, optional
        A folder (any Beam file system) where each batch leaves a note of its record ids while it
        runs, so a job whose worker dies can name them (:func:`explain_files` sets it).
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
        score=None,
        model_loader=None,
        input_shape=None,
        inflight_dir=None,
        **batching,
    ):
        super().__init__(**batching)
        from ..methods import registry

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
            _check_picklable(model)
        if model_loader is not None and not callable(model_loader):
            raise TypeError("model_loader: expected a callable loader() -> model")
        self._model, self._loader = model, model_loader
        self._method = registry.canonical(method)
        if isinstance(target, str) or (target is not None and not callable(target) and np.ndim(target) != 0):
            raise ValueError("target: expected None, an int or a callable; give per-example classes as (x, k) examples")
        self._target = target
        self._options = dict(options or {})
        self._metrics = tuple(metrics or ())
        self._score = score
        self._input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._inflight_dir = inflight_dir
        # fixed-size batches: pad the last, partial batch of a bundle rather than tracing the method again
        self._pad_to = (
            batching.get("max_batch_size") if batching.get("max_batch_size") == batching.get("min_batch_size") else None
        )
        # check options and metrics now (in the driver) rather than on the workers
        BatchExplainer(None, self._method, self._options, self._metrics, score=score)

    # ModelHandler contract -----------------------------------------------------------------
    def load_model(self):
        if self._loader is not None:
            model = self._loader()
            shape = model_input_shape(model)
        elif isinstance(self._model, str):
            model, shape = load_model(self._model)
        else:
            model, shape = self._model, model_input_shape(self._model)
        if self._input_shape is not None:
            shape = self._input_shape
        explainer = BatchExplainer(model, self._method, self._options, self._metrics, score=self._score)
        return _Loaded(explainer, shape)

    def _groups(self, xs, ts, shape_known):
        """Indices explained together: one label kind and (shape unknown) one input shape per group."""
        groups: dict[tuple, list] = {}
        for j, (x, t) in enumerate(zip(xs, ts)):
            key = (t is None, None if shape_known else tuple(x.shape))
            groups.setdefault(key, []).append(j)
        return list(groups.values())

    def run_inference(self, batch: Sequence[Any], model: _Loaded, inference_args=None) -> Iterable[PredictionResult]:
        note = self._note_inflight(batch)
        results: list[PredictionResult | None] = [None] * len(batch)
        xs, ts, idx = [], [], []
        for i, example in enumerate(batch):
            x, t, _ = _split_example(example)
            try:
                x = check_example(x, model.shape)
            except RecordError as exc:
                results[i] = PredictionResult(example, {"error": str(exc)})
                continue
            xs.append(x)
            ts.append(t)
            idx.append(i)
        for g in self._groups(xs, ts, model.shape is not None):
            outs = model.explainer.explain_records(
                [xs[j] for j in g], [ts[j] for j in g], self._target, pad_to=self._pad_to
            )
            for j, (row, reason) in zip(g, outs):
                results[idx[j]] = PredictionResult(batch[idx[j]], row if row is not None else {"error": reason})
        if note is not None:  # the batch is done: its note becomes a count for the progress line
            with FileSystems.create(FileSystems.join(self._inflight_dir, f"done-{len(batch)}-{uuid.uuid4().hex}")):
                pass
            FileSystems.delete([note])
        return results

    def _note_inflight(self, batch) -> str | None:
        """Leave the batch's record ids in ``inflight_dir`` while it runs (removed when it returns)."""
        if self._inflight_dir is None:
            return None
        ids = [_split_example(e)[2] for e in batch]
        path = FileSystems.join(self._inflight_dir, f"run-{uuid.uuid4().hex}.json")
        with FileSystems.create(path) as fh:
            fh.write(json.dumps([i for i in ids if i is not None]).encode())
        return path

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return sum(int(getattr(_split_example(e)[0], "nbytes", 0)) for e in batch)

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


def _as_example(kv):
    rid, example = kv
    x, target, _ = _split_example(example)
    return rid, Example(str(rid), x, target)


class ExplainRecords(beam.PTransform):
    """``(id, example)`` records -> ``results`` ``(id, inference dict)`` and ``dead_letters`` ``(id, reason)``.

    Apply as ``out = records | ExplainRecords(handler)``; ``out.results`` and ``out.dead_letters``.
    """

    def __init__(self, handler: AttributionModelHandler, inference_args=None):
        super().__init__()
        self.handler, self.inference_args = handler, inference_args

    def expand(self, records):
        explained = (
            records
            | "WithIds" >> beam.Map(_as_example)
            | "RunInference" >> RunInference(KeyedModelHandler(self.handler), inference_args=self.inference_args)
        )
        return explained | "SplitErrors" >> beam.ParDo(_SplitErrors()).with_outputs("dead_letters", main="results")
