"""The built package's metadata: no TensorFlow distribution in the core requirements, one in each TF extra.

``tensorflow``, ``tensorflow-cpu`` and ``tensorflow[and-cuda]`` are different distributions of the
same import package; requiring one of them installs a second copy into an environment that has
another (Colab, GPU images, keras-hub, which pulls ``tensorflow`` through tensorflow-text). The
wheel is built from this checkout, its ``Requires-Dist`` lines are evaluated for several
platforms, and pip itself resolves and checks an install into an environment that has the full
``tensorflow`` and keras-hub.
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
TF_DISTRIBUTIONS = {
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-gpu",
    "tensorflow-intel",
    "tensorflow-macos",
    "tensorflow-aarch64",
    "tensorflow-cpu-aws",
    "intel-tensorflow",
    "tf-nightly",
    "tf-nightly-cpu",
}
PLATFORMS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
    "windows-amd64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64"},
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (path,) = out.glob("tf_pathattr-*.whl")
    return path


@pytest.fixture(scope="module")
def metadata(wheel):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(name).decode()
    fields = {"Requires-Dist": [], "Provides-Extra": []}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(": ")
        if key in fields:
            fields[key].append(value)
        elif key in ("Name", "Version"):
            fields[key] = value
    return fields


def requirements(metadata, extra, platform):
    """The requirements (name -> Requirement) pip would install for ``tf_pathattr[extra]`` on ``platform``."""
    env = dict(default_environment(), **PLATFORMS[platform], python_version="3.11", python_full_version="3.11.7")
    chosen = {}
    for line in metadata["Requires-Dist"]:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(dict(env, extra=extra or "")):
            chosen[canonicalize_name(req.name)] = req
    return chosen


def tf_distributions(reqs):
    return sorted(n for n in reqs if n in TF_DISTRIBUTIONS)


def test_version_has_one_source(metadata):
    from tf_pathattr._version import __version__

    assert metadata["Version"] == __version__
    setup_py = (REPO / "setup.py").read_text()
    assert __version__ not in setup_py  # read from tf_pathattr/_version.py, not written twice


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_core_and_plain_extras_require_no_tensorflow(metadata, platform):
    core = requirements(metadata, None, platform)
    assert {"keras", "numpy"} <= set(core)
    assert tf_distributions(core) == [], core
    assert "tf-keras-vis" not in core  # an extra: Score objects are recognised by class name
    for extra in ("viz", "metrics", "tensorboard", "tf-keras-vis", "docs", "test"):
        assert extra in metadata["Provides-Extra"]
        assert tf_distributions(requirements(metadata, extra, platform)) == [], extra


@pytest.mark.parametrize(
    "platform, cpu",
    [
        ("linux-x86_64", "tensorflow-cpu"),
        ("windows-amd64", "tensorflow-cpu"),
        ("linux-aarch64", "tensorflow"),
        ("macos-arm64", "tensorflow"),
    ],
)
def test_each_tensorflow_extra_brings_exactly_one_distribution(metadata, platform, cpu):
    assert tf_distributions(requirements(metadata, "cpu", platform)) == [cpu]
    assert tf_distributions(requirements(metadata, "dev", platform)) == [cpu]  # README: pip install -e ".[dev]"
    assert tf_distributions(requirements(metadata, "tensorflow", platform)) == ["tensorflow"]
    gpu = requirements(metadata, "gpu", platform)
    assert tf_distributions(gpu) == ["tensorflow"]
    assert ("and-cuda" in gpu["tensorflow"].extras) == platform.startswith("linux")


def _fake_distribution(site, name, version, requires=()):
    info = Path(site) / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "INSTALLER").write_text("test\n")
    (info / "RECORD").write_text("")


@pytest.mark.slow
def test_pip_installs_beside_tensorflow_and_keras_hub_and_pip_check_is_clean(wheel, tmp_path):
    """An environment with the full ``tensorflow`` and keras-hub (metadata stubs of the TF-related requirements)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    _fake_distribution(site, "tensorflow", "2.21.0")
    _fake_distribution(site, "keras", "3.15.1")
    _fake_distribution(site, "numpy", "2.4.6")
    _fake_distribution(site, "tensorflow-text", "2.21.1", ["tensorflow<2.22,>=2.21.0"])
    _fake_distribution(
        site, "keras-hub", "0.32.0", ["keras>=3.15", 'tensorflow-text>=2.20.1; platform_system != "Windows"']
    )
    pip = [sys.executable, "-m", "pip", "--python", str(py)]
    report = tmp_path / "report.json"
    res = subprocess.run(
        pip + ["install", "--dry-run", "--no-index", "--report", str(report), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr  # resolvable from what is installed: nothing else needed
    installs = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert [canonicalize_name(n) for n in installs] == ["tf-pathattr"], installs
    res = subprocess.run(
        pip + ["install", "--no-index", "--no-deps", str(wheel)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run(pip + ["check"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "No broken requirements found" in res.stdout, res.stdout + res.stderr


def test_import_without_tensorflow_says_what_to_install():
    code = "import sys; sys.modules['tensorflow'] = None\nimport tf_pathattr"  # as if no TensorFlow were installed
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: tf_pathattr needs TensorFlow 2.16 or newer"), last
    assert "tf_pathattr[cpu]" in last and "tf_pathattr[gpu]" in last
