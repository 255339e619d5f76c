"""Every notebook in notebooks/ runs top to bottom without error (fast mode), and is
stored without outputs."""

import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:3] == ["01_xor_from_scratch", "02_gradient_checking", "03_vanishing_gradients"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{path.name}: clear the outputs before committing"


# The default run executes the first two (the XOR recipe and gradient checking); the
# others take 10-20 s each and run with `pytest -m slow` (the default run's time budget).
EXECUTED_BY_DEFAULT = ("01_xor_from_scratch", "02_gradient_checking")


@pytest.mark.parametrize("path", [
    p if p.stem in EXECUTED_BY_DEFAULT else pytest.param(p, marks=pytest.mark.slow)
    for p in NOTEBOOKS], ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch):
    from nbclient import NotebookClient

    # the kernel inherits this environment: fast mode, no GUI backend
    monkeypatch.setenv("FNNET_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
