"""The backtest study notebook executes cleanly against the real traces (skipped without them)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "backtest.ipynb"


@pytest.mark.timeout(120)
def test_notebook_executes(shared_data: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # the committed copy is executed, with its outputs stored
    assert all(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    client = nbclient.NotebookClient(
        nb, timeout=90, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "misses(spotplan)" in text and "fitted MTBF" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
