"""Faithfulness and quality metrics for attributions (docs/evaluation.md).

Every metric takes ``(model, inputs, attributions, target, ...)`` (``sensitivity_max`` takes an
explainer first and no attributions; ``total_variation`` only the attributions) and returns
per-example values plus the curve where there is one. All of them read the model's outputs by one
rule (:mod:`._scoring`: the output kind is detected, ``score=`` overrides it) and split images,
sequences and tabular rows into units by one rule (:mod:`._common`, ``data_format`` / ``units``).
"""

from .ablation import meb_ablation  # noqa: F401
from .aupc import aupc  # noqa: F401
from .axioms import completeness_gap  # noqa: F401
from .deletion_insertion import CurveResult, deletion, insertion  # noqa: F401
from .infidelity import infidelity, sensitivity_max  # noqa: F401
from .mu_fidelity import mu_fidelity  # noqa: F401
from .pic import ComputePicMetricError, compute_pic_metric, pic  # noqa: F401
from .randomization import RandomizationResult, model_randomization  # noqa: F401
from .road import road  # noqa: F401
from .smoothness import total_variation  # noqa: F401
