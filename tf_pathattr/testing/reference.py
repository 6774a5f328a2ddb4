"""Independent references for parity tests: the PAIR `saliency` package driven by a TF gradient.

`saliency` 0.2.1 calls `np.quantile(interpolation=...)` and `np.trapz`, both removed in numpy 2.4;
importing this module shims them (``np.trapz = np.trapezoid``; ``np.quantile`` accepting ``interpolation=``)
instead of pinning numpy. The library never imports it: tests and benchmarks do, explicitly.
"""

import inspect

import numpy as np
import tensorflow as tf


def _install_numpy_shims():
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    if "interpolation" not in inspect.signature(np.quantile).parameters and not getattr(
        np.quantile, "_tpa_shim", False
    ):
        original = np.quantile

        def quantile(a, q, *args, interpolation=None, **kwargs):
            if interpolation is not None:
                kwargs["method"] = interpolation
            return original(a, q, *args, **kwargs)

        quantile._tpa_shim = True
        np.quantile = quantile


_install_numpy_shims()

import saliency.core as saliency  # noqa: E402


def call_model_function(model, target: int, softmax: bool = False):
    """A PAIR `call_model_function` computing d(model logit[target]) / d(input) with one traced function."""
    spec = [tf.TensorSpec([None] + list(model.input_shape[1:]), tf.float32)]

    @tf.function(input_signature=spec)
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=False)
            if softmax:
                y = tf.nn.softmax(y)
            s = tf.reduce_sum(y[:, target])
        return tape.gradient(s, x)

    def fn(x_value_batch, call_model_args=None, expected_keys=None):
        g = grad(tf.convert_to_tensor(np.asarray(x_value_batch), tf.float32)).numpy()
        return {saliency.INPUT_OUTPUT_GRADIENTS: g.astype(np.asarray(x_value_batch).dtype)}

    fn.grad = grad
    return fn
