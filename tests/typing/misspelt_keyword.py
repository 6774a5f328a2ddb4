"""A misspelt keyword: mypy must reject this file (tests/test_typing.py checks that it does, and why)."""

from __future__ import annotations

import numpy as np

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo

model = zoo.smooth_cnn(size=8)
x = np.zeros((2, 8, 8, 3), np.float32)
tpa.integrated_gradients(model, x, 1, n_step=16)  # n_steps
tpa.gradients(model, x, 1, multiply_by_input=True)  # multiply_by_inputs (a method without overloads)
