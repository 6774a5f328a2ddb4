"""The shared engine: target scoring, the compiled gradient kernel, chunking, quadrature, input checks."""

from . import gradients, quadrature, shapes, targets  # noqa: F401
from .quadrature import RULES  # noqa: F401
from .quadrature import quadrature as quadrature_rule
