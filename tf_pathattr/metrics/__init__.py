"""Evaluation metrics for attributions (``tpa.metrics``)."""
from .aupc import aupc  # noqa: F401
from .smoothness import total_variation  # noqa: F401
