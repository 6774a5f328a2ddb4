"""Small, fast options for every method name, so workflow tests run through ``tpa.METHODS``.

Values may be callables ``f(x) -> value`` of the probe batch ``x`` (numpy ``[B, *S]``), for options
that need arrays shaped like the inputs (references, background sets). Names not registered in
``tpa.METHODS`` are simply not exercised; methods merged later pick up their entry automatically.
A registered name missing here runs with ``{}`` (its defaults).

The entries for expected_gradients, noise_tunnel and split_integrated_gradients follow api.md's option
names; those modules did not exist when this was written, so check them when they are merged
(noise_tunnel wraps another method, and split_integrated_gradients returns two parts).
"""

import numpy as np


def _pool(count, seed):
    def make(x):
        return np.random.default_rng(seed).uniform(0.0, 1.0, size=(count,) + tuple(x.shape[1:])).astype(np.float32)

    return make


FAST_OPTIONS = {
    "integrated_gradients": {"n_steps": 8},
    "expected_gradients": {"background": _pool(4, 1), "n_samples": 8, "seed": 0},
    "guided_integrated_gradients": {"n_steps": 8},
    "blur_integrated_gradients": {"n_steps": 8, "max_sigma": 2.0},
    "integrated_decision_gradients": {"n_steps": 8},
    "ig2": {"references": _pool(2, 2), "step_size": 0.05, "n_steps": 8},
    "smooth_taylor": {"n_roots": 8, "seed": 0},
    "noise_tunnel": {"nt_samples": 2, "n_steps": 8, "seed": 0},
    "split_integrated_gradients": {"n_steps": 8},
    "important_direction_gradient_integration": {"n_steps": 8},
    "adversarial_gradient_integration": {"max_iter": 3, "k": 2, "seed": 0},
    # DIG walks through a vocabulary of token vectors; on [B, m, ...] inputs each row along axis 1 is a token
    "discretized_integrated_gradients": {
        "n_steps": 4,
        "n_neighbors": 8,
        "embedding_matrix": lambda x: (
            np.random.default_rng(3).uniform(0.0, 1.0, size=(16,) + tuple(x.shape[2:])).astype(np.float32)
        ),
    },
    "sequential_integrated_gradients": {"n_steps": 4},
}


def options_for(name, x):
    """The FAST_OPTIONS entry of ``name`` with callables evaluated on the probe batch ``x``."""
    return {k: (v(np.asarray(x)) if callable(v) else v) for k, v in FAST_OPTIONS.get(name, {}).items()}
