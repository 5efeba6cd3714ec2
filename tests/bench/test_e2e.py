"""End to end: `bench run` on the real embedded model, then `bench report` (slow: marked model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judgekit.bench.cli import main

pytestmark = pytest.mark.model


def test_bench_run_embedded_model_then_report(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("judgekit.judge")
    out = tmp_path / "run"
    rc = main(["run", "llmbar", "--subset", "llmbar-adver-GPTOut", "--limit", "2",
               "--samples", "1", "--max-tokens", "24", "--no-examples", "--out", str(out),
               "--no-progress", "--concurrency", "2"])
    assert rc == 0
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [x["item_id"] for x in sorted(lines, key=lambda x: x["item_id"])] == \
        ["llmbar-adver-GPTOut-0", "llmbar-adver-GPTOut-1"]
    for line in lines:
        v = line["verdict"]
        assert v["k"] == 1 and len(v["samples"]) == 1 and v["model"]
        assert v["samples"][0]["status"] in ("ok", "forced", "parse_failure")
        assert v["usage"]["prompt_tokens"] > 0
    info = json.loads((out / "run.json").read_text())
    assert info["dataset"] == "llmbar" and info["limit"] == 2 and info["finished_at"]
    # resuming does nothing more
    assert main(["run", "llmbar", "--subset", "llmbar-adver-GPTOut", "--limit", "2",
                 "--samples", "1", "--max-tokens", "24", "--no-examples", "--out", str(out),
                 "--no-progress", "--concurrency", "2"]) == 0
    assert "2 already done, 0 judged now" in capsys.readouterr().out
    plots = tmp_path / "plots"
    assert main(["report", str(out), "--plots", str(plots)]) == 0
    report = capsys.readouterr().out
    assert "accuracy_items" in report and "llmbar: accuracy" in report
    assert (plots / "subsets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
