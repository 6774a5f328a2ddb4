import numpy as np
import pytest
import tensorflow as tf

from tf_pathattr.engine.shapes import prepare_baselines, prepare_inputs


def test_prepare_inputs_structures():
    x = np.zeros((2, 3), np.float64)
    flat, st, b = prepare_inputs(x)
    assert st.kind == "single" and b == 2 and flat[0].dtype == tf.float32
    flat, st, b = prepare_inputs({"a": x, "b": np.zeros((2, 5))})
    assert st.kind == "dict" and st.keys == ("a", "b") and [f.shape[1] for f in flat] == [3, 5]
    assert st.pack([1, 2]) == {"a": 1, "b": 2}
    flat, st, b = prepare_inputs([x, x])
    assert st.kind == "list" and len(flat) == 2
    # a nested Python list of numbers is one array, not a list of inputs
    flat, st, b = prepare_inputs([[1.0, 2.0], [3.0, 4.0]])
    assert st.kind == "single" and b == 2


@pytest.mark.parametrize("bad, exc, match", [
    (np.array([[1.0, np.nan]]), ValueError, "NaN"),
    (np.array([[1.0, np.inf]]), ValueError, "NaN or infinite"),
    (np.array([[1, 2]]), TypeError, "integer dtype .*layer="),
    (np.array(1.0), ValueError, "batch dimension"),
    (np.zeros((0, 3)), ValueError, "empty batch"),
    ({"a": np.zeros((2, 3)), "b": np.zeros((3, 3))}, ValueError, "batch size 3"),
    (np.array(["a"]), TypeError, "float array"),
])
def test_bad_inputs(bad, exc, match):
    with pytest.raises(exc, match=match):
        prepare_inputs(bad)


def test_baseline_forms():
    x, st, _ = prepare_inputs(np.zeros((2, 3, 4), np.float32))
    assert prepare_baselines(None, x, st)[0].shape == (1, 2, 3, 4)
    assert prepare_baselines(0.5, x, st)[0].numpy().max() == 0.5
    assert prepare_baselines(np.ones((3, 4)), x, st)[0].shape == (1, 2, 3, 4)
    per_ex = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(prepare_baselines(per_ex, x, st)[0][0], per_ex)
    assert prepare_baselines(np.ones((5, 3, 4)), x, st)[0].shape == (5, 2, 3, 4)  # K shared
    assert prepare_baselines(np.ones((2, 1, 3, 4)), x, st)[0].shape == (2, 2, 3, 4)  # K=B shared, disambiguated
    assert prepare_baselines(np.ones((3, 2, 3, 4)), x, st)[0].shape == (3, 2, 3, 4)  # K per example


@pytest.mark.parametrize("bad, match", [
    (np.ones((3, 5)), r"does not fit inputs of shape \(2, 3, 4\)"),
    (np.ones((2, 2, 2, 3, 4)), "does not fit"),
    (np.array([np.nan]), "NaN"),
])
def test_bad_baselines(bad, match):
    x, st, _ = prepare_inputs(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=match):
        prepare_baselines(bad, x, st)


def test_multi_input_baselines_must_agree_on_k():
    x, st, _ = prepare_inputs([np.zeros((2, 3)), np.zeros((2, 4))])
    out = prepare_baselines([0.0, np.ones((4,))], x, st)
    assert [o.shape for o in out] == [(1, 2, 3), (1, 2, 4)]
    with pytest.raises(ValueError, match="same number of baselines"):
        prepare_baselines([np.ones((3, 3)), 0.0], x, st)
    with pytest.raises(ValueError, match="expected 2 entries"):
        prepare_baselines([0.0, np.zeros(4), 0.0], x, st)
