"""The tf-pathattr command, run through subprocess, error cases included."""

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cache=None, timeout=300, cwd=None, user_env=False):
    """Run the command in a fresh interpreter; ``user_env=True``: no TF_CPP_MIN_LOG_LEVEL (as a user has it)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    if user_env:
        del env["TF_CPP_MIN_LOG_LEVEL"]
    if cache is not None:
        env["TF_PATHATTR_CACHE"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "tf_pathattr.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
    )


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
    keras.utils.set_random_seed(1)
    rgb = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    rgb.save(root / "rgb.hdf5")  # the legacy HDF5 format under the extension real packages ship
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
        res = cli(
            "explain",
            "--model",
            src,
            "--input",
            root / "x.npy",
            "--method",
            "ig",
            "--out",
            out,
            "--target",
            1,
            "--options",
            json.dumps({"n_steps": 16}),
            "--png",
        )
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
    res = cli_inprocess(
        capsys,
        "explain",
        "--model",
        root / "m.keras",
        "--input",
        root / "img.png",
        "--method",
        "integrated_gradients",
        "--out",
        out,
        "--options",
        '{"n_steps": 8}',
    )
    assert res.returncode == 0, res.stderr
    with Image.open(root / "img.png") as im:
        x = np.asarray(im.convert("L").resize((8, 8), Image.BILINEAR), np.float32)[None, ..., None] / 255.0
    np.testing.assert_allclose(np.load(out), tpa.integrated_gradients(model, x, None, n_steps=8).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_model", "--model: no such file"),
        ("bad_model", "--model: cannot load"),
        ("missing_input", "--input: no such file"),
        ("junk_input", "--input: cannot read"),
        ("shape", "shape mismatch"),
        ("method", "unknown method"),
        ("options", "--options: not valid JSON"),
        ("target", "target out of range"),
        ("unsafe", "safe_mode"),
    ],
)
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
        m = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Lambda(lambda t: t * 2.0),
                keras.layers.Flatten(),
                keras.layers.Dense(2),
            ]
        )
        m.save(tmp_path / "lam.keras")
        args["--model"] = tmp_path / "lam.keras"
    argv = ["explain", *[v for kv in args.items() for v in kv], *extra]
    # two cases through the real command in a fresh process, the rest through the same main() in-process
    res = cli(*argv) if case in ("missing_model", "shape") else cli_inprocess(capsys, *argv)
    assert_one_error_line(res, pattern)
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.slow
def test_demo_quick_writes_picture_and_table(quick_demo):
    # as a user runs it (no TF_CPP_MIN_LOG_LEVEL): stderr carries no TensorFlow native log lines at all
    res, demo, cache = quick_demo
    assert res.returncode == 0, res.stderr[-3000:]
    assert "retracing" not in res.stderr and not _info_lines(res.stderr), res.stderr[-3000:]
    assert list(cache.glob("digits_cnn_*.keras"))
    info = json.loads((demo / "metrics.json").read_text())
    assert info["test_accuracy"] > 0.5
    ran = [r["method"] for r in info["rows"]]
    skipped = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: skipped")]
    shown = [s.name for s in tpa.methods.registry.specs() if s.output != "split"]
    assert len(ran) + len(skipped) == len(shown) and "integrated_gradients" in ran
    ig = next(r for r in info["rows"] if r["method"] == "integrated_gradients")
    assert ig["completeness_gap"] is not None and ig["completeness_gap"] < 0.05
    with Image.open(demo / "attributions.png") as im:
        assert im.size == (round((1 + len(ran)) * 1.2 * 100), round(3 * 1.2 * 100))
    table = (demo / "metrics.md").read_text()
    assert "| integrated_gradients |" in table


# --------------------------------------------------------------------------------------------
# image scaling, --preprocess, outputs, the prediction summary, a quiet stderr

IMAGENET_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
# written from the definitions (keras.applications' caffe / torch modes), not from the code under test
SCALE_REFERENCE = {
    "0,1": lambda p: p / 255.0,
    "-1,1": lambda p: p / 127.5 - 1.0,
    "0,255": lambda p: p,
    "caffe": lambda p: p[..., ::-1] - IMAGENET_MEAN_BGR,
    "torch": lambda p: (p / 255.0 - TORCH_MEAN) / TORCH_STD,
}
INFO = re.compile(r"^I\d{4} ")  # absl / glog INFO prefix (I + month/day)


def _pixels(path, size=(8, 8)):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize(size, Image.BILINEAR), np.float32)[None]


def _info_lines(stderr):
    return [
        ln
        for ln in stderr.splitlines()
        if INFO.match(ln) or "oneDNN" in ln or "cpu_feature_guard" in ln or "absl::InitializeLog" in ln
    ]


def test_scale_pixels_matches_the_definitions():
    from tf_pathattr.cli import SCALES, scale_pixels

    p = np.random.default_rng(2).uniform(0, 255, size=(2, 4, 4, 3)).astype(np.float32)
    assert set(SCALES) == set(SCALE_REFERENCE)
    for name, ref in SCALE_REFERENCE.items():
        np.testing.assert_allclose(scale_pixels(p, name), ref(p), rtol=1e-6, atol=1e-5, err_msg=name)
    ends = np.array([0.0, 255.0], np.float32).reshape(1, 1, 2, 1)  # black and white map to the range's ends
    np.testing.assert_allclose(scale_pixels(ends, "-1,1").ravel(), [-1.0, 1.0])
    np.testing.assert_allclose(scale_pixels(ends, "0,1").ravel(), [0.0, 1.0])


@pytest.mark.slow
@pytest.mark.parametrize(
    "scale, out_kind", [("0,1", "folder"), ("-1,1", "npy"), ("0,255", "npy"), ("caffe", "npy"), ("torch", "png")]
)
def test_explain_hdf5_each_scale_through_the_command(files, tmp_path, scale, out_kind):
    root, _, _ = files
    model = keras.models.load_model(root / "rgb.hdf5", compile=False)
    x = SCALE_REFERENCE[scale](_pixels(root / "img.png")).astype(np.float32)
    ref = tpa.integrated_gradients(model, x, None, n_steps=8).numpy()
    out = {"folder": tmp_path / "res", "npy": tmp_path / "a.npy", "png": tmp_path / "a.png"}[out_kind]
    res = cli(
        "explain",
        "--model",
        root / "rgb.hdf5",
        "--input",
        root / "img.png",
        "--method",
        "ig",
        "--scale",
        scale,
        "--out",
        out,
        "--options",
        '{"n_steps": 8}',
        user_env=True,
    )
    assert res.returncode == 0, res.stderr
    assert not _info_lines(res.stderr), res.stderr
    assert "retracing" not in res.stderr
    npy = {"folder": out / "attributions.npy", "npy": out, "png": None}[out_kind]
    png = {"folder": out / "attributions.png", "npy": None, "png": out}[out_kind]
    if npy is not None:
        np.testing.assert_allclose(np.load(npy), ref, atol=1e-5)
    else:
        assert not list(tmp_path.glob("*.npy"))
    if png is not None:
        from tf_pathattr import viz

        with Image.open(png) as im:
            got = np.asarray(im).astype(int)
        expected = viz.to_uint8(viz.overlay(_pixels(root / "img.png")[0] / 255.0, ref[0]))
        assert np.abs(got - expected.astype(int)).max() <= 1
    else:
        assert not list(tmp_path.glob("*.png"))
    # the predicted class and its probability (the Dense outputs are logits: softmax)
    logits = np.asarray(model(x, training=False), np.float64)[0]
    prob = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    k = int(prob.argmax())
    assert f"example 0: predicted class {k} (probability {prob[k]:.4f}), explained class {k}" in res.stdout


@pytest.mark.slow
def test_explain_preprocess_function_and_verbose(files, tmp_path):
    root, _, _ = files
    (tmp_path / "my_prep.py").write_text("def prep(p):\n    return (p - 100.0) / 50.0\n")
    model = keras.models.load_model(root / "rgb.hdf5", compile=False)
    x = (_pixels(root / "img.png") - 100.0) / 50.0
    ref = tpa.integrated_gradients(model, x, 2, n_steps=8).numpy()
    res = cli(
        "explain",
        "--model",
        root / "rgb.hdf5",
        "--input",
        root / "img.png",
        "--method",
        "ig",
        "--target",
        2,
        "--preprocess",
        "my_prep:prep",
        "--out",
        tmp_path / "p.npy",
        "--options",
        '{"n_steps": 8}',
        cwd=tmp_path,
        user_env=True,
    )
    assert res.returncode == 0, res.stderr
    assert not _info_lines(res.stderr), res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), ref, atol=1e-5)
    assert "explained class 2" in res.stdout and "--preprocess my_prep:prep" in res.stdout
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the INFO lines checked below are the x86-64 oneDNN / CPU-feature notices")
    loud = cli("--verbose", "methods", user_env=True)
    assert loud.returncode == 0 and _info_lines(loud.stderr), "--verbose should show TensorFlow's INFO lines"


def test_stderr_filter_recognises_tensorflow_info_lines():
    from tf_pathattr._tensorflow import is_info_line, running_as_command

    assert is_info_line("I0000 00:00:1795926347.976433   20202 port.cc:153] oneDNN custom operations are on.")
    assert is_info_line("I0512 10:01:02.123456 140 cpu_feature_guard.cc:227] This TensorFlow binary is optimized")
    assert is_info_line("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert not is_info_line(
        "W0000 00:00:1795926347.976433   20202 gpu_device.cc:2344] Cannot dlopen some GPU libraries."
    )
    assert not is_info_line("E0000 00:00:1795926347.976433   20202 cuda_dnn.cc:8310] Unable to register cuDNN factory")
    assert not is_info_line("UserWarning: something a user should see")
    assert running_as_command(["-m"], ["python", "-m", "tf_pathattr.cli", "explain"])
    assert running_as_command(["/usr/bin/tf-pathattr", "demo"], ["python", "/usr/bin/tf-pathattr", "demo"])
    assert not running_as_command(["-m"], ["python", "-m", "pytest", "-q"])
    assert not running_as_command(["script.py"], ["python", "script.py"])


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--out", "{tmp}/o.txt"], "--out: expected a .npy file, a .png file or a folder"),
        (["--scale", "-1,1"], "--scale: applies to image inputs"),
        (["--preprocess", "nomodule_xyz:f", "--image"], "--preprocess: cannot import nomodule_xyz"),
        (["--preprocess", "no_colon", "--image"], "--preprocess: expected MODULE:FUNCTION"),
        (["--preprocess", "json:no_such_fn", "--image"], "--preprocess: json has no function 'no_such_fn'"),
        (["--preprocess", "json:dumps", "--image"], "--preprocess: json:dumps failed"),
        (["--scale", "0,1", "--preprocess", "json:dumps", "--image"], "give one of them, not both"),
        (["--scale", "caffe", "--image"], "--scale caffe: needs RGB images"),
        (["--out", "{tmp}/o.png", "--flat"], "--out: a .png picture needs image inputs"),
    ],
)
def test_explain_option_errors_are_one_line(files, tmp_path, capsys, extra, pattern):
    root, _, _ = files
    args = {"--model": root / "m.keras", "--input": root / "x.npy", "--method": "ig", "--out": tmp_path / "o.npy"}
    extra = [e.format(tmp=tmp_path) for e in extra]
    if "--image" in extra:
        extra.remove("--image")
        args["--input"] = root / "img.png"
    if "--flat" in extra:
        extra.remove("--flat")
        flat = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
        flat.save(tmp_path / "flat.keras")
        np.save(tmp_path / "flat.npy", np.ones((2, 5), np.float32))
        args["--model"], args["--input"] = tmp_path / "flat.keras", tmp_path / "flat.npy"
    for flag in ("--out",):
        if flag in extra:
            i = extra.index(flag)
            args[flag] = extra[i + 1]
            del extra[i : i + 2]
    res = cli_inprocess(capsys, "explain", *[v for kv in args.items() for v in kv], *extra)
    assert_one_error_line(res, pattern)
    assert not list(tmp_path.glob("o.*"))
