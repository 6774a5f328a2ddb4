"""The Beam path: option checking against Beam's own list, a failed job (a dying worker), the handler's
pickling check, shard counts, --preprocess, and the command line's local default."""

import json

import numpy as np
import pytest

from tf_pathattr.testing import models as zoo

beam = pytest.importorskip("apache_beam")

import tf_pathattr as tpa  # noqa: E402
from tf_pathattr import beam as B  # noqa: E402
from tf_pathattr import dataset as D  # noqa: E402
from tf_pathattr.beam import AttributionModelHandler, default_pipeline_args, explain_files  # noqa: E402

IN_MEMORY = ["--runner=FnApiRunner", "--direct_running_mode=in_memory"]
IG8 = {"n_steps": 8}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam_job")
    model = zoo.toy_cnn()
    model.save(root / "m.keras")
    x = np.random.default_rng(0).uniform(0, 1, size=(12, 8, 8, 3)).astype(np.float32)
    src = root / "in"
    src.mkdir()
    np.save(src / "x.npy", x)
    return root, model, x, src


def test_unknown_pipeline_options_are_errors_naming_them():
    assert B.check_pipeline_args(["--runner=FnApiRunner", "--direct_num_workers=2", "--project=p"])
    with pytest.raises(ValueError, match="--direct_num_wrkers=2"):
        B.check_pipeline_args(["--runner=FnApiRunner", "--direct_num_wrkers=2"])
    with pytest.raises(ValueError, match="--preprocess"):
        B.check_pipeline_args(["--preprocess", "m:f"])


def test_the_local_default_is_multi_threading_and_multi_processing_is_opt_in():
    args = default_pipeline_args([])
    assert "--runner=FnApiRunner" in args and "--direct_running_mode=multi_threading" in args
    mp = default_pipeline_args(["--direct_running_mode=multi_processing"])
    assert mp.count("--direct_running_mode=multi_processing") == 1 and "multi_threading" not in " ".join(mp)
    assert default_pipeline_args(["--runner=DataflowRunner"]) == ["--runner=DataflowRunner"]


def test_num_shards_default_counts_records_not_files(tmp_path):
    np.save(tmp_path / "big.npy", np.zeros((2000, 8, 8, 3), np.float32))
    np.save(tmp_path / "one.npy", np.zeros((8, 8, 3), np.float32))
    files = [str(tmp_path / "big.npy"), str(tmp_path / "one.npy")]
    assert B.default_num_shards(files, (8, 8, 3)) == 2  # 2,001 records: two shards of at most 1,024
    assert B.default_num_shards(files[1:], (8, 8, 3)) == 1


def test_handler_refuses_an_unpicklable_model_at_construction():
    import keras

    class Unregistered(keras.Model):  # not registered for serialization: cannot be rebuilt on a worker
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Unregistered()
    model(np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="model_loader="):
        AttributionModelHandler(model, "ig")


def test_a_dying_worker_names_its_records_and_the_same_job_reruns(setup, tmp_path, monkeypatch):
    root, model, x, src = setup
    real = D.BatchExplainer.explain_records
    calls = [0]

    def dies_on_second_batch(self, *a, **k):
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("worker lost")
        return real(self, *a, **k)

    monkeypatch.setattr(D.BatchExplainer, "explain_records", dies_on_second_batch)
    kw = dict(method="ig", options=IG8, batch_size=4, num_shards=2, pipeline_args=IN_MEMORY)
    with pytest.raises(B.BeamJobError) as info:
        explain_files(str(root / "m.keras"), str(src / "*"), str(tmp_path / "o"), **kw)
    line = str(info.value)
    assert "\n" not in line and "worker lost" in line and "--overwrite" in line
    named = json.loads(line.split("while explaining records ")[1].split("]")[0].replace("'", '"') + "]")
    assert len(named) == 4 and all(n.startswith(str(src / "x.npy") + "#") for n in named)
    monkeypatch.setattr(D.BatchExplainer, "explain_records", real)
    summary = explain_files(str(root / "m.keras"), str(src / "*"), str(tmp_path / "o"), **kw)  # not blocked
    assert summary["results"] == 12
    res = D.read_results(tmp_path / "o")
    order = np.argsort([int(i.split("#")[1]) for i in res["id"].tolist()])
    np.testing.assert_allclose(res["attributions"][order], tpa.attribute(model, x, None, method="ig", **IG8), atol=1e-6)
    # another run into the finished folder is refused, naming --overwrite
    with pytest.raises(ValueError, match="overwrite"):
        explain_files(str(root / "m.keras"), str(src / "*"), str(tmp_path / "o"), **dict(kw, options={"n_steps": 4}))


PREPROCESS = """
import numpy as np

def to_unit(pixels):
    return np.asarray(pixels, np.float32) / 510.0 + 0.25
"""


@pytest.mark.slow
def test_preprocess_works_on_both_paths(setup, tmp_path, monkeypatch):
    from PIL import Image

    root, model, x, _ = setup
    (tmp_path / "my_prep.py").write_text(PREPROCESS)
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "img"
    src.mkdir()
    pixels = (x[:3] * 255).round().astype(np.uint8)
    for i in range(3):
        Image.fromarray(pixels[i]).save(src / f"{i}.png")
    ref = tpa.attribute(model, pixels.astype(np.float32) / 510.0 + 0.25, None, method="ig", **IG8).numpy()
    explain_files(
        str(root / "m.keras"),
        str(src / "*.png"),
        str(tmp_path / "beam"),
        method="ig",
        options=IG8,
        preprocess="my_prep:to_unit",
        pipeline_args=IN_MEMORY,
    )
    local = D.explain_dataset(
        str(root / "m.keras"),
        str(src),
        method="ig",
        out=tmp_path / "local",
        options=IG8,
        preprocess="my_prep:to_unit",
        progress=False,
    )
    for res in (D.read_results(tmp_path / "beam"), local.read()):
        order = np.argsort(res["id"].tolist())
        np.testing.assert_allclose(res["attributions"][order], ref, atol=1e-6)


def test_cli_unknown_flag_on_the_beam_path_is_one_error_line(setup, tmp_path, capsys):
    from tf_pathattr.cli import main

    root, _, _, src = setup
    code = main(
        [
            "explain-dataset",
            "--model",
            root / "m.keras",
            "--input",
            src / "*",
            "--method",
            "ig",
            "--out",
            tmp_path / "o",
            "--runner",
            "FnApiRunner",
            "--direct_num_wrkers=2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "--direct_num_wrkers=2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_cli_default_is_in_process_with_counts_at_the_end(setup, tmp_path, capsys):
    from tf_pathattr.cli import main

    root, _, _, src = setup
    np.save(src.parent / "bad.npy", np.zeros((3, 3), np.float32))
    code = main(
        [
            "explain-dataset",
            "--model",
            root / "m.keras",
            "--input",
            src / "*",
            src.parent / "bad.npy",
            "--method",
            "ig",
            "--out",
            tmp_path / "o",
            "--options",
            json.dumps(IG8),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "records 13 = results 12 + dead letters 1 (in-process)" in out and "dead letters: " in out
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["runner"] == "in-process"
