"""tpa.dataset.explain_dataset: equality with tpa.attribute, the table, dead letters, formats, resume,
and tf.distribute (MirroredStrategy on two logical CPU devices, in a subprocess)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr import dataset as D
from tf_pathattr.testing.models import digits_cnn

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    x, y = tpa.data.load_digits_images()
    return x[:40], y[:40]


@pytest.fixture(scope="module")
def model():
    return digits_cnn()


def by_id(res, ids):
    pos = {r: i for i, r in enumerate(res["id"].tolist())}
    return np.asarray([pos[i] for i in ids])


def test_equals_attribute_and_table_columns(model, digits, tmp_path):
    x, _ = digits
    r = D.explain_dataset(
        model, x, method="ig", out=tmp_path, options={"n_steps": 8}, batch_size=8, shard_size=16, progress=False
    )
    assert (r.n_records, r.n_results, r.n_dead_letters, r.n_shards) == (40, 40, 0, 3)
    res = D.read_results(tmp_path)
    assert res["id"].tolist() == [str(i) for i in range(40)]
    ref = tpa.attribute(model, x, None, method="ig", n_steps=8).numpy()
    np.testing.assert_allclose(res["attributions"], ref, atol=1e-6, rtol=0)
    # independent table values: the predicted class, its logit, and sum(attr) - (F(x) - F(0))
    logits = model.predict(x, verbose=0)
    pred = logits.argmax(1)
    t = res["table"]
    assert list(t) == ["id", "target", "score", "completeness_gap"]
    np.testing.assert_array_equal(t["target"], pred)
    np.testing.assert_allclose(t["score"], logits[np.arange(40), pred], rtol=1e-5, atol=1e-6)
    f0 = model.predict(np.zeros_like(x), verbose=0)[np.arange(40), pred]
    gap = ref.reshape(40, -1).sum(1) - (logits[np.arange(40), pred] - f0)
    np.testing.assert_allclose(t["completeness_gap"], gap, atol=1e-5)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["records"] == 40 and summary["results"] == 40 and summary["dead_letters"] == 0


def test_fixed_target_labels_and_deletion_auc(model, digits, tmp_path):
    x, y = digits
    r = D.explain_dataset(
        model,
        (x[:10], y[:10]),
        "labels",
        method="ig",
        out=tmp_path / "a",
        options={"n_steps": 8},
        batch_size=4,
        metrics=("completeness_gap", "deletion_auc"),
        progress=False,
    )
    res = r.read()
    np.testing.assert_array_equal(res["table"]["target"], y[:10])
    ref = tpa.attribute(model, x[:10], y[:10], method="ig", n_steps=8).numpy()
    np.testing.assert_allclose(res["attributions"], ref, atol=1e-6, rtol=0)
    auc = tpa.metrics.deletion(model, x[:10], ref, y[:10]).auc
    np.testing.assert_allclose(res["table"]["deletion_auc"], auc, atol=1e-6)
    # one int for every example
    r = D.explain_dataset(model, x[:6], 3, method="ig", out=tmp_path / "b", options={"n_steps": 8}, progress=False)
    np.testing.assert_array_equal(r.read()["table"]["target"], [3] * 6)


def test_tf_data_examples_and_batches(model, digits, tmp_path):
    x, y = digits
    ref = tpa.attribute(model, x[:12], y[:12], method="ig", n_steps=8).numpy()
    for name, ds in [
        ("ex", tf.data.Dataset.from_tensor_slices((x[:12], y[:12]))),
        ("batches", tf.data.Dataset.from_tensor_slices((x[:12], y[:12])).batch(5)),
    ]:
        res = D.explain_dataset(
            model, ds, "labels", method="ig", out=tmp_path / name, options={"n_steps": 8}, batch_size=4, progress=False
        ).read()
        np.testing.assert_allclose(res["attributions"], ref, atol=1e-6, rtol=0)
        assert res["id"].tolist() == [str(i) for i in range(12)]


def test_dead_letters_per_record_from_files(model, digits, tmp_path):
    from PIL import Image

    x, _ = digits
    src = tmp_path / "in"
    src.mkdir()
    np.save(src / "a_batch.npy", x[:5])
    np.save(src / "b_wrong.npy", np.zeros((9, 9, 1), np.float32))
    bad = x[5].copy()
    bad[2, 2, 0] = np.nan
    np.save(src / "c_nan.npy", bad)
    (src / "d_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 5)
    Image.fromarray((x[6, ..., 0] * 255).round().astype(np.uint8)).save(src / "e_good.png")
    (src / "f_text.npy").write_bytes(b"not an array")
    r = D.explain_dataset(
        model,
        str(src),
        method="ig",
        out=tmp_path / "out",
        options={"n_steps": 8},
        batch_size=4,
        shard_size=4,
        progress=False,
    )
    res = r.read()
    assert r.n_records == 10 and r.n_records == r.n_results + r.n_dead_letters
    assert r.n_results == len(res["id"]) == 6 and r.n_dead_letters == len(res["dead_letters"]) == 4
    reasons = dict(res["dead_letters"])
    assert "wrong shape: (9, 9, 1)" in reasons[str(src / "b_wrong.npy")]
    assert "non-finite" in reasons[str(src / "c_nan.npy")]
    assert "cannot decode the image" in reasons[str(src / "d_corrupt.png")]
    assert "cannot read a .npy array" in reasons[str(src / "f_text.npy")]
    ids = [f"{src / 'a_batch.npy'}#{i}" for i in range(5)]
    ref = tpa.attribute(model, x[:5], None, method="ig", n_steps=8).numpy()
    np.testing.assert_allclose(res["attributions"][by_id(res, ids)], ref, atol=1e-6, rtol=0)
    png = np.asarray(Image.open(src / "e_good.png"), np.float32)[None, ..., None] / 255.0
    np.testing.assert_allclose(
        res["attributions"][by_id(res, [str(src / "e_good.png")])],
        tpa.attribute(model, png, None, method="ig", n_steps=8).numpy(),
        atol=1e-6,
        rtol=0,
    )


def test_nan_array_record_is_a_dead_letter_not_an_error(model, digits, tmp_path):
    x = digits[0][:8].copy()
    x[3, 0, 0, 0] = np.inf
    r = D.explain_dataset(model, x, method="ig", out=tmp_path, options={"n_steps": 8}, progress=False)
    res = r.read()
    assert (r.n_results, r.n_dead_letters) == (7, 1)
    assert res["dead_letters"][0][0] == "3" and "non-finite" in res["dead_letters"][0][1]
    keep = [0, 1, 2, 4, 5, 6, 7]
    np.testing.assert_allclose(
        res["attributions"], tpa.attribute(model, x[keep], None, method="ig", n_steps=8), atol=1e-6, rtol=0
    )
    # a shard made only of dead letters, between two good ones
    x[2:4] = np.nan
    r = D.explain_dataset(
        model, x, method="ig", out=tmp_path / "mid", options={"n_steps": 8}, batch_size=2, shard_size=2, progress=False
    )
    res = r.read()
    assert (r.n_results, r.n_dead_letters, r.n_shards) == (6, 2, 4)
    assert res["id"].tolist() == ["0", "1", "4", "5", "6", "7"] and [d for d, _ in res["dead_letters"]] == ["2", "3"]


def test_bad_options_raise_instead_of_dead_lettering(model, digits, tmp_path):
    with pytest.raises((TypeError, ValueError)):
        D.explain_dataset(model, digits[0][:4], method="ig", out=tmp_path, options={"n_stepz": 8}, progress=False)
    with pytest.raises(ValueError, match="metrics"):
        D.explain_dataset(model, digits[0][:4], method="ig", out=tmp_path / "m", metrics=("auc",), progress=False)


def test_tfrecord_in_and_out_and_csv_table(model, digits, tmp_path):
    x, y = digits
    path = tmp_path / "data.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in range(6):
            f = {
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=x[i].reshape(-1))),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y[i])])),
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    r = D.explain_dataset(
        model,
        str(path),
        "labels",
        method="ig",
        out=tmp_path / "o",
        options={"n_steps": 8},
        format="tfrecord",
        table="csv",
        batch_size=4,
        progress=False,
    )
    assert sorted(p.name for p in (tmp_path / "o").glob("attributions-*")) == ["attributions-00000.tfrecord"]
    assert (tmp_path / "o" / "examples-00000.csv").exists()
    res = r.read()
    assert res["id"].tolist() == [f"{path}#{i}" for i in range(6)]
    np.testing.assert_allclose(
        res["attributions"], tpa.attribute(model, x[:6], y[:6], method="ig", n_steps=8), atol=1e-6, rtol=0
    )
    np.testing.assert_array_equal(res["table"]["target"], y[:6])
    # the shard is a plain TFRecord file that tf.data reads back
    assert sum(1 for _ in tf.data.TFRecordDataset(str(tmp_path / "o" / "attributions-00000.tfrecord"))) == 6


def test_split_method_writes_both_parts(model, digits, tmp_path):
    x = digits[0][:4]
    res = D.explain_dataset(
        model, x, method="split_integrated_gradients", out=tmp_path, options={"n_steps": 8}, progress=False
    ).read()
    left, right = tpa.attribute(model, x, None, method="split_integrated_gradients", n_steps=8)
    np.testing.assert_allclose(res["attributions_left"], left, atol=1e-6, rtol=0)
    np.testing.assert_allclose(res["attributions_right"], right, atol=1e-6, rtol=0)


def test_other_configuration_in_same_folder_is_refused(model, digits, tmp_path):
    x = digits[0][:4]
    D.explain_dataset(model, x, method="ig", out=tmp_path, options={"n_steps": 8}, progress=False)
    with pytest.raises(ValueError, match="another run.*options.n_steps.*overwrite"):
        D.explain_dataset(model, x, method="ig", out=tmp_path, options={"n_steps": 16}, progress=False)
    r = D.explain_dataset(model, x, method="ig", out=tmp_path, options={"n_steps": 16}, progress=False, overwrite=True)
    assert r.n_explained == 4 and r.shards_skipped == 0


RESUME_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import tf_pathattr as tpa
    from tf_pathattr import dataset as D
    from tf_pathattr.testing.models import digits_cnn

    x = tpa.data.load_digits_images()[0][:40]
    kill_at = int(sys.argv[2])

    def stream():
        for i in range(len(x)):
            if i == kill_at:  # the process dies while reading the records of a later shard
                os.kill(os.getpid(), signal.SIGKILL)
            yield x[i]

    r = D.explain_dataset(digits_cnn(), stream(), method="ig", out=sys.argv[1], options={{"n_steps": 8}},
                          batch_size=4, shard_size=8, progress=False)
    print("explained", r.n_explained, "skipped", r.shards_skipped)
""")


@pytest.mark.slow
def test_resume_after_kill_skips_finished_shards_and_equals_uninterrupted(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT.format(tests=str(REPO / "tests")))
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    out = tmp_path / "out"
    killed = subprocess.run(
        [sys.executable, str(script), str(out), "19"], env=env, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    done = sorted(p.name for p in out.glob("examples-*"))
    assert done == ["examples-00000.parquet", "examples-00001.parquet"]  # records 0-15 finished, 16-18 lost
    stamps = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*-0000[01].*")}
    resumed = subprocess.run(
        [sys.executable, str(script), str(out), "-1"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "explained 24 skipped 2" in resumed.stdout  # 40 - 16: the finished shards are not recomputed
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*-0000[01].*")} == stamps
    whole = tmp_path / "whole"
    fresh = subprocess.run(
        [sys.executable, str(script), str(whole), "-1"], env=env, capture_output=True, text=True, timeout=300
    )
    assert fresh.returncode == 0 and "explained 40 skipped 0" in fresh.stdout
    a, b = D.read_results(out), D.read_results(whole)
    assert a["id"].tolist() == b["id"].tolist() == [str(i) for i in range(40)]
    np.testing.assert_array_equal(a["attributions"], b["attributions"])
    for k in b["table"]:
        np.testing.assert_array_equal(a["table"][k], b["table"][k])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.iterdir())


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    import tf_pathattr as tpa
    from tf_pathattr import dataset as D
    from tf_pathattr.testing.models import digits_cnn

    seen = []
    part = D.BatchExplainer._explain_part

    def spy(self, x, target):  # records which replica / device explained which rows
        ctx = tf.distribute.get_replica_context()
        rid = int(tf.get_static_value(ctx.replica_id_in_sync_group)) if tf.distribute.has_strategy() else -1
        res = part(self, x, target)
        seen.append((rid, int(x.shape[0]), res["attributions"].device))
        return res

    D.BatchExplainer._explain_part = spy
    x = tpa.data.load_digits_images()[0][:20]
    model = digits_cnn()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = sys.argv[1]
    for method in ("ig", "guided_ig"):
        with strategy.scope():
            r = D.explain_dataset(model, x, method=method, out=out + "/two_" + method, options={{"n_steps": 8}},
                                  batch_size=8, progress=False)
        r = D.explain_dataset(model, x, method=method, out=out + "/one_" + method, options={{"n_steps": 8}},
                              batch_size=8, progress=False)
    print(json.dumps(seen))
""")


@pytest.mark.slow
def test_mirrored_strategy_two_logical_cpus_equals_one_device(tmp_path):
    script = tmp_path / "mirror.py"
    script.write_text(MIRRORED_SCRIPT.format(tests=str(REPO / "tests")))
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    two = [s for s in seen if s[0] >= 0]
    # batches of 8, 8 and 4 (padded to 8) split in halves across replicas 0 and 1, for each of the two methods
    assert sorted((r, n) for r, n, _ in two) == sorted([(0, 4), (1, 4)] * 6)
    assert {d.split("device:")[-1] for r, _, d in two if r == 1} == {"CPU:1"}
    for method in ("ig", "guided_ig"):
        a, b = D.read_results(tmp_path / f"two_{method}"), D.read_results(tmp_path / f"one_{method}")
        assert a["id"].tolist() == b["id"].tolist()
        np.testing.assert_allclose(a["attributions"], b["attributions"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(a["table"]["score"], b["table"]["score"], atol=1e-6)
        assert json.loads((tmp_path / f"two_{method}" / "summary.json").read_text())["replicas"] == 2


def test_partial_batches_are_padded_to_the_batch_size(model, digits, tmp_path, monkeypatch):
    x = digits[0][:11]
    sizes = []
    call = D.BatchExplainer.__call__

    def spy(self, xb, target=None, **kw):
        sizes.append(len(xb))
        return call(self, xb, target, **kw)

    monkeypatch.setattr(D.BatchExplainer, "__call__", spy)
    res = D.explain_dataset(
        model,
        x,
        [int(i % 10) for i in range(11)],
        method="ig",
        out=tmp_path,
        options={"n_steps": 8},
        batch_size=4,
        shard_size=8,
        progress=False,
    ).read()
    assert sizes == [4, 4, 4]  # records 0-7 in two batches, 8-10 padded with a copy of record 10
    assert res["id"].tolist() == [str(i) for i in range(11)]
    ref = tpa.attribute(model, x, np.arange(11) % 10, method="ig", n_steps=8).numpy()
    np.testing.assert_allclose(res["attributions"], ref, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(res["table"]["target"], np.arange(11) % 10)


def test_image_files_follow_the_scale_option(model, tmp_path):
    from PIL import Image

    pixels = (np.random.default_rng(3).uniform(size=(8, 8)) * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    x = pixels.astype(np.float32)[None, ..., None] / 127.5 - 1.0
    res = D.explain_dataset(
        model,
        str(tmp_path / "a.png"),
        method="ig",
        out=tmp_path / "o",
        scale="-1,1",
        options={"n_steps": 8},
        progress=False,
    ).read()
    np.testing.assert_allclose(
        res["attributions"], tpa.attribute(model, x, None, method="ig", n_steps=8), atol=1e-6, rtol=0
    )
    # ImageNet "caffe" preprocessing needs RGB: the grey record becomes a dead letter that says so
    r = D.explain_dataset(
        model, str(tmp_path / "a.png"), method="ig", out=tmp_path / "c", scale="caffe", progress=False
    )
    assert (r.n_results, r.n_dead_letters) == (0, 1)
    assert "needs RGB images" in r.read()["dead_letters"][0][1]
    with pytest.raises(ValueError, match="scale"):
        D.explain_dataset(model, str(tmp_path / "a.png"), method="ig", out=tmp_path / "d", scale="0,2")
