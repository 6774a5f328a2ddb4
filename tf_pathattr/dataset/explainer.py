"""The per-batch explainer shared by the in-process run and Beam: attributions plus the table columns."""

from __future__ import annotations

import re

import numpy as np

__all__ = ["BatchExplainer", "METRICS", "failure_reason"]

#: Per-example metrics the table can hold besides ``id``, ``target`` and ``score``.
METRICS = ("completeness_gap", "deletion_auc", "insertion_auc")

_TF_NOISE = re.compile(r"^(Graph execution error:|Detected at node|Detected unhandled|File \"|\s*\[\[|Traceback)")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+|0x[0-9a-fA-F]{6,}")
_NODE = re.compile(r"\s*\[\[\{\{node [^}]*\}\}\]\]|\s*\[Op:[^\]]*\]|\s*name: [\w/.:-]+")


def failure_reason(exc) -> str:
    """One line naming an exception's cause, the same for the same cause on every run.

    TensorFlow's ``Graph execution error:`` header, node names, op names and memory addresses
    are dropped, so reruns write identical dead letters.
    """
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    cause = next((ln for ln in lines if not _TF_NOISE.match(ln) and not ln.endswith(":")), None)
    if cause is None:
        cause = next((ln for ln in lines if not _TF_NOISE.match(ln)), "")
    cause = _NODE.sub("", _ADDRESS.sub("", cause)).strip()
    return f"{type(exc).__name__}: {cause}" if cause else type(exc).__name__


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
    score : str, optional
        The score of the deletion / insertion AUC columns (as for :func:`tf_pathattr.metrics.deletion`).

    Notes
    -----
    Calling ``explainer(x, target)`` returns a dict of per-example numpy arrays: the attribution
    arrays (:meth:`array_names`) and the table columns ``target``, ``score`` and the metrics.
    """

    def __init__(
        self,
        model,
        method="integrated_gradients",
        options=None,
        metrics=("completeness_gap",),
        strategy=None,
        score=None,
    ):
        from ..methods import registry
        from ..methods.calling import check_options, resolve_method

        self.model = model
        self.fn = resolve_method(method)
        self.spec = registry.spec_of(method)
        self.method_name = self.spec.name if self.spec is not None else getattr(method, "__name__", "method")
        self.options = dict(options or {})
        self.score = score
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
        check_options(self.fn, self.options)
        if score is not None:
            from ..metrics._common import check_score_name

            check_score_name(score)
        self.strategy = strategy
        self._score_fns = {}
        #: table columns that failed: ``{name: [count, first reason]}`` (the column holds NaN there)
        self.column_errors: dict[str, list] = {}

    def array_names(self):
        return ("attributions_left", "attributions_right") if self.output == "split" else ("attributions",)

    # ------------------------------------------------------------------
    def _explain_part(self, x, target):
        """Attributions, target, score and completeness gap for one part (eager, on the current device)."""
        import tensorflow as tf

        from ..engine import gradients as eng
        from ..methods.calling import explain_with_gap

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

        from ..engine import gradients as eng

        key = (problem.target.cache_token, int(problem.batch_size), problem.example_shapes[0])
        fn = self._score_fns.get(key)
        if fn is None:

            def score_fn(x, indices):
                idx, out = eng.resolve_indices(problem, [x], indices)
                return idx, eng.scores_at_x(problem, [x], idx, out)

            fn = self._score_fns[key] = tf.function(score_fn, autograph=False)
        return fn(problem.flat_x[0], problem.target.indices)

    def __call__(self, x, target=None, n_valid: int | None = None) -> dict[str, np.ndarray]:
        """Per-example arrays for the batch ``x``; ``n_valid``: only the first rows are real (the rest
        padding), and the metric columns are computed for those only (NaN on the padding)."""
        x = np.asarray(x, np.float32)
        n_valid = len(x) if n_valid is None else n_valid
        strategy = self.strategy
        n_rep = strategy.num_replicas_in_sync if strategy is not None else 1
        if n_rep > 1 and len(x) >= n_rep:
            res = self._distributed(x, target, n_rep)
        else:
            res = {k: _numpy(v) for k, v in self._explain_part(x, target).items()}
        explained = None if callable(target) else res["target"]
        for name in ("deletion_auc", "insertion_auc"):
            if name in self.metrics:
                tgt = target if callable(target) else explained[:n_valid]
                column = self._auc_column(name, x[:n_valid], res["attributions"][:n_valid], tgt)
                res[name] = np.concatenate([column, np.full((len(x) - n_valid,), np.nan)])
        return res

    def _auc_column(self, name, x, attributions, target):
        """One deletion / insertion AUC column. Where the metric cannot be computed for a batch it runs
        record by record; a record it still fails on gets NaN, with the reason kept in
        :attr:`column_errors` (a failing column costs the column, not the records)."""
        from .. import metrics as _metrics

        fn = _metrics.deletion if name == "deletion_auc" else _metrics.insertion

        def auc(sl):
            t = target if target is None or callable(target) or np.ndim(target) == 0 else np.asarray(target)[sl]
            return np.asarray(fn(self.model, x[sl], attributions[sl], t, score=self.score).auc, np.float64)

        try:
            return auc(slice(None)).reshape(-1)
        except Exception as exc:
            if len(x) == 1:
                entry = self.column_errors.setdefault(name, [0, failure_reason(exc)])
                entry[0] += 1
                return np.full((1,), np.nan, np.float64)
        return np.concatenate(
            [
                self._auc_column(name, x[i : i + 1], attributions[i : i + 1], _index_target(target, i))
                for i in range(len(x))
            ]
        )

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
        xs: list[np.ndarray],
        targets: list[int | None],
        target=None,
        pad_to: int | None = None,
    ):
        """Explain checked examples; one ``(per-example dict, None)`` or ``(None, reason)`` per example.

        The examples run as one batch; if the batch fails, each example runs alone, so a record's
        fate does not depend on its neighbours or its position. Non-finite attributions are an error
        for that example. ``pad_to``: a shorter batch is padded with copies of its last example
        (rows dropped after), so every call has the same batch size and the compiled method is not
        traced again for the last, partial batch of a run or of a worker.
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
            res = self(batch, t, n_valid=n)
            res = {k: v[:n] for k, v in res.items()}
        except Exception as exc:
            if len(xs) == 1:
                return [(None, f"explaining failed: {failure_reason(exc)}")]
            out = []
            for i, xi in enumerate(xs):
                out.extend(self.explain_records([xi], [targets[i]], _index_target(target, i), pad_to=pad_to))
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
