"""Importing TensorFlow: a clear error when it is missing, and a quiet import for the command line.

``tf_pathattr`` declares no TensorFlow distribution in its core requirements (``tensorflow``,
``tensorflow-cpu`` and ``tensorflow[and-cuda]`` are different distributions of the same import
name, and pip would install a second one over the user's). :func:`import_tensorflow` runs first in
``tf_pathattr/__init__.py``: it raises an :class:`ImportError` that says what to install when no
TensorFlow (or no Keras 3) is importable.

When the interpreter runs the ``tf-pathattr`` command (the console script, or ``python -m
tf_pathattr.cli``), the package is imported *before* the command's ``main`` runs, so this is the
last point before TensorFlow loads. There, unless ``--verbose`` is given, TensorFlow's C++ INFO
lines are silenced: ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2, and the lines the native libraries
print while loading (before absl's logging is initialised, so that variable does not reach them:
oneDNN, ``cpu_feature_guard``) are filtered out of stderr. Warnings and errors pass through.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

MIN_TENSORFLOW = (2, 16)

INSTALL_HINT = (
    "install one TensorFlow distribution next to it: pip install 'tf_pathattr[cpu]' (tensorflow-cpu, the small "
    "CPU wheel), 'tf_pathattr[gpu]' (tensorflow[and-cuda]) or plain 'tensorflow' (Colab and most GPU images "
    "already have it)"
)

# Lines the TensorFlow / XLA native libraries print at INFO level (absl / glog format: I + MMDD or I0000),
# the absl notice that precedes them, and the continuation line of the CPU-feature notice.
_INFO_LINE = re.compile(
    r"^(I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags)"
)


def running_as_command(argv=None, orig_argv=None) -> bool:
    """True when this interpreter runs the ``tf-pathattr`` command (console script or ``-m tf_pathattr.cli``)."""
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    for i, arg in enumerate(orig_argv):
        if arg == "-m":
            return i + 1 < len(orig_argv) and orig_argv[i + 1] == "tf_pathattr.cli"
        if arg.startswith("-m") and not arg.startswith("--"):
            return arg[2:] == "tf_pathattr.cli"
    name = os.path.basename(argv[0]) if argv else ""
    return name in ("tf-pathattr", "tf-pathattr.exe", "tf-pathattr-script.py")


def is_info_line(line: str) -> bool:
    """True for a TensorFlow native INFO line (what the command hides unless ``--verbose``)."""
    return bool(_INFO_LINE.match(line))


def _quiet_import():
    """Import TensorFlow with fd 2 captured; write back every line that is not an INFO line.

    The command also sets ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it): TensorFlow's native
    code logs harmless notices at ERROR level while running (e.g. "oneDNN supports DT_INT32 only on
    platforms with AVX-512. Falling back to ..."); Python errors are raised as usual.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr file descriptor: import as usual
        import tensorflow  # noqa: F401

        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            try:
                sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            kept = [ln for ln in text.splitlines() if ln.strip() and not is_info_line(ln)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def import_tensorflow():
    """Import TensorFlow and Keras 3, or raise an ImportError that says what to install."""
    quiet = "tensorflow" not in sys.modules and running_as_command() and "--verbose" not in sys.argv[1:]
    try:
        if quiet:
            _quiet_import()
        import tensorflow as tf
    except ModuleNotFoundError as exc:
        if exc.name != "tensorflow":
            raise
        raise ImportError(
            f"tf_pathattr needs TensorFlow {MIN_TENSORFLOW[0]}.{MIN_TENSORFLOW[1]} or newer, and none "
            f"is installed; {INSTALL_HINT}"
        ) from exc
    version = tuple(int(v) for v in re.findall(r"\d+", tf.__version__)[:2])
    if version < MIN_TENSORFLOW:
        raise ImportError(
            f"tf_pathattr needs TensorFlow {MIN_TENSORFLOW[0]}.{MIN_TENSORFLOW[1]} or newer (with Keras 3),"
            f" found {tf.__version__}; upgrade it: pip install -U tensorflow (or tensorflow-cpu, "
            f"whichever is installed)"
        )
    import keras

    if int(keras.__version__.split(".")[0]) < 3:
        raise ImportError(f"tf_pathattr needs Keras 3, found keras {keras.__version__}; pip install -U 'keras>=3'")
    return tf
