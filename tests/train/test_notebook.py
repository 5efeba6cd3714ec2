"""notebooks/prompted_vs_trained.ipynb runs headless in tiny mode (embedded model, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.train, pytest.mark.model]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "prompted_vs_trained.ipynb"


def test_notebook_runs_in_tiny_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("trl")
    from judgekit.embedded import embedded_model_dir

    try:
        embedded_model_dir()
    except Exception as exc:  # the embedded model package is an optional extra
        pytest.skip(f"embedded model unavailable: {exc}")

    env = {"JK_NB_GPU": "0", "JK_NB_OUT": str(tmp_path), "JK_NB_TRAIN_ITEMS": "2",
           "JK_NB_EVAL_ITEMS": "2", "JK_NB_RFT_SAMPLES": "2", "JK_NB_RFT_MAX_TOKENS": "128",
           "JK_NB_EVAL_MAX_TOKENS": "64", "HF_HUB_OFFLINE": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    rows = json.loads((tmp_path / "accuracy.json").read_text())
    assert [r["judge"] for r in rows] == ["prompted", "trained (RFT+SFT)"]
    assert rows[0]["items"] == 2 and rows[0]["accuracy"] is not None
    assert (tmp_path / "accuracy.png").stat().st_size > 1000
    stats = json.loads((tmp_path / "rft" / "rft_stats.json").read_text())
    assert stats["items"] == 2 and stats["samples"] == 4
    if stats["kept"]:  # the trained judge exists only when RFT kept something
        assert rows[1]["items"] == 2 and (tmp_path / "sft" / "model.safetensors").is_file()
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
