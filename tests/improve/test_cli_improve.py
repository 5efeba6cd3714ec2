"""`judgekit improve` against the scripted judges and reviser on a loopback server: one response
(readable account, --json, --out), a resumable dataset run with --pairs, and one-line usage
errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.fault_server import FaultServer

from judgekit.cli import main
from judgekit.improve import ImproveTrace, read_traces

QUERY = "Why is the sky blue?"
RESPONSE = "The sky is blue because of Rayleigh scattering."


def args(scripted_server: FaultServer, *extra: str) -> list[str]:
    return ["improve", "--judge", "openai:judge-a", "--judge", "openai:judge-b",
            "--reviser", "openai:reviser", "--base-url", scripted_server.openai_url, "--no-examples",
            *extra]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


def test_one_response_prints_the_rounds_and_writes_the_trace(
        scripted_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trace.json"
    code = main(args(scripted_server, "--query", QUERY, "--response", RESPONSE, "--rounds", "2",
                     "--out", str(out)))
    text = capsys.readouterr().out
    assert code == 0
    assert "Round 1: mean score 3.00" in text
    assert "F3 by judge 2 (rejected): Add a catchy slogan, marked [spam]." in text
    assert "judge 1 rejects F3: a slogan adds nothing the user asked for" in text
    assert "judge 2 changed its score [1.0] -> [3.0]: Judge A showed" in text
    assert "pairwise: previous 2.0, revised 6.0 over 4 samples -> kept" in text
    assert "Stopped: rounds" in text
    trace = ImproveTrace.model_validate_json(out.read_text())
    assert trace.final in text and trace.settings.rounds == 2 and trace.settings.samples == 2


def test_json_prints_the_trace(scripted_server: FaultServer, capsys: pytest.CaptureFixture[str],
                               tmp_path: Path) -> None:
    q = tmp_path / "q.txt"
    q.write_text(QUERY, encoding="utf-8")
    assert main(args(scripted_server, "--query", f"@{q}", "--response", RESPONSE, "--rounds", "1",
                     "--json", "--target", "9", "--debate-rounds", "2",
                     "--reference", "Rayleigh.")) == 0
    trace = ImproveTrace.model_validate_json(capsys.readouterr().out)
    assert trace.query == QUERY and trace.settings.target == 9.0
    assert trace.reference == "Rayleigh."
    assert len(trace.rounds[0].debate.rounds) == 2


def test_a_dataset_run_resumes_and_writes_preference_pairs(
        scripted_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(x) for x in [
        {"id": "a", "query": QUERY, "response": RESPONSE},
        {"id": "b", "query": "Why is grass green?", "response": "Chlorophyll reflects green."},
    ]) + "\n", encoding="utf-8")
    out, pairs = tmp_path / "traces.jsonl", tmp_path / "pairs.jsonl"
    argv = args(scripted_server, "--items", str(items), "--out", str(out), "--rounds", "1",
                "--pairs", str(pairs), "--conversational", "--no-progress")
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"{out}: 2 items, 2 improved, 0 failed" in text
    assert f"{pairs}: 2 preference pairs" in text
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert [r["item_id"] for r in rows] == ["a", "b"]
    assert rows[0]["prompt"] == [{"role": "user", "content": QUERY}]
    calls = len(scripted_server.records)
    assert main(argv) == 0  # resumed: nothing to do, the pairs are written again
    assert len(scripted_server.records) == calls and len(read_traces(out)) == 2


@pytest.mark.parametrize(("extra", "message"), [
    (["--query", "q"], "give --query and --response, or --items"),
    (["--query", "q", "--response", "a", "--samples", "3"], "--samples must be even"),
    (["--query", "q", "--response", "a", "--target", "11"], "not a score from 1 to 10"),
    (["--query", "q", "--response", "a", "--debate-rounds", "-1"], "must be at least 0"),
    (["--items", "@missing"], "file not found"),
    (["--items", __file__, "--out", "t.jsonl", "--reference", "r"], "leave out --query"),
])
def test_bad_arguments_exit_2_with_one_line(scripted_server: FaultServer, extra: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args(scripted_server, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("judgekit: error:")
    assert message in err
    assert scripted_server.records == []


def test_a_dataset_needs_a_jsonl_out_and_readable_items(
        scripted_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "a", "query": "q"}\n', encoding="utf-8")
    assert main(args(scripted_server, "--items", str(items))) == 2
    assert "needs --out FILE.jsonl" in capsys.readouterr().err
    assert main(args(scripted_server, "--items", str(items), "--out", str(tmp_path / "t.jsonl"))) == 2
    assert "item 1: response: Field required" in capsys.readouterr().err
