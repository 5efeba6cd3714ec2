"""Progress shows trouble: the bar counts failed items and retries, and batch polling prints each
job's state and counts at every poll. Against the loopback fault server and the batch fake."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.batch_fake import BatchFake
from support.fault_server import FaultServer

from judgekit.bench.cli import main as bench_main
from judgekit.judge import Judge
from judgekit.retry import RetryPolicy


async def no_sleep(_: float) -> None:
    return None


def test_the_bar_counts_failed_items_and_retries(fault_server: FaultServer,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fault_server.schedule = {"r0": ["500"], "r1": ["503", "500"], "f0": ["400"], "f1": ["400"]}
    judge = Judge("openai:m", base_url=fault_server.openai_url, examples=False, concurrency=2,
                  retry=RetryPolicy(sleep=no_sleep))
    keys = ["ok0", "r0", "f0", "ok1", "r1", "f1", "ok2"]
    verdicts = judge.score_many([{"id": k, "query": f"jk-item-{k} q", "responses": ["GOOD", "b"]}
                                 for k in keys], progress=True)
    failed = sum(v.error is not None for v in verdicts)
    retries = sum(v.usage.retries for v in verdicts)
    assert (failed, retries) == (2, 3)  # the reference the bar must agree with
    states = [s for s in re.split(r"[\r\n]", capsys.readouterr().err) if "judging" in s]
    assert states and states[-1].rstrip().endswith("failed=2, retries=3]"), states[-1]
    assert "7/7" in states[-1]


def test_a_clean_run_shows_no_trouble(fault_server: FaultServer,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    judge = Judge("openai:m", base_url=fault_server.openai_url, examples=False)
    judge.score_many([{"query": f"jk-item-c{i} q", "responses": ["GOOD", "b"]} for i in range(3)],
                     progress=True)
    assert "failed=" not in capsys.readouterr().err


def test_batch_polling_prints_each_jobs_state_and_counts(
        batch_fake: BatchFake, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"id": k, "query": f"jk-item-{k} Which is right?",
                                        "responses": ["GOOD: four", "five"], "label": 0}) + "\n"
                            for k in ("a", "b", "c")))
    assert bench_main(["run", str(data), "--model", "openai:judge-test", "--base-url",
                       batch_fake.openai_url, "--no-examples", "--no-cache", "--out",
                       str(tmp_path / "run"), "--batch", "--poll-interval", "0"]) == 0
    polls = [s for s in re.split(r"[\r\n]", capsys.readouterr().err) if s.startswith("batch ")]
    states = [re.search(r": \S+ (\w+)", p).group(1) for p in polls]  # type: ignore[union-attr]
    # one line per poll, in the order the job went through its states
    assert states == ["validating", "in_progress", "finalizing", "completed"], polls
    assert "total 3" in polls[-1] and "completed 3" in polls[-1], polls[-1]

