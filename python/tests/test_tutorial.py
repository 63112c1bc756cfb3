"""The tutorial notebook (docs/tutorials/annotate_pbmc.ipynb) runs top to bottom: its code
cells are executed in order in one namespace, from its folder, on the committed fixtures (so it
cannot rot). A kernel is not needed: the cells are plain Python."""

import json
import os

import pytest

from conftest import ROOT

NOTEBOOK = ROOT / "docs" / "tutorials" / "annotate_pbmc.ipynb"


def test_tutorial_runs(monkeypatch):
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4
    monkeypatch.chdir(NOTEBOOK.parent)
    monkeypatch.setenv("SCLLM_TUTORIAL_SMALL", "1")
    monkeypatch.delenv("SCLLM_MODEL", raising=False)
    ns = {"__name__": "__main__"}
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 5
    for i, cell in enumerate(code):
        src = "".join(cell["source"])
        try:
            exec(compile(src, f"{NOTEBOOK.name}[code cell {i}]", "exec"), ns)
        except Exception as e:  # name the cell that broke
            pytest.fail(f"code cell {i} failed: {type(e).__name__}: {e}\n{src}")
    table = ns["table"]
    assert set(table.index) == {"logreg", "correlation", "embed_knn", "lora"}
    assert (table["accuracy"] > 0.3).all(), table
    assert sorted(p.name for p in ns["out"].glob("*.png")) == [
        "confusion_logreg.png", "f1_lora.png", "umap.png"]
