"""The board notebook executes top to bottom (backend from its parameter cell) and is
committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
from deltamtl.model.export.bundle import write_bundle
from nbclient import NotebookClient

from tests.helpers.streaming import small_model

NOTEBOOK = Path(__file__).resolve().parents[2] / "host" / "notebooks" / "stream_on_zcu104.ipynb"
# CI runs the notebook on the virtual ZCU104: the board code path on x86 (docs/streaming.md)
CI_BACKEND = "virtual"


def test_notebook_has_no_stale_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"cell {i} carries outputs"


def test_notebook_executes(tmp_path) -> None:
    bundle = write_bundle(small_model(th=4), tmp_path / "bundle")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    params[0].source += f"\nbackend = {CI_BACKEND!r}\nbundle = {str(bundle)!r}\nframes = 4\n"
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"{CI_BACKEND}: all 8 frames equal the golden model bit for bit" in text, text[-2000:]
    assert "keyframes: [(0, 'first')" in text
