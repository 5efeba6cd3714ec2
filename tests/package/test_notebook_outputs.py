"""The notebooks' stored outputs are current: each records the judgekit version that ran it (a
cell printing `judgekit.__version__`), and none stores a third-party progress bar. Re-execute a
notebook (as tests/train/test_notebook.py does) when this fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import judgekit

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def _outputs(cell: dict[str, object]) -> str:
    out = []
    for o in cell.get("outputs", []):  # type: ignore[attr-defined]
        text = o.get("text", "")
        out.append("".join(text) if isinstance(text, list) else text)
        for value in o.get("data", {}).values():
            if isinstance(value, list):
                out.append("".join(value))
    return "".join(out)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_records_the_version_that_ran_it(path: Path) -> None:
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    version = [c for c in cells if "judgekit.__version__" in "".join(c["source"])]
    assert version, f"{path.name}: no cell prints judgekit.__version__"
    assert _outputs(version[0]).strip() == f"judgekit {judgekit.__version__}"
    assert all(c.get("execution_count") for c in cells), f"{path.name}: a cell never ran"
    stored = "".join(_outputs(c) for c in cells)
    assert "Loading weights" not in stored and "Writing model shards" not in stored
