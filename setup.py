"""Packaging for tf_pathattr (path attribution for Keras 3 / TensorFlow)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
README = (HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else ""

# The core needs TensorFlow with Keras 3 and numpy only. `tensorflow-cpu` is the default wheel;
# users with GPUs install `tensorflow` (same import name) and skip the CPU extra.
INSTALL_REQUIRES = [
    "tensorflow-cpu>=2.16; platform_machine=='x86_64' or platform_machine=='AMD64'",
    "tensorflow>=2.16; platform_machine!='x86_64' and platform_machine!='AMD64'",
    "keras>=3.0",
    "numpy>=1.26",
    "tf-keras-vis>=0.8.7",
]

EXTRAS = {
    # TF 2.21 no longer installs TensorBoard; the callback's image/histogram summaries need it.
    "tensorboard": ["tensorboard>=2.16"],
    # metrics (PIC, AUTVC), XRAI, Blur IG parity and pictures
    "viz": ["matplotlib>=3.7", "pillow>=10"],
    "metrics": ["scipy>=1.11", "scikit-image>=0.22", "pillow>=10"],
    # tf_pathattr.beam and `tf-pathattr explain-dataset` on Beam runners. Not apache-beam[tensorflow] (it installs a
    # second TensorFlow next to tensorflow-cpu); 2.76 is the first Beam whose pins allow TF 2.21. google-crc32c:
    # TFRecord framing (Beam's own TFRecord IO needs one CRC32C implementation too). pyarrow comes with Beam.
    "beam": ["apache-beam>=2.76,<2.78", "google-crc32c>=1.5"],
}
EXTRAS["dev"] = sorted(
    set(
        EXTRAS["tensorboard"]
        + EXTRAS["viz"]
        + EXTRAS["metrics"]
        + EXTRAS["beam"]
        + [
            "pytest>=7",
            "saliency==0.2.1",  # independent reference implementation (PAIR) for parity tests and benchmarks
            "scikit-learn>=1.3",  # bundled data sets (digits, breast cancer) for the demo and benchmarks
            "tqdm>=4.60",
            "nbclient>=0.9",  # executes the Colab notebooks in CI
            "nbformat>=5.9",
            "ipykernel>=6.25",
        ]
    )
)

setup(
    name="tf_pathattr",
    version="0.1.0",
    description="Path attribution (Integrated Gradients and its successors) for Keras 3 / TensorFlow",
    long_description=README,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf_pathattr", "tf_pathattr.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tf-pathattr=tf_pathattr.cli:main"]},
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
