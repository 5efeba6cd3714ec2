"""Systemic failures fail fast: a refused connection costs a second, not a minute; a backend's
circuit breaker fails the next calls at once; a batch stops with one RunAbortedError on a rejected
key or a dead server, its finished items recorded. Context-length 400s are typed and not retried.
All through the real SDKs against loopback servers (or a closed loopback port)."""

from __future__ import annotations

import socket
import time

import pytest
from support.fault_server import FaultServer

from judgekit.backends.anthropic_backend import AnthropicBackend
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.backends.remote import CircuitBreaker, is_context_length_message
from judgekit.batch import SystemicFailureWatch
from judgekit.config import GenerationConfig
from judgekit.errors import (
    CircuitOpenError,
    ContextLengthError,
    RunAbortedError,
    ServerUnreachableError,
    recorded_error_class,
)
from judgekit.judge import Judge
from judgekit.retry import RetryPolicy
from judgekit.schema import Judgement, SampleStatus, Verdict

CFG = GenerationConfig(timeout=5.0, max_tokens=32)


async def no_sleep(_: float) -> None:
    return None


def dead_url() -> str:
    """A loopback port with nothing listening: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def msgs(key: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"jk-item-{key} Which response is better?"}]


def items(n: int) -> list[dict[str, object]]:
    return [{"id": f"q{i}", "query": f"jk-item-{i} question {i}", "responses": ["GOOD", "bad"]}
            for i in range(n)]


# -- a dead server ---------------------------------------------------------------------------------


async def test_refused_connection_fails_in_about_a_second_with_the_real_backoff() -> None:
    backend = OpenAIBackend("m", base_url=dead_url())
    start = time.monotonic()
    with pytest.raises(ServerUnreachableError) as info:
        await backend.generate(msgs("x"), CFG)
    elapsed = time.monotonic() - start
    await backend.aclose()
    assert info.value.retries == 2  # the short connect budget, not the 6 of transient errors
    assert elapsed < 3.0, elapsed  # 0.25 s + 0.5 s of backoff (was ~65 s)
    assert "cannot reach the server" in str(info.value)


async def test_circuit_breaker_fails_the_next_calls_at_once_then_probes() -> None:
    backend = OpenAIBackend("m", base_url=dead_url(), retry=RetryPolicy(connect_retries=0))
    backend.breaker = CircuitBreaker(threshold=3, cooldown=0.3)
    for _ in range(3):
        with pytest.raises(ServerUnreachableError) as info:
            await backend.generate(msgs("x"), CFG)
        assert not isinstance(info.value, CircuitOpenError)
    assert backend.breaker.open
    start = time.monotonic()
    with pytest.raises(CircuitOpenError, match="not sent"):
        await backend.generate(msgs("x"), CFG)
    assert time.monotonic() - start < 0.1
    time.sleep(0.35)  # the cool-down: one probe goes to the network again (and fails)
    with pytest.raises(ServerUnreachableError) as probe:
        await backend.generate(msgs("x"), CFG)
    assert not isinstance(probe.value, CircuitOpenError)
    with pytest.raises(CircuitOpenError):
        await backend.generate(msgs("x"), CFG)
    await backend.aclose()


async def test_any_answer_from_the_server_closes_the_circuit(fault_server: FaultServer) -> None:
    backend = OpenAIBackend("m", base_url=fault_server.openai_url,
                            retry=RetryPolicy(sleep=no_sleep))
    backend.breaker = CircuitBreaker(threshold=2, cooldown=0.0)
    backend.breaker.record(ServerUnreachableError("x"))
    backend.breaker.record(ServerUnreachableError("x"))
    assert backend.breaker.open
    fault_server.schedule = {"p": ["500"]}
    result = await backend.generate(msgs("p"), CFG)  # the probe, then a normal retry
    await backend.aclose()
    assert result.usage.retries == 1 and not backend.breaker.open


def test_batch_against_a_dead_server_stops_in_seconds_with_one_error() -> None:
    judge = Judge("openai:m", base_url=dead_url(), examples=False, config=CFG, concurrency=4)
    recorded: list[int] = []
    start = time.monotonic()
    with pytest.raises(RunAbortedError) as info:
        judge.score_many(items(200), progress=False,
                         on_result=lambda i, v: recorded.append(i))
    elapsed = time.monotonic() - start
    err = info.value
    assert elapsed < 10.0, elapsed
    assert "could not reach the server" in str(err) and "re-run to resume" in str(err)
    assert err.total == 200 and 5 <= err.finished < 20
    assert sorted(recorded) == sorted(err.verdicts)  # every finished item was recorded
    assert "\n" not in str(err)


def test_batch_stops_at_once_on_a_rejected_key(fault_server: FaultServer) -> None:
    fault_server.default_schedule = ["401"]
    judge = Judge("openai:m", base_url=fault_server.openai_url, api_key="sk-test-SECRET99",
                  examples=False, config=CFG, concurrency=2, retry=RetryPolicy(sleep=no_sleep))
    with pytest.raises(RunAbortedError) as info:
        judge.score_many(items(50), progress=False)
    assert "AuthenticationError" in str(info.value) and "SECRET99" not in str(info.value)
    assert info.value.finished <= 2  # the items already in flight, nothing more
    assert len(fault_server.records) <= 2


def _verdict(kind: str | None) -> Verdict:
    """An item whose one sample succeeded (None) or failed with the error class `kind`."""
    if kind is None:
        sample = Judgement(sample_index=0, status=SampleStatus.OK, permutation=[0, 1],
                           scores=[9.0, 2.0])
        return Verdict(n_responses=2, scores=[9.0, 2.0], best=0, valid_samples=1,
                       samples=[sample])
    sample = Judgement(sample_index=0, status=SampleStatus.API_ERROR, permutation=[0, 1],
                       error=f"{kind}: boom")
    return Verdict(n_responses=2, scores=[None, None], invalid_samples=1, samples=[sample],
                   error=f"no valid sample (api_error): {kind}: boom")


def test_only_a_run_of_unreachable_items_stops_a_batch() -> None:
    watch = SystemicFailureWatch(max_unreachable=3)
    seq = ["ServerUnreachableError", "CircuitOpenError", None, "ServerUnreachableError",
           "TransientBackendError", "ServerUnreachableError"]
    assert [watch.check(_verdict(k)) for k in seq] == [None] * 6
    assert watch.check(_verdict("CircuitOpenError")) is not None  # three in a row (500 between)
    fresh = SystemicFailureWatch()
    assert "AuthenticationError" in (fresh.check(_verdict("AuthenticationError")) or "")
    assert fresh.check(_verdict("ContextLengthError")) is None


def test_recorded_error_class_reads_describe_error_back() -> None:
    assert recorded_error_class("AuthenticationError: x") is not None
    assert recorded_error_class("CircuitOpenError: y") is CircuitOpenError
    assert recorded_error_class("KeyError: z") is None
    assert recorded_error_class(None) is None


# -- context length --------------------------------------------------------------------------------


@pytest.mark.parametrize(("api", "fault"), [
    ("openai", "ctx"), ("openai", "ctx-vllm"), ("openai", "ctx-llamacpp"),
    ("openai", "ctx-sglang"), ("anthropic", "ctx")])
async def test_context_length_400_is_typed_and_never_retried(
        fault_server: FaultServer, api: str, fault: str) -> None:
    fault_server.schedule = {"c": [fault]}
    policy = RetryPolicy(sleep=no_sleep)
    backend: OpenAIBackend | AnthropicBackend
    if api == "openai":
        backend = OpenAIBackend("m", base_url=fault_server.openai_url, retry=policy)
    else:
        backend = AnthropicBackend("m", base_url=fault_server.anthropic_url, retry=policy)
    with pytest.raises(ContextLengthError) as info:
        await backend.generate(msgs("c"), CFG)
    await backend.aclose()
    assert fault_server.counts["c"] == 1 and info.value.retries == 0
    assert info.value.status_code == 400
    assert "does not fit the model's context" in str(info.value)


def test_context_length_wording() -> None:
    assert is_context_length_message("input length and `max_tokens` exceed context limit: "
                                     "190000 + 20000 > 200000")
    assert is_context_length_message("Input validation error: `inputs` tokens + "
                                     "`max_new_tokens` must be <= 4096. Given: 4000")
    assert not is_context_length_message("injected bad request")
    assert not is_context_length_message("Invalid value for 'temperature'")


def test_context_length_is_recorded_on_the_sample_not_raised(fault_server: FaultServer) -> None:
    fault_server.default_schedule = ["ctx"]
    judge = Judge("openai:m", base_url=fault_server.openai_url, examples=False, config=CFG,
                  retry=RetryPolicy(sleep=no_sleep))
    v = judge.score("jk-item-long q", ["GOOD", "bad"])
    assert not v.ok and v.samples[0].status.value == "api_error"
    assert (v.samples[0].error or "").startswith("ContextLengthError:")
    assert fault_server.counts["long"] == 1
