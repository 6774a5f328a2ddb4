"""Beam pipeline options for the tf_pathattr job: checked against Beam's own option list, local defaults."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["check_pipeline_args", "default_pipeline_args", "LOCAL_RUNNERS"]


LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner")


def _beam_option_parser():
    """An argument parser holding every option of every Beam ``PipelineOptions`` class (Beam's own list)."""
    from apache_beam.options import pipeline_options as po

    try:
        parser = po._BeamArgumentParser(allow_abbrev=False)
    except AttributeError:  # pragma: no cover - a Beam without the private parser
        import argparse

        parser = argparse.ArgumentParser(allow_abbrev=False)
    seen, todo = set(), list(po.PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        try:
            cls._add_argparse_args(parser)
        except Exception:  # an option two classes declare: argparse refuses the second
            continue
    return parser


def check_pipeline_args(args: Sequence[str]) -> list[str]:
    """``args`` when Beam knows every one of them; else ``ValueError`` naming the unknown ones."""
    args = [str(a) for a in args]
    parser = _beam_option_parser()
    try:
        _, unknown = parser.parse_known_args(args)
    except SystemExit:  # argparse: a known option with a bad value
        raise ValueError(f"Beam pipeline options: cannot parse {' '.join(args)}") from None
    if unknown:
        raise ValueError(
            f"unknown option(s) {' '.join(unknown)}: neither a tf-pathattr option nor a Beam pipeline option"
        )
    return args


def _runner_of(args: Sequence[str]) -> str | None:
    for i, a in enumerate(args):
        if a.startswith("--runner="):
            return a.split("=", 1)[1]
        if a == "--runner" and i + 1 < len(args):
            return args[i + 1]
    return None


def default_pipeline_args(args: Sequence[str] = ()) -> list[str]:
    """``args`` plus the local defaults: Beam's Python runner (``FnApiRunner``) in multi-threading mode,
    one thread per core, unless ``args`` choose a runner or a mode.

    Multi-threading keeps one process and one model (TensorFlow releases the GIL); multi-processing
    (``--direct_running_mode=multi_processing``) starts one Python per worker, each importing
    TensorFlow and loading the model, and is slower for jobs shorter than minutes
    (``docs/dataset_scale.md``, ``benchmarks/RESULTS.md``)."""
    args = list(args)
    given = " ".join(args)
    if _runner_of(args) is None:
        args.append("--runner=FnApiRunner")
    if _runner_of(args) in LOCAL_RUNNERS:
        if "--direct_running_mode" not in given:
            args.append("--direct_running_mode=multi_threading")
        if "--direct_num_workers" not in given and "--direct_running_mode=in_memory" not in args:
            args.append(f"--direct_num_workers={_cores()}")
    return args


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
