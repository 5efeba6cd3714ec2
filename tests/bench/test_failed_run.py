"""Issue 22, item 9: a run in which no item got a valid sample looks failed everywhere, through
the real `judgekit bench run` and `bench report` against the fault server (a FAKE judge that
answers every request with HTTP 400, then, for the resume, with a parseable judgement): its
summary line, its report (judged 0, failed 3, no accuracy) and its exit code (1); its results
are kept, and re-running the same command resumes and judges the failed items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.fault_server import FaultServer

from judgekit.cli import main


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps({"id": f"p{i}", "query": f"jk-item-p{i} Which?",
                                          "responses": ["GOOD answer", "bad answer"],
                                          "label": 0}) for i in range(3)) + "\n")
    return data


def _run(server: FaultServer, data: Path, out: Path) -> int:
    return main(["bench", "run", str(data), "--model", "openai:judge-test", "--base-url",
                 server.openai_url, "--label-format", "index0", "--out", str(out),
                 "--no-progress", "--no-cache"])


def test_a_run_where_every_item_failed_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-x")
    data, out = _data(tmp_path), tmp_path / "run"
    with FaultServer(default_schedule=["400"] * 10) as server:
        assert _run(server, data, out) == 1
        line = capsys.readouterr().out.splitlines()[0]
        assert "0 with a valid sample, 3 failed (no valid sample)" in line
        assert main(["bench", "report", str(out), "--format", "csv"]) == 0
        cells = {(r, c): v for s, r, c, v in (x.split(",") for x in
                                              capsys.readouterr().out.splitlines()[1:])
                 if s == "summary"}
        assert cells[("judged", "run")] == "0" and cells[("failed", "run")] == "3"
        assert ("accuracy", "run") not in cells  # no item judged: no accuracy at all
        server.default_schedule = []  # the server answers again: the same command resumes
        assert _run(server, data, out) == 0
    assert "3 with a valid sample, 0 failed" in capsys.readouterr().out
