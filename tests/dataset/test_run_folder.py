"""A run folder belongs to one run: fingerprints in run.json, resume rules, ids, failing table columns,
dead letters independent of position, and the shared progress bar."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr import dataset as D
from tf_pathattr.testing import models as zoo

IG8 = {"n_steps": 8}


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).uniform(-1, 1, size=(24, 8, 8, 3)).astype(np.float32)


def run(model, data, out, **kw):
    kw.setdefault("options", IG8)
    kw.setdefault("progress", False)
    return D.explain_dataset(model, data, method="ig", out=out, **kw)


class Interrupt(BaseException):
    """Stands for the process dying (not an Exception: nothing in the run may catch it)."""


def interrupted(monkeypatch, after_calls):
    """Make the run die on the ``after_calls + 1``-th batch, as a killed process would."""
    real = D.BatchExplainer.explain_records
    calls = [0]

    def dying(self, *a, **k):
        calls[0] += 1
        if calls[0] > after_calls:
            raise Interrupt()
        return real(self, *a, **k)

    monkeypatch.setattr(D.BatchExplainer, "explain_records", dying)
    return lambda: monkeypatch.setattr(D.BatchExplainer, "explain_records", real)


# ---------------------------------------------------------------- fingerprints and resume


def test_resume_with_another_model_is_refused_naming_the_model(x, tmp_path):
    run(zoo.toy_cnn(seed=0), x, tmp_path, batch_size=4, shard_size=8)
    with pytest.raises(ValueError, match=r"differs in model\.sha1.*overwrite"):
        run(zoo.toy_cnn(seed=1), x, tmp_path, batch_size=4, shard_size=8)  # same architecture, other weights
    # the same model (another object with the same weights) resumes: nothing explained again
    again = run(zoo.toy_cnn(seed=0), x, tmp_path, batch_size=4, shard_size=8)
    assert again.n_explained == 0 and again.shards_skipped == 3


def test_resume_from_a_model_file_is_refused_when_the_file_changes(x, tmp_path):
    path = tmp_path / "m.keras"
    zoo.toy_cnn(seed=0).save(path)
    run(str(path), x[:4], tmp_path / "out")
    zoo.toy_cnn(seed=2).save(path)
    with pytest.raises(ValueError, match=r"model\.sha1"):
        run(str(path), x[:4], tmp_path / "out")


def test_resume_with_changed_files_is_refused_naming_the_data(x, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    np.save(src / "a.npy", x[:8])
    np.save(src / "b.npy", x[8:16])
    model = zoo.toy_cnn()
    run(model, str(src / "*.npy"), tmp_path / "out", batch_size=4, shard_size=8)
    np.save(src / "b.npy", x[16:24][::-1])  # same names, other contents
    with pytest.raises(ValueError, match=r"differs in data\..*overwrite"):
        run(model, str(src / "*.npy"), tmp_path / "out", batch_size=4, shard_size=8)


def test_reordered_array_is_refused(x, tmp_path):
    model = zoo.toy_cnn()
    run(model, x, tmp_path, batch_size=4, shard_size=8)
    with pytest.raises(ValueError, match=r"data\.sha1"):
        run(model, x[::-1], tmp_path, batch_size=4, shard_size=8)


def test_unseeded_shuffled_dataset_is_refused_for_resume(x, tmp_path, monkeypatch):
    ids = np.asarray([f"r{i}" for i in range(len(x))])
    ds = tf.data.Dataset.from_tensor_slices({"x": x, "id": ids}).shuffle(len(x))  # no seed: new order each pass
    orders = [[e["id"].numpy() for e in ds] for _ in range(2)]
    assert orders[0] != orders[1]  # the premise: the stream changes order between passes
    model = zoo.toy_cnn()
    restore = interrupted(monkeypatch, after_calls=2)
    with pytest.raises(Interrupt):
        run(model, ds, tmp_path, batch_size=4, shard_size=4)
    restore()
    assert len(list(tmp_path.glob("examples-*"))) == 2
    with pytest.raises(ValueError, match=r"data\.first_records_sha1.*overwrite"):
        run(model, ds, tmp_path, batch_size=4, shard_size=4)
    r = run(model, ds, tmp_path, batch_size=4, shard_size=4, overwrite=True)
    res = r.read()
    assert sorted(res["id"].tolist()) == sorted(ids.tolist())


def test_a_stream_changing_after_its_first_records_is_caught_on_the_finished_shards(x, tmp_path, monkeypatch):
    """The first 16 records agree, a later record of a finished shard moved: refused before anything
    is written (on main: 'r20' written twice, 'r35' never explained)."""
    model = zoo.toy_cnn()
    x = np.concatenate([x, x[:16] * 0.5])  # 40 records

    def stream(order):
        return ({"x": x[i], "id": f"r{i}"} for i in order)

    order = list(range(40))
    restore = interrupted(monkeypatch, after_calls=3)
    with pytest.raises(Interrupt):
        run(model, stream(order), tmp_path, batch_size=8, shard_size=8)
    restore()
    assert len(list(tmp_path.glob("examples-*"))) == 3  # records 0-23
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    swapped = order.copy()
    swapped[20], swapped[35] = 35, 20
    with pytest.raises(ValueError, match="other records than the run that wrote shard 2.*overwrite"):
        run(model, stream(swapped), tmp_path, batch_size=8, shard_size=8)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # nothing written
    # the same order resumes and equals an uninterrupted run
    r = run(model, stream(order), tmp_path, batch_size=8, shard_size=8)
    assert (r.shards_skipped, r.n_explained, r.n_results) == (3, 16, 40)
    whole = run(model, stream(order), tmp_path / "whole", batch_size=8, shard_size=8).read()
    got = r.read()
    assert got["id"].tolist() == whole["id"].tolist() == [f"r{i}" for i in range(40)]
    np.testing.assert_array_equal(got["attributions"], whole["attributions"])


def test_run_json_records_the_fingerprint(x, tmp_path):
    run(zoo.toy_cnn(), {"x": x[:4], "id": ["a", "b", "c", "d"]}, tmp_path, target=1)
    cfg = json.loads((tmp_path / "run.json").read_text())
    assert set(cfg["model"]) >= {"keras", "sha1"} and cfg["method"] == "integrated_gradients"
    assert cfg["options"] == IG8 and cfg["target"] == 1 and cfg["images"] == {"scale": "0,1", "preprocess": None}
    assert cfg["data"]["kind"] == "array" and len(cfg["data"]["sha1"]) == 40 and cfg["data"]["ids_sha1"]


# ---------------------------------------------------------------- ids


def test_duplicate_ids_in_arrays_are_refused_up_front(x, tmp_path):
    with pytest.raises(ValueError, match=r"duplicate id 'b' \(records 1 and 3\)"):
        run(zoo.toy_cnn(), {"x": x[:4], "id": ["a", "b", "c", "b"]}, tmp_path)
    assert not list(tmp_path.glob("attributions-*"))


def test_duplicate_ids_in_a_stream_stop_before_the_shard_is_written_and_the_folder_reads_back(x, tmp_path):
    ids = ["a", "b", "c", "d", "e", "f", "a", "h"]
    stream = ({"x": x[i], "id": ids[i]} for i in range(8))
    with pytest.raises(ValueError, match=r"duplicate id 'a' \(record 6 and record 0\)"):
        run(zoo.toy_cnn(), stream, tmp_path, batch_size=2, shard_size=4, batched=False)
    res = D.read_results(tmp_path)  # the finished shard (records 0-3) reads back
    assert res["id"].tolist() == ["a", "b", "c", "d"]


# ---------------------------------------------------------------- table columns


def sigmoid_behind_reshape(seed=0):
    """One sigmoid unit behind a Reshape: outputs in [0, 1], so the metrics cannot tell probability from logit."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid"),
            keras.layers.Reshape((1,)),
        ]
    )


def one_unit_callable(seed=0):
    """The sigmoid unit behind a Reshape seen through a plain callable: nothing declares what its one output
    is, so the metrics refuse it unless ``score=`` says (issue 18 item 5: never decided from a batch's values)."""
    keras_model = sigmoid_behind_reshape(seed)

    def model(inputs):
        return keras_model(inputs)

    return model


def test_a_failing_table_column_costs_the_column_not_the_records(x, tmp_path):
    model = one_unit_callable()
    with pytest.raises(ValueError, match="score"):  # the premise: the metric refuses this model
        tpa.metrics.deletion(model, x[:2], np.ones((2, 8, 8, 3), np.float32), None)
    r = run(model, x[:6], tmp_path, metrics=("completeness_gap", "deletion_auc"), batch_size=4)
    assert (r.n_results, r.n_dead_letters) == (6, 0)
    res = r.read()
    assert np.all(np.isnan(res["table"]["deletion_auc"])) and np.all(np.isfinite(res["table"]["completeness_gap"]))
    np.testing.assert_allclose(res["attributions"], tpa.attribute(model, x[:6], None, method="ig", **IG8), atol=1e-6)
    assert r.column_errors["deletion_auc"]["records"] == 6
    assert "score" in r.column_errors["deletion_auc"]["reason"]
    assert json.loads((tmp_path / "summary.json").read_text())["column_errors"] == r.column_errors


def test_table_metrics_take_score_like_the_metric_functions(x, tmp_path):
    model = sigmoid_behind_reshape()
    r = run(model, x[:6], tmp_path, metrics=("deletion_auc",), score="output", batch_size=4)
    res = r.read()
    attr = tpa.attribute(model, x[:6], None, method="ig", **IG8)
    ref = tpa.metrics.deletion(model, x[:6], attr, 0, score="output").auc
    np.testing.assert_allclose(res["table"]["deletion_auc"], ref, atol=1e-6)
    assert r.column_errors == {}
    with pytest.raises(ValueError, match="score"):
        run(model, x[:6], tmp_path / "bad", metrics=("deletion_auc",), score="probabilty")


# ---------------------------------------------------------------- dead letters


def test_a_bad_record_is_a_dead_letter_wherever_it_stands_and_reruns_write_the_same_files(x, tmp_path):
    keras_model = zoo.toy_cnn()

    def model(inputs):  # a callable: its input shape is unknown, so records are not checked against it
        return keras_model(inputs)

    bad = np.zeros((8, 8, 2), np.float32)  # two channels where the model takes three
    written = {}
    for pos in (0, 3):
        records = [x[i] for i in range(6)]
        records.insert(pos, bad)
        for attempt in ("a", "b"):
            out = tmp_path / f"p{pos}{attempt}"
            r = run(model, iter(records), out, batch_size=4, batched=False)
            assert (r.n_results, r.n_dead_letters) == (6, 1)
            ((rid, reason),) = r.read()["dead_letters"]
            assert rid == str(pos)
            written[(pos, attempt)] = (out / "dead_letters-00000.jsonl").read_bytes()
            assert "0x" not in reason and "Graph execution error" not in reason
    assert written[(0, "a")] == written[(0, "b")] and written[(3, "a")] == written[(3, "b")]
    reason0 = json.loads(written[(0, "a")])["reason"]
    reason3 = json.loads(written[(3, "a")])["reason"]
    assert reason0 == reason3 and reason0.startswith("explaining failed:")


def test_failure_reasons_keep_the_cause_and_drop_addresses():
    from tf_pathattr.dataset.explainer import failure_reason

    graph = tf.errors.InvalidArgumentError(
        None,
        None,
        "Graph execution error:\n\nDetected at node model/dense/MatMul defined at (most recent call last):\n"
        '  File "x.py", line 3, in <module>\n\nMatrix size-incompatible: In[0]: [1,63], In[1]: [64,3]\n'
        "\t [[{{node model/dense/MatMul}}]] [Op:__inference_fn_1234]",
    )
    assert failure_reason(graph) == "InvalidArgumentError: Matrix size-incompatible: In[0]: [1,63], In[1]: [64,3]"
    obj = ValueError("cannot use <Foo object at 0x7f3a2b1c9d50> here")
    assert failure_reason(obj) == "ValueError: cannot use <Foo object> here"


# ---------------------------------------------------------------- progress


def test_progress_has_a_total_and_an_eta(x, tmp_path, monkeypatch, capsys):
    from tf_pathattr import _progress
    from tf_pathattr.dataset import run as run_module

    totals = []

    def spy(iterable=None, total=None, **kw):
        totals.append(total)
        return _progress.PlainProgress(iterable, total=total, **kw)

    monkeypatch.setattr(run_module, "_progress_bar", spy)
    src = tmp_path / "in"
    src.mkdir()
    np.save(src / "a.npy", x[:5])
    np.save(src / "b.npy", x[5])
    D.explain_dataset(zoo.toy_cnn(), str(src), method="ig", out=tmp_path / "o", options=IG8, progress=True)
    assert totals == [6]  # counted from the files: a batch of 5 and one example
    line = capsys.readouterr().err.strip().splitlines()[-1].split("\r")[-1]
    assert "6/6 ex (100%)" in line and "ETA 00:00" in line
    bar = _progress.PlainProgress(total=10, desc="d", unit="ex")
    bar.n, bar.start = 4, bar.start - 8.0  # 4 done in 8 s: 0.5 ex/s, 6 left -> 12 s
    assert bar.line().startswith("d: 4/10 ex (40%), 0.5 ex/s, ETA 00:12")


def test_an_option_value_every_record_fails_on_stops_the_run_and_leaves_the_folder_free(x, tmp_path):
    from tf_pathattr.dataset.run import MISCONFIGURED_AFTER

    data = np.concatenate([x] * 3)[: MISCONFIGURED_AFTER + 4]
    with pytest.raises(ValueError, match=r"first 64 records all failed.*n_steps must be >= 1"):
        run(zoo.toy_cnn(), data, tmp_path, options={"n_steps": 0}, batch_size=8)
    assert list(tmp_path.iterdir()) == []  # no run.json: the corrected rerun is not refused
    r = run(zoo.toy_cnn(), data, tmp_path, batch_size=8)
    assert r.n_results == len(data)
