"""`--reference` (judge) and `--rubric`/`--rubric-mode` (judge, bench run) on the command line:
they reach the prompt the real OpenAI SDK sends to the loopback server, and bad values exit 2
with one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.fault_server import FaultServer, rubric_text

from judgekit.cli import main

RUBRIC_YAML = ("- name: Accuracy\n  description: the answer is right\n  weight: 3\n"
               "- [Clarity, easy to follow, 1]\n")


@pytest.fixture()
def remote(fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-x")
    return ["--model", "openai:judge-test", "--base-url", fault_server.openai_url]


@pytest.fixture()
def rubric(tmp_path: Path) -> Path:
    path = tmp_path / "rubric.yaml"
    path.write_text(RUBRIC_YAML, encoding="utf-8")
    return path


def _prompts(server: FaultServer) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in server.records]


def test_judge_with_a_reference_file_and_a_rubric(
        fault_server: FaultServer, remote: list[str], rubric: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fault_server.text = rubric_text
    ref = tmp_path / "ref.txt"
    ref.write_text("Paris is the capital of France.\n", encoding="utf-8")
    code = main(["judge", "--query", "jk-item-c Capital of France?", "--response", "Lyon",
                 "--response", "GOOD: Paris", *remote, "--reference", f"@{ref}",
                 "--rubric", str(rubric), "--aggregate", "weighted", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    verdict = json.loads(out.out)
    assert verdict["metadata"] == {"format": "grm", "reference": True,
                                   "principles_mode": "fixed"}
    assert verdict["scores"] == pytest.approx([0.75 * 2 + 0.25 * 8, 0.75 * 10 + 0.25 * 6])
    assert verdict["best"] == 1
    prompt = _prompts(fault_server)[0]
    # The file's text, verbatim (its trailing newline too), as the fenced reference.
    assert re.search(r"<reference tag=([0-9a-f]{16})>\nParis is the capital of France\.\n\n"
                     r"</reference tag=\1>", prompt)
    assert "1. Accuracy (Weight: 75%): the answer is right" in prompt


def test_judge_rubric_mode_seed_and_inline_reference(
        fault_server: FaultServer, remote: list[str], rubric: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["judge", "--query", "jk-item-s q", "--response", "GOOD", "--response", "meh",
                 *remote, "--reference", "an inline reference", "--rubric", str(rubric),
                 "--rubric-mode", "seed", "--no-examples"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Best: Response 1" in out.out
    prompt = _prompts(fault_server)[0]
    assert "#### Given Criteria ####" in prompt and "an inline reference\n</reference" in prompt


@pytest.mark.parametrize("prefix", [
    ["judge", "--query", "q", "--response", "a"],
    ["bench", "run", "llmbar", "--limit", "1", "--no-progress"]], ids=["judge", "bench"])
def test_rubric_arguments_exit_2_with_one_line(prefix: list[str], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("- Accuracy\n- accuracy\n", encoding="utf-8")
    good = tmp_path / "good.yaml"
    good.write_text(RUBRIC_YAML, encoding="utf-8")
    cases = [(["--rubric-mode", "seed"], "--rubric-mode needs --rubric"),
             (["--rubric", str(tmp_path / "missing.yaml")], "file not found"),
             (["--rubric", str(dup)], "listed twice"),
             (["--rubric", str(good), "--rubric-mode", "loose"], "invalid choice")]
    for extra, message in cases:
        assert main([*prefix, *extra]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert message in err, err


def test_judge_reference_file_missing_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judge", "--query", "q", "--response", "a", "--reference", "@/no/such"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_bench_run_with_references_and_a_rubric(
        fault_server: FaultServer, remote: list[str], rubric: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fault_server.text = rubric_text
    rows = [{"id": "a", "query": "jk-item-a 6 * 7?", "responses": ["GOOD: 42", "48"],
             "label": 0, "gold": "42"},
            {"id": "b", "query": "jk-item-b Capital of Peru?", "responses": ["Quito", "GOOD"],
             "label": 1, "gold": ""}]
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out_dir = tmp_path / "run"
    code = main(["bench", "run", str(data), *remote, "--reference-field", "gold",
                 "--label-format", "index0", "--rubric", str(rubric), "--aggregate",
                 "weighted", "--out", str(out_dir), "--no-progress", "--no-cache"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    info = json.loads((out_dir / "run.json").read_text())
    assert info["extra"]["rubric_mode"] == "fixed"
    assert [c["name"] for c in info["extra"]["rubric"]] == ["Accuracy", "Clarity"]
    records = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    by_id = {r["item_id"]: r["verdict"] for r in records}
    assert by_id["a"]["metadata"] == {"format": "grm", "reference": True,
                                      "principles_mode": "fixed"}
    assert by_id["b"]["metadata"] == {"format": "grm", "principles_mode": "fixed"}
    assert by_id["a"]["best"] == 0 and by_id["b"]["best"] == 1
    prompts = {r.key: r.body["messages"][-1]["content"] for r in fault_server.records}
    assert "42\n</reference" in prompts["a"] and "<reference tag=" not in prompts["b"]
    assert all("#### Evaluation Criteria ####" in p for p in prompts.values())


def test_bench_rubric_does_not_apply_to_the_pairwise_baseline(
        rubric: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "run", "llmbar", "--baseline", "pairwise", "--rubric", str(rubric),
                 "--limit", "1", "--no-progress"]) == 2
    assert "--rubric applies to the GRM judge only" in capsys.readouterr().err


def test_the_cli_rubric_travels_as_plain_data(rubric: Path) -> None:
    """`--rubric` reaches the Judge as JSON values, so a JudgeSpec (Ray actors, batch run
    directories) can carry it, and the rebuilt judge has the same rubric."""
    from judgekit.cli import build_parser
    from judgekit.cli_args import rubric_options
    from judgekit.judge_spec import JudgeSpec

    args = build_parser().parse_args(["bench", "run", "llmbar", "--rubric", str(rubric),
                                      "--rubric-mode", "seed"])
    spec = JudgeSpec(model="openai:judge-test",
                     options={"api_key": "sk-test-x", **rubric_options(args)})
    rebuilt = JudgeSpec.model_validate_json(spec.model_dump_json()).build()
    assert rebuilt.format.rubric is not None and rebuilt.format.rubric.mode.value == "seed"
    assert [(p.name, p.weight) for p in rebuilt.format.rubric.principles] == [
        ("Accuracy", 0.75), ("Clarity", 0.25)]
