"""The installed peer libraries the guard compares against: PAIR ``saliency`` (captum is PyTorch-only).

``saliency`` 0.2.1 calls ``np.quantile(interpolation=...)`` and ``np.trapz``, both removed in numpy
2.4; :func:`pair_saliency` installs the two aliases before importing it (benchmark processes only).
"""

from __future__ import annotations

import importlib.util
import inspect

import numpy as np
import tensorflow as tf


def available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def pair_saliency():
    """``saliency.core`` with the numpy 2.4 aliases it needs, or ``None`` when it is not installed."""
    if not available("saliency"):
        return None
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    if "interpolation" not in inspect.signature(np.quantile).parameters and not getattr(np.quantile, "_shim", False):
        original = np.quantile

        def quantile(a, q, *args, interpolation=None, **kwargs):
            if interpolation is not None:
                kwargs["method"] = interpolation
            return original(a, q, *args, **kwargs)

        quantile._shim = True
        np.quantile = quantile
    import saliency.core as saliency

    return saliency


def pair_gradient_function(saliency, model, target: int):
    """PAIR's ``call_model_function``: d logit[target] / d input from one compiled function (any batch)."""
    spec = [tf.TensorSpec([None] + list(model.input_shape[1:]), tf.float32)]

    @tf.function(input_signature=spec)
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            s = tf.reduce_sum(model(x, training=False)[:, target])
        return tape.gradient(s, x)

    def fn(x_value_batch, call_model_args=None, expected_keys=None):
        g = grad(tf.convert_to_tensor(np.asarray(x_value_batch), tf.float32)).numpy()
        return {saliency.INPUT_OUTPUT_GRADIENTS: g}

    return fn
