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


def test_judge_output_marks_kept_samples_and_counts_unrated_ones() -> None:
    """Issue 22 item 9: under meta-guided voting every valid sample says whether it was kept,
    an unrated one included, and the scores line counts the kept, the valid and the unrated."""
    from judgekit.aggregate import build_verdict
    from judgekit.cli import format_verdict
    from judgekit.schema import Judgement, SampleStatus

    samples = [Judgement(sample_index=j, status=SampleStatus.OK, permutation=[0, 1],
                         scores=[8.0, 3.0], meta_score=meta)
               for j, meta in enumerate([0.9, None, 0.1])]
    samples.append(Judgement(sample_index=3, status=SampleStatus.PARSE_FAILURE,
                             permutation=[1, 0], error="unreadable"))
    text = format_verdict(build_verdict(samples, 2, k=4, k_meta=2), ["a", "b"])
    heads = [line for line in text.splitlines() if line.startswith("Sample")]
    # rated samples come first (the keep rule), so the unrated one is left out here
    assert "meta 0.900 kept" in heads[0] and "meta unrated discarded" in heads[1]
    assert "meta 0.100 kept" in heads[2] and "meta" not in heads[3]
    assert "sum over 2 kept of 3 valid of 4 samples; the meta judge could not rate 1" in text
    plain = format_verdict(build_verdict(samples, 2, k=4), ["a", "b"])
    assert "sum over 3 valid of 4 samples" in plain and "kept" not in plain
