"""What every ``tf-pathattr`` command shares: the one-line error, flag-prefixed loading, ``--options``.

Kept apart from :mod:`tf_pathattr.cli` so the command modules (:mod:`tf_pathattr.cli_dataset`) do not
import the command line itself.
"""

from __future__ import annotations

import json
import sys

from . import files as _files

__all__ = ["CLIError", "EXIT_ERROR", "err", "prefixed", "load_model", "load_preprocess", "method_options"]

EXIT_ERROR = 1
first_line = _files.first_line


class CLIError(Exception):
    """An error reported as one line, without a traceback."""


def err(msg: str) -> None:
    print(f"tf-pathattr: error: {msg}", file=sys.stderr)


def prefixed(flag: str, fn, *args):
    """``fn(*args)`` with its ``ValueError`` / ``FileNotFoundError`` turned into a CLIError naming ``flag``."""
    try:
        return fn(*args)
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(f"{flag}: {exc}") from None


def load_model(path):
    """``(model, per-example input shape or None)``: :func:`tf_pathattr.files.load_model` for ``--model``."""
    return prefixed("--model", _files.load_model, path)


def load_preprocess(spec: str):
    """The function named by ``module:function`` (:func:`tf_pathattr.files.load_preprocess`)."""
    return prefixed("--preprocess", _files.load_preprocess, spec)


def method_options(text):
    try:
        options = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise CLIError(f"--options: not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(options, dict):
        raise CLIError("--options: expected a JSON object such as '{\"n_steps\": 32}'")
    return options
