"""Faithfulness and quality metrics for attributions (``metrics.md``).

Every metric takes ``(model, inputs, attributions, target, ...)`` and returns per-example values
plus the curve where there is one.
"""
from .ablation import meb_ablation  # noqa: F401
from .axioms import completeness_gap  # noqa: F401
from .deletion_insertion import CurveResult, deletion, insertion  # noqa: F401
from .pic import ComputePicMetricError, compute_pic_metric, pic  # noqa: F401
