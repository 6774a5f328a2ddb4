"""tf_pathattr.beam: the RunInference model handler, per-record dead letters, and the file job on a local
Beam runner (FnApiRunner in memory; the CLI test runs the multi-processing default)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam")

import tf_pathattr as tpa  # noqa: E402
from tf_pathattr import dataset as D  # noqa: E402
from tf_pathattr.beam import AttributionModelHandler, ExplainRecords, explain_files  # noqa: E402
from tf_pathattr.testing.models import digits_cnn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IN_MEMORY = ["--runner=FnApiRunner", "--direct_running_mode=in_memory"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam")
    model = digits_cnn()
    model.save(root / "m.keras")
    x = tpa.data.load_digits_images()[0][:24]
    return root, model, x


def test_import_tf_pathattr_does_not_import_beam():
    code = "import sys, tf_pathattr, tf_pathattr.dataset; print('apache_beam' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "False"


def test_handler_run_inference_per_record(setup):
    root, model, x = setup
    h = AttributionModelHandler(str(root / "m.keras"), "ig", options={"n_steps": 8}, max_batch_size=8)
    assert h.batch_elements_kwargs() == {"max_batch_size": 8}
    assert h.get_metrics_namespace() == "tf_pathattr"
    loaded = h.load_model()
    nan = x[2].copy()
    nan[1, 1, 0] = np.nan
    batch = [x[0], np.zeros((9, 9, 1), np.float32), nan, x[3], (x[4], 7), np.array(["a"] * 64).reshape(8, 8, 1)]
    assert h.get_num_bytes(batch[:2]) == x[0].nbytes + 9 * 9 * 4
    out = list(h.run_inference(batch, loaded))
    assert len(out) == len(batch) and all(o.example is b for o, b in zip(out, batch))
    assert "wrong shape" in out[1].inference["error"]
    assert "non-finite" in out[2].inference["error"]
    assert "expected numbers" in out[5].inference["error"]
    ref = tpa.attribute(model, x[[0, 3]], None, method="ig", n_steps=8).numpy()
    np.testing.assert_allclose(out[0].inference["attributions"], ref[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out[3].inference["attributions"], ref[1], atol=1e-6, rtol=0)
    assert out[4].inference["target"] == 7
    np.testing.assert_allclose(
        out[4].inference["attributions"],
        tpa.attribute(model, x[4:5], 7, method="ig", n_steps=8).numpy()[0],
        atol=1e-6,
        rtol=0,
    )
    assert set(out[0].inference) == {"attributions", "target", "score", "completeness_gap"}


def test_handler_loads_savedmodels(setup, tmp_path):
    root, model, x = setup
    model.export(str(tmp_path / "plain"), verbose=False)
    tpa.saved_model.export(model, tmp_path / "tpa", methods=("ig",), options={"ig": {"n_steps": 8}})
    ref = tpa.attribute(model, x[:3], None, method="ig", n_steps=8).numpy()
    for path in (tmp_path / "plain", tmp_path / "tpa"):
        h = AttributionModelHandler(str(path), "ig", options={"n_steps": 8})
        out = list(h.run_inference(list(x[:3]), h.load_model()))
        np.testing.assert_allclose(np.stack([o.inference["attributions"] for o in out]), ref, atol=1e-6, rtol=0)


def test_handler_checks_arguments_in_the_driver(setup):
    root, _, _ = setup
    with pytest.raises(ValueError, match="unknown method"):
        AttributionModelHandler(str(root / "m.keras"), "nope")
    with pytest.raises(ValueError, match="metrics"):
        AttributionModelHandler(str(root / "m.keras"), "ig", metrics=("auc",))
    with pytest.raises(TypeError, match="model_loader"):
        AttributionModelHandler(lambda x: x, "ig")


@pytest.mark.slow
def test_run_inference_pipeline_records_in_equal_results_plus_dead_letters(setup):
    from apache_beam.testing.util import assert_that, equal_to

    root, model, x = setup
    records = [(f"r{i}", x[i]) for i in range(10)]
    records[3] = ("r3", np.full((8, 8, 1), np.nan, np.float32))
    records[7] = ("r7", np.zeros((4, 4), np.float32))
    h = AttributionModelHandler(
        model_loader=digits_cnn, method="ig", options={"n_steps": 8}, min_batch_size=4, max_batch_size=4
    )
    ref = tpa.attribute(model, x[:10], None, method="ig", n_steps=8).numpy()

    def check_results(got):
        assert sorted(k for k, _ in got) == [f"r{i}" for i in range(10) if i not in (3, 7)]
        for k, inf in got:
            np.testing.assert_allclose(inf["attributions"], ref[int(k[1:])], atol=1e-6, rtol=0)

    with beam.Pipeline(argv=IN_MEMORY) as p:
        out = p | beam.Create(records) | ExplainRecords(h)
        assert_that(out.results, check_results, label="results")
        dead = out.dead_letters | beam.MapTuple(lambda k, reason: (k, reason.split(":")[0]))
        assert_that(dead, equal_to([("r3", "non-finite values"), ("r7", "wrong shape")]), label="dead")


def make_inputs(root, x):
    from PIL import Image

    src = root / "in"
    src.mkdir(exist_ok=True)
    np.save(src / "digits.npy", x)
    np.save(src / "wrong.npy", np.zeros((8, 9, 1), np.float32))
    nan = x[0].copy()
    nan[4, 4, 0] = np.nan
    np.save(src / "nan.npy", nan)
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    Image.fromarray((x[1, ..., 0] * 255).round().astype(np.uint8)).save(src / "good.png")
    return src


@pytest.mark.slow
@pytest.mark.parametrize("method", ["integrated_gradients", "guided_integrated_gradients"])
def test_file_job_equals_in_process_attribute(setup, tmp_path, method):
    root, model, x = setup
    src = make_inputs(tmp_path, x)
    summary = explain_files(
        str(root / "m.keras"),
        str(src / "*"),
        str(tmp_path / "out"),
        method=method,
        options={"n_steps": 8},
        batch_size=8,
        num_shards=3,
        pipeline_args=IN_MEMORY,
    )
    n = len(x)
    assert summary["records"] == n + 4 == summary["results"] + summary["dead_letters"]
    assert summary["dead_letters"] == 3
    res = D.read_results(tmp_path / "out")
    assert len(res["id"]) == n + 1 and len(res["dead_letters"]) == 3
    reasons = dict(res["dead_letters"])
    assert "cannot decode the image" in reasons[str(src / "corrupt.png")]
    assert "wrong shape: (8, 9, 1)" in reasons[str(src / "wrong.npy")]
    assert "non-finite values" in reasons[str(src / "nan.npy")]
    pos = {r: i for i, r in enumerate(res["id"].tolist())}
    order = [pos[f"{src / 'digits.npy'}#{i}"] for i in range(n)]
    ref = tpa.attribute(model, x, None, method=method, n_steps=8).numpy()
    np.testing.assert_allclose(res["attributions"][order], ref, atol=1e-6, rtol=0)
    # the same table as the in-process runner
    local = D.explain_dataset(
        model, x, method=method, out=tmp_path / "local", options={"n_steps": 8}, progress=False
    ).read()
    for k in ("target", "score", "completeness_gap"):
        np.testing.assert_allclose(res["table"][k][order], local["table"][k], atol=1e-6)
    names = sorted(p.name for p in (tmp_path / "out").glob("attributions-*"))
    assert all(name.endswith("-of-00003.npz") for name in names)
    # a second run into the same folder is refused; with overwrite it rewrites the same files and arrays
    with pytest.raises(ValueError, match="already holds results"):
        explain_files(
            str(root / "m.keras"),
            str(src / "*"),
            str(tmp_path / "out"),
            method=method,
            options={"n_steps": 8},
            batch_size=8,
            num_shards=3,
            pipeline_args=IN_MEMORY,
        )

    def shards():
        out = {}
        for f in (tmp_path / "out").glob("attributions-*"):
            with np.load(f) as z:
                out[f.name] = {k: z[k] for k in z.files}
        return out

    before = shards()
    explain_files(
        str(root / "m.keras"),
        str(src / "*"),
        str(tmp_path / "out"),
        method=method,
        options={"n_steps": 8},
        batch_size=8,
        num_shards=3,
        pipeline_args=IN_MEMORY,
        overwrite=True,
    )
    after = shards()
    assert sorted(after) == sorted(before)
    for name in before:
        for k in before[name]:
            np.testing.assert_array_equal(after[name][k], before[name][k])


def test_handler_with_a_keras_model_survives_pickling(setup):
    import pickle

    _, model, x = setup
    h = pickle.loads(pickle.dumps(AttributionModelHandler(model, "ig", options={"n_steps": 8})))
    out = list(h.run_inference(list(x[:3]), h.load_model()))
    np.testing.assert_allclose(
        np.stack([o.inference["attributions"] for o in out]),
        tpa.attribute(model, x[:3], None, method="ig", n_steps=8),
        atol=1e-6,
        rtol=0,
    )
