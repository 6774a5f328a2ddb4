"""``tf-pathattr explain-dataset``: explain every record of image / ``.npy`` / TFRecord files into one
resumable output folder, in-process by default or on Apache Beam (``--runner`` / Beam options)."""

from __future__ import annotations

from pathlib import Path

from . import files as _files
from ._cli_common import CLIError, load_model, load_preprocess, method_options
from ._cli_common import first_line as _first_line

__all__ = ["cmd_explain_dataset", "add_parser"]


def _beam_available() -> bool:
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        return False
    return True


def _dataset_arguments(args):
    """``(method, options, target, metrics)`` from the explain-dataset flags, checked."""
    from .dataset import METRICS
    from .methods import registry

    try:
        method = registry.canonical(args.method)
    except ValueError as exc:
        raise CLIError(f"--method: {exc}".replace("method: ", "", 1)) from None
    options = method_options(args.options)
    target = args.target
    if target is not None and target != "labels":
        try:
            target = int(target)
        except ValueError:
            raise CLIError(f"--target: expected a class index or 'labels', got {target!r}") from None
    metrics = tuple(m for m in (args.metrics or "").split(",") if m)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise CLIError(f"--metrics: unknown {unknown}; available: {','.join(METRICS)}")
    if args.scale is not None and args.preprocess is not None:
        raise CLIError("--scale and --preprocess: give one of them, not both")
    if args.preprocess is not None:
        load_preprocess(args.preprocess)  # one clear line for a bad MODULE:FUNCTION, before any work
    return method, options, target, metrics


def _choose_runner(args, pipeline_args) -> bool:
    """``True`` for Beam: asked for with ``--runner`` or Beam pipeline options; in-process otherwise."""
    wants_beam = args.runner is not None or bool(pipeline_args)
    if args.no_beam and wants_beam:
        given = ([f"--runner {args.runner}"] if args.runner else []) + list(pipeline_args)
        raise CLIError(f"--no-beam: runs in-process; remove {' '.join(given)} (Beam options)")
    if wants_beam and not _beam_available():
        raise CLIError(
            "--runner and Beam pipeline options need apache-beam: pip install 'tf_pathattr[beam]' "
            "(or run in-process without them)"
        )
    if wants_beam:
        from .dataset.beam import check_pipeline_args

        extra = list(pipeline_args) + ([f"--runner={args.runner}"] if args.runner else [])
        try:
            check_pipeline_args(extra)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    return wants_beam


def _quiet_beam(verbose: bool) -> None:
    """Beam logs every stage at INFO and a failed worker's traceback at ERROR; the command prints one line."""
    import logging

    if not verbose:
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)


def _run_beam(args, files, method, options, target, metrics, shape, pipeline_args):
    from .dataset.beam import BeamJobError, explain_files

    _quiet_beam(args.verbose)
    extra = list(pipeline_args) + ([f"--runner={args.runner}"] if args.runner else [])
    try:
        summary = explain_files(
            args.model,
            files,
            args.out,
            method=method,
            target=target,
            options=options,
            metrics=metrics,
            score=args.score,
            batch_size=args.batch_size,
            num_shards=args.num_shards,
            format=args.format,
            input_shape=shape,
            scale=args.scale or "0,1",
            preprocess=args.preprocess,
            pipeline_args=extra,
            overwrite=args.overwrite,
            progress=True,
        )
    except BeamJobError as exc:
        raise CLIError(str(exc)) from None
    return summary["records"], summary["results"], summary["dead_letters"], {}


def _run_in_process(args, files, method, options, target, metrics, model, shape):
    from .dataset import explain_dataset

    res = explain_dataset(
        model,
        files,
        target,
        method=method,
        out=args.out,
        options=options,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        format=args.format,
        metrics=metrics,
        score=args.score,
        input_shape=shape,
        scale=args.scale or "0,1",
        preprocess=args.preprocess,
        overwrite=args.overwrite,
        progress=True,
    )
    if res.shards_skipped:
        print(f"resumed: {res.shards_skipped} finished shard(s) skipped")
    return res.n_records, res.n_results, res.n_dead_letters, res.column_errors


def cmd_explain_dataset(args, pipeline_args=()) -> int:
    """Explain every record of the input files; write sharded results into ``--out``."""
    method, options, target, metrics = _dataset_arguments(args)
    try:
        files = _files.list_files(args.input)
    except FileNotFoundError as exc:
        raise CLIError(f"--input: {_first_line(exc)}") from None
    use_beam = _choose_runner(args, pipeline_args)
    model, shape = load_model(args.model)  # one clear error line for a bad --model, before any work
    try:
        if use_beam:
            records, results, dead, column_errors = _run_beam(
                args, files, method, options, target, metrics, shape, pipeline_args
            )
        else:
            records, results, dead, column_errors = _run_in_process(
                args, files, method, options, target, metrics, model, shape
            )
    except (TypeError, ValueError, NotImplementedError, FileNotFoundError) as exc:
        raise CLIError(f"{args.method}: {_first_line(exc)}") from None
    print(f"records {records} = results {results} + dead letters {dead} ({'Beam' if use_beam else 'in-process'})")
    if dead:
        print(f"dead letters: {Path(args.out) / 'dead_letters-*.jsonl'}")
    for name, info in column_errors.items():
        print(f"column {name}: NaN for {info['records']} record(s): {info['reason']}")
    print(f"wrote {args.out}")
    return 0


def add_parser(sub, common) -> None:
    """The ``explain-dataset`` subcommand on the subparsers ``sub``."""
    from .dataset.explainer import METRICS

    p = sub.add_parser(
        "explain-dataset",
        parents=common,
        help="explain every record of image / .npy / TFRecord files (Apache Beam, or in-process)",
    )
    p.add_argument("--model", required=True, help=".keras / .h5 file or SavedModel folder")
    p.add_argument(
        "--input",
        required=True,
        nargs="+",
        help="glob patterns, files or folders (PNG / JPEG, .npy, TFRecord of tf.train.Example)",
    )
    p.add_argument("--method", required=True, help="method name (see `tf-pathattr methods`)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--target", default=None, help="class index, or 'labels' (TFRecord label feature); default: the predicted class"
    )
    p.add_argument("--options", default=None, help="method options as JSON, e.g. '{\"n_steps\": 32}'")
    p.add_argument("--batch-size", type=int, default=32, help="explicands per method call (default 32)")
    p.add_argument(
        "--metrics",
        default="completeness_gap",
        help=f"comma-separated table columns: {','.join(METRICS)}",
    )
    p.add_argument("--format", choices=("npz", "tfrecord"), default="npz", help="attribution shards (default npz)")
    p.add_argument(
        "--scale",
        choices=_files.SCALES,
        default=None,
        help="image files: the model's input range, 0,1 (default) | -1,1 | 0,255 | caffe | torch",
    )
    p.add_argument(
        "--preprocess",
        default=None,
        metavar="MODULE:FUNCTION",
        help="image files: a function mapping 0..255 pixels [B, H, W, C] to model inputs (instead of --scale)",
    )
    p.add_argument(
        "--score",
        default=None,
        help="deletion_auc / insertion_auc columns: probability | logit | output | accuracy (as tpa.metrics)",
    )
    p.add_argument(
        "--runner",
        default=None,
        help="run on Apache Beam with this runner (FnApiRunner, DirectRunner, FlinkRunner, SparkRunner, "
        "DataflowRunner, ...); default: in-process (resumable). FnApiRunner runs multi-threaded by default",
    )
    p.add_argument("--num-shards", type=int, default=None, help="Beam: output shards (default: one per 1,024 records)")
    p.add_argument(
        "--shard-size",
        type=int,
        default=None,
        help="in-process: examples per shard, the unit of resumption (default 8 x batch size)",
    )
    p.add_argument(
        "--no-beam", action="store_true", help="explain in-process (the default without --runner or Beam options)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.set_defaults(func=cmd_explain_dataset, pipeline_args=True)
