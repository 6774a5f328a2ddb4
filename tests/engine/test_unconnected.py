"""A missing gradient path is an error that names the cause, never zeros (issue 9 defect 9)."""

import keras
import numpy as np
import pytest

import tf_pathattr as tpa
from tf_pathattr.methods import registry


def float_ids_without_gradient_path():
    """Float token ids ``[B, 5]`` -> Embedding("emb") -> GAP -> Dense(3): the input reaches the output only through
    an Embedding lookup, so it has no gradient path (unlike the zoo's int32 text_model, which is refused earlier)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Embedding(20, 4, name="emb"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3),
        ]
    )


IDS = np.array([[1, 4, 7, 2, 0], [3, 3, 9, 12, 5]], np.int32)


def _float_methods():
    out = []
    for spec in registry.specs():
        if spec.image_only or spec.output != "inputs":
            continue
        out.append(spec.name)
    return out


@pytest.mark.parametrize("name", _float_methods())
def test_float_token_ids_raise_instead_of_returning_zeros(name):
    model = float_ids_without_gradient_path()
    x = IDS.astype(np.float32)
    opts = registry.get(name).options_for(x)
    # DIG refuses [B, T] before any gradient (it needs token vectors), with the same advice
    with pytest.raises(ValueError, match=r"(?s)(no gradient path.*inputs|inputs: .*no gradient path).*layer="):
        tpa.attribute(model, x, 1, method=name, **opts)


def test_split_ig_float_ids_raise():
    model = float_ids_without_gradient_path()
    with pytest.raises(ValueError, match="no gradient path"):
        tpa.split_integrated_gradients(model, IDS.astype(np.float32), 1, n_steps=4)


def test_integer_input_error_points_to_layer_and_never_to_casting_ids():
    model = float_ids_without_gradient_path()
    with pytest.raises(TypeError) as info:
        tpa.integrated_gradients(model, IDS, 1, n_steps=4)
    msg = str(info.value)
    assert "layer=" in msg and "token ids" in msg
    assert "cast the inputs to float" not in msg
    assert "does not create" in msg  # says casting ids to float gives no gradient


def test_layer_attribution_of_the_same_model_works():
    model = float_ids_without_gradient_path()
    attr = tpa.integrated_gradients(model, IDS, 1, n_steps=8, layer="emb")
    assert attr.shape == (2, 5, 4) and np.abs(attr.numpy()).max() > 0


def test_callback_keeps_integer_probes_integer(tmp_path):
    model = float_ids_without_gradient_path()
    logger = tpa.callbacks.AttributionLogger(
        IDS,
        target=1,
        method="integrated_gradients",
        method_options={"n_steps": 4, "layer": "emb"},
        log_dir=tmp_path,
        metrics=(),
        save_arrays=False,
    )
    assert logger.inputs.dtype == np.int32
    np.testing.assert_array_equal(logger.inputs, IDS)
    logger.set_model(model)
    attr, _ = logger.explain()
    assert np.abs(np.asarray(attr)).max() > 0
    float_logger = tpa.callbacks.AttributionLogger(
        IDS.astype(np.float64), target=1, log_dir=tmp_path, metrics=(), method_options={"n_steps": 4}, save_arrays=False
    )
    assert float_logger.inputs.dtype == np.float32
    float_logger.set_model(model)
    with pytest.raises(ValueError, match="no gradient path"):
        float_logger.explain()


def test_export_of_a_model_without_gradient_path_is_refused(tmp_path):
    model = float_ids_without_gradient_path()
    with pytest.raises(ValueError, match="no gradient path"):
        tpa.saved_model.export(
            model,
            str(tmp_path / "m"),
            methods=("integrated_gradients",),
            options={"integrated_gradients": {"n_steps": 4}},
            input_shape=(5,),
        )


def test_an_unused_input_of_a_multi_input_model_is_named():
    keras.utils.set_random_seed(0)
    ia, ib = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    out = keras.layers.Dense(2)(ia)
    model = keras.Model({"a": ia, "b": ib}, out)
    x = {"a": np.ones((2, 3), np.float32), "b": np.ones((2, 2), np.float32)}
    with pytest.raises(ValueError, match=r"no gradient path.*inputs\['b'\]"):
        tpa.integrated_gradients(model, x, 0, n_steps=4)
