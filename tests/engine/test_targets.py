import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.engine import gradients as eng
from tf_pathattr.engine import targets as tgt
from tf_pathattr.testing import models as zoo


def test_resolve_kinds():
    assert tgt.resolve_target(None, 3, (5,)).kind == tgt.PREDICTED
    spec = tgt.resolve_target(2, 3, (5,))
    assert spec.kind == tgt.INDEX and spec.indices.numpy().tolist() == [2, 2, 2]
    assert tgt.resolve_target([0, 4, 1], 3, (5,)).indices.numpy().tolist() == [0, 4, 1]
    assert tgt.resolve_target(lambda o: o[:, 0], 3, (5,)).kind == tgt.CALLABLE


@pytest.mark.parametrize(
    "bad, match",
    [
        (5, "out of range"),
        ([0, -1, 2], "out of range"),
        ([0, 1], r"shape \(3,\)"),
        ("a", "must be an int"),
        (True, "bool"),
        (1.5, "must be an int"),
    ],
)
def test_bad_targets(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tgt.resolve_target(bad, 3, (5,))


def test_structured_outputs_need_callable():
    with pytest.raises(ValueError, match="callable"):
        tgt.resolve_target(0, 2, None)
    with pytest.raises(ValueError, match="callable"):
        tgt.resolve_target(0, 2, (4, 5))


def test_tf_keras_vis_scores_are_targets(toy_cnn, rng):
    from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore

    x = rng.random((3, 8, 8, 3)).astype("float32")
    ref = tpa.integrated_gradients(toy_cnn, x, [2, 0, 1], n_steps=8)
    via_score = tpa.integrated_gradients(toy_cnn, x, CategoricalScore([2, 0, 1]), n_steps=8)
    np.testing.assert_allclose(via_score, ref, rtol=1e-6, atol=1e-7)
    one = tpa.integrated_gradients(toy_cnn, x, CategoricalScore(1), n_steps=8)
    np.testing.assert_allclose(one, tpa.integrated_gradients(toy_cnn, x, 1, n_steps=8), rtol=1e-6, atol=1e-7)

    keras.utils.set_random_seed(1)
    binary = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
    pos = tpa.integrated_gradients(binary, x, BinaryScore(True), n_steps=8)
    neg = tpa.integrated_gradients(binary, x, BinaryScore([False, False, False]), n_steps=8)
    np.testing.assert_allclose(pos, -neg, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(pos, tpa.integrated_gradients(binary, x, None, n_steps=8), rtol=1e-6, atol=1e-7)


def test_callable_sees_exactly_b_rows_per_group(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    seen = []

    def score(out):
        seen.append(out.shape[0])
        return out[:, 1] - out[:, 0]

    a = tpa.integrated_gradients(toy_cnn, x, score, n_steps=6, internal_batch_size=6)
    b = tpa.integrated_gradients(toy_cnn, x, 1, n_steps=6) - tpa.integrated_gradients(toy_cnn, x, 0, n_steps=6)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert set(seen) == {2}


def test_predicted_class_is_argmax(toy_cnn, rng):
    x = rng.random((4, 8, 8, 3)).astype("float32")
    pred = np.argmax(toy_cnn(x).numpy(), axis=1)
    np.testing.assert_allclose(
        tpa.integrated_gradients(toy_cnn, x, None, n_steps=8),
        tpa.integrated_gradients(toy_cnn, x, pred, n_steps=8),
        rtol=1e-6,
        atol=1e-7,
    )


def test_regression_model_single_unit():
    keras.utils.set_random_seed(0)
    model = zoo.single_output_model(d=4)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    a, d = tpa.integrated_gradients(model, x, None, return_convergence_delta=True)
    assert np.max(np.abs(d)) < 1e-5
    with pytest.raises(ValueError, match="out of range"):
        tpa.integrated_gradients(model, x, 1)


def test_multi_output_model_with_callable():
    model = zoo.multi_output_model(d=4)
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    with pytest.raises(ValueError, match="callable"):
        tpa.integrated_gradients(model, x, 0)
    a, d = tpa.integrated_gradients(model, x, lambda outs: outs[1][:, 0], return_convergence_delta=True)
    assert np.max(np.abs(d)) < 1e-5


def test_problem_exposes_batch_and_shapes(toy_cnn, rng):
    p = eng.prepare(toy_cnn, rng.random((3, 8, 8, 3)).astype("float32"), None)
    assert p.batch_size == 3 and p.example_shapes == [(8, 8, 3)]
    assert isinstance(p.flat_x[0], tf.Tensor) and p.flat_x[0].dtype == tf.float32
