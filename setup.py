"""Packaging for tf_pathattr (path attribution for Keras 3 / TensorFlow)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
README = (HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else ""

VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "tf_pathattr" / "_version.py").read_text(), re.M).group(1)

# TensorFlow is NOT a core requirement. `tensorflow`, `tensorflow-cpu` and `tensorflow[and-cuda]` are different
# distributions of the same `tensorflow` package: requiring one of them installs a second copy over an environment
# that has another (Colab, GPU images, keras-hub's own requirements pull `tensorflow`). tf_pathattr uses whichever
# is installed and says at import what to install when none is (tf_pathattr/_tensorflow.py). The extras pick one.
TF_MIN = "2.16"
CPU_WHEEL = "platform_system != 'Darwin' and (platform_machine == 'x86_64' or platform_machine == 'AMD64')"
NO_CPU_WHEEL = "platform_system == 'Darwin' or (platform_machine != 'x86_64' and platform_machine != 'AMD64')"
TENSORFLOW_EXTRAS = {
    # the small CPU-only wheel where one exists (Linux and Windows x86-64), the standard wheel elsewhere
    "cpu": [f"tensorflow-cpu>={TF_MIN}; {CPU_WHEEL}", f"tensorflow>={TF_MIN}; {NO_CPU_WHEEL}"],
    # the standard wheel, with NVIDIA's CUDA libraries on Linux
    "gpu": [
        f"tensorflow[and-cuda]>={TF_MIN}; sys_platform == 'linux'",
        f"tensorflow>={TF_MIN}; sys_platform != 'linux'",
    ],
    # the standard wheel (what Colab and keras-hub use)
    "tensorflow": [f"tensorflow>={TF_MIN}"],
}

INSTALL_REQUIRES = [
    "keras>=3.0",
    "numpy>=1.26",
]

EXTRAS = {
    **TENSORFLOW_EXTRAS,
    # TF 2.21 no longer installs TensorBoard; the callback's image/histogram summaries need it.
    "tensorboard": ["tensorboard>=2.16"],
    # metrics (PIC, AUTVC), XRAI, Blur IG parity and pictures
    "viz": ["matplotlib>=3.7", "pillow>=10"],
    "metrics": ["scipy>=1.11", "scikit-image>=0.22", "pillow>=10"],
    # tf_pathattr.beam and `tf-pathattr explain-dataset` on Beam runners. Not apache-beam[tensorflow] (it installs a
    # second TensorFlow next to tensorflow-cpu); 2.76 is the first Beam whose pins allow TF 2.21. google-crc32c:
    # TFRecord framing (Beam's own TFRecord IO needs one CRC32C implementation too). pyarrow comes with Beam.
    "beam": ["apache-beam>=2.76,<2.78", "google-crc32c>=1.5"],
    # tf-keras-vis Score objects (CategoricalScore, BinaryScore) as targets; recognised by class name, so
    # tf_pathattr itself never imports it
    "tf-keras-vis": ["tf-keras-vis>=0.8.7"],
    # lint and the API reference site
    "docs": ["mkdocs>=1.6", "mkdocstrings[python]>=0.26"],
    # test-only references for the metric parity tests (captum's infidelity / sensitivity_max); not part of
    # `dev` because torch is large: install the CPU wheel first (pip install torch --index-url
    # https://download.pytorch.org/whl/cpu), then `pip install tf_pathattr[test-reference]`. The tests skip
    # without them.
    "test-reference": ["torch>=2.3", "captum>=0.8"],
    # tpa.text on keras-hub task models (tf_pathattr itself never imports keras_hub). keras-hub 0.32 requires
    # tensorflow-text, which requires the full `tensorflow` wheel: with `tensorflow` (the [tensorflow] extra, Colab)
    # `[text]` installs cleanly; next to tensorflow-cpu install `[text-light]` and then
    # `pip install --no-deps keras-hub` (its tokenizers run eagerly without tensorflow-text).
    "text": ["keras-hub>=0.21"],
    "text-light": ["absl-py", "packaging", "regex", "rich", "sentencepiece", "tokenizers", "kagglehub!=1.0.1"],
}
# everything needed to run the tests, without a TensorFlow distribution (for machines that already have one)
EXTRAS["test"] = sorted(
    set(
        EXTRAS["tensorboard"]
        + EXTRAS["viz"]
        + EXTRAS["metrics"]
        + EXTRAS["tf-keras-vis"]
        + EXTRAS["docs"]
        + EXTRAS["text-light"]  # keras-hub itself: `pip install --no-deps keras-hub` (see "text" above)
        + EXTRAS["beam"]
        + [
            "pytest>=7",
            "ruff>=0.6",
            "mypy>=1.10",  # .ci/run and tests/test_typing.py: the engine, the registry, tests/typing/
            "setuptools>=64",  # tests/test_packaging.py builds the wheel without build isolation (offline)
            "wheel",
            "saliency==0.2.1",  # independent reference implementation (PAIR) for parity tests and benchmarks
            "scikit-learn>=1.3",  # bundled data sets (digits, breast cancer) for the demo and benchmarks
            "tqdm>=4.60",
            "nbclient>=0.9",  # executes the Colab notebooks in CI
            "nbformat>=5.9",
            "ipykernel>=6.25",
        ]
    )
)
# a fresh machine: the tests' needs plus the small CPU TensorFlow (`pip install -e ".[dev]" && tf-pathattr demo`)
EXTRAS["dev"] = sorted(set(EXTRAS["test"] + EXTRAS["cpu"]))

setup(
    name="tf_pathattr",
    version=VERSION,
    description="Path attribution (Integrated Gradients and its successors) for Keras 3 / TensorFlow",
    long_description=README,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf_pathattr", "tf_pathattr.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tf-pathattr=tf_pathattr.cli:main"]},
    license="Apache-2.0",
    package_data={"tf_pathattr": ["py.typed"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
