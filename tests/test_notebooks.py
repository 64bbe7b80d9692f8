"""Both demo notebooks execute top to bottom (nbclient) on the sample data."""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo_resnet_backbone", "demo_swin_backbone"])
def test_notebook_runs(name, sample_root, tmp_path, monkeypatch):
    nb = nbformat.read(REPO / "demo" / f"{name}.ipynb", as_version=4)
    # the notebook works from the repository root; point it at the test data and a
    # checkpoint-free run folder so that it pre-trains its own backbone
    monkeypatch.setenv("DEMO_DATA", str(sample_root))
    monkeypatch.setenv("DEMO_FAST", "1")
    monkeypatch.setenv("SWIN_CHECKPOINT", str(tmp_path / "none.pth"))
    monkeypatch.setenv("RESNET50_CHECKPOINT", str(tmp_path / "none.pth"))
    monkeypatch.setenv("DEMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "demo")}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "overall accuracy" in outputs and "checkpoint:" in outputs
