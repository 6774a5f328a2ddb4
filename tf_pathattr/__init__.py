"""tf_pathattr: path attribution (Integrated Gradients and its successors) for Keras 3 / TensorFlow."""
from . import baselines  # noqa: F401
from . import data, metrics  # noqa: F401
from .methods import METHODS, attribute  # noqa: F401
from .methods.integrated_gradients import integrated_gradients  # noqa: F401

__version__ = "0.1.0"
