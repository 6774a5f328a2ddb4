"""The tf-pathattr command, run through subprocess, error cases included."""
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import models as zoo
import tf_pathattr as tpa

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cache=None, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    if cache is not None:
        env["TF_PATHATTR_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "tf_pathattr.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def cli_inprocess(capsys, *args):
    """The same entry point in this process (cheaper than a fresh TF import), for the many error cases."""
    from tf_pathattr.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def assert_one_error_line(res, pattern):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("tf-pathattr: error:")]
    assert len(errors) == 1, res.stderr
    assert pattern in errors[0], errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    model = zoo.toy_cnn(channels=1)
    model.save(root / "m.keras")
    model.export(str(root / "sm"), verbose=False)
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype(np.float32)
    np.save(root / "x.npy", x)
    img = (np.random.default_rng(1).uniform(size=(16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(root / "img.png")
    (root / "junk.npy").write_bytes(b"not an array")
    np.save(root / "wrong.npy", np.zeros((2, 9, 9, 1), np.float32))
    return root, model, x


def test_methods_lists_registered_names():
    res = cli("methods")
    assert res.returncode == 0, res.stderr
    listed = [ln.split()[0] for ln in res.stdout.splitlines() if ln.strip()]
    assert listed == list(tpa.METHODS)


@pytest.mark.slow
def test_explain_keras_and_savedmodel_npy_png(files, tmp_path):
    root, model, x = files
    ref = tpa.integrated_gradients(model, x, 1, n_steps=16).numpy()
    for src in (root / "m.keras", root / "sm"):
        out = tmp_path / f"{src.stem}.npy"
        res = cli("explain", "--model", src, "--input", root / "x.npy", "--method", "ig", "--out", out,
                  "--target", 1, "--options", json.dumps({"n_steps": 16}), "--png")
        assert res.returncode == 0, res.stderr
        np.testing.assert_allclose(np.load(out), ref, atol=1e-6)
        with Image.open(out.with_suffix(".png")) as im:
            assert im.size == (16, 8)  # two 8x8 overlays side by side
            from tf_pathattr import viz

            expected = viz.to_uint8(np.concatenate([viz.overlay(x[i], ref[i]) for i in range(2)], axis=1))
            assert np.abs(np.asarray(im).astype(int) - expected.astype(int)).max() <= 1


def test_explain_image_input_is_converted_and_resized(files, tmp_path, capsys):
    root, model, _ = files
    out = tmp_path / "img.npy"
    res = cli_inprocess(capsys, "explain", "--model", root / "m.keras", "--input", root / "img.png", "--method",
              "integrated_gradients", "--out", out, "--options", '{"n_steps": 8}')
    assert res.returncode == 0, res.stderr
    with Image.open(root / "img.png") as im:
        x = np.asarray(im.convert("L").resize((8, 8), Image.BILINEAR), np.float32)[None, ..., None] / 255.0
    np.testing.assert_allclose(np.load(out), tpa.integrated_gradients(model, x, None, n_steps=8).numpy(), atol=1e-6)


@pytest.mark.parametrize("case, pattern", [
    ("missing_model", "--model: no such file"),
    ("bad_model", "--model: cannot load"),
    ("missing_input", "--input: no such file"),
    ("junk_input", "--input: cannot read"),
    ("shape", "shape mismatch"),
    ("method", "unknown method"),
    ("options", "--options: not valid JSON"),
    ("target", "target out of range"),
    ("unsafe", "safe_mode"),
])
def test_explain_errors_are_one_line(files, tmp_path, capsys, case, pattern):
    root, _, _ = files
    args = {"--model": root / "m.keras", "--input": root / "x.npy", "--method": "ig", "--out": tmp_path / "o.npy"}
    extra = []
    if case == "missing_model":
        args["--model"] = tmp_path / "nope.keras"
    elif case == "bad_model":
        (tmp_path / "bad.keras").write_bytes(b"garbage")
        args["--model"] = tmp_path / "bad.keras"
    elif case == "missing_input":
        args["--input"] = tmp_path / "nope.npy"
    elif case == "junk_input":
        args["--input"] = root / "junk.npy"
    elif case == "shape":
        args["--input"] = root / "wrong.npy"
    elif case == "method":
        args["--method"] = "no_such_method"
    elif case == "options":
        extra = ["--options", "{n_steps: 3"]
    elif case == "target":
        extra = ["--target", "7"]
    elif case == "unsafe":  # safe mode is on: a Python lambda inside the model file is refused
        m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Lambda(lambda t: t * 2.0),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
        m.save(tmp_path / "lam.keras")
        args["--model"] = tmp_path / "lam.keras"
    argv = ["explain", *[v for kv in args.items() for v in kv], *extra]
    # two cases through the real command in a fresh process, the rest through the same main() in-process
    res = cli(*argv) if case in ("missing_model", "shape") else cli_inprocess(capsys, *argv)
    assert_one_error_line(res, pattern)
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.slow
def test_demo_quick_writes_picture_and_table(tmp_path):
    res = cli("demo", "--out", tmp_path / "demo", "--quick", cache=tmp_path / "cache")
    assert res.returncode == 0, res.stderr[-3000:]
    assert list((tmp_path / "cache").glob("digits_cnn_*.keras"))
    info = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert info["test_accuracy"] > 0.5
    ran = [r["method"] for r in info["rows"]]
    skipped = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: skipped")]
    shown = [s.name for s in tpa.methods.registry.specs() if s.output != "split"]
    assert len(ran) + len(skipped) == len(shown) and "integrated_gradients" in ran
    ig = next(r for r in info["rows"] if r["method"] == "integrated_gradients")
    assert ig["completeness_gap"] is not None and ig["completeness_gap"] < 0.05
    with Image.open(tmp_path / "demo" / "attributions.png") as im:
        assert im.size == (round((1 + len(ran)) * 1.2 * 100), round(3 * 1.2 * 100))
    table = (tmp_path / "demo" / "metrics.md").read_text()
    assert "| integrated_gradients |" in table
