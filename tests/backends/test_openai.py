"""OpenAIBackend with the real `openai` SDK: against the fault server (wire format, n choices,
top-up, logprobs, concurrency, timeouts) and against a real `transformers serve` server."""

from __future__ import annotations

import asyncio
import time

import pytest
from support.fault_server import FaultServer
from support.transformers_server import ServedModel

from judgekit.backends.base import Backend
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.backends.registry import resolve_backend
from judgekit.backends.remote import spent_usage
from judgekit.config import GenerationConfig
from judgekit.errors import AuthenticationError, FatalBackendError
from judgekit.ratelimit import Throttle, estimate_tokens
from judgekit.retry import RetryPolicy

CFG = GenerationConfig(timeout=5.0, max_tokens=64, temperature=0.7)


async def no_sleep(_: float) -> None:
    return None


def backend(server: FaultServer, **kw: object) -> OpenAIBackend:
    kw.setdefault("retry", RetryPolicy(sleep=no_sleep))
    return OpenAIBackend("gpt-4o", base_url=server.openai_url, api_key="sk-test-key",
                         **kw)  # type: ignore[arg-type]


def msgs(key: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You judge responses."},
            {"role": "user", "content": f"jk-item-{key} [Start of Response 1]\nGOOD\n"
                                        "[End of Response 1]"}]


def test_spec_repr_and_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-123456")
    official = resolve_backend("openai:gpt-4o")
    assert isinstance(official, OpenAIBackend) and isinstance(official, Backend)
    assert official.spec == "openai:gpt-4o"
    assert "sk-env" not in repr(official)
    local = OpenAIBackend("m", base_url="http://user:pw@127.0.0.1:8000/v1/?key=abc")
    assert local.spec == "openai:m@http://127.0.0.1:8000/v1"
    assert local.local and official.local is False
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:9/v1")
    assert resolve_backend("openai:x").spec == "openai:x@http://localhost:9/v1"


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o")
    # A local server needs no key: a placeholder is sent.
    assert OpenAIBackend("m", base_url="http://127.0.0.1:1/v1").spec.startswith("openai:m@")


def test_request_parameters() -> None:
    official = OpenAIBackend("gpt-4o", api_key="sk-x-123456")
    cfg = GenerationConfig(temperature=0.5, max_tokens=7, top_p=0.9, stop=("END",), seed=11,
                           logprobs=True, top_logprobs=3, timeout=9.0)
    p = official.request_params([{"role": "user", "content": "hi"}], cfg, 4, seed_offset=2)
    assert p["max_completion_tokens"] == 7 and "max_tokens" not in p
    assert p["n"] == 4 and p["top_p"] == 0.9 and p["stop"] == ["END"]
    assert p["seed"] == 13 and p["logprobs"] is True and p["top_logprobs"] == 3
    assert p["timeout"] == 9.0
    compat = OpenAIBackend("m", base_url="http://127.0.0.1:1/v1", extra_body={"top_k": 5})
    q = compat.request_params([], GenerationConfig(), 1, seed_offset=0)
    assert q["max_tokens"] == 512 and "n" not in q and "top_p" not in q and "seed" not in q
    assert q["extra_body"] == {"top_k": 5}


async def test_grammar_is_refused_not_ignored() -> None:
    b = OpenAIBackend("m", base_url="http://127.0.0.1:1/v1")
    assert b.capabilities.grammar is False
    with pytest.raises(ValueError, match="grammar"):
        await b.generate([{"role": "user", "content": "x"}], GenerationConfig(grammar="root ::= x"))


async def test_n_choices_in_one_request_prompt_billed_once(fault_server: FaultServer) -> None:
    b = backend(fault_server)
    result = await b.generate(msgs("n"), CFG, n=4)
    await b.aclose()
    assert len(result.completions) == 4
    assert fault_server.counts["n"] == 1
    assert fault_server.records[0].n == 4
    assert result.usage.calls == 1
    one_prompt = fault_server.records[0]  # the server bills len(prompt)//4 once
    assert result.usage.prompt_tokens > 0
    assert result.usage.completion_tokens >= 4 * 10
    assert one_prompt.body["messages"][0]["role"] == "system"
    assert result.usage.cost_usd == 0.0  # a loopback server is local
    assert all("\\boxed{9}" in c.text for c in result.completions)


async def test_top_up_when_server_returns_fewer_choices(fault_server: FaultServer) -> None:
    fault_server.max_choices = 1
    b = backend(fault_server)
    cfg = CFG.with_(seed=100)
    first = await b.generate(msgs("t"), cfg, n=3)
    assert len(first.completions) == 3
    assert fault_server.counts["t"] == 3  # 1 request for n=3 gives 1, then 2 parallel top-ups
    assert [r.n for r in fault_server.records] == [3, 1, 1]
    # Distinct seeds, or a seeded server would return the same sample three times.
    assert sorted(r.body["seed"] for r in fault_server.records) == [100, 101, 102]
    assert first.usage.calls == 3
    # Learnt: the next call splits into single-choice requests up front.
    fault_server.reset()
    second = await b.generate(msgs("t"), cfg, n=2)
    await b.aclose()
    assert len(second.completions) == 2
    assert [r.n for r in fault_server.records] == [1, 1]


async def test_server_giving_two_of_five(fault_server: FaultServer) -> None:
    fault_server.max_choices = 2
    b = backend(fault_server)
    result = await b.generate(msgs("two"), CFG, n=5)
    await b.aclose()
    assert len(result.completions) == 5
    assert sorted(r.n for r in fault_server.records) == [1, 2, 5]  # 2 + 2 + 1


async def test_a_failed_top_up_keeps_what_the_other_requests_cost(
        fault_server: FaultServer) -> None:
    """n=3 from a one-choice server: the first request and one top-up succeed, the other top-up
    is refused (400). The call fails, but its error keeps the two paid requests' usage."""
    fault_server.max_choices = 1
    fault_server.schedule = {"tf": ["ok", "ok", "400"]}
    b = backend(fault_server)
    with pytest.raises(FatalBackendError) as info:
        await b.generate(msgs("tf"), CFG, n=3)
    one = await b.generate(msgs("tg"), CFG)  # a same-sized prompt, for its token count
    await b.aclose()
    assert fault_server.counts["tf"] == 3
    spent = spent_usage(info.value)
    assert spent is not None
    assert spent.calls == 3  # two paid requests and the failed one
    assert spent.prompt_tokens == 2 * one.usage.prompt_tokens
    assert spent.completion_tokens == 2 * one.usage.completion_tokens


async def test_logprobs_are_mapped(fault_server: FaultServer) -> None:
    b = backend(fault_server)
    result = await b.generate(msgs("lp"), CFG.with_(logprobs=True, top_logprobs=2), n=2)
    await b.aclose()
    for c in result.completions:
        assert c.logprobs is not None and len(c.logprobs) > 3
        first = c.logprobs[0]
        assert first.token == "Specific" and first.logprob == pytest.approx(-0.1)
        assert set(first.top) == {"Specific", "alt0"}
    body = fault_server.records[0].body
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    plain = backend(fault_server)
    no_lp = await plain.generate(msgs("lp2"), CFG)
    await plain.aclose()
    assert no_lp.completions[0].logprobs is None
    assert "logprobs" not in fault_server.records[-1].body


async def test_concurrency_is_bounded_per_backend(fault_server: FaultServer) -> None:
    fault_server.default_schedule = ["slow"]
    fault_server.slow_seconds = 0.15
    b = backend(fault_server, max_concurrency=3)
    await asyncio.gather(*(b.generate(msgs(f"c{i}"), CFG) for i in range(12)))
    await b.aclose()
    assert fault_server.peak_in_flight == 3


async def test_requests_per_window_limit() -> None:
    """A token bucket: a burst of the whole budget, then the budget spread over each window."""
    throttle = Throttle(max_concurrency=10, requests_per_minute=4, period=0.5)
    start = time.monotonic()
    stamps: list[float] = []

    async def one() -> None:
        async with throttle.slot():
            stamps.append(time.monotonic() - start)

    await asyncio.gather(*(one() for _ in range(8)))
    stamps.sort()
    assert stamps[3] - stamps[0] < 0.1  # the burst
    assert stamps[7] - stamps[0] >= 0.4  # the rest waits for the bucket to drain (8/s)


async def test_tokens_per_window_limit() -> None:
    throttle = Throttle(tokens_per_minute=100, period=0.5)
    start = time.monotonic()
    for _ in range(3):
        async with throttle.slot(tokens=60):
            pass
    # 60 fits, the next 60 waits for ~20 tokens to drain (0.1 s), the third for 60 more (0.3 s).
    assert time.monotonic() - start >= 0.3
    assert estimate_tokens([{"role": "user", "content": "x" * 400}], max_tokens=50, n=2) == 204


async def test_timeout_applies_per_attempt(fault_server: FaultServer) -> None:
    fault_server.schedule = {"slow": ["hang", "hang"]}
    fault_server.hang_seconds = 10
    # two timed-out attempts retried: one more than the default `timeout_retries`
    b = backend(fault_server, retry=RetryPolicy(sleep=no_sleep, timeout_retries=2))
    start = time.monotonic()
    result = await b.generate(msgs("slow"), CFG.with_(timeout=1.0))
    await b.aclose()
    assert result.usage.retries == 2
    assert time.monotonic() - start < 8.0  # two 1 s cuts, not two 10 s hangs


@pytest.mark.server
@pytest.mark.model
async def test_transformers_serve_n2_with_top_up(transformers_serve: ServedModel) -> None:
    """A real OpenAI-compatible server with a real model: it returns one choice per request, so
    n=2 needs one top-up request."""
    b = OpenAIBackend(transformers_serve.model, base_url=transformers_serve.base_url)
    cfg = GenerationConfig(temperature=0.8, max_tokens=6, seed=1, timeout=180.0)
    start = time.monotonic()
    result = await b.generate([{"role": "user", "content": "Rate 'Paris is in France' 1-10."}],
                              cfg, n=2)
    elapsed = time.monotonic() - start
    await b.aclose()
    assert len(result.completions) == 2
    assert all(c.text.strip() for c in result.completions)
    assert result.usage.calls == 2 and result.usage.prompt_tokens > 0
    assert 0 < result.usage.completion_tokens <= 2 * 6
    assert result.usage.cost_usd == 0.0
    print(f"transformers serve n=2, 6 tokens: {elapsed:.1f}s")
