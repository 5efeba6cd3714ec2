"""The retry policy: unit behaviour, and exact retry counts for every injected fault against the
real OpenAI and Anthropic SDKs talking to the fault server."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx2
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fault_server import FaultServer

from judgekit.backends.anthropic_backend import AnthropicBackend
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.backends.remote import parse_retry_after
from judgekit.config import GenerationConfig
from judgekit.errors import (
    APITimeoutError,
    AuthenticationError,
    BackendError,
    FatalBackendError,
    RateLimitError,
    TransientBackendError,
)
from judgekit.retry import RetryPolicy

CFG = GenerationConfig(timeout=5.0, max_tokens=64)
# Short enough to cut a hang quickly, long enough that a normal answer on a loaded 2-core box
# never times out (an extra timeout would be an extra retry and break the exact counts).
HANG_CFG = CFG.with_(timeout=1.5)


class SleepRecorder:
    """An injectable sleep that records the waits and does not wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def msgs(key: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"jk-item-{key} Which response is better?"}]


# -- Retry-After parsing -------------------------------------------------------------------------


def test_retry_after_seconds_ms_and_http_date() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    got = parse_retry_after({"retry-after": value})
    assert got is None or got >= 0.0


def test_wait_honours_and_caps_retry_after_and_backs_off() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=8.0, jitter=0.5, max_retry_after=5.0)
    assert policy.wait_for(RateLimitError("x", retry_after=2.0), 1) == 2.0
    assert policy.wait_for(RateLimitError("x", retry_after=3600.0), 1) == 5.0
    waits = [policy.wait_for(TransientBackendError("x"), i) for i in range(1, 7)]
    for i, w in enumerate(waits, start=1):
        base = min(8.0, 2.0 ** (i - 1))
        assert base <= w <= min(8.0, base + 0.5) + 1e-9


# -- mapping SDK exceptions (each provider at its boundary) ----------------------------------------

OPENAI = OpenAIBackend("gpt-4o", base_url="http://127.0.0.1:1/v1", api_key="sk-test-key")


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError(f"Error code: {status}", response=response, body=None)


@pytest.mark.parametrize(("status", "kind"), [
    (429, RateLimitError), (500, TransientBackendError), (502, TransientBackendError),
    (503, TransientBackendError), (529, TransientBackendError), (408, TransientBackendError),
    (400, FatalBackendError), (404, FatalBackendError), (422, FatalBackendError),
    (401, AuthenticationError), (403, AuthenticationError),
])
def test_status_codes_map_to_judgekit_errors(status: int, kind: type[BackendError]) -> None:
    err = OPENAI.map_error(_status_error(status, {"retry-after": "2"}))
    assert type(err) is kind
    assert err is not None and err.status_code == status
    assert err.retryable == (status in (408, 429) or status >= 500)
    if status == 429:
        assert err.retry_after == 2.0


def test_transport_errors_map_and_bugs_do_not() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1/")
    assert isinstance(OPENAI.map_error(openai.APITimeoutError(request=request)), APITimeoutError)
    assert type(OPENAI.map_error(openai.APIConnectionError(request=request))) is \
        TransientBackendError
    assert isinstance(OPENAI.map_error(TimeoutError()), APITimeoutError)
    assert OPENAI.map_error(TypeError("a bug")) is None


async def test_policy_counts_retries_and_stops() -> None:
    sleep = SleepRecorder()
    policy = RetryPolicy(max_retries=3, sleep=sleep)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientBackendError("boom")
        return "done"

    assert await policy.call(flaky) == ("done", 2)
    assert len(sleep.waits) == 2

    async def always() -> str:
        raise TransientBackendError("boom")

    with pytest.raises(TransientBackendError) as info:
        await policy.call(always)
    assert info.value.retries == 3

    async def fatal() -> str:
        raise FatalBackendError("no")

    with pytest.raises(FatalBackendError) as info2:
        await policy.call(fatal)
    assert info2.value.retries == 0

    async def bug() -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await policy.call(bug)


# -- real SDKs against the fault server ----------------------------------------------------------

TRANSIENT_FAULTS = ["429", "500", "503", "529", "hang", "drop", "malformed"]


def openai_backend(server: FaultServer, sleep: SleepRecorder, max_retries: int = 6) -> OpenAIBackend:
    return OpenAIBackend("gpt-4o", base_url=server.openai_url, api_key="sk-test-key",
                         retry=RetryPolicy(max_retries=max_retries, sleep=sleep))


def anthropic_backend(server: FaultServer, sleep: SleepRecorder) -> AnthropicBackend:
    return AnthropicBackend("claude-sonnet-4-6", base_url=server.anthropic_url,
                            api_key="sk-ant-test-key", retry=RetryPolicy(sleep=sleep))


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", TRANSIENT_FAULTS)
async def test_each_transient_fault_costs_exactly_one_retry(
        fault_server: FaultServer, api: str, fault: str) -> None:
    fault_server.schedule = {"f": [fault]}
    fault_server.retry_after = "0"
    fault_server.hang_seconds = 10.0
    sleep = SleepRecorder()
    backend = (openai_backend(fault_server, sleep) if api == "openai"
               else anthropic_backend(fault_server, sleep))
    try:
        result = await backend.generate(msgs("f"), HANG_CFG if fault == "hang" else CFG, n=1)
    finally:
        await backend.aclose()
    assert len(result.completions) == 1
    assert "\\boxed{" in result.completions[0].text
    assert result.usage.retries == 1
    assert result.usage.calls == 1
    assert fault_server.counts["f"] == 2
    assert len(sleep.waits) == 1
    if fault == "429":
        assert sleep.waits == [0.0]  # Retry-After: 0 replaces the backoff


async def test_mixed_faults_then_success_counts_every_retry(fault_server: FaultServer) -> None:
    fault_server.schedule = {"m": ["429", "500", "drop", "hang", "malformed", "503"]}
    fault_server.retry_after = "0"
    fault_server.hang_seconds = 10.0
    sleep = SleepRecorder()
    backend = openai_backend(fault_server, sleep, max_retries=6)
    result = await backend.generate(msgs("m"), HANG_CFG, n=2)
    await backend.aclose()
    assert result.usage.retries == 6
    assert fault_server.counts["m"] == 7
    assert len(result.completions) == 2


async def test_gives_up_after_max_retries(fault_server: FaultServer) -> None:
    fault_server.schedule = {"x": ["500"] * 10}
    sleep = SleepRecorder()
    backend = openai_backend(fault_server, sleep, max_retries=3)
    with pytest.raises(TransientBackendError) as info:
        await backend.generate(msgs("x"), CFG)
    await backend.aclose()
    assert info.value.retries == 3
    assert info.value.status_code == 500
    assert fault_server.counts["x"] == 4


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_401_is_immediate_authentication_error(fault_server: FaultServer, api: str) -> None:
    fault_server.schedule = {"a": ["401"]}
    sleep = SleepRecorder()
    backend = (openai_backend(fault_server, sleep) if api == "openai"
               else anthropic_backend(fault_server, sleep))
    with pytest.raises(AuthenticationError) as info:
        await backend.generate(msgs("a"), CFG)
    await backend.aclose()
    assert fault_server.counts["a"] == 1
    assert sleep.waits == []
    assert info.value.retries == 0
    assert info.value.status_code == 401
    text = str(info.value)
    assert "authentication failed (HTTP 401)" in text
    assert "test-key" not in text


async def test_400_is_fatal_without_retry(fault_server: FaultServer) -> None:
    fault_server.schedule = {"b": ["400"]}
    sleep = SleepRecorder()
    backend = openai_backend(fault_server, sleep)
    with pytest.raises(FatalBackendError) as info:
        await backend.generate(msgs("b"), CFG)
    await backend.aclose()
    assert not isinstance(info.value, AuthenticationError)
    assert fault_server.counts["b"] == 1


async def test_retry_after_is_honoured_in_real_time(fault_server: FaultServer) -> None:
    """Retry-After: 1 with the real asyncio.sleep and a near-zero backoff: the retry waits ~1 s."""
    fault_server.schedule = {"r": ["429"]}
    fault_server.retry_after = "1"
    backend = OpenAIBackend("gpt-4o", base_url=fault_server.openai_url, api_key="sk-test-key",
                            retry=RetryPolicy(initial_delay=0.01, jitter=0.0))
    result = await backend.generate(msgs("r"), CFG)
    await backend.aclose()
    first, second = fault_server.records
    gap = second.at - first.at
    assert result.usage.retries == 1
    assert 0.95 <= gap < 3.0, gap


async def test_hang_is_cut_at_the_client_timeout(fault_server: FaultServer) -> None:
    fault_server.schedule = {"h": ["hang"]}
    fault_server.hang_seconds = 10.0
    sleep = SleepRecorder()
    backend = openai_backend(fault_server, sleep)
    start = time.monotonic()
    result = await backend.generate(msgs("h"), HANG_CFG)
    elapsed = time.monotonic() - start
    await backend.aclose()
    assert result.usage.retries == 1
    assert elapsed < 6.0, elapsed  # cut at 1.5 s, not the 10 s hang (slack for a loaded box)


def test_backend_survives_several_event_loops(fault_server: FaultServer) -> None:
    """Sync wrappers run asyncio.run per call: clients and semaphores are per loop."""
    sleep = SleepRecorder()
    backend = openai_backend(fault_server, sleep)
    for _ in range(3):
        result = asyncio.run(backend.generate(msgs("loop"), CFG, n=2))
        assert len(result.completions) == 2
    asyncio.run(backend.aclose())
