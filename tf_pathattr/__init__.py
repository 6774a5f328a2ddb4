"""tf_pathattr: path attribution (Integrated Gradients and its successors) for Keras 3 / TensorFlow.

Every method is a function ``method(model, inputs, target=None, **options) -> attributions``
compiled as one ``tf.function`` (path loop included); ``attribute(..., method=NAME)`` dispatches
by name and :data:`METHODS` lists the names.
"""

from ._tensorflow import import_tensorflow as _import_tensorflow
from ._version import __version__ as __version__

_import_tensorflow()  # a clear ImportError without TensorFlow; quiet when running the tf-pathattr command

from . import baselines, callbacks, data, dataset, metrics, references, saved_model, text, viz  # noqa: F401
from .dataset import explain_dataset  # noqa: F401
from .engine.layers import layer_activations  # noqa: F401
from .methods import METHODS, attribute  # noqa: F401
from .methods.blur_ig import blur_integrated_gradients  # noqa: F401
from .methods.dig import discretized_integrated_gradients  # noqa: F401
from .methods.expected_gradients import expected_gradients  # noqa: F401
from .methods.gradients import gradients  # noqa: F401
from .methods.guided_ig import guided_ig, guided_integrated_gradients  # noqa: F401
from .methods.agi import adversarial_gradient_integration, agi  # noqa: F401
from .methods.idg import integrated_decision_gradients  # noqa: F401
from .methods.idgi import idgi, important_direction_gradient_integration  # noqa: F401
from .methods.ig2 import ig2  # noqa: F401
from .methods.integrated_gradients import integrated_gradients  # noqa: F401
from .methods.noise_tunnel import noise_tunnel  # noqa: F401
from .methods.sig import sequential_integrated_gradients  # noqa: F401
from .methods.smooth_taylor import smooth_taylor  # noqa: F401
from .methods.split_ig import split_integrated_gradients  # noqa: F401
from .methods.xrai import xrai  # noqa: F401
from .report import report  # noqa: F401, E402
