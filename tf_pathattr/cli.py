"""The ``tf-pathattr`` command.

::

    tf-pathattr demo [--out DIR] [--quick]
    tf-pathattr explain --model PATH --input FILE --method NAME --out FILE.npy|FILE.png|DIR
                        [--target N] [--options JSON] [--scale RANGE | --preprocess MODULE:FUNCTION]
                        [--png] [--batch-size N]
    tf-pathattr methods
    tf-pathattr explain-dataset --model M --input GLOB|FILE [...] --method NAME --out DIR
                        [--scale RANGE | --preprocess MODULE:FUNCTION] [--overwrite]
                        [--runner FnApiRunner|DirectRunner|FlinkRunner|SparkRunner|DataflowRunner
                         [beam pipeline options]]
    (every command takes --verbose: show TensorFlow's C++ INFO lines, hidden by default)

``explain`` reads a ``.keras`` / ``.h5`` / ``.hdf5`` model (loaded with Keras' safe mode on) or a
SavedModel folder (its ``serve`` endpoint), and a ``.npy`` array (a batch ``[B, *S]`` or one
example ``S``, used as it is) or a PNG / JPEG image (converted to the model's channel count,
resized to its input size when that is known, then brought to the model's input range with
``--scale`` (default ``0,1``) or ``--preprocess module:function``). ``--out`` ending in ``.npy``
writes the attributions, ``.png`` a strip of signed overlays, a folder both
(``attributions.npy``, ``attributions.png``). The model's predicted class and probability are
printed with the result. Errors are one line on stderr and a non-zero exit status.

``explain-dataset`` explains every record of image / ``.npy`` / TFRecord files into one resumable
output folder, in-process by default (:func:`tf_pathattr.dataset.explain_dataset`, the fastest on one
machine: ``docs/dataset_scale.md``), or on Apache Beam when ``--runner`` or Beam pipeline options
(``--project=...``, ``--num_workers=...``) are given (:func:`tf_pathattr.dataset.beam.explain_files`).
Options that are neither tf-pathattr's nor Beam's are an error naming them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import files as _files
from ._cli_common import EXIT_ERROR, CLIError, load_model, prefixed  # noqa: F401  (re-exported)
from ._cli_common import err as _err
from ._cli_common import load_preprocess as load_preprocess
from ._cli_common import method_options as _method_options
from .cli_dataset import add_parser as _add_dataset_parser
from .cli_dataset import cmd_explain_dataset  # noqa: F401  (re-exported)

# --------------------------------------------------------------------------------------------
# loading


MODEL_SUFFIXES = _files.MODEL_SUFFIXES
SCALES = _files.SCALES


def is_image_file(path) -> bool:
    return _files.is_image_file(path)


def read_image(path, shape):
    """Pixels ``[1, H, W, C]`` in 0..255 (:func:`tf_pathattr.files.read_image`) for ``--input``."""
    return prefixed("--input", _files.read_image, path, shape)


def scale_pixels(pixels, scale: str):
    """:func:`tf_pathattr.files.scale_pixels` for ``--scale``."""
    try:
        return _files.scale_pixels(pixels, scale)
    except ValueError as exc:
        raise CLIError("--" + str(exc)) from None


def apply_preprocess(fn, pixels, spec: str):
    """``fn(pixels 0..255 float32 [B, H, W, C]) -> model inputs`` with the batch size kept."""
    return prefixed("--preprocess", _files.apply_preprocess, fn, pixels, spec)


def load_input(path, shape, scale=None, preprocess=None):
    """``(x, display)``: the float32 batch for the model, and images in [0, 1] for pictures (or ``None``).

    ``.npy`` arrays are used as they are; images are read as 0..255 pixels and mapped to the model's
    input range by ``scale`` (default ``"0,1"``) or ``preprocess`` (``module:function``).
    """

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"--input: no such file: {path}")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        if scale is not None or preprocess is not None:
            flag = "--scale" if scale is not None else "--preprocess"
            raise CLIError(f"{flag}: applies to image inputs (.png, .jpg); a .npy input is used as it is")
        x = prefixed("--input", _files.read_npy, p)
        if shape is not None and tuple(x.shape) == tuple(shape):
            x = x[None]
        display = x if x.ndim in (3, 4) else None
    elif suffix in _files.IMAGE_SUFFIXES:
        pixels = read_image(p, shape)
        if preprocess is not None:
            x = apply_preprocess(load_preprocess(preprocess), pixels, preprocess)
        else:
            x = scale_pixels(pixels, scale or "0,1")
        display = pixels / 255.0
    else:
        raise CLIError(f"--input: expected a .npy, .png, .jpg or .jpeg file, got {path}")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise CLIError(
            f"--input: shape mismatch: the model expects examples of shape {tuple(shape)} "
            f"(batch {(None,) + tuple(shape)}), the input has shape {tuple(x.shape)}"
        )
    return x, display


_first_line = _files.first_line


# --------------------------------------------------------------------------------------------
# commands


def cmd_methods(args) -> int:
    from .methods import registry

    for spec in registry.specs():
        aliases = registry.aliases_of(spec.name)
        print(spec.name + (f"  (alias: {', '.join(aliases)})" if aliases else "") + f"  {spec.summary}")
    return 0


def resolve_outputs(out, png_flag: bool = False):
    """``(npy path or None, png path or None)`` for ``--out``: a ``.npy`` file, a ``.png`` file or a folder."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".npy", ".png"):
        if not out.parent.exists():
            raise CLIError(f"--out: folder {out.parent} does not exist")
        if suffix == ".png":
            return None, out
        return out, (out.with_suffix(".png") if png_flag else None)
    if suffix and not out.is_dir():
        raise CLIError(f"--out: expected a .npy file, a .png file or a folder, got {out}")
    if not out.parent.exists():
        raise CLIError(f"--out: folder {out.parent} does not exist")
    return out / "attributions.npy", out / "attributions.png"


def predictions(model, x, batch_size: int):
    """``(classes [B], probabilities [B])`` for a classifier with outputs ``[B, C]``, else ``None``.

    Outputs that are already probabilities (rows in [0, 1] summing to 1; a single unit in [0, 1]) are
    read as they are; other outputs are taken as logits (softmax; sigmoid for a single unit).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    parts = []
    for s in range(0, len(x), batch_size):
        chunk = tf.convert_to_tensor(x[s : s + batch_size])
        out = model(chunk, training=False) if isinstance(model, keras.layers.Layer) else model(chunk)
        if isinstance(out, dict) and len(out) == 1:
            out = next(iter(out.values()))
        if isinstance(out, (list, tuple, dict)):
            return None
        parts.append(np.asarray(out, np.float64))
    out = np.concatenate(parts)
    if out.ndim != 2:
        return None
    if out.shape[1] == 1:
        z = out[:, 0]
        prob = z if np.all((z >= 0) & (z <= 1)) else 1.0 / (1.0 + np.exp(-z))
        return np.zeros(len(z), np.int64), prob
    is_prob = np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3)
    if not is_prob:
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out = out / out.sum(axis=1, keepdims=True)
    classes = out.argmax(axis=1)
    return classes, out[np.arange(len(out)), classes]


def report_predictions(pred, target, limit: int = 20) -> None:
    if pred is None:
        return
    classes, prob = pred
    for i in range(min(len(classes), limit)):
        explained = classes[i] if target is None else target
        print(
            f"example {i}: predicted class {int(classes[i])} (probability {float(prob[i]):.4f}), "
            f"explained class {int(explained)}"
        )
    if len(classes) > limit:
        print(f"... {len(classes) - limit} more examples")


def explain_batches(fn, model, x, target, options: dict, batch_size: int, method_name: str):
    """Attributions for ``x`` in batches of ``batch_size`` (one array, single-input models)."""
    import numpy as np

    parts = []
    starts = range(0, len(x), batch_size)
    if len(starts) > 1:
        from ._progress import progress

        starts = progress(starts, desc="explaining", unit="batch")
    for s in starts:
        try:
            attr = fn(model, x[s : s + batch_size], target, **options)
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise CLIError(f"{method_name}: {_first_line(exc)}") from None
        if isinstance(attr, (list, tuple, dict)):
            raise CLIError(f"{method_name}: returned several arrays; the command line handles single-input models")
        parts.append(np.asarray(attr))
    return np.concatenate(parts)


def write_picture(path, display, attr) -> bool:
    """A strip of signed overlays, one per example; ``False`` when the inputs are not images."""
    import numpy as np

    from . import viz

    if display is None or attr.ndim not in (3, 4) or display.shape[: attr.ndim - 1] != attr.shape[: attr.ndim - 1]:
        return False
    strip = np.concatenate([viz.overlay(display[i], attr[i], "signed") for i in range(len(attr))], axis=1)
    viz.save_png(strip, path)
    return True


def cmd_explain(args) -> int:
    import numpy as np

    from . import methods as _methods

    try:
        fn = _methods.resolve_method(args.method)
    except ValueError as exc:
        raise CLIError(f"--method: {exc}".replace("method: ", "", 1)) from None
    options = _method_options(args.options)
    if args.scale is not None and args.preprocess is not None:
        raise CLIError("--scale and --preprocess: give one of them, not both")
    npy_path, png_path = resolve_outputs(args.out, args.png)
    model, shape = load_model(args.model)
    x, display = load_input(args.input, shape, scale=args.scale, preprocess=args.preprocess)
    if npy_path is None and display is None:
        raise CLIError(
            f"--out: a .png picture needs image inputs, the input has shape {tuple(x.shape)}; write a .npy file instead"
        )
    attr = explain_batches(fn, model, x, args.target, options, args.batch_size, args.method)
    if is_image_file(args.input):
        how = f"--preprocess {args.preprocess}" if args.preprocess else f"--scale {args.scale or '0,1'}"
        print(f"input {args.input}: image scaled with {how}")
    try:
        report_predictions(predictions(model, x, args.batch_size), args.target)
    except Exception as exc:  # a summary line must never hide the result
        print(f"tf-pathattr: note: no prediction summary ({type(exc).__name__}: {_first_line(exc)})", file=sys.stderr)
    if npy_path is not None:
        npy_path.parent.mkdir(exist_ok=True)
        np.save(npy_path, attr)
        print(f"wrote {npy_path} {tuple(attr.shape)}")
    if png_path is not None:
        png_path.parent.mkdir(exist_ok=True)
        if write_picture(png_path, display, attr):
            print(f"wrote {png_path}")
        elif npy_path is None:
            raise CLIError(f"--out: cannot draw attributions of shape {tuple(attr.shape)} over the input images")
        else:
            print("tf-pathattr: note: picture skipped, the inputs are not images", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    """``tf-pathattr report``: :func:`tf_pathattr.report.report` on a model file and an input file."""
    from . import methods as _methods
    from .report import report

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise CLIError(f"--out: expected an .html file, got {args.out}")
    if not out.parent.exists():
        raise CLIError(f"--out: folder {out.parent} does not exist")
    if args.scale is not None and args.preprocess is not None:
        raise CLIError("--scale and --preprocess: give one of them, not both")
    names = [n for part in (args.methods or []) for n in part.split(",") if n] or None
    for name in names or ():
        try:
            _methods.registry.canonical(name)
        except ValueError as exc:
            raise CLIError(f"--methods: {exc}".replace("method: ", "", 1)) from None
    options = _method_options(args.options)
    if any(not isinstance(v, dict) for v in options.values()):
        raise CLIError(
            '--options: expected a JSON object per method, e.g. \'{"integrated_gradients": {"n_steps": 32}}\''
        )
    labels = None
    if args.labels is not None:
        try:
            labels = [line.strip() for line in Path(args.labels).read_text(encoding="utf-8").splitlines()]
        except OSError as exc:
            raise CLIError(f"--labels: cannot read {args.labels}: {_first_line(exc)}") from None
    model, shape = load_model(args.model)
    x, display = load_input(args.input, shape, scale=args.scale, preprocess=args.preprocess)
    if is_image_file(args.input):
        how = f"--preprocess {args.preprocess}" if args.preprocess else f"--scale {args.scale or '0,1'}"
        print(f"input {args.input}: image scaled with {how}")
    try:
        path = report(
            model,
            x,
            args.target,
            methods=names,
            out=out,
            labels=labels,
            max_examples=args.max_examples,
            sanity_check=not args.no_sanity_check,
            options=options,
            display=display,
            fast=args.fast,
            progress=True,
        )
    except (TypeError, ValueError) as exc:
        raise CLIError(_first_line(exc)) from None
    print(f"wrote {path}")
    return 0


def _warn_line(message: str) -> None:
    """One warning line on stderr, on a line of its own even while a progress bar is drawn there."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the dev extra
        print(message, file=sys.stderr)
    else:
        tqdm.write(message, file=sys.stderr)


def cmd_demo(args) -> int:
    from .demo import run_demo

    info = run_demo(args.out, quick=args.quick, warn=_warn_line)
    out = Path(args.out)
    print(f"digits CNN test accuracy {info['test_accuracy']:.3f}")
    print((out / "metrics.md").read_text())
    print(f"wrote {out / 'attributions.png'}, {out / 'metrics.md'}, {out / 'metrics.json'}")
    return 0


def _common_options(default) -> argparse.ArgumentParser:
    """Options every command takes (before or after the command name)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--verbose", action="store_true", default=default, help="show TensorFlow's C++ INFO lines (hidden by default)"
    )
    return p


def _add_image_input_options(p) -> None:
    """``--scale``, ``--preprocess`` and ``--target``: how ``explain`` and ``report`` read an image and pick the class."""
    p.add_argument(
        "--scale",
        choices=SCALES,
        default=None,
        help="image inputs: the model's input range, 0,1 (default) | -1,1 | 0,255 | caffe | torch",
    )
    p.add_argument(
        "--preprocess",
        default=None,
        metavar="MODULE:FUNCTION",
        help="image inputs: a function mapping 0..255 pixels [B, H, W, C] to model inputs",
    )
    p.add_argument("--target", type=int, default=None, help="class index (default: the predicted class)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tf-pathattr",
        description="Path attribution for Keras / TensorFlow models.",
        parents=[_common_options(False)],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = [_common_options(argparse.SUPPRESS)]
    p = sub.add_parser(
        "demo", parents=common, help="train (once, cached) a digits CNN and explain it with every method"
    )
    p.add_argument("--out", default="tf_pathattr_demo", help="output folder (default: tf_pathattr_demo)")
    p.add_argument("--quick", action="store_true", help="fewer steps and digits (a smoke run)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("explain", parents=common, help="explain inputs with one method")
    p.add_argument("--model", required=True, help=".keras / .h5 / .hdf5 file or SavedModel folder")
    p.add_argument("--input", required=True, help=".npy array (used as it is) or PNG / JPEG image")
    p.add_argument("--method", required=True, help="method name (see `tf-pathattr methods`)")
    p.add_argument(
        "--out", required=True, help="FILE.npy (attributions), FILE.png (signed overlays) or a folder (both)"
    )
    _add_image_input_options(p)
    p.add_argument("--options", default=None, help="method options as JSON, e.g. '{\"n_steps\": 32}'")
    p.add_argument("--png", action="store_true", help="with --out FILE.npy: also write signed overlays as FILE.png")
    p.add_argument("--batch-size", type=int, default=32, help="explicands per call (default 32)")
    p.set_defaults(func=cmd_explain)
    p = sub.add_parser("report", parents=common, help="one HTML page comparing the methods on a model")
    p.add_argument("--model", required=True, help=".keras / .h5 / .hdf5 file or SavedModel folder")
    p.add_argument("--input", required=True, help=".npy array (used as it is) or PNG / JPEG image")
    p.add_argument("--out", default="tf_pathattr_report.html", help="the HTML file (default tf_pathattr_report.html)")
    p.add_argument("--methods", nargs="+", default=None, help="method names (default: every method that applies)")
    p.add_argument("--labels", default=None, help="text file with one class name per line")
    _add_image_input_options(p)
    p.add_argument("--options", default=None, help='per-method options as JSON, e.g. \'{"ig": {"n_steps": 32}}\'')
    p.add_argument("--max-examples", type=int, default=16, help="explain at most this many examples (default 16)")
    p.add_argument("--no-sanity-check", action="store_true", help="skip the model-randomization sanity check")
    p.add_argument("--fast", action="store_true", help="the registry's small options (a quick look)")
    p.set_defaults(func=cmd_report)
    _add_dataset_parser(sub, common)
    p = sub.add_parser("methods", parents=common, help="list the available methods")
    p.set_defaults(func=cmd_methods)
    return parser


def _attach_negative_values(argv):
    """``--scale -1,1`` -> ``--scale=-1,1`` (argparse would read ``-1,1`` as an option name)."""
    out = list(argv)
    for i in range(len(out) - 1):
        if out[i] == "--scale" and out[i + 1].startswith("-"):
            out[i : i + 2] = [f"--scale={out[i + 1]}", ""]
    return [a for a in out if a != ""]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser()
    args, extra = parser.parse_known_args(_attach_negative_values(argv))
    if extra and getattr(args, "pipeline_args", None) is not True:  # only explain-dataset takes unknown options
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not args.verbose:  # the import of tf_pathattr (before main) already filtered the native start-up lines
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
