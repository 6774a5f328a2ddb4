"""Explaining reloaded SavedModels, and exported explain endpoints loaded without tf_pathattr."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr import saved_model
from tf_pathattr.methods import registry

EXPORTABLE = [s.name for s in registry.specs() if s.exportable is True]

SHAPE = (8, 8, 1)


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(3),
        ]
    )


X = np.random.default_rng(0).uniform(size=(3,) + SHAPE).astype(np.float32)
TARGETS = np.array([0, -1, 2], np.int32)  # -1: the predicted class


def close(a, b, tol=1e-5):
    """Max error within ``tol`` relative to max|b| (the attributions here are ~1e-3, so absolute 1e-5 is lax)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    scale = max(1e-12, float(np.abs(b).max()))
    err = float(np.abs(a - b).max())
    assert err <= tol * scale, f"max error {err:.3g} (scale {scale:.3g})"


@pytest.fixture(scope="module")
def keras_export(tmp_path_factory):
    model = make_model()
    path = tmp_path_factory.mktemp("plain") / "model"
    model.export(str(path), verbose=False)
    return model, str(path)


def _identity(z):
    return z


# A reloaded SavedModel has no layers to look into: IG2's default representation (the input of the
# last Dense layer) needs a Keras model, so these tests give it an explicit one (the same on both sides).
RELOADED_OPTIONS = {"ig2": {"representation": _identity}}


@pytest.mark.parametrize("name", [s.name for s in registry.specs() if s.output == "inputs"])
def test_reloaded_serve_and_tfsmlayer_explain_like_the_keras_model(keras_export, name):
    model, path = keras_export
    opts = dict(registry.get(name).options_for(X), **RELOADED_OPTIONS.get(name, {}))
    ref = tpa.attribute(model, X, [0, 1, 2], method=name, **opts).numpy()
    loaded = tf.saved_model.load(path)
    layer = keras.layers.TFSMLayer(path, call_endpoint="serve")
    for wrapped in (loaded.serve, layer, saved_model.load(path)):
        close(tpa.attribute(wrapped, X, [0, 1, 2], method=name, **opts).numpy(), ref)


def test_load_errors(tmp_path, keras_export):
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        saved_model.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="no callable 'nope'"):
        saved_model.load(keras_export[1], endpoint="nope")


FRESH = textwrap.dedent("""
    import json, sys
    class Block:  # tf_pathattr must not be needed (nor importable) to use the export
        def find_spec(self, name, path=None, target=None):
            if name == "tf_pathattr" or name.startswith("tf_pathattr."):
                raise ImportError("blocked: " + name)
    sys.meta_path.insert(0, Block())
    import numpy as np, tensorflow as tf
    args = json.loads(sys.argv[1])
    x = np.load(args["x"]); t = np.load(args["t"])
    out = {}
    for name, path in args["paths"].items():
        loaded = tf.saved_model.load(path)
        fn = getattr(loaded, "explain_" + name)
        out[name] = fn(tf.constant(x), tf.constant(t)).numpy()
        out["serve_" + name] = loaded.serve(tf.constant(x)).numpy()
    assert not any(m == "tf_pathattr" or m.startswith("tf_pathattr.") for m in sys.modules)
    np.savez(args["out"], **out)
    print("FRESH_OK")
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export every method (own folder each), then call all endpoints in ONE fresh interpreter."""
    root = tmp_path_factory.mktemp("export")
    model = make_model()
    paths, errors = {}, {}
    for name in EXPORTABLE:
        try:
            saved_model.export(
                model, root / name, methods=(name,), options={name: registry.get(name).options_for(X[:1])}
            )
            paths[name] = str(root / name)
        except Exception as exc:  # reported by the per-method test
            errors[name] = f"{type(exc).__name__}: {exc}"
    np.save(root / "x.npy", X)
    np.save(root / "t.npy", TARGETS)
    args = {"x": str(root / "x.npy"), "t": str(root / "t.npy"), "paths": paths, "out": str(root / "out.npz")}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    res = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=str(root),
        env=env,
        timeout=600,
    )
    assert res.returncode == 0 and "FRESH_OK" in res.stdout, res.stderr[-4000:]
    return model, dict(np.load(root / "out.npz")), errors


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTABLE)
def test_exported_endpoint_matches_in_process(exported, name):
    model, out, errors = exported
    assert name not in errors, errors.get(name)
    opts = registry.get(name).options_for(X[:1])
    pred = np.argmax(model(X).numpy(), axis=-1)
    # the endpoint explains each example as a one-example call; a negative target = the predicted class
    expected = np.concatenate(
        [
            tpa.attribute(model, X[i : i + 1], int(t if t >= 0 else pred[i]), method=name, **opts).numpy()
            for i, t in enumerate(TARGETS)
        ]
    )
    close(out[name], expected)
    close(out["serve_" + name], model(X).numpy(), 1e-6)


def test_export_signature_and_batch_agreement(tmp_path):
    model = make_model()
    names = saved_model.export(model, tmp_path / "m", methods=("ig",), options={"ig": {"n_steps": 16}})
    assert names == ["serve", "explain_integrated_gradients"]
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    sig = loaded.signatures["explain_integrated_gradients"]
    spec = sig.structured_input_signature[1]
    assert spec["x"].shape.as_list() == [None, 8, 8, 1] and spec["x"].dtype == tf.float32
    assert spec["target"].shape.as_list() == [None] and spec["target"].dtype == tf.int32
    # IG is deterministic, so the per-example map equals one batched in-process call
    got = loaded.explain_integrated_gradients(X, tf.constant([1, 1, 0], tf.int32)).numpy()
    close(got, tpa.integrated_gradients(model, X, [1, 1, 0], n_steps=16).numpy())
    # an empty batch is fine
    assert loaded.explain_integrated_gradients(X[:0], tf.zeros((0,), tf.int32)).shape == (0, 8, 8, 1)


def test_export_refuses_what_cannot_be_baked(tmp_path):
    model = make_model()
    with pytest.raises(ValueError, match="depend on the input values"):
        saved_model.export(
            model, tmp_path / "a", options={"integrated_gradients": {"baseline": tpa.baselines.blurred(1.0)}}
        )
    with pytest.raises(ValueError, match="unknown method"):
        saved_model.export(model, tmp_path / "b", methods=("nope",))
    with pytest.raises(ValueError, match="do not match"):
        saved_model.export(model, tmp_path / "c", methods=("ig",), options={"guided_ig": {}})
    with pytest.raises(TypeError, match="keras.Model"):
        saved_model.export(lambda x: x, tmp_path / "d")
    with pytest.raises(ValueError, match="input_shape"):
        saved_model.export(keras.layers.Dense(2), tmp_path / "e")


def test_export_a_tfsmlayer_wrapped_savedmodel(keras_export, tmp_path):
    """Re-export a reloaded SavedModel (as TFSMLayer, input_shape given) with an explain endpoint."""
    model, path = keras_export
    layer = keras.layers.TFSMLayer(path, call_endpoint="serve")
    saved_model.export(layer, tmp_path / "re", methods=("ig",), options={"ig": {"n_steps": 8}}, input_shape=SHAPE)
    loaded = tf.saved_model.load(str(tmp_path / "re"))
    got = loaded.explain_integrated_gradients(X, tf.constant([2, 2, 2], tf.int32)).numpy()
    close(got, tpa.integrated_gradients(model, X, 2, n_steps=8).numpy())


@pytest.mark.parametrize("name", [s.name for s in registry.specs() if s.exportable is not True])
def test_export_refuses_methods_the_registry_declares_not_exportable(tmp_path, name):
    with pytest.raises(ValueError, match=f"methods: '{name}' cannot be exported"):
        saved_model.export(make_model(), tmp_path / name, methods=(name,))


def test_exported_endpoint_refuses_out_of_range_targets_with_a_clear_message(tmp_path):
    model = make_model()
    saved_model.export(model, tmp_path / "m", methods=("ig",), options={"ig": {"n_steps": 4}})
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    ok = loaded.explain_integrated_gradients(tf.constant(X[:2]), tf.constant([2, -1], tf.int32))
    assert ok.shape == (2,) + SHAPE
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"target out of range: the model has 3 outputs"):
        loaded.explain_integrated_gradients(tf.constant(X[:2]), tf.constant([0, 3], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"one class index per example"):
        loaded.explain_integrated_gradients(tf.constant(X[:2]), tf.constant([0], tf.int32))


def test_export_with_a_target_function_for_a_multi_output_model(tmp_path):
    keras.utils.set_random_seed(4)
    inp = keras.Input(SHAPE)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="tanh")(inp))
    model = keras.Model(inp, {"cls": keras.layers.Dense(3)(h), "reg": keras.layers.Dense(1)(h)})

    def score(outputs):
        return outputs["reg"][:, 0] + 0.5 * outputs["cls"][:, 1]

    names = saved_model.export(
        model, tmp_path / "m", methods=("ig", "gradients"), target=score, options={"ig": {"n_steps": 8}}
    )
    assert names == ["serve", "explain_integrated_gradients", "explain_gradients"]
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    got = loaded.explain_integrated_gradients(tf.constant(X)).numpy()
    expected = np.concatenate(
        [tpa.integrated_gradients(model, X[i : i + 1], score, n_steps=8).numpy() for i in range(len(X))]
    )
    close(got, expected)
    close(loaded.explain_gradients(tf.constant(X)).numpy(), tpa.gradients(model, X, score).numpy())
    with pytest.raises(TypeError, match="target: export takes a callable"):
        saved_model.export(model, tmp_path / "bad", methods=("ig",), target=1)


def test_layer_attribution_of_a_text_model_is_exportable(tmp_path):
    keras.utils.set_random_seed(5)
    ids_in = keras.Input((6,), dtype="int32")
    emb = keras.layers.Embedding(20, 4, name="embedding")(ids_in)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(8, activation="tanh")(emb)))
    model = keras.Model(ids_in, out)
    ids = np.random.default_rng(1).integers(1, 20, size=(3, 6)).astype(np.int32)
    with pytest.raises(ValueError, match="integer inputs .* pass layer="):
        saved_model.export(model, tmp_path / "nolayer", methods=("ig",))
    saved_model.export(model, tmp_path / "m", methods=("ig",), options={"ig": {"layer": "embedding", "n_steps": 8}})
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    got = loaded.explain_integrated_gradients(tf.constant(ids), tf.constant([1, -1, 0], tf.int32)).numpy()
    pred = np.argmax(model(ids).numpy(), axis=-1)
    expected = np.concatenate(
        [
            tpa.integrated_gradients(
                model, ids[i : i + 1], int(t if t >= 0 else pred[i]), layer="embedding", n_steps=8
            ).numpy()
            for i, t in enumerate([1, -1, 0])
        ]
    )
    assert got.shape == (3, 6, 4)
    close(got, expected)
