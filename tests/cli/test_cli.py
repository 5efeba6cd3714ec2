"""The command line: bad arguments give one line and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from judgekit import Judge
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.cli import main
from judgekit.cli_args import add_common_args, check_common, judge_options


@pytest.mark.parametrize(("argv", "message"), [
    (["judge", "--query", "q"], "give at least one --response"),
    (["judge", "--query", "q", "--response", "a", "--model", "nope:x"], "unknown model spec"),
    (["judge", "--query", "q", "--response", "a", "--model", "gguf:/no/such.gguf"],
     "GGUF file not found"),
    (["judge", "--query", "q", "--response", "@/no/such/file"], "file not found"),
    (["judge", "--query", "q", "--response", "a", "--samples", "0"], "--samples"),
    (["judge", "--query", "q", "--response", "a", "--k-meta", "2"], "--k-meta needs --meta"),
    (["judge", "--response", "a"], "--query"),
    (["judge", "--query", "q", "--response", "a", "--server-flavour", "vllm"],
     "--server-flavour needs an openai: --model"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(argv: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("judgekit: error:") and message in err


def test_model_dir_without_config_is_a_spec_error(tmp_path: object,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judge", "--query", "q", "--response", "a", "--model", f"hf:{tmp_path}"]) == 2
    assert "not a Hugging Face model directory" in capsys.readouterr().err


def test_server_flavour_and_no_structured_reach_the_judge() -> None:
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    args = parser.parse_args(["--model", "openai:m", "--base-url", "http://127.0.0.1:9/v1",
                              "--server-flavour", "llamacpp", "--no-structured"])
    assert check_common(args) is None
    options = judge_options(args)
    assert options["server_flavour"] == "llamacpp" and options["structured"] is False
    judge = Judge(args.model, **options)  # constructing it sends nothing
    assert isinstance(judge.backend, OpenAIBackend)
    assert judge.backend.server_flavour == "llamacpp" and not judge.structured
    # Left out, neither is passed: the backend's and the Judge's own defaults apply.
    plain = judge_options(parser.parse_args(["--model", "openai:m"]))
    assert "server_flavour" not in plain and "structured" not in plain


@pytest.mark.model
def test_judge_json_on_the_embedded_model_in_a_subprocess() -> None:
    """The installed console script, end to end, as a user runs it."""
    out = subprocess.run(
        [sys.executable, "-m", "judgekit.cli", "judge", "--query", "Name a primary colour.",
         "--response", "Red.", "--response", "Banana.", "--max-tokens", "160", "--json"],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    verdict = json.loads(out.stdout)
    assert verdict["n_responses"] == 2 and len(verdict["scores"]) == 2
    assert verdict["samples"][0]["status"] in ("ok", "forced")
    assert all(1 <= s <= 10 for s in verdict["samples"][0]["scores"])

