import numpy as np
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo


def test_linear_gradients_and_gradient_times_input(rng):
    model, w = zoo.linear_model(rng.normal(size=(4, 3)))
    x = rng.normal(size=(2, 4)).astype("float32")
    np.testing.assert_allclose(tpa.gradients(model, x, 2), np.broadcast_to(w[:, 2], (2, 4)), rtol=1e-6)
    np.testing.assert_allclose(tpa.gradients(model, x, 2, multiply_by_inputs=True), x * w[:, 2], rtol=1e-6)


def test_matches_tape(toy_cnn, rng):
    x = tf.constant(rng.random((2, 8, 8, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        s = tf.reduce_sum(toy_cnn(x)[:, 1])
    np.testing.assert_allclose(tpa.gradients(toy_cnn, x, 1), tape.gradient(s, x), rtol=1e-6)
