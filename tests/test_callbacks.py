"""AttributionLogger: event files read back, arrays, one trace, no effect on training, distribution."""

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tf_pathattr as tpa
from tf_pathattr import viz
from tf_pathattr.callbacks import AttributionLogger
from tf_pathattr.engine import gradients as eng
from tf_pathattr.methods import registry

REPO = Path(__file__).resolve().parents[1]


def read_events(log_dir):
    """{tag: [(step, value)]}: scalars as floats, images as decoded uint8 arrays, histograms as tensors."""
    out = {}
    for path in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        for ev in tf.compat.v1.train.summary_iterator(str(path)):
            for v in ev.summary.value:
                t = tf.make_ndarray(v.tensor)
                meta = v.metadata.plugin_data.plugin_name
                if meta == "images":
                    value = [np.asarray(Image.open(io.BytesIO(b))) for b in t[2:]]
                elif t.ndim == 0:
                    value = float(t)
                else:
                    value = t
                out.setdefault(v.tag, []).append((ev.step, value))
    return out


def make_model(seed=0, dropout=False):
    """A tiny CNN; ``dropout=True`` adds BatchNorm and Dropout, whose state a careless logger would change."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="tanh")]
    if dropout:
        layers.append(keras.layers.BatchNormalization())
    layers.append(keras.layers.GlobalAveragePooling2D())
    if dropout:
        layers.append(keras.layers.Dropout(0.3))
    layers.append(keras.layers.Dense(3))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def data(n=32):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, 8, 8, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) * 30).astype(np.int64) % 3
    return x, y


def test_event_files_arrays_and_images(tmp_path):
    x, y = data()
    model = make_model()
    probe = x[:3]
    logger = AttributionLogger(probe, target=[0, 1, 2], method_options={"n_steps": 16}, log_dir=tmp_path, max_images=2)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False, callbacks=[logger])
    ev = read_events(tmp_path)
    assert {"completeness_gap", "attributions/histogram", "attributions/overlay"} <= set(ev)
    assert [s for s, _ in ev["completeness_gap"]] == [0, 1]
    arrays = np.load(tmp_path / "arrays" / "epoch_0001.npz")
    assert (tmp_path / "arrays" / "epoch_0000.npz").exists()
    np.testing.assert_array_equal(arrays["inputs"], probe)
    # the last epoch's arrays are the attributions of the final weights
    attr, delta = tpa.integrated_gradients(model, probe, [0, 1, 2], n_steps=16, return_convergence_delta=True)
    np.testing.assert_allclose(arrays["attributions"], attr.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(arrays["completeness_gap"], delta.numpy(), atol=1e-6)
    assert ev["completeness_gap"][1][1] == pytest.approx(float(np.mean(np.abs(delta.numpy()))), abs=1e-6)
    hist = ev["attributions/histogram"][1][1]  # [buckets, 3]: left edge, right edge, count
    assert hist.shape[1] == 3 and hist[:, 2].sum() == probe.size
    assert hist[0, 0] == pytest.approx(arrays["attributions"].min()) and hist[-1, 1] == pytest.approx(
        arrays["attributions"].max()
    )
    # the image summary holds exactly the overlays of the first max_images probes
    step, pics = ev["attributions/overlay"][1]
    assert step == 1 and len(pics) == 2
    for i in range(2):
        expected = viz.to_uint8(viz.overlay(probe[i], arrays["attributions"][i], "signed"))
        assert pics[i].shape == (8, 8, 3)
        assert np.abs(pics[i].astype(int) - expected.astype(int)).max() <= 1
    assert logger._writer is None  # closed in on_train_end


def test_explain_function_traced_once_and_batch_logging(tmp_path):
    x, y = data()
    model = make_model()
    logger = AttributionLogger(
        x[:2], method_options={"n_steps": 8}, log_dir=tmp_path, every_n_epochs=1, every_n_batches=1, save_arrays=False
    )
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[logger])
    assert logger.n_explanations == 3 + 3 * 2
    fns = [item[1] for item in eng.CACHE._items.values() if item[0]() is model]
    assert len(fns) == 1
    assert fns[0].experimental_get_tracing_count() == 1
    ev = read_events(tmp_path)
    assert [s for s, _ in ev["batch/completeness_gap"]] == [1, 2, 3, 4, 5, 6]
    assert len(ev["completeness_gap"]) == 3
    assert not list(tmp_path.glob("arrays/*.npz"))


@pytest.mark.parametrize("name", [s.name for s in tpa.methods.registry.specs() if s.output != "split"])
def test_every_method_logs_and_training_is_unchanged(tmp_path, name):
    x, y = data()

    models = {}

    def train(with_logger):
        model = make_model(seed=3, dropout=True)
        cbs = (
            [
                AttributionLogger(
                    x[:2], method=name, method_options=registry.get(name).options_for(x[:2]), log_dir=tmp_path / name
                )
            ]
            if with_logger
            else []
        )
        keras.utils.set_random_seed(7)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=True, callbacks=cbs)
        models[with_logger] = model
        return model.get_weights()

    plain = train(False)
    logged = train(True)
    # the method's compiled function(s) were traced once, not once per epoch
    fns = [item[1] for item in eng.CACHE._items.values() if item[0]() is models[True]]
    assert fns and all(f.experimental_get_tracing_count() == 1 for f in fns)
    for a, b in zip(plain, logged):
        np.testing.assert_array_equal(a, b)
    arrays = np.load(tmp_path / name / "arrays" / "epoch_0001.npz")
    pixels = tpa.methods.registry.get(name).output == "pixels"  # XRAI: one map per image
    assert arrays["attributions"].shape == ((2, 8, 8) if pixels else (2, 8, 8, 1))
    assert np.all(np.isfinite(arrays["attributions"]))
    assert "attributions/histogram" in read_events(tmp_path / name)


def test_deletion_auc_is_logged_when_the_metric_exists(tmp_path, monkeypatch):
    """The logger's plumbing for tpa.metrics.deletion (built elsewhere): a stand-in records its calls."""
    import types

    calls = []

    def deletion(model, inputs, attributions, target=None):
        calls.append((np.asarray(inputs).shape, np.asarray(attributions).shape, target))
        return {"auc": np.array([0.25, 0.75]), "curves": np.zeros((2, 3))}

    import tf_pathattr

    real = getattr(tf_pathattr, "metrics", None)
    fake = types.ModuleType("tf_pathattr.metrics")
    fake.deletion = getattr(real, "deletion", None) if real is not None else None
    if fake.deletion is None:
        fake.deletion = deletion
        monkeypatch.setitem(sys.modules, "tf_pathattr.metrics", fake)
        monkeypatch.setattr(tf_pathattr, "metrics", fake, raising=False)
    x, y = data()
    model = make_model()
    logger = AttributionLogger(
        x[:2], target=1, method_options={"n_steps": 8}, log_dir=tmp_path, metrics=("completeness_gap", "deletion_auc")
    )
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[logger])
    ev = read_events(tmp_path)
    assert "deletion_auc" in ev and "completeness_gap" in ev
    if calls:  # the stand-in ran: check what it got and what was logged
        assert calls == [((2, 8, 8, 1), (2, 8, 8, 1), 1)]
        assert ev["deletion_auc"][0][1] == pytest.approx(0.5)
        assert float(np.load(tmp_path / "arrays" / "epoch_0000.npz")["deletion_auc"]) == pytest.approx(0.5)


@pytest.mark.skipif("ig2" not in tpa.METHODS, reason="ig2 not registered on this branch")
def test_completeness_gap_from_details_residual(tmp_path):
    """Methods without a convergence delta but with details (IG2): the gap is the mean per-reference residual."""
    x, y = data()
    model = make_model()
    opts = registry.get("ig2").options_for(x[:2])
    logger = AttributionLogger(x[:2], target=1, method="ig2", method_options=opts, log_dir=tmp_path)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[logger])
    logged = np.load(tmp_path / "arrays" / "epoch_0000.npz")["completeness_gap"]
    attr, det = tpa.attribute(model, x[:2], 1, method="ig2", return_details=True, **opts)
    a = attr.numpy().astype(np.float64).reshape(2, -1)
    direct = a.sum(1) - (det["f_x"].numpy() - det["f_gradcf"].numpy().mean(1))
    np.testing.assert_allclose(logged, direct, rtol=0, atol=1e-4 * np.abs(a).sum(1).max())


def test_multi_input_model_logs_each_input(tmp_path):
    keras.utils.set_random_seed(0)
    img = keras.Input((8, 8, 1), name="img")
    vec = keras.Input((3,), name="vec")
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, activation="tanh")(img))
    out = keras.layers.Dense(3)(keras.layers.Concatenate()([h, vec]))
    model = keras.Model({"img": img, "vec": vec}, out)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data(16)
    v = np.random.default_rng(1).normal(size=(16, 3)).astype(np.float32)
    probe = {"img": x[:2], "vec": v[:2]}
    logger = AttributionLogger(probe, target=0, method_options={"n_steps": 8}, log_dir=tmp_path)
    model.fit({"img": x, "vec": v}, y, epochs=1, batch_size=8, verbose=0, callbacks=[logger])
    tags = set(read_events(tmp_path))
    assert {"attributions/histogram/img", "attributions/histogram/vec", "attributions/overlay/img"} <= tags
    assert "attributions/overlay/vec" not in tags  # not an image
    arrays = np.load(tmp_path / "arrays" / "epoch_0000.npz")
    ref = tpa.integrated_gradients(model, probe, 0, n_steps=8)
    np.testing.assert_allclose(arrays["attributions_img"], ref["img"].numpy(), atol=1e-6)
    np.testing.assert_allclose(arrays["attributions_vec"], ref["vec"].numpy(), atol=1e-6)


def test_argument_errors_and_missing_tensorboard(tmp_path, monkeypatch):
    x, _ = data(4)
    with pytest.raises(ValueError, match="metrics"):
        AttributionLogger(x, metrics=("accuracy",))
    with pytest.raises(ValueError, match="nothing would be logged"):
        AttributionLogger(x, every_n_epochs=None)
    with pytest.raises(ValueError, match="return_convergence_delta"):
        AttributionLogger(x, method_options={"return_convergence_delta": True})
    with pytest.raises(ValueError, match="method"):
        AttributionLogger(x, method="no_such_method")
    with pytest.raises(TypeError, match="every_n_batches"):
        AttributionLogger(x, every_n_batches=1.5)
    # no batch hook unless asked for: Keras keeps asynchronous batch dispatch for default hooks
    assert type(AttributionLogger(x)).on_train_batch_end is keras.callbacks.Callback.on_train_batch_end
    assert "on_train_batch_end" not in vars(AttributionLogger(x))
    assert "on_train_batch_end" in vars(AttributionLogger(x, every_n_batches=3))
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    logger = AttributionLogger(x, log_dir=tmp_path)
    with pytest.raises(ImportError, match=r"tf_pathattr\[tensorboard\]"):
        logger.on_train_begin()


MIRRORED = textwrap.dedent("""
    import sys, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, tf_pathattr as tpa
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="tanh"),
                                  keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 8, 8, 1)).astype("float32"); y = rng.integers(0, 3, 32)
    log = tpa.callbacks.AttributionLogger(x[:2], target=1, method_options={"n_steps": 8}, log_dir=sys.argv[1])
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[log])
    arr = np.load(sys.argv[1] + "/arrays/epoch_0001.npz")["attributions"]
    ref = tpa.integrated_gradients(model, x[:2], 1, n_steps=8).numpy()
    np.testing.assert_allclose(arr, ref, atol=1e-6)
    print("MIRRORED_OK", log.n_explanations)
""")


@pytest.mark.slow
def test_mirrored_strategy_two_logical_cpus(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    res = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "MIRRORED_OK 2" in res.stdout


def test_text_logger_writes_escaped_token_tables(tmp_path):
    from tf_pathattr.callbacks import TextAttributionLogger

    keras.utils.set_random_seed(0)
    ids_in = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 4, name="embedding")(ids_in)
    model = keras.Model(ids_in, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h)))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.integers(1, 20, size=(32, 6)).astype("int32")
    y = (x[:, 0] > 10).astype("int32")
    probe = x[:2].copy()
    probe[1, 4:] = 0  # padding

    class Tok:  # a tokenizer with a hostile token
        def id_to_token(self, i):
            return "<script>" if i == probe[0, 0] else f"w{i}"

    logger = TextAttributionLogger(probe, target=1, method_options={"n_steps": 8}, log_dir=tmp_path, tokenizer=Tok())
    model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    assert logger.n_explanations == 2
    texts, gaps = [], []
    for path in sorted(Path(tmp_path).glob("events.out.tfevents.*")):
        for ev in tf.compat.v1.train.summary_iterator(str(path)):
            for v in ev.summary.value:
                if v.tag == "attributions/text":
                    texts.append((ev.step, tf.make_ndarray(v.tensor).reshape(-1)[0].decode()))
                elif v.tag == "completeness_gap":
                    gaps.append(float(tf.make_ndarray(v.tensor)))
    assert [s for s, _ in texts] == [0, 1]
    md = texts[-1][1]
    assert "&lt;script&gt;" in md and "<script>" not in md
    assert md.count("| w") == 6 - 1 + 4  # 5 more tokens in example 0, 4 real tokens in example 1
    assert len(gaps) == 2 and max(gaps) < 1e-4
    arrays = np.load(tmp_path / "arrays" / "epoch_0001.npz")
    np.testing.assert_array_equal(arrays["token_ids"], probe)
    np.testing.assert_array_equal(arrays["scores"][1, 4:], 0.0)
