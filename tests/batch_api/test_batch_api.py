"""Provider batch APIs through the real openai and anthropic SDKs, against BatchFake (a protocol
batch_fake of the batch endpoints on 127.0.0.1, tests/support/batch_fake.py): the same Verdicts as an
online run, stable custom ids, every job state, per-request errors, expiry, cancellation,
resubmission, resuming after a killed process, and batch prices."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from support.batch_fake import BatchFake
from support.fault_server import judge_text

from judgekit import Judge, SampleStatus
from judgekit.batch_api import (
    BatchNotReady,
    BatchRequest,
    BatchRunError,
    collect_batch,
    open_batch,
    submit_batch,
)
from judgekit.batch_api.openai import OpenAIBatchProvider
from judgekit.batch_api.run import BatchRun
from judgekit.config import GenerationConfig
from judgekit.cost import BATCH_PRICES, PRICES, call_cost, lookup_price
from judgekit.judge_spec import JudgeSpec
from judgekit.meta import MetaResult, MetaScorer
from judgekit.schema import Judgement, Message, Verdict

APIS = ["openai", "anthropic"]
ROOT = Path(__file__).resolve().parents[2]
GARBLE = "I liked the first one more, I think."


def options(batch_fake: BatchFake, api: str) -> dict[str, Any]:
    # The fake speaks OpenAI's own protocol (strict JSON schemas), as the Batch API does.
    flavour = {"server_flavour": "openai"} if api == "openai" else {}
    return {"base_url": batch_fake.openai_url if api == "openai" else batch_fake.anthropic_url,
            "api_key": "sk-test-batch", "examples": False, "max_tokens": 128, **flavour}


def judge(batch_fake: BatchFake, api: str = "openai", **kw: Any) -> Judge:
    return Judge(f"{api}:judge-test", config=GenerationConfig(max_tokens=128, timeout=5.0),
                 **{**options(batch_fake, api), **kw})


def items(*keys: str) -> list[dict[str, Any]]:
    return [{"id": k, "query": f"jk-item-{k} Which answer is right?",
             "responses": ["GOOD: four", "five", "six"] if k.endswith("3") else
             ["GOOD: four", "five"]} for k in keys]


def collect(handle: Any, **kw: Any) -> list[Verdict]:
    return handle.collect(poll_interval=0.0, **kw)


def comparable(v: Verdict) -> dict[str, Any]:
    """Everything but the wall time (collecting is not generating)."""
    return v.model_dump(mode="json", exclude={"wall_time_s"})


class OrderMeta(MetaScorer):
    """A deterministic meta scorer (rates later samples higher), so meta-guided voting runs
    the same in both modes without a meta model."""

    @property
    def spec(self) -> str:
        return "order-meta"

    async def ascore_samples(self, query: str | Sequence[Message], responses: Sequence[str],
                             judgements: Sequence[Judgement]) -> MetaResult:
        return MetaResult(scores=[float(j.sample_index) if j.valid else None
                                  for j in judgements])


# --------------------------------------------------------------------------------------------
# The same pipeline as online
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_batch_and_online_runs_over_the_same_outputs_give_identical_verdicts(
        batch_fake: BatchFake, api: str, tmp_path: Path) -> None:
    batch_items = items("a", "b", "c3")
    j = judge(batch_fake, api)
    online = j.score_many(batch_items, samples=4, meta=OrderMeta(), k_meta=2, progress=False)
    handle = submit_batch(j, batch_items, samples=4, run_dir=tmp_path, meta=OrderMeta(), k_meta=2)
    batched = collect(handle)
    assert [comparable(v) for v in batched] == [comparable(v) for v in online]
    assert all(v.ok and v.best == 0 and v.meta_model == "order-meta" for v in batched)
    assert sum(v.k_meta == 2 and sum(s.kept for s in v.samples) == 2 for v in batched) == 3
    # no online generation happened in the batch run: only the online run's calls
    online_calls = sum(v.usage.calls for v in online)
    assert batch_fake.http[f"{api} online"] == online_calls


@pytest.mark.parametrize("api", APIS)
def test_custom_ids_are_stable_and_name_item_permutation_and_samples(
        batch_fake: BatchFake, api: str, tmp_path: Path) -> None:
    j = judge(batch_fake, api)
    submit_batch(j, items("a", "b3"), samples=3, run_dir=tmp_path)
    first = batch_fake.submitted_custom_ids()
    if api == "openai":  # one request per distinct order, n = its samples
        assert first == ["i0-p01-s0n2", "i0-p10-s1", "i1-p012-s0", "i1-p120-s1", "i1-p201-s2"]
    else:  # no n: one request per sample
        assert first == ["i0-p01-s0", "i0-p01-s2", "i0-p10-s1",
                         "i1-p012-s0", "i1-p120-s1", "i1-p201-s2"]
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cid) for cid in first)
    # the same call again resumes: nothing new is submitted; a new item is, after the others
    submit_batch(j, items("a", "b3"), samples=3, run_dir=tmp_path)
    assert batch_fake.submitted_custom_ids() == first
    submit_batch(j, items("a", "b3", "c"), samples=3, run_dir=tmp_path)
    assert batch_fake.submitted_custom_ids()[:len(first)] == first
    assert all(cid.startswith("i2-") for cid in batch_fake.submitted_custom_ids()[len(first):])


def test_a_directory_of_another_run_is_refused(batch_fake: BatchFake, tmp_path: Path) -> None:
    submit_batch(judge(batch_fake), items("a"), samples=2, run_dir=tmp_path)
    with pytest.raises(BatchRunError, match="samples: 2 -> 3"):
        submit_batch(judge(batch_fake), items("a"), samples=3, run_dir=tmp_path)
    changed = [{**items("a")[0], "responses": ["other", "texts"]}]
    with pytest.raises(BatchRunError, match="other content"):
        submit_batch(judge(batch_fake), changed, samples=2, run_dir=tmp_path)
    with pytest.raises(BatchRunError, match="other prompts"):  # other template options
        collect(open_batch(tmp_path, judge(batch_fake, max_tokens=64)))


def test_a_local_model_has_no_batch_api(tmp_path: Path) -> None:
    from judgekit.backends.base import Backend, GenerationResult

    class Local(Backend):
        @property
        def spec(self) -> str:
            return "hf:local"

        async def generate(self, messages: list[Message], config: GenerationConfig,
                           n: int = 1) -> GenerationResult:
            raise AssertionError("never called")

    with pytest.raises(BatchRunError, match="no batch API"):
        submit_batch(Judge(Local(), examples=False), items("a"), run_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Job states
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_job_states_are_followed_until_the_end(batch_fake: BatchFake, api: str, tmp_path: Path) -> None:
    handle = submit_batch(judge(batch_fake, api), items("a"), samples=2, run_dir=tmp_path)
    with pytest.raises(BatchNotReady, match="still running"):  # one poll, then it returns
        handle.collect(wait=False)
    seen = [handle.run.state.jobs[0].state]
    while not (status := handle.status())["finished"]:  # each retrieve: the next state
        seen.extend(status["jobs"])
    expected = (["validating", "in_progress", "finalizing"] if api == "openai"
                else ["in_progress"])
    assert seen == expected
    assert handle.run.state.jobs[0].state == ("completed" if api == "openai" else "ended")
    assert collect(handle)[0].best == 0


@pytest.mark.parametrize("api", APIS)
def test_errors_inside_a_completed_batch_are_recorded_per_sample(
        batch_fake: BatchFake, api: str, tmp_path: Path) -> None:
    batch_fake.request_faults = {"bad": ["400", "400"], "busy": ["500", "500"]}
    a, bad, busy = collect(submit_batch(judge(batch_fake, api), items("a", "bad", "busy"), samples=2,
                                                         run_dir=tmp_path))
    assert a.ok and a.valid_samples == 2
    for v, kind in ((bad, "FatalBackendError"), (busy, "TransientBackendError")):
        assert not v.ok and v.best is None and v.scores == [None, None]
        assert {s.status for s in v.samples} == {SampleStatus.API_ERROR}
        assert all(s.error and s.error.startswith(kind) for s in v.samples)
    assert "invalid_request_error" in (bad.samples[0].error or "")


@pytest.mark.parametrize("api", APIS)
def test_expired_requests_fail_per_sample_and_are_resubmitted(
        batch_fake: BatchFake, api: str, tmp_path: Path) -> None:
    batch_fake.end, batch_fake.unfinished = "expired", {"late"}
    handle = submit_batch(judge(batch_fake, api), items("a", "late"), samples=2, run_dir=tmp_path)
    a, late = collect(handle)
    assert handle.run.state.jobs[0].state == ("expired" if api == "openai" else "ended")
    assert a.ok and not late.ok
    assert all(s.status is SampleStatus.API_ERROR and "BatchRequestNotRun" in (s.error or "")
               for s in late.samples)
    late_ids = [c for c in batch_fake.submitted_custom_ids() if c.startswith("i1-")]
    batch_fake.end = "completed"
    assert handle.resubmit_failed() == len(late_ids)
    assert handle.run.state.jobs[1].round == 1
    assert batch_fake.submitted_custom_ids()[-len(late_ids):] == late_ids  # the same custom ids
    a2, late2 = collect(handle)
    assert comparable(a2) == comparable(a) and late2.ok and late2.best == 0
    assert handle.resubmit_failed() == 0


@pytest.mark.parametrize("api", APIS)
def test_cancel_keeps_finished_requests_and_fails_the_rest(
        batch_fake: BatchFake, api: str, tmp_path: Path) -> None:
    batch_fake.steps, batch_fake.unfinished = ("in_progress",) * 50, {"slow"}
    handle = submit_batch(judge(batch_fake, api), items("a", "slow"), samples=2, run_dir=tmp_path)
    handle.status()
    assert handle.cancel()["jobs"] == {"cancelling" if api == "openai" else "canceling": 1}
    a, slow = collect(handle)
    assert handle.run.state.jobs[0].state == ("cancelled" if api == "openai" else "ended")
    assert a.ok and a.best == 0
    assert not slow.ok and all("cancel" in (s.error or "") for s in slow.samples)


def test_a_job_that_fails_validation_fails_every_request(batch_fake: BatchFake, tmp_path: Path) -> None:
    provider = OpenAIBatchProvider(judge(batch_fake).backend)  # type: ignore[arg-type]
    request = BatchRequest("dup", [{"role": "user", "content": "hi"}], 1, GenerationConfig())

    async def go() -> Any:
        job_id = await provider.submit([request, request], "jk-test-0")
        return await provider.retrieve(job_id)

    import asyncio

    status = asyncio.run(go())
    assert status.state == "failed" and status.terminal and "duplicate" in (status.error or "")


# --------------------------------------------------------------------------------------------
# Re-asks, resuming
# --------------------------------------------------------------------------------------------
def test_an_unreadable_batch_answer_is_reasked_online(batch_fake: BatchFake, tmp_path: Path) -> None:
    served = []

    def garble_first(responses: list[str] | None) -> str:
        served.append(1)
        return GARBLE if len(served) == 1 else judge_text(responses)

    batch_fake.text = garble_first
    (v,) = collect(submit_batch(judge(batch_fake), items("a"), run_dir=tmp_path))
    assert v.ok and v.samples[0].status is SampleStatus.OK and v.samples[0].attempts == 2
    assert batch_fake.http["openai online"] == 1  # the re-ask, and nothing else, went online
    assert "could not be read" in str(batch_fake.online_bodies[0]["messages"][-1]["content"])


@pytest.mark.parametrize("api", APIS)
def test_another_handle_collects_without_resubmitting(batch_fake: BatchFake, api: str,
                                                      tmp_path: Path) -> None:
    spec = JudgeSpec(model=f"{api}:judge-test", options=options(batch_fake, api))
    from judgekit.batch_api import asubmit_batch
    from judgekit.runtime import run_sync

    run_sync(asubmit_batch(spec, items("a", "b"), 2, run_dir=tmp_path))
    stored = json.loads((tmp_path / "batch.json").read_text())
    assert "api_key" not in json.dumps(stored)  # the spec is stored without its secret
    os.environ["OPENAI_API_KEY" if api == "openai" else "ANTHROPIC_API_KEY"] = "sk-env"
    try:
        verdicts = collect_batch(tmp_path, poll_interval=0.0)  # the judge rebuilt from the spec
    finally:
        os.environ.pop("OPENAI_API_KEY" if api == "openai" else "ANTHROPIC_API_KEY")
    assert [v.item_id for v in verdicts] == ["a", "b"] and all(v.best == 0 for v in verdicts)
    assert batch_fake.http[f"{api} batch create"] == 1


@pytest.mark.parametrize("api", APIS)
def test_a_create_call_in_flight_when_the_process_died(batch_fake: BatchFake, api: str,
                                                       tmp_path: Path) -> None:
    """The job was recorded, the provider created it, the process died before writing its id.
    OpenAI finds it by its metadata tag; Anthropic keeps none, so it is created again."""
    j = judge(batch_fake, api)
    submit_batch(j, items("a"), samples=2, run_dir=tmp_path)
    run = BatchRun.load(tmp_path)
    run.state.jobs[0].job_id, run.state.jobs[0].state = None, "submitting"
    run.save()
    (v,) = collect(open_batch(tmp_path, j))
    assert v.ok
    assert batch_fake.http[f"{api} batch create"] == (1 if api == "openai" else 2)


def test_a_killed_process_resumes_polling_without_resubmitting(batch_fake: BatchFake,
                                                               tmp_path: Path) -> None:
    """A real process submits and polls; it is killed mid-poll; the next collect (here, in this
    process) polls the same job and submits nothing."""
    batch_fake.steps = ("in_progress",) * 40
    script = (
        "import sys; from judgekit import Judge; from judgekit.config import GenerationConfig\n"
        "from judgekit.batch_api import submit_batch\n"
        f"j = Judge('openai:judge-test', base_url={batch_fake.openai_url!r}, api_key='sk-x', "
        "examples=False, config=GenerationConfig(max_tokens=128))\n"
        f"h = submit_batch(j, {items('a', 'b')!r}, samples=2, run_dir={str(tmp_path)!r})\n"
        "print('submitted', flush=True)\n"
        "h.collect(poll_interval=0.05)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env,
                             text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "submitted"
        deadline = time.monotonic() + 30
        while batch_fake.http["openai batch retrieve"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert batch_fake.http["openai batch retrieve"] >= 3  # it was polling
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert batch_fake.http["openai batch create"] == 1
    verdicts = collect_batch(tmp_path, judge(batch_fake), poll_interval=0.0)
    assert [v.best for v in verdicts] == [0, 0]
    assert batch_fake.http["openai batch create"] == 1 and batch_fake.http["openai file upload"] == 1


# --------------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------------
def test_the_price_table_says_which_prices_are_batch_prices() -> None:
    assert lookup_price("gpt-4o", tier="batch") == (1.25, 5.0)
    assert BATCH_PRICES["claude-sonnet-4-5"] == (1.5, 7.5)
    assert set(BATCH_PRICES) == set(PRICES)
    assert lookup_price("gpt-4o-2024-08-06", tier="batch") == BATCH_PRICES["gpt-4o"]
    assert lookup_price("x", {"x": (9.0, 9.0)}, tier="batch") == (9.0, 9.0)  # user's batch table


@pytest.mark.parametrize("api,model", [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")])
def test_batch_requests_are_counted_at_batch_prices(batch_fake: BatchFake, api: str, model: str,
                                                    tmp_path: Path) -> None:
    j = Judge(f"{api}:{model}", **options(batch_fake, api))
    j.backend.local = False  # type: ignore[attr-defined]  # priced as the hosted model
    (online,) = j.score_many(items("a"), samples=2, progress=False)
    (batched,) = collect(submit_batch(j, items("a"), samples=2, run_dir=tmp_path))
    u = batched.usage
    assert u.total_tokens == online.usage.total_tokens > 0
    assert u.cost_usd == pytest.approx(call_cost(model, u.prompt_tokens, u.completion_tokens,
                                                 tier="batch"))
    assert u.cost_usd == pytest.approx(online.usage.cost_usd / 2)
