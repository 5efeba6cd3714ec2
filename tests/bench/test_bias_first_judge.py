"""Issue 22, item 11: the bias probes of a judge that always picks the response shown first,
through the real `judgekit bench bias` (a Judge over the OpenAI SDK, against a FAKE judge on the
loopback fault server: `support.view_runs.first_wins_text` scores whatever it is shown first 9
and the rest 2), at k=1 and k=4.

At k=1 every item is decisive in both orders and the two orders always disagree: reverse
consistency 0%, and the length rows are filled (the pick follows position, so the longer
response wins exactly where it was shown first). At k=4 the balanced permutations show each
order twice, so every vote is a tie: no item is decisive in both orders and there is no untied
pair, so reverse consistency and the longer-win rate are blank, never the 100% that counting a
tie against a tie as agreement gave.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.fault_server import FaultServer
from support.view_runs import first_wins_text

from judgekit.bench.bias import bias_dirs
from judgekit.bench.report import bias_frame, load_runs
from judgekit.cli import main

# Response 0 is the longer one in items 0, 2, 4; gold alternates.
ROWS = [{"id": f"p{i}", "query": "Which is better?",
         "responses": ["long answer " * (3 if i % 2 == 0 else 1), "mid answer " * 2],
         "label": i % 3 % 2} for i in range(6)]


def _bias(tmp_path: Path, k: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n", encoding="utf-8")
    out = tmp_path / f"k{k}"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-x")
    with FaultServer(text=first_wins_text) as server:
        code = main(["bench", "bias", str(data), "--model", "openai:judge-test",
                     "--base-url", server.openai_url, "--label-format", "index0", "-k", str(k),
                     "--out", str(out), "--no-progress", "--no-cache", "--format", "csv"])
    assert code == 0
    return out


def _column(out: Path) -> dict[str, object]:
    frame = bias_frame(load_runs(bias_dirs(out)))
    return {str(k): (None if v != v else v) for k, v in frame["forward + reverse"].items()}


def test_first_position_judge_at_k1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    col = _column(_bias(tmp_path, 1, monkeypatch))
    assert col["reverse_consistency"] == 0.0 and col["reverse_items"] == 6
    assert col["first_position_win_rate"] == 100.0
    # Length rows: 12 untied pairs (6 per order); the longer response is shown first in half.
    assert col["untied_pairs"] == 12 and col["longer_win_rate"] == 50.0
    assert col["n_longer_right"] is not None and col["n_longer_wrong"] is not None
    assert col["n_longer_right"] + col["n_longer_wrong"] == 12  # type: ignore[operator]
    assert col["acc_longer_right"] is not None and col["acc_longer_wrong"] is not None


def test_first_position_judge_at_k4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    col = _column(_bias(tmp_path, 4, monkeypatch))
    # Every vote ties (two samples per order): nothing is decisive, nothing untied.
    assert col["reverse_consistency"] is None and col["reverse_items"] == 0
    assert col["longer_win_rate"] is None and col["untied_pairs"] == 0
    # The per-sample probes still see the bias.
    assert col["first_position_win_rate"] == 100.0 and col["position_consistency"] == 0.0
