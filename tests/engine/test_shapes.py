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


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.array([[1.0, np.nan]]), ValueError, "NaN"),
        (np.array([[1.0, np.inf]]), ValueError, "NaN or infinite"),
        (np.array([[1, 2]]), TypeError, "integer dtype .*layer="),
        (np.array(1.0), ValueError, "batch dimension"),
        (np.zeros((0, 3)), ValueError, "empty batch"),
        ({"a": np.zeros((2, 3)), "b": np.zeros((3, 3))}, ValueError, "batch size 3"),
        (np.array(["a"]), TypeError, "float array"),
    ],
)
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


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones((3, 5)), r"does not fit inputs of shape \(2, 3, 4\)"),
        (np.ones((2, 2, 2, 3, 4)), "does not fit"),
        (np.array([np.nan]), "NaN"),
    ],
)
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
    with pytest.raises(ValueError, match="one entry per input; got 3 entries"):
        prepare_baselines([0.0, np.zeros(4), 0.0], x, st)


def test_a_tuple_with_one_entry_per_input_is_per_input():
    # issue 9 defect 4: (0.0, 1.0) on a two-input model means 0 for input 0 and 1 for input 1 (captum / alibi),
    # even when every input has width 2 (it used to be read as one per-feature vector for every input)
    x, st, _ = prepare_inputs([np.zeros((3, 2)), np.zeros((3, 2))])
    for base in [(0.0, 1.0), [0.0, 1.0]]:
        out = prepare_baselines(base, x, st)
        np.testing.assert_array_equal(out[0].numpy(), np.zeros((1, 3, 2)))
        np.testing.assert_array_equal(out[1].numpy(), np.ones((1, 3, 2)))
    # a numeric list that is not one entry per input is refused, naming the argument and the way out
    with pytest.raises(ValueError, match=r"baseline: .*2 inputs.*one entry per input.*3 entries"):
        prepare_baselines([0.0, 1.0, 2.0], x, st)
    # an array is shared by every input
    x3, st3, _ = prepare_inputs([np.zeros((3, 2)), np.zeros((3, 2))])
    out = prepare_baselines(np.array([0.5, 2.0]), x3, st3)
    np.testing.assert_array_equal(out[1].numpy()[0, 0], [0.5, 2.0])
    # dict models: a list or tuple cannot be matched to keys
    xd, std, _ = prepare_inputs({"a": np.zeros((3, 2)), "b": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"baseline: the inputs are a dict.*keys \['a', 'b'\]"):
        prepare_baselines((0.0, 1.0), xd, std)


def test_per_input_tuple_baseline_end_to_end():
    import keras

    import tf_pathattr as tpa

    keras.utils.set_random_seed(0)
    ia, ib = keras.Input((2,)), keras.Input((2,))
    out = keras.layers.Dense(2)(keras.layers.Concatenate()([ia, ib]))
    model = keras.Model([ia, ib], out)
    xa, xb = np.full((1, 2), 2.0, np.float32), np.full((1, 2), 3.0, np.float32)
    got = tpa.integrated_gradients(model, [xa, xb], 0, baseline=(0.0, 1.0), n_steps=4)
    w = model.layers[-1].get_weights()[0][:, 0]
    np.testing.assert_allclose(got[0].numpy()[0], w[:2] * (2.0 - 0.0), rtol=1e-5)
    np.testing.assert_allclose(got[1].numpy()[0], w[2:] * (3.0 - 1.0), rtol=1e-5)


def test_a_single_example_without_its_batch_axis_is_named():
    # issue 9 defect 14: used to be a Keras Conv2D error about negative output sizes
    import keras

    import tf_pathattr as tpa

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(2, 3),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(2, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    x = np.random.default_rng(0).random((3, 16, 16, 1)).astype(np.float32)
    for name in ("integrated_gradients", "gradients", "guided_integrated_gradients"):
        with pytest.raises(ValueError, match=r"expected a batch \[B, 16, 16, 1\], got an array of shape \(16, 16, 1\)"):
            tpa.attribute(model, x[0], 0, method=name, n_steps=2) if name != "gradients" else tpa.gradients(
                model, x[0], 0
            )
    assert tpa.gradients(model, x[:1], 0).shape == (1, 16, 16, 1)
    # multi-input: the offending input is named
    ia, ib = keras.Input((4,), name="a"), keras.Input((2, 3), name="b")
    out = keras.layers.Dense(2)(keras.layers.Concatenate()([ia, keras.layers.Flatten()(ib)]))
    dmodel = keras.Model({"a": ia, "b": ib}, out)
    with pytest.raises(
        ValueError, match=r"inputs\['b'\]: expected a batch \[B, 2, 3\], got an array of shape \(2, 3\)"
    ):
        tpa.gradients(dmodel, {"a": np.ones((2, 4), np.float32), "b": np.ones((2, 3), np.float32)}, 0)
