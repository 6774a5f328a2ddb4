"""A typed user of tf_pathattr: mypy must accept this file (tests/test_typing.py, .ci/run).

Not collected by pytest (no ``test_`` prefix); never run, only type-checked.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo


def explain() -> None:
    model = zoo.smooth_cnn(size=8)
    x = np.zeros((2, 8, 8, 3), np.float32)
    attributions = tpa.integrated_gradients(model, x, 1, n_steps=16, rule="riemann_left", baseline=0.0)
    auto = tpa.integrated_gradients(model, x, [0, 1], n_steps="auto", rtol=1e-3)
    attr, delta = tpa.integrated_gradients(model, x, 1, n_steps=8, return_convergence_delta=True)
    attr2, delta2, details = tpa.integrated_gradients(model, x, 1, return_convergence_delta=True, return_details=True)
    steps: dict = details
    tensor: tf.Tensor = delta2
    guided = tpa.guided_integrated_gradients(model, x, 1, n_steps=20, fraction=0.25, max_dist=0.02)
    blurred, blur_delta = tpa.blur_integrated_gradients(model, x, 1, max_sigma=10.0, return_convergence_delta=True)
    smooth = tpa.noise_tunnel("ig", model, x, 1, nt_samples=4, stdevs=0.1, n_steps=8)
    plain = tpa.gradients(model, x, 1, multiply_by_inputs=True)
    print(attributions, auto, attr, delta, attr2, steps, tensor, guided, blurred, blur_delta, smooth, plain)
