"""Every invalid argument exits 2 with one line on stderr and no traceback, in all three CLIs
(`judgekit judge`, `judgekit bench`, `judgekit train`), which share their common arguments."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from judgekit import cli_args
from judgekit.bench.datasets import ENV_DATA_DIR
from judgekit.cli import build_parser, main

JUDGE = ["judge", "--query", "q", "--response", "a"]
BENCH = ["bench", "run", "llmbar", "--limit", "1", "--no-progress"]
RFT = ["train", "rft", "--dataset", "llmbar", "--out-dir", "unused"]


@pytest.fixture()
def latin1(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    return path


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, (code, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not captured.out
    for needle in needles:
        assert needle in err, err
    return err.strip()


# -- temperature, max tokens, samples, k_meta, concurrency --------------------------------------
@pytest.mark.parametrize("prefix", [JUDGE, BENCH, RFT], ids=["judge", "bench", "train"])
@pytest.mark.parametrize("value", ["5", "-0.1", "nan", "2.01"])
def test_temperature_out_of_range(prefix: list[str], value: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    _fails([*prefix, "--temperature", value], capsys, "--temperature",
           "must be between 0 and 2")


@pytest.mark.parametrize("prefix", [JUDGE, BENCH, RFT], ids=["judge", "bench", "train"])
def test_temperature_not_a_number(prefix: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _fails([*prefix, "--temperature", "warm"], capsys, "'warm' is not a number")


@pytest.mark.parametrize("prefix", [JUDGE, BENCH, RFT], ids=["judge", "bench", "train"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_max_tokens_below_1(prefix: list[str], value: str,
                            capsys: pytest.CaptureFixture[str]) -> None:
    _fails([*prefix, "--max-tokens", value], capsys, "--max-tokens", "must be at least 1")


@pytest.mark.parametrize("prefix", [JUDGE, BENCH, RFT], ids=["judge", "bench", "train"])
def test_samples_below_1(prefix: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _fails([*prefix, "--samples", "0"], capsys, "--samples", "must be at least 1")


@pytest.mark.parametrize("prefix", [JUDGE, BENCH], ids=["judge", "bench"])
def test_k_meta_below_1(prefix: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _fails([*prefix, "--meta", "--samples", "4", "--k-meta", "0"], capsys, "--k-meta",
           "must be at least 1")


@pytest.mark.parametrize("prefix", [JUDGE, BENCH], ids=["judge", "bench"])
def test_k_meta_without_meta(prefix: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _fails([*prefix, "--k-meta", "2"], capsys, "--k-meta needs --meta")


@pytest.mark.parametrize("prefix", [JUDGE, BENCH, RFT], ids=["judge", "bench", "train"])
def test_concurrency_below_1(prefix: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _fails([*prefix, "--concurrency", "0"], capsys, "--concurrency", "must be at least 1")


@pytest.mark.parametrize("prefix", [JUDGE, BENCH], ids=["judge", "bench"])
def test_aggregate_choices(prefix: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _fails([*prefix, "--aggregate", "median"], capsys, "--aggregate", "invalid choice")


# -- files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--query", "--response"])
def test_at_file_that_is_not_utf8(flag: str, latin1: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["judge", "--query", "q", "--response", "a", flag, f"@{latin1}"]
    _fails(argv, capsys, "is not UTF-8", "byte 0xe9", str(latin1))


@pytest.mark.parametrize("flag", ["--query", "--response"])
def test_missing_at_file(flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.txt"
    argv = ["judge", "--query", "q", "--response", "a", flag, f"@{missing}"]
    _fails(argv, capsys, "file not found", str(missing))


def test_at_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails([*JUDGE, "--response", f"@{tmp_path}"], capsys, "is a directory")


def test_at_file_reads_utf8(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("na\u00efve \u2713", encoding="utf-8")
    args = build_parser().parse_args(["judge", "--query", f"@{path}", "--response", "a"])
    assert args.query == "na\u00efve \u2713"


def test_bench_dataset_file_that_is_not_utf8(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "mine.jsonl"
    bad.write_bytes('{"query": "caf\u00e9", "responses": ["a", "b"], "label": 0}\n'
                    .encode("latin-1"))
    _fails(["bench", "run", str(bad), "--no-progress", "--out", str(tmp_path / "o")], capsys,
           "is not UTF-8")


def test_bench_dataset_file_with_a_malformed_row(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "mine.jsonl"
    bad.write_text('{"query": "q", "responses": ["a", "b"], "label": "A>B"}\n'
                   '{"query": "q", "responses": ["a", "b"], "label": "sideways"}\n')
    _fails(["bench", "run", str(bad), "--no-progress", "--out", str(tmp_path / "o")], capsys,
           "row 1, field 'label'")


@pytest.mark.parametrize("flag", ["--items-file", "--config"])
def test_train_files_not_utf8_or_missing(flag: str, latin1: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "rft", "--out-dir", str(tmp_path / "o")]
    _fails([*base, flag, str(latin1)], capsys, flag, "is not UTF-8")
    _fails([*base, flag, str(tmp_path / "missing.jsonl")], capsys, flag, "file not found")


# -- data directories ---------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", [["bench", "list", "--no-count"], BENCH, RFT],
                         ids=["bench-list", "bench-run", "train"])
def test_missing_data_dir(prefix: list[str], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    _fails([*prefix, "--data-dir", str(tmp_path / "nowhere")], capsys, "--data-dir",
           "does not exist")


@pytest.mark.parametrize("prefix", [["bench", "list", "--no-count"], BENCH, RFT],
                         ids=["bench-list", "bench-run", "train"])
def test_data_dir_that_is_a_file(prefix: list[str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    _fails([*prefix, "--data-dir", str(tmp_path / "f")], capsys, "is not a directory")


@pytest.mark.parametrize("prefix", [["bench", "list", "--no-count"], BENCH, RFT],
                         ids=["bench-list", "bench-run", "train"])
def test_unreadable_data_dir(prefix: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root reads anything: make the permission check refuse
        from judgekit.bench.datasets import roots

        monkeypatch.setattr(roots.os, "access", lambda *a, **k: False)
    else:
        locked.chmod(0)
    try:
        _fails([*prefix, "--data-dir", str(locked)], capsys, "is not readable")
    finally:
        locked.chmod(0o755)


def test_bad_env_data_dir_stops_bench_before_any_judge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from judgekit.bench import runner

    def no_judge(*a: Any, **k: Any) -> Any:
        raise AssertionError("a judge was built")

    monkeypatch.setattr(runner, "make_judge", no_judge)
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "gone"))
    _fails(["bench", "run", "rmb", "--no-progress"], capsys, "$JUDGEKIT_DATA_DIR",
           "does not exist")
    _fails(["bench", "list", "--no-count"], capsys, "does not exist")


# -- the console script, as a user runs it ------------------------------------------------------
@pytest.mark.parametrize("argv", [
    [*JUDGE, "--temperature", "5"],
    [*JUDGE, "--max-tokens", "0"],
    [*BENCH, "--temperature", "5"],
    [*RFT, "--temperature", "5"],
], ids=["judge-temperature", "judge-max-tokens", "bench", "train"])
def test_console_exit_2_one_line_no_traceback(argv: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "judgekit.cli", *argv], capture_output=True,
                         text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert "error:" in out.stderr and not out.stdout


# -- one definition, shared --------------------------------------------------------------------
def _subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def test_judge_and_bench_share_the_common_arguments() -> None:
    parser = build_parser()
    for path in (("judge",), ("bench", "run")):
        sub = _subparser(parser, *path)
        dests = {a.dest: a for a in sub._actions}
        for name, arg in cli_args.COMMON_ARGS.items():
            assert name in dests, (path, name)
            assert dests[name].type is arg.kwargs.get("type"), (path, name)
    rft = {a.dest: a for a in _subparser(parser, "train", "rft")._actions}
    for name in ("samples", "max_tokens", "temperature", "concurrency", "data_dir"):
        assert rft[name].type.__name__ == cli_args.converter_for(name).__name__  # type: ignore


def test_same_message_in_every_cli(capsys: pytest.CaptureFixture[str]) -> None:
    messages = {_fails([*p, "--temperature", "9"], capsys).split("error: ", 1)[1]
                for p in (JUDGE, BENCH, RFT)}
    assert len(messages) == 1, messages


def test_aggregate_and_options_reach_the_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    import judgekit.judge

    seen: dict[str, Any] = {}

    class FakeJudge:
        def __init__(self, model: Any = None, **kwargs: Any) -> None:
            seen.update(kwargs, model=model)

        def score(self, *a: Any, **k: Any) -> Any:
            raise KeyboardInterrupt  # stop here: the options are what this test checks

    monkeypatch.setattr(judgekit.judge, "Judge", FakeJudge)
    assert main([*JUDGE, "--aggregate", "weighted", "--meta", "--meta-model", "openai:m",
                 "--k-meta", "2", "--samples", "4", "--voting", "mean", "--temperature", "0.7",
                 "--concurrency", "9", "--base-url", "http://x"]) == 130
    assert seen["aggregate"] == "weighted" and seen["meta"] == "openai:m"
    assert (seen["k_meta"], seen["voting"], seen["temperature"]) == (2, "mean", 0.7)
    assert (seen["concurrency"], seen["base_url"], seen["max_tokens"]) == (9, "http://x", 512)
    seen.clear()
    assert main(JUDGE) == 130
    assert "aggregate" not in seen and "meta" not in seen  # the Judge's own defaults apply


def test_bench_passes_aggregate_to_the_judge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from support.bench_standin import ScriptedJudgeStandIn

    from judgekit.bench import runner

    seen: dict[str, Any] = {}

    def make_judge(*a: Any, **k: Any) -> Any:
        seen.update(k)
        return ScriptedJudgeStandIn()

    monkeypatch.setattr(runner, "make_judge", make_judge)
    out = tmp_path / "run"
    assert main([*BENCH, "--aggregate", "weighted", "--voting", "mean", "--out", str(out)]) == 0
    assert seen["aggregate"] == "weighted" and seen["voting"] == "mean"
    import json

    extra = json.loads((out / "run.json").read_text())["extra"]
    assert extra["aggregate"] == "weighted" and extra["voting"] == "mean"
    capsys.readouterr()
    _fails([*BENCH, "--baseline", "pairwise", "--aggregate", "weighted"], capsys,
           "--aggregate applies to the GRM prompt only")
