"""Symmetry preservation (Sundararajan et al. 2017, Thm. 1): if F is symmetric in features i and j,
and the explicand and the path start agree on them (x_i = x_j, x'_i = x'_j), then a
symmetry-preserving method gives A_i = A_j. The straight path has it (IG, Split IG, IDG's weighted
straight path); path methods whose path treats tied features alike keep it (Guided IG selects by
|gradient|, equal for i and j; IG2's gradient steps move i and j together from symmetric references;
Expected Gradients with a background symmetric in i and j). Noise-based methods (SmoothTaylor, the
noise tunnel) only in expectation, so they are not listed.
"""

import keras
import numpy as np
import pytest

import tf_pathattr as tpa


def symmetric_model():
    """F(x) = Dense(tanh(Dense(x))) where features 0 and 1 have identical incoming weights."""
    keras.utils.set_random_seed(11)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(3)])
    w, b = model.layers[0].get_weights()
    w[1] = w[0]
    model.layers[0].set_weights([w, b])
    return model


X = np.random.default_rng(4).uniform(-1.0, 1.0, size=(4, 5)).astype(np.float32)
X[:, 1] = X[:, 0]
SYM_POOL = np.random.default_rng(5).uniform(-1.0, 1.0, size=(3, 5)).astype(np.float32)
SYM_POOL[:, 1] = SYM_POOL[:, 0]

CASES = {
    "integrated_gradients": {"n_steps": 16},
    "split_integrated_gradients": {"n_steps": 16},
    "integrated_decision_gradients": {"n_steps": 16},
    "guided_integrated_gradients": {"n_steps": 16},
    "ig2": {"references": SYM_POOL, "step_size": 0.05, "n_steps": 16},
    "expected_gradients": {"background": SYM_POOL, "n_samples": 16, "seed": 0},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_symmetric_features_get_equal_attributions(name):
    model = symmetric_model()
    out = tpa.attribute(model, X, [0, 1, 2, 0], method=name, **CASES[name])
    maps = out if isinstance(out, tuple) else (out,)
    for a in maps:
        a = np.asarray(a)
        assert np.abs(a[:, 0]).max() > 1e-4  # not trivially zero
        np.testing.assert_allclose(a[:, 0], a[:, 1], rtol=1e-5, atol=1e-7)


def test_the_check_can_fail_when_the_model_is_not_symmetric():
    model = symmetric_model()
    w, b = model.layers[0].get_weights()
    w[1] = -0.5 * w[0]
    model.layers[0].set_weights([w, b])
    a = tpa.integrated_gradients(model, X, 0, n_steps=16).numpy()
    assert np.abs(a[:, 0] - a[:, 1]).max() > 1e-3
