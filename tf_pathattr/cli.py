"""The ``tf-pathattr`` command.

::

    tf-pathattr demo [--out DIR] [--quick]
    tf-pathattr explain --model PATH --input FILE --method NAME --out FILE.npy
                        [--target N] [--options JSON] [--png] [--batch-size N]
    tf-pathattr methods
    tf-pathattr explain-dataset --model M --input GLOB|FILE [...] --method NAME --out DIR
                        [--runner DirectRunner|PrismRunner|FlinkRunner|SparkRunner|DataflowRunner]
                        [--no-beam] [beam pipeline options]

``explain`` reads a ``.keras`` / ``.h5`` model (loaded with Keras' safe mode on) or a SavedModel
folder (its ``serve`` endpoint), and a ``.npy`` array (a batch ``[B, *S]`` or one example ``S``) or
a PNG / JPEG image (scaled to [0, 1], converted to the model's channel count and resized to its
input size when that is known). It writes the attributions as ``.npy`` and, with ``--png``, a PNG
strip of signed overlays next to it. Errors are one line on stderr and a non-zero exit status.

``explain-dataset`` explains every record of image / ``.npy`` / TFRecord files on Apache Beam
(:func:`tf_pathattr.beam.explain_files`; locally: Beam's Python direct runner in multi-processing
mode, one worker per core), or in-process (:func:`tf_pathattr.dataset.explain_dataset`, resumable)
with ``--no-beam`` or when apache-beam is not installed. Options it does not know are Beam pipeline
options (``--project=...``, ``--num_workers=...``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_ERROR = 1


class CLIError(Exception):
    """An error reported as one line, without a traceback."""


def _err(msg: str) -> None:
    print(f"tf-pathattr: error: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# loading


def load_model(path):
    """``(model, per-example input shape or None)`` from a ``.keras`` / ``.h5`` file or a SavedModel folder."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"--model: no such file or folder: {path}")
    if p.is_dir():
        if not (p / "saved_model.pb").exists():
            raise CLIError(f"--model: {path} is a folder but not a SavedModel (no saved_model.pb)")
        from .saved_model import load

        try:
            fn = load(p)
        except Exception as exc:
            raise CLIError(f"--model: cannot load the SavedModel at {path}: {_first_line(exc)}") from None
        shape = None
        try:
            cf = fn.fn.concrete_functions[0] if hasattr(fn.fn, "concrete_functions") else None
            if cf is not None:
                spec = [s for s in cf.structured_input_signature[0]][0]
                if all(d is not None for d in spec.shape[1:]):
                    shape = tuple(int(d) for d in spec.shape[1:])
        except Exception:
            shape = None
        return fn, shape
    if p.suffix not in (".keras", ".h5"):
        raise CLIError(f"--model: expected a .keras or .h5 file or a SavedModel folder, got {path}")
    import keras

    try:
        model = keras.models.load_model(p, safe_mode=True, compile=False)
    except Exception as exc:
        raise CLIError(f"--model: cannot load {path}: {_first_line(exc)}") from None
    shape = None
    inputs = getattr(model, "inputs", None)
    if inputs and len(inputs) == 1 and all(d is not None for d in inputs[0].shape[1:]):
        shape = tuple(int(d) for d in inputs[0].shape[1:])
    return model, shape


def load_input(path, shape):
    """A float32 batch from ``.npy`` or an image file, checked against the model's input ``shape``."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"--input: no such file: {path}")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            x = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise CLIError(f"--input: cannot read {path} as a .npy array: {_first_line(exc)}") from None
        if x.dtype.kind not in "fiub":
            raise CLIError(f"--input: {path} holds {x.dtype} values, expected numbers")
        x = x.astype(np.float32)
        if shape is not None and tuple(x.shape) == tuple(shape):
            x = x[None]
    elif suffix in (".png", ".jpg", ".jpeg"):
        try:
            from PIL import Image

            with Image.open(p) as im:
                channels = shape[-1] if shape is not None and len(shape) == 3 else 3
                im = im.convert("L" if channels == 1 else "RGB")
                if shape is not None and len(shape) == 3 and im.size != (shape[1], shape[0]):
                    im = im.resize((shape[1], shape[0]), Image.BILINEAR)
                x = np.asarray(im, dtype=np.float32) / 255.0
        except CLIError:
            raise
        except Exception as exc:
            raise CLIError(f"--input: cannot read {path} as an image: {_first_line(exc)}") from None
        if x.ndim == 2:
            x = x[..., None]
        x = x[None]
    else:
        raise CLIError(f"--input: expected a .npy, .png, .jpg or .jpeg file, got {path}")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise CLIError(f"--input: shape mismatch: the model expects examples of shape {tuple(shape)} "
                       f"(batch {(None,) + tuple(shape)}), the input has shape {tuple(x.shape)}")
    return x


def _first_line(exc) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------------------------
# commands


def cmd_methods(args) -> int:
    from .methods import registry

    for spec in registry.specs():
        aliases = registry.aliases_of(spec.name)
        print(spec.name + (f"  (alias: {', '.join(aliases)})" if aliases else "") + f"  {spec.summary}")
    return 0


def cmd_explain(args) -> int:
    import numpy as np

    from . import methods as _methods

    try:
        fn = _methods.resolve_method(args.method)
    except ValueError as exc:
        raise CLIError(f"--method: {exc}".replace("method: ", "", 1)) from None
    try:
        options = json.loads(args.options) if args.options else {}
    except json.JSONDecodeError as exc:
        raise CLIError(f"--options: not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(options, dict):
        raise CLIError("--options: expected a JSON object such as '{\"n_steps\": 32}'")
    out = Path(args.out)
    if out.suffix != ".npy":
        raise CLIError(f"--out: expected a .npy file name, got {args.out}")
    if not out.parent.exists():
        raise CLIError(f"--out: folder {out.parent} does not exist")
    model, shape = load_model(args.model)
    x = load_input(args.input, shape)
    bs = args.batch_size
    parts = []
    starts = range(0, len(x), bs)
    if len(starts) > 1:
        from .demo import _progress

        starts = _progress(starts, desc="explaining", unit="batch")
    for s in starts:
        try:
            attr = fn(model, x[s:s + bs], args.target, **options)
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise CLIError(f"{args.method}: {_first_line(exc)}") from None
        if isinstance(attr, (list, tuple, dict)):
            raise CLIError(f"{args.method}: returned several arrays; the command line handles single-input models")
        parts.append(np.asarray(attr))
    attr = np.concatenate(parts)
    np.save(out, attr)
    print(f"wrote {out} {tuple(attr.shape)}")
    if args.png:
        from . import viz

        if attr.ndim not in (3, 4):
            print("tf-pathattr: note: --png skipped, the inputs are not images", file=sys.stderr)
        else:
            strip = np.concatenate([viz.overlay(x[i], attr[i], "signed") for i in range(len(x))], axis=1)
            png = out.with_suffix(".png")
            viz.save_png(strip, png)
            print(f"wrote {png}")
    return 0


def _beam_available() -> bool:
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        return False
    return True


def cmd_explain_dataset(args, pipeline_args=()) -> int:
    """Explain every record of the input files; write sharded results into ``--out``."""
    from .methods import registry

    try:
        method = registry.canonical(args.method)
    except ValueError as exc:
        raise CLIError(f"--method: {exc}".replace("method: ", "", 1)) from None
    try:
        options = json.loads(args.options) if args.options else {}
    except json.JSONDecodeError as exc:
        raise CLIError(f"--options: not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(options, dict):
        raise CLIError("--options: expected a JSON object such as '{\"n_steps\": 32}'")
    target = args.target
    if target is not None and target != "labels":
        try:
            target = int(target)
        except ValueError:
            raise CLIError(f"--target: expected a class index or 'labels', got {target!r}") from None
    metrics = tuple(m for m in (args.metrics or "").split(",") if m)
    from . import dataset as _ds

    unknown = [m for m in metrics if m not in _ds.METRICS]
    if unknown:
        raise CLIError(f"--metrics: unknown {unknown}; available: {','.join(_ds.METRICS)}")
    try:
        files = _ds.list_files(args.input)
    except FileNotFoundError as exc:
        raise CLIError(f"--input: {_first_line(exc).replace('data: ', '', 1)}") from None
    use_beam = not args.no_beam
    if use_beam and not _beam_available():
        if args.runner or pipeline_args:
            raise CLIError("--runner and Beam pipeline options need apache-beam: pip install 'tf_pathattr[beam]' "
                           "(or run in-process with --no-beam)")
        print("tf-pathattr: note: apache-beam is not installed; explaining in-process without Beam "
              "(pip install 'tf_pathattr[beam]' for Beam runners)", file=sys.stderr)
        use_beam = False
    if not use_beam and pipeline_args:
        raise CLIError(f"unrecognized arguments (Beam pipeline options need Beam): {' '.join(pipeline_args)}")
    model, shape = load_model(args.model)  # one clear error line for a bad --model, before any work
    try:
        if use_beam:
            from .beam import explain_files

            extra = list(pipeline_args) + ([f"--runner={args.runner}"] if args.runner else [])
            summary = explain_files(args.model, files, args.out, method=method, target=target, options=options,
                                    metrics=metrics, batch_size=args.batch_size, num_shards=args.num_shards,
                                    format=args.format, input_shape=shape, pipeline_args=extra,
                                    overwrite=args.overwrite)
            records, results, dead = summary["records"], summary["results"], summary["dead_letters"]
        else:
            res = _ds.explain_dataset(model, files, target, method=method, out=args.out, options=options,
                                      batch_size=args.batch_size, shard_size=args.shard_size, format=args.format,
                                      metrics=metrics, input_shape=shape, overwrite=args.overwrite, progress=True)
            records, results, dead = res.n_records, res.n_results, res.n_dead_letters
            if res.shards_skipped:
                print(f"resumed: {res.shards_skipped} finished shard(s) skipped")
    except (TypeError, ValueError, NotImplementedError, FileNotFoundError) as exc:
        raise CLIError(f"{args.method}: {_first_line(exc)}") from None
    print(f"records {records} = results {results} + dead letters {dead} ({'Beam' if use_beam else 'in-process'})")
    print(f"wrote {args.out}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    info = run_demo(args.out, quick=args.quick, warn=lambda m: print(m, file=sys.stderr))
    out = Path(args.out)
    print(f"digits CNN test accuracy {info['test_accuracy']:.3f}")
    print((out / "metrics.md").read_text())
    print(f"wrote {out / 'attributions.png'}, {out / 'metrics.md'}, {out / 'metrics.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tf-pathattr", description="Path attribution for Keras / TensorFlow models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train (once, cached) a digits CNN and explain it with every method")
    p.add_argument("--out", default="tf_pathattr_demo", help="output folder (default: tf_pathattr_demo)")
    p.add_argument("--quick", action="store_true", help="fewer steps and digits (a smoke run)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("explain", help="explain inputs with one method")
    p.add_argument("--model", required=True, help=".keras / .h5 file or SavedModel folder")
    p.add_argument("--input", required=True, help=".npy array or PNG / JPEG image")
    p.add_argument("--method", required=True, help="method name (see `tf-pathattr methods`)")
    p.add_argument("--out", required=True, help="output .npy file")
    p.add_argument("--target", type=int, default=None, help="class index (default: the predicted class)")
    p.add_argument("--options", default=None, help="method options as JSON, e.g. '{\"n_steps\": 32}'")
    p.add_argument("--png", action="store_true", help="also write signed overlays as <out>.png")
    p.add_argument("--batch-size", type=int, default=32, help="explicands per call (default 32)")
    p.set_defaults(func=cmd_explain)
    p = sub.add_parser("explain-dataset", help="explain every record of image / .npy / TFRecord files "
                       "(Apache Beam, or in-process)")
    p.add_argument("--model", required=True, help=".keras / .h5 file or SavedModel folder")
    p.add_argument("--input", required=True, nargs="+", help="glob patterns, files or folders (PNG / JPEG, .npy, "
                   "TFRecord of tf.train.Example)")
    p.add_argument("--method", required=True, help="method name (see `tf-pathattr methods`)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--target", default=None, help="class index, or 'labels' (TFRecord label feature); "
                   "default: the predicted class")
    p.add_argument("--options", default=None, help="method options as JSON, e.g. '{\"n_steps\": 32}'")
    p.add_argument("--batch-size", type=int, default=32, help="explicands per method call (default 32)")
    p.add_argument("--metrics", default="completeness_gap",
                   help="comma-separated table columns: completeness_gap,deletion_auc,insertion_auc")
    p.add_argument("--format", choices=("npz", "tfrecord"), default="npz", help="attribution shards (default npz)")
    p.add_argument("--runner", default=None, help="Beam runner (DirectRunner, PrismRunner, FlinkRunner, SparkRunner, "
                   "DataflowRunner, ...); default: the local FnApiRunner in multi-processing mode")
    p.add_argument("--num-shards", type=int, default=None, help="Beam: output shards (default: one per 256 files)")
    p.add_argument("--shard-size", type=int, default=None, help="in-process: examples per shard, the unit of "
                   "resumption (default 8 x batch size)")
    p.add_argument("--no-beam", action="store_true", help="explain in-process without Beam (resumable)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.set_defaults(func=cmd_explain_dataset, pipeline_args=True)
    p = sub.add_parser("methods", help="list the available methods")
    p.set_defaults(func=cmd_methods)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "pipeline_args", None) is not True:  # only explain-dataset takes unknown options
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if getattr(args, "batch_size", 1) < 1:
            raise CLIError("--batch-size must be >= 1")
        code = args.func(args, extra) if getattr(args, "pipeline_args", None) is True else args.func(args)
    except CLIError as exc:
        _err(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as exc:  # anything unexpected: still one line, no traceback
        _err(f"{type(exc).__name__}: {_first_line(exc)}")
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
