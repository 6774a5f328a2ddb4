"""tf-pathattr explain-dataset through a subprocess: on Beam (the local multi-processing default) and without
Beam (apache_beam made unimportable in the child by a meta-path blocker: the real fallback runs)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import tf_pathattr as tpa
from tf_pathattr import dataset as D

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI with apache_beam unimportable, as on an install without the [beam] extra.
NO_BEAM = textwrap.dedent("""
    import sys

    class NoBeam:
        def find_spec(self, name, path=None, target=None):
            if name == "apache_beam" or name.startswith("apache_beam."):
                raise ImportError("No module named 'apache_beam' (blocked)")
            return None

    sys.meta_path.insert(0, NoBeam())
    from tf_pathattr.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def cli(*args, beam=True, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    head = ["-m", "tf_pathattr.cli"] if beam else ["-c", NO_BEAM]
    return subprocess.run(
        [sys.executable, *head, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_dataset")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.save(root / "m.keras")
    x = tpa.data.load_digits_images()[0][:12]
    src = root / "in"
    src.mkdir()
    np.save(src / "digits.npy", x)
    np.save(src / "wrong.npy", np.zeros((3, 3), np.float32))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x01" * 30)
    return root, model, x, src


def check_out(out, model, x, src):
    res = D.read_results(out)
    pos = {r: i for i, r in enumerate(res["id"].tolist())}
    order = [pos[f"{src / 'digits.npy'}#{i}"] for i in range(len(x))]
    ref = tpa.attribute(model, x, None, method="ig", n_steps=8).numpy()
    np.testing.assert_allclose(res["attributions"][order], ref, atol=1e-6, rtol=0)
    assert sorted(i for i, _ in res["dead_letters"]) == [str(src / "broken.png"), str(src / "wrong.npy")]
    return res


@pytest.mark.slow
def test_cli_without_beam_falls_back_in_process(files, tmp_path):
    root, model, x, src = files
    res = cli(
        "explain-dataset",
        "--model",
        root / "m.keras",
        "--input",
        src / "*",
        "--method",
        "ig",
        "--out",
        tmp_path / "o",
        "--options",
        json.dumps({"n_steps": 8}),
        beam=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "records 14 = results 12 + dead letters 2 (in-process)" in res.stdout
    check_out(tmp_path / "o", model, x, src)
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["runner"] == "in-process"
    # a runner needs Beam: one error line
    res = cli(
        "explain-dataset",
        "--model",
        root / "m.keras",
        "--input",
        src / "*",
        "--method",
        "ig",
        "--out",
        tmp_path / "o2",
        "--runner",
        "DirectRunner",
        beam=False,
    )
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "tf-pathattr: error: --runner and Beam pipeline options need apache-beam" in res.stderr


@pytest.mark.slow
def test_cli_on_beam_direct_runner(files, tmp_path):
    pytest.importorskip("apache_beam")
    root, model, x, src = files
    res = cli(
        "explain-dataset",
        "--model",
        root / "m.keras",
        "--input",
        src / "*",
        "--method",
        "ig",
        "--out",
        tmp_path / "o",
        "--options",
        json.dumps({"n_steps": 8}),
        "--batch-size",
        4,
        "--num-shards",
        2,
        "--runner",
        "FnApiRunner",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "records 14 = results 12 + dead letters 2 (Beam)" in res.stdout
    assert "dead letters: " in res.stdout
    # no Beam / TensorFlow INFO lines without --verbose; a progress line on the Beam path
    assert not [ln for ln in res.stderr.splitlines() if "INFO" in ln or ln.startswith("I0000")], res.stderr
    assert "Beam: 12/14 records explained" in res.stderr.replace("\r", "\n")
    check_out(tmp_path / "o", model, x, src)
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert "--direct_running_mode=multi_threading" in run["pipeline_args"]
    assert sorted(p.name for p in (tmp_path / "o").glob("examples-*")) == [
        "examples-00000-of-00002.parquet",
        "examples-00001-of-00002.parquet",
    ]


def test_cli_errors(files, tmp_path):
    root, _, _, src = files
    from tf_pathattr.cli import main

    assert (
        main(
            [
                "explain-dataset",
                "--model",
                str(root / "m.keras"),
                "--input",
                str(tmp_path / "none*.npy"),
                "--method",
                "ig",
                "--out",
                str(tmp_path / "o"),
                "--no-beam",
            ]
        )
        == 1
    )
    assert (
        main(
            [
                "explain-dataset",
                "--model",
                str(root / "m.keras"),
                "--input",
                str(src),
                "--method",
                "nope",
                "--out",
                str(tmp_path / "o"),
                "--no-beam",
            ]
        )
        == 1
    )
    assert (
        main(
            [
                "explain-dataset",
                "--model",
                str(root / "m.keras"),
                "--input",
                str(src),
                "--method",
                "ig",
                "--out",
                str(tmp_path / "o"),
                "--no-beam",
                "--metrics",
                "bogus",
            ]
        )
        == 1
    )
    assert (
        main(
            [
                "explain-dataset",
                "--model",
                str(root / "m.keras"),
                "--input",
                str(src),
                "--method",
                "ig",
                "--out",
                str(tmp_path / "o"),
                "--no-beam",
                "--project=x",
            ]
        )
        == 1
    )
    with pytest.raises(SystemExit):  # other commands still refuse unknown options
        main(["methods", "--project=x"])


@pytest.mark.slow
def test_core_imports_without_beam_and_the_beam_module_says_what_to_install():
    code = NO_BEAM.split("from tf_pathattr.cli import main")[0] + textwrap.dedent("""
        import tf_pathattr, tf_pathattr.dataset
        assert tf_pathattr.explain_dataset is tf_pathattr.dataset.explain_dataset
        try:
            import tf_pathattr.beam
        except ImportError as exc:
            print("ImportError:", exc)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ImportError: tf_pathattr.beam needs Apache Beam: pip install 'tf_pathattr[beam]'" in res.stdout
