"""judgekit.ray on a local Ray instance (`ray.init(num_cpus=2)`, started once for this module:
Ray's start-up is slow): the embedded model judged by an actor that loads it once, and
`bench run --ray` against the loopback fault server, resumable like an online run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fault_server import FaultServer

from judgekit.bench.cli import main
from judgekit.judge_spec import JudgeSpec
from judgekit.schema import Verdict

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.model
def test_embedded_model_judges_a_dataset_in_one_actor(local_ray: Any) -> None:
    from judgekit.ray import VERDICT_COLUMNS, judge_dataset

    items = [{"id": "x", "query": "What is 2+2?", "responses": ["4", "5"]},
             {"id": "y", "query": "Capital of France?", "responses": ["Paris", "Lyon"]}]
    spec = JudgeSpec(options={"max_tokens": 16, "examples": False})
    rows = judge_dataset(local_ray.data.from_items(items), spec, workers=1).take_all()
    assert sorted(r["id"] for r in rows) == ["x", "y"]
    for row in rows:
        assert set(VERDICT_COLUMNS) <= set(row)
        verdict = Verdict.model_validate_json(row["verdict"])
        assert verdict.item_id == row["id"] and verdict.model == "embedded"
        assert len(row["scores"]) == 2 and row["valid_samples"] + row["invalid_samples"] == 1
        assert verdict.samples[0].status.value in ("ok", "forced", "parse_failure")
        assert row["prompt_tokens"] == verdict.usage.prompt_tokens > 0


def test_bench_run_on_ray_writes_resumable_results(local_ray: Any, fault_server: FaultServer,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fault_server.default_schedule = ["slow"]  # each item's first answer takes a while
    data = tmp_path / "items.jsonl"
    query: Any = [{"role": "system", "content": "Be strict."},  # queries of both kinds
                  {"role": "user", "content": "jk-item-q0 Which is right?"}]
    data.write_text("".join(json.dumps({"id": f"q{i}", "label": 1,
                                        "query": query if i == 0 else f"jk-item-q{i} Which?",
                                        "responses": ["five", "GOOD: four"]}) + "\n"
                            for i in range(6)))
    out = tmp_path / "run"
    args = ["run", str(data), "--model", "openai:judge-test", "--base-url",
            fault_server.openai_url, "--samples", "2", "--no-examples", "--no-cache",
            "--no-progress", "--out", str(out), "--ray", "--ray-workers", "2"]
    assert main(args) == 0
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(x["item_id"] for x in lines) == [f"q{i}" for i in range(6)]
    assert all(x["verdict"]["best"] == 1 and x["verdict"]["valid_samples"] == 2 for x in lines)
    assert fault_server.peak_in_flight >= 2  # an actor keeps several requests in flight
    assert json.loads((out / "run.json").read_text())["extra"]["mode"] == "ray"
    served = len(fault_server.records)
    assert main(args) == 0  # resuming judges nothing again
    assert "6 already done, 0 judged now" in capsys.readouterr().out
    assert len(fault_server.records) == served
    # the actors' Judge settings are the run's: another voting rule is refused, named
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["execution"] == "ray" and settings["voting"] == "sum"
    assert main([*args, "--voting", "mean"]) == 2
    assert "voting: 'sum' -> 'mean'" in capsys.readouterr().err


def test_a_ray_run_shows_items_on_judgekits_bar_without_rays_noise(
        fault_server: FaultServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Runs in its own Ray (started by the scorer, as `bench run --ray` does for a user): the
    bar counts items as they come back, with the failed one and the retry, and Ray's start-up,
    token, Ray Data and core-worker lines stay off (fd 2 is captured: the core worker writes
    there directly)."""
    ray.shutdown()  # the module's instance, if a test above started it
    fault_server.schedule = {"q3": ["400"], "q5": ["500"]}
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "label": 1, "query": f"jk-item-q{i} Which?",
                                        "responses": ["five", "GOOD: four"]}) + "\n"
                            for i in range(8)))
    try:
        assert main(["run", str(data), "--model", "openai:judge-test", "--base-url",
                     fault_server.openai_url, "--no-examples", "--no-cache", "--out",
                     str(tmp_path / "run"), "--ray", "--ray-workers", "1"]) == 1  # q3 failed
    finally:
        ray.shutdown()
    err = capfd.readouterr().err
    bar = [s for s in err.replace("\r", "\n").splitlines() if s.startswith("judging on ray")]
    assert bar and "8/8" in bar[-1] and "failed=1, retries=1" in bar[-1], bar
    for noise in ("core_worker", "streaming_executor", "Token authentication", "INFO",
                  "Started a local Ray instance"):
        assert noise not in err, (noise, err)
