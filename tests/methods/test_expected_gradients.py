import numpy as np
import pytest

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo


def test_linear_model_identity_independent_of_alphas(rng):
    model, w = zoo.linear_model(rng.normal(size=(5, 3)))
    x = rng.normal(size=(2, 5)).astype("float32")
    bg = rng.normal(size=(7, 5)).astype("float32")
    idx = rng.integers(0, 7, size=(40, 2))
    for alphas in (rng.random((40, 2)), np.full((40, 2), 0.5)):
        attr = tpa.expected_gradients(
            model, x, [0, 2], background=bg, n_samples=40, sample_indices=idx, sample_alphas=alphas
        )
        expected = np.stack([np.mean(x[b] - bg[idx[:, b]], axis=0) * w[:, t] for b, t in enumerate([0, 2])])
        np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)


def test_completeness_against_drawn_baselines(toy_cnn, rng):
    x = rng.random((3, 8, 8, 3)).astype("float32")
    bg = rng.random((6, 8, 8, 3)).astype("float32")
    attr, delta = tpa.expected_gradients(
        toy_cnn, x, 1, background=bg, n_samples=30, seed=3, return_convergence_delta=True, internal_batch_size=20
    )
    # a delta computed by hand from the same draws
    from tf_pathattr.methods.expected_gradients import draw_samples

    idx, _ = draw_samples(30, 3, 6, 3)
    f_x = toy_cnn(x).numpy()[:, 1]
    f_b = np.stack([toy_cnn(bg[idx.numpy()[:, b]]).numpy()[:, 1].mean() for b in range(3)])
    np.testing.assert_allclose(delta, attr.numpy().reshape(3, -1).sum(1) - (f_x - f_b), atol=1e-5)
    # Monte Carlo: the gap is the estimator's noise, small relative to the output change here
    assert np.all(np.abs(delta) < 0.5 * np.abs(f_x - f_b) + 1e-3)


def test_errors(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    with pytest.raises(ValueError, match="background is required"):
        tpa.expected_gradients(toy_cnn, x, 0)
    with pytest.raises(ValueError, match="background examples have shape"):
        tpa.expected_gradients(toy_cnn, x, 0, background=np.zeros((3, 4, 4, 3)))
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        tpa.expected_gradients(toy_cnn, x, 0, background=x, n_samples=0)
    with pytest.raises(ValueError, match="sample_indices must lie"):
        tpa.expected_gradients(toy_cnn, x, 0, background=x, n_samples=1, sample_indices=[[0, 5]])


def _dict_model():
    """The zoo's dict-input model: inputs "a" [4] and "b" [3] -> concat -> Dense(8, tanh) -> Dense(2)."""
    return zoo.two_input_models(seed=5, widths=(4, 3), classes=2)[1]


def test_dict_background_is_paired_by_key_not_by_order(rng):
    # issue 9 defect 3
    model = _dict_model()
    x = {"a": rng.random((2, 4)).astype("float32"), "b": rng.random((2, 3)).astype("float32")}
    bg_a, bg_b = rng.random((5, 4)).astype("float32"), rng.random((5, 3)).astype("float32")
    ordered = tpa.expected_gradients(model, x, 1, background={"a": bg_a, "b": bg_b}, n_samples=6, seed=0)
    swapped = tpa.expected_gradients(model, x, 1, background={"b": bg_b, "a": bg_a}, n_samples=6, seed=0)
    for k in ("a", "b"):
        np.testing.assert_allclose(swapped[k], ordered[k], rtol=1e-6, atol=1e-8)
    # inputs given in the other order too
    x_rev = {"b": x["b"], "a": x["a"]}
    rev = tpa.expected_gradients(model, x_rev, 1, background={"a": bg_a, "b": bg_b}, n_samples=6, seed=0)
    for k in ("a", "b"):
        np.testing.assert_allclose(rev[k], ordered[k], rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="background.*missing.*'b'"):
        tpa.expected_gradients(model, x, 1, background={"a": bg_a, "c": bg_b}, n_samples=2)
