"""AnthropicBackend with the real `anthropic` SDK against the fault server's messages endpoint."""

from __future__ import annotations

import pytest
from support.fault_server import FaultServer

from judgekit.backends.anthropic_backend import AnthropicBackend, split_system
from judgekit.backends.base import Backend
from judgekit.backends.registry import resolve_backend
from judgekit.config import GenerationConfig
from judgekit.cost import PRICES
from judgekit.errors import AuthenticationError
from judgekit.retry import RetryPolicy

MODEL = "claude-sonnet-4-6"
CFG = GenerationConfig(timeout=5.0, max_tokens=64, temperature=0.7, stop=("END",))


async def no_sleep(_: float) -> None:
    return None


def backend(server: FaultServer, **kw: object) -> AnthropicBackend:
    kw.setdefault("retry", RetryPolicy(sleep=no_sleep))
    return AnthropicBackend(MODEL, base_url=server.anthropic_url, api_key="sk-ant-test-key",
                            **kw)  # type: ignore[arg-type]


def msgs(key: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You judge responses."},
            {"role": "user", "content": f"jk-item-{key} [Start of Response 1]\nGOOD\n"
                                        "[End of Response 1]\n[Start of Response 2]\nmeh\n"
                                        "[End of Response 2]"}]


def test_split_system_merges_and_keeps_order() -> None:
    system, turns = split_system([
        {"role": "system", "content": "A"}, {"role": "user", "content": "q1"},
        {"role": "user", "content": "q2"}, {"role": "system", "content": "B"},
        {"role": "assistant", "content": "Specific Criteria:"}])
    assert system == "A\n\nB"
    assert turns == [{"role": "user", "content": "q1\n\nq2"},
                     {"role": "assistant", "content": "Specific Criteria:"}]
    with pytest.raises(ValueError):
        split_system([{"role": "tool", "content": "x"}])


def test_spec_registry_and_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-123456")
    b = resolve_backend(f"anthropic:{MODEL}")
    assert isinstance(b, AnthropicBackend) and isinstance(b, Backend)
    assert b.spec == f"anthropic:{MODEL}" and "sk-ant" not in repr(b)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY"):
        AnthropicBackend(MODEL)


async def test_n_parallel_requests_and_wire_format(fault_server: FaultServer) -> None:
    b = backend(fault_server)
    result = await b.generate(msgs("n"), CFG, n=3)
    await b.aclose()
    assert len(result.completions) == 3
    assert fault_server.counts["n"] == 3
    assert result.usage.calls == 3
    for c in result.completions:
        assert c.text.endswith("\\boxed{9, 2}")
        assert c.finish_reason == "end_turn"
        assert c.logprobs is None
    body = fault_server.records[0].body
    assert body["system"] == "You judge responses."
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["max_tokens"] == 64 and body["stop_sequences"] == ["END"]
    assert body["temperature"] == 0.7 and "top_p" not in body
    assert fault_server.records[0].auth == "sk-ant-test-key"
    # Tokens add up over the n requests; the loopback server counts as local (free).
    assert result.usage.prompt_tokens > 0 and result.usage.prompt_tokens % 3 == 0
    assert result.usage.cost_usd == 0.0


async def test_temperature_one_is_not_sent(fault_server: FaultServer) -> None:
    b = backend(fault_server, extra_body={"top_k": 5})
    await b.generate(msgs("t"), CFG.with_(temperature=1.0))
    await b.aclose()
    body = fault_server.records[0].body
    assert "temperature" not in body and body["top_k"] == 5


async def test_cost_is_priced_for_a_remote_url(fault_server: FaultServer) -> None:
    """Through a non-loopback URL the list price applies (here: a made-up one)."""
    b = backend(fault_server, prices={MODEL: (1.0, 2.0)})
    b.local = False  # as if the base URL were a remote proxy
    result = await b.generate(msgs("c"), CFG)
    await b.aclose()
    u = result.usage
    assert u.cost_usd == pytest.approx((u.prompt_tokens * 1.0 + u.completion_tokens * 2.0) / 1e6)
    assert MODEL in PRICES


async def test_overloaded_529_and_429_are_retried(fault_server: FaultServer) -> None:
    fault_server.schedule = {"o": ["529", "429", "503"]}
    fault_server.retry_after = "0"
    b = backend(fault_server)
    result = await b.generate(msgs("o"), CFG)
    await b.aclose()
    assert result.usage.retries == 3
    assert fault_server.counts["o"] == 4
