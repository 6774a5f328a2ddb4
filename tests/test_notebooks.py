"""Execute the Colab notebooks in colab/ (CI runs them on every change)."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "colab").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    if any("import keras_hub" in c.source or ", keras_hub" in c.source for c in nb.cells if c.cell_type == "code"):
        pytest.importorskip("keras_hub", reason="needs keras-hub (pip install --no-deps keras-hub; see setup.py)")
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 3
