"""The Judge over a remote backend (the real openai/anthropic SDKs, a loopback fault server):
re-asks on unparseable text, failed calls recorded on the sample, never raised out of a batch."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from support.fault_server import FaultServer, judge_text

from judgekit import Judge, SampleStatus
from judgekit.config import GenerationConfig
from judgekit.meta import MetaResult, MetaScorer
from judgekit.retry import RetryPolicy
from judgekit.schema import Judgement

GARBLE = "I think the first one is nicer, but it is hard to say."


async def no_sleep(_: float) -> None:
    return None


def _judge(server: FaultServer, api: str = "openai", **kw: object) -> Judge:
    url = server.openai_url if api == "openai" else server.anthropic_url
    return Judge(f"{api}:judge-test", base_url=url, api_key="sk-test-x", examples=False,
                 config=GenerationConfig(max_tokens=128, timeout=5.0),
                 retry=RetryPolicy(sleep=no_sleep, max_retries=2), **kw)


class GarbleFirst:
    """Server text: unparseable for the first `bad` answers, a proper judgement after."""

    def __init__(self, bad: int) -> None:
        self.bad = bad
        self.served = 0

    def __call__(self, responses: list[str] | None) -> str:
        self.served += 1
        return GARBLE if self.served <= self.bad else judge_text(responses)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_unparseable_answer_is_reasked_once_carrying_the_error(
        fault_server: FaultServer, api: str) -> None:
    fault_server.text = GarbleFirst(bad=1)
    # Free text: under a schema (Anthropic's default, a forced tool call) the server's answer
    # is the tool call, never this text.
    v = _judge(fault_server, api, structured=False).score("jk-item-r What is 2+2?",
                                                          ["GOOD: 4", "5"])
    jd = v.samples[0]
    assert jd.status is SampleStatus.OK and jd.attempts == 2
    assert v.scores == [9.0, 2.0] and v.best == 0
    assert GARBLE in jd.raw_text  # the whole exchange is kept
    assert jd.usage.calls == 2
    reask = fault_server.records[-1].body["messages"][-1]["content"]
    assert "could not be read" in str(reask) and "does not end with a scores line" in str(reask)


def test_still_unparseable_after_the_reasks_is_a_parse_failure_not_a_score(
        fault_server: FaultServer) -> None:
    fault_server.text = GarbleFirst(bad=10)
    v = _judge(fault_server, max_reasks=2).score("jk-item-p q", ["a", "b"])
    jd = v.samples[0]
    assert jd.status is SampleStatus.PARSE_FAILURE and jd.scores is None
    assert jd.attempts == 3 and jd.usage.calls == 3
    assert v.scores == [None, None] and v.best is None and v.valid_samples == 0
    assert v.error is not None and "parse_failure" in v.error


def test_failed_calls_are_recorded_per_item_and_the_batch_goes_on(
        fault_server: FaultServer) -> None:
    fault_server.schedule = {"bad": ["500", "500", "500"], "fatal": ["400"], "auth": ["401"]}
    items = [{"id": "good", "query": "jk-item-good q", "responses": ["GOOD", "meh"]},
             {"id": "bad", "query": "jk-item-bad q", "responses": ["GOOD", "meh"]},
             {"id": "fatal", "query": "jk-item-fatal q", "responses": ["meh", "GOOD"]}]
    judge = _judge(fault_server)
    good, bad, fatal = judge.score_many(items, progress=False)
    assert good.ok and good.best == 0
    # A rejected key is recorded on the sample of a single call; in a batch it stops the batch
    # (RunAbortedError, see tests/backends/test_failfast.py).
    auth = judge.score("jk-item-auth q", ["meh", "GOOD"])
    for v in (bad, fatal, auth):
        assert not v.ok and v.error is not None and v.best is None
        assert v.samples[0].status is SampleStatus.API_ERROR and v.samples[0].scores is None
    assert "TransientBackendError" in (bad.error or "") or "500" in (bad.error or "")
    assert bad.samples[0].usage.retries == 2  # three attempts, all spent
    assert "FatalBackendError" in (fatal.error or "")
    assert "AuthenticationError" in (auth.error or "") and "sk-test-x" not in (auth.error or "")


async def test_sync_wrappers_work_inside_a_running_event_loop(fault_server: FaultServer) -> None:
    """As in Jupyter: score()/score_many() called while a loop is running in this thread."""
    judge = _judge(fault_server)
    v = judge.score("jk-item-nb q", ["GOOD", "meh"], samples=2)
    assert v.ok and v.best == 0 and v.k == 2
    many = judge.score_many([{"id": "a", "query": "jk-item-a q", "responses": ["x", "GOOD"]}],
                            progress=False)
    assert many[0].best == 1
    from judgekit import verdicts_frame

    frame = verdicts_frame([v, *many])
    assert list(frame["best"]) == [0, 1] and list(frame["valid_samples"]) == [2, 1]


class FailingMeta(MetaScorer):
    """A meta judge whose every rating failed (as when its server is down)."""

    spec = "meta-failing"

    async def ascore_samples(self, query: object, responses: object,
                             judgements: Sequence[Judgement]) -> MetaResult:
        return MetaResult(scores=[None] * len(judgements))


def test_meta_judge_that_rates_nothing_degrades_to_plain_voting(fault_server: FaultServer) -> None:
    v = _judge(fault_server, meta=FailingMeta()).score("jk-item-fm q", ["GOOD", "meh"], samples=4)
    assert v.k_meta == 2 and sum(s.kept for s in v.samples) == 2
    assert v.best == 0 and v.scores == [18.0, 4.0]


def test_per_call_meta_does_not_stick(fault_server: FaultServer) -> None:
    judge = _judge(fault_server)
    with_meta = judge.score("jk-item-s1 q", ["GOOD", "meh"], samples=2, meta=True)
    assert with_meta.k_meta == 1 and with_meta.meta_model is not None
    plain = judge.score("jk-item-s2 q", ["GOOD", "meh"], samples=2)
    assert plain.k_meta is None and plain.meta_model is None
    assert all(s.kept and s.meta_score is None for s in plain.samples)
