"""Deadlines: a server that accepts connections and never answers is given up on. Each attempt
ends at `--timeout`, a timed-out call is retried `timeout_retries` times at most, the call becomes
a recorded `APITimeoutError`, and a batch or bench run stops after a run of such items, its
finished items recorded and resumable. All against real loopback servers through the real SDKs
(`support.loopback.SilentServer`: a port that accepts and never answers).

Time bounds hold on a machine twice as slow: each is twice what the deadlines add up to."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.fault_server import FaultServer
from support.items_file import write_items
from support.loopback import SilentServer
from support.verdicts import one_sample_verdict

from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.batch import SystemicFailureWatch
from judgekit.bench.cli import main as bench_main
from judgekit.cli import main
from judgekit.config import GenerationConfig
from judgekit.errors import APITimeoutError
from judgekit.judge import Judge
from judgekit.retry import RetryPolicy


async def no_sleep(_: float) -> None:
    return None


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_judge_cli_gives_up_on_a_silent_server_with_one_line(
        silent_server: SilentServer, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    code = main(["judge", "--model", "openai:m", "--base-url", silent_server.openai_url,
                 "--query", "q", "--response", "a", "--response", "b", "--no-examples",
                 "--timeout", "5", "--max-retries", "1"])
    elapsed = time.monotonic() - start
    out, err = capsys.readouterr()
    assert code == 1
    line = one_line(err)
    assert line.startswith("judgekit: error:") and "APITimeoutError" in line
    assert out == ""
    # one flavour probe (2 s at most: `detect_flavour`), the first attempt and one retry
    assert silent_server.accepted == 3
    # a 2 s probe and 2 attempts of 5 s (a timed-out attempt is retried at once): 12 s, within
    # three timeouts; the bound is three timeouts twice over.
    assert elapsed < 3 * 5 * 2, elapsed


async def test_timed_out_attempts_spend_their_own_short_budget(
        silent_server: SilentServer) -> None:
    """max_retries=6 would be 7 whole timeouts; a timed-out call is retried once."""
    backend = OpenAIBackend("m", base_url=silent_server.openai_url,
                            retry=RetryPolicy(sleep=no_sleep, max_retries=6))
    with pytest.raises(APITimeoutError) as info:
        await backend.generate([{"role": "user", "content": "hi"}],
                               GenerationConfig(timeout=0.5, max_tokens=8))
    await backend.aclose()
    assert info.value.retries == 1
    assert silent_server.accepted == 2


async def test_no_timeout_retries_means_one_attempt(silent_server: SilentServer) -> None:
    backend = OpenAIBackend("m", base_url=silent_server.openai_url, max_retries=3,
                            retry=RetryPolicy(sleep=no_sleep, timeout_retries=0))
    assert backend.retry_policy.max_retries == 3  # max_retries overrides the policy's
    with pytest.raises(APITimeoutError):
        await backend.generate([{"role": "user", "content": "hi"}],
                               GenerationConfig(timeout=0.5, max_tokens=8))
    await backend.aclose()
    assert silent_server.accepted == 1


def test_judge_takes_timeout_and_max_retries(fault_server: FaultServer) -> None:
    judge = Judge("openai:m", base_url=fault_server.openai_url, timeout=2.5, max_retries=0)
    assert judge.config.timeout == 2.5
    assert judge.backend.retry_policy.max_retries == 0
    assert Judge("openai:m", base_url=fault_server.openai_url).config.timeout == 60.0
    with pytest.raises(ValueError, match="max_retries is a setting of the backend"):
        Judge(judge.backend, max_retries=1)
    with pytest.raises(ValueError, match="max_retries must be at least 0"):
        RetryPolicy(max_retries=-1)




def test_timeouts_count_toward_the_abort() -> None:
    watch = SystemicFailureWatch(max_unreachable=3)
    assert watch.check(one_sample_verdict("APITimeoutError")) is None
    assert watch.check(one_sample_verdict("ServerUnreachableError")) is None
    reason = watch.check(one_sample_verdict("APITimeoutError"))
    assert reason is not None and "no answer" in reason and "APITimeoutError" in reason
    other = SystemicFailureWatch(max_unreachable=2)
    seq = ["APITimeoutError", None, "APITimeoutError", "TransientBackendError"]
    assert [other.check(one_sample_verdict(k)) for k in seq] == [None] * 4  # a success resets the run



def test_bench_run_against_a_silent_server_stops_then_resumes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = write_items(tmp_path / "items.jsonl", 200), tmp_path / "run"
    silent = SilentServer().start()
    port = silent.port
    argv = ["run", str(data), "--model", "openai:judge-test", "--base-url", silent.openai_url,
            "--no-examples", "--no-progress", "--out", str(out), "--timeout", "3",
            "--max-retries", "0"]
    start = time.monotonic()
    try:
        code = bench_main(argv)
    finally:
        silent.stop()
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 1
    line = one_line(err)
    assert "stopped" in line and "APITimeoutError" in line and "resume" in line
    # 5 timed-out items in a row at concurrency 4: two waves of 3 s; a minute is far more.
    assert elapsed < 60, elapsed
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert 5 <= len(lines) < 200
    assert all("APITimeoutError" in (x["error"] or "") for x in lines)

    # The server comes back on the same address: the same command resumes and finishes.
    server = FaultServer()
    server.bind_port = port
    with server:
        assert bench_main(argv) == 0
    final = {json.loads(x)["item_id"]: json.loads(x)
             for x in (out / "results.jsonl").read_text().splitlines()}
    assert len(final) == 200 and all(r["verdict"]["valid_samples"] == 1 for r in final.values())
    assert "0 failed" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--timeout", "0"], "--timeout: '0' must be a positive number of seconds"),
    (["--timeout", "soon"], "--timeout: 'soon' is not a number of seconds"),
    (["--max-retries", "-1"], "--max-retries: '-1' must be at least 0"),
])
def test_bad_deadlines_exit_2_with_one_line(argv: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["judge", "--query", "q", "--response", "a"],
                    ["improve", "--query", "q", "--response", "a"]):
        assert main([*command, "--model", "openai:m", *argv]) == 2
        assert message in one_line(capsys.readouterr().err)


def test_deadlines_need_a_remote_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judge", "--query", "q", "--response", "a", "--timeout", "5"]) == 2
    assert "--timeout applies to openai: and anthropic: models" in capsys.readouterr().err


def test_improve_gives_up_on_a_silent_server(silent_server: SilentServer,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    code = main(["improve", "--model", "openai:m", "--base-url", silent_server.openai_url,
                 "--query", "q", "--response", "a", "--no-examples", "--timeout", "2",
                 "--max-retries", "0", "--rounds", "1"])
    elapsed = time.monotonic() - start
    assert code == 1
    assert "APITimeoutError" in capsys.readouterr().out
    assert elapsed < 2 * 2 * 2 * 2, elapsed  # two judge calls of 2 s (k=2), twice over


def test_improve_takes_the_common_judge_flags(scripted_server: FaultServer, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--rubric, --no-structured and --server-flavour reach the judges' requests, and the
    rubric and structured setting are recorded for a resume."""
    rubric = tmp_path / "rubric.json"
    rubric.write_text(json.dumps([
        {"name": "Zebra-accuracy", "description": "facts are right", "weight": 0.7},
        {"name": "Quokka-clarity", "description": "easy to follow", "weight": 0.3}]))
    code = main(["improve", "--judge", "openai:judge-a", "--base-url", scripted_server.openai_url,
                 "--query", "Why is the sky blue?", "--response", "Rayleigh scattering.",
                 "--rubric", str(rubric), "--no-structured", "--server-flavour", "vllm",
                 "--timeout", "30", "--max-retries", "2", "--rounds", "1", "--json"])
    assert code in (0, 1)  # the scripted judges know no rubric: the wire is what is checked
    trace = json.loads(capsys.readouterr().out)
    assert trace["settings"]["judge_settings"][0]["structured"] == "off"
    judged = [r.body for r in scripted_server.records if "Zebra-accuracy" in json.dumps(r.body)]
    assert judged, "the rubric never reached the judge"
    assert all("response_format" not in r.body and "guided_json" not in r.body
               for r in scripted_server.records)
