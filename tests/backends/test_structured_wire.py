"""Structured output and prompt caching on the wire: the real openai and anthropic SDKs against the
protocol server (tests/support/fault_server.py), which answers schemas and forced tool calls as
the providers do, refuses them as llama.cpp does, and caches prompts as each provider does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.fault_server import FaultServer

from judgekit import Judge
from judgekit.backends.anthropic_backend import AnthropicBackend, cache_marked
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.bench import report
from judgekit.bench.items import BenchItem, Label
from judgekit.bench.runner import run
from judgekit.config import GenerationConfig
from judgekit.cost import CACHE_PRICES, PRICES, call_cost
from judgekit.formats import ITEM_MARKER, GRMFormat
from judgekit.prompts import load_examples
from judgekit.retry import RetryPolicy
from judgekit.schema import SampleStatus, Verdict

CFG = GenerationConfig(max_tokens=256, timeout=10.0)
QUERY = "jk-item-{} Which answer is right?"
RESPONSES = ["GOOD: Paris.", "Lyon."]


async def no_sleep(_: float) -> None:
    return None


def openai(server: FaultServer, **kw: Any) -> OpenAIBackend:
    return OpenAIBackend("gpt-4o-mini", base_url=server.openai_url, api_key="sk-test",
                         retry=RetryPolicy(sleep=no_sleep), **kw)


def anthropic(server: FaultServer) -> AnthropicBackend:
    return AnthropicBackend("claude-sonnet-4-6", base_url=server.anthropic_url,
                            api_key="sk-ant-test", retry=RetryPolicy(sleep=no_sleep))


def judge(backend: Any, **kw: Any) -> Judge:
    kw.setdefault("examples", False)
    return Judge(backend, config=CFG, **kw)


def _check_structured(verdict: Verdict, k: int) -> None:
    assert [s.status for s in verdict.samples] == [SampleStatus.OK] * k, verdict.samples
    for s in verdict.samples:
        assert s.structured and s.structured_fallback is None
        assert json.loads(s.raw_text)["scores"]
        assert [p.name for p in s.principles] == ["Accuracy", "Clarity"]
        assert [c.analysis for c in s.critiques] == ["fine", "worse"]
    assert verdict.best == 0 and verdict.scores == [9.0 * k, 2.0 * k]


# -- OpenAI strict json_schema --------------------------------------------------------------------
def test_openai_strict_schema_on_the_wire(fault_server: FaultServer) -> None:
    j = judge(openai(fault_server, server_flavour="openai"))
    verdict = j.score(QUERY.format("oa"), RESPONSES, samples=2)
    _check_structured(verdict, 2)
    records = [r for r in fault_server.records if r.api == "openai"]
    assert len(records) == 2  # one request per order shown
    for record in records:
        wire = record.body["response_format"]
        assert wire["type"] == "json_schema"
        assert wire["json_schema"]["name"] == "grm_judgement" and wire["json_schema"]["strict"]
        schema = wire["json_schema"]["schema"]
        assert list(schema["properties"]) == ["criteria", "analysis", "scores"]
        assert schema["properties"]["scores"]["minItems"] == 2
        assert "maxLength" not in json.dumps(schema)  # strict mode rejects string lengths
        assert "grammar" not in record.body


def test_llamacpp_flavour_sends_json_object_with_the_schema(fault_server: FaultServer) -> None:
    verdict = judge(openai(fault_server, server_flavour="llamacpp")).score(
        QUERY.format("lc"), RESPONSES)
    _check_structured(verdict, 1)
    wire = fault_server.records[-1].body["response_format"]
    assert wire["type"] == "json_object" and "maxLength" in json.dumps(wire["schema"])


@pytest.mark.parametrize(("owned_by", "flavour"), [("vllm", "vllm"), ("sglang", "sglang")])
def test_auto_asks_the_server_what_it_is(fault_server: FaultServer, owned_by: str,
                                         flavour: str) -> None:
    fault_server.models_owned_by = owned_by
    backend = openai(fault_server)
    assert backend.server_flavour == "auto"
    _check_structured(judge(backend).score(QUERY.format(owned_by), RESPONSES), 1)
    assert backend.flavour == flavour
    assert fault_server.records[-1].body["response_format"]["type"] == "json_schema"


def test_a_server_that_says_nothing_gets_free_text_and_each_sample_says_why(
        fault_server: FaultServer) -> None:
    backend = openai(fault_server)
    verdict = judge(backend).score(QUERY.format("gen"), RESPONSES, samples=2)
    assert backend.flavour == "generic" and backend.capabilities.json_schema
    assert "response_format" not in fault_server.records[-1].body
    for s in verdict.samples:
        assert s.status is SampleStatus.OK and not s.structured
        assert s.structured_fallback and "server_flavour=" in s.structured_fallback


def test_a_refused_schema_falls_back_once_and_is_never_retried(
        fault_server: FaultServer) -> None:
    """As llama-cpp-python's server answers `{"type": "json_schema"}`: HTTP 500 naming the
    parameter. Each refused request is sent once more without the schema (never retried as a
    server fault); once one was refused, later requests go without it straight away."""
    fault_server.refuse_structured = True
    backend = openai(fault_server, server_flavour="openai", max_retries=5)
    j = judge(backend)
    first = j.score(QUERY.format("ref1"), RESPONSES, samples=2)
    second = j.score(QUERY.format("ref2"), RESPONSES, samples=2)
    sent = {key: ["response_format" in r.body for r in fault_server.records if r.key == key]
            for key in ("ref1", "ref2")}
    # The first item's two orders went out together: both refused, both sent again as text.
    assert sorted(sent["ref1"]) == [False, False, True, True]
    assert sent["ref2"] == [False, False]
    assert first.usage.retries == 0 and first.usage.calls == 4 and second.usage.calls == 2
    for s in [*first.samples, *second.samples]:
        assert s.status is SampleStatus.OK and s.scores is not None and not s.structured
        assert s.structured_fallback is not None and "refused" in s.structured_fallback
        assert "HTTP 500" in s.structured_fallback


def test_structured_false_sends_nothing(fault_server: FaultServer) -> None:
    verdict = judge(openai(fault_server, server_flavour="openai"), structured=False).score(
        QUERY.format("off"), RESPONSES)
    assert verdict.samples[0].status is SampleStatus.OK
    assert not verdict.samples[0].structured and verdict.samples[0].structured_fallback is None
    assert "response_format" not in fault_server.records[-1].body


# -- Anthropic: a forced tool call ----------------------------------------------------------------
def test_anthropic_forced_tool_call_on_the_wire(fault_server: FaultServer) -> None:
    verdict = judge(anthropic(fault_server)).score(QUERY.format("an"), RESPONSES, samples=2)
    _check_structured(verdict, 2)
    bodies = [r.body for r in fault_server.records if r.api == "anthropic"]
    assert len(bodies) == 2  # no `n`: one request per sample
    for body in bodies:
        (tool,) = body["tools"]
        assert tool["name"] == "grm_judgement"
        assert tool["input_schema"] == GRMFormat().output_schema(2)
        assert body["tool_choice"] == {"type": "tool", "name": "grm_judgement"}


def test_anthropic_answer_without_the_tool_call_is_read_as_text(fault_server: FaultServer,
                                                                 monkeypatch: Any) -> None:
    """A compatible server that ignores `tool_choice` answers in text: read as text, recorded."""
    monkeypatch.setattr("support.fault_server.structured_schema", lambda body: None)
    verdict = judge(anthropic(fault_server)).score(QUERY.format("notool"), RESPONSES)
    (s,) = verdict.samples
    assert s.status is SampleStatus.OK and s.scores == [9.0, 2.0] and not s.structured
    assert s.structured_fallback and "without the forced tool call" in s.structured_fallback


def test_meta_rating_under_a_tool_schema(fault_server: FaultServer) -> None:
    """Anthropic gives no log-probabilities, so the meta judge asks for a rating, written under
    the rating schema (the protocol server rates 8: (8 - 1) / 9)."""
    verdict = judge(anthropic(fault_server), meta=True).score(QUERY.format("meta"), RESPONSES,
                                                              samples=2)
    assert [s.meta_score for s in verdict.samples] == [pytest.approx(7 / 9)] * 2
    names = [r.body["tools"][0]["name"] for r in fault_server.records if "tools" in r.body]
    assert names.count("rating") == 2 and names.count("grm_judgement") == 2


# -- prompt caching -------------------------------------------------------------------------------
def test_cache_marked_splits_the_first_user_turn_at_the_static_prefix() -> None:
    turns = [{"role": "user", "content": "static part|item part"},
             {"role": "assistant", "content": "x"}]
    marked = cache_marked(turns, len("static part|"))
    assert marked[0]["content"] == [
        {"type": "text", "text": "static part|", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "item part"}]
    assert marked[1] == turns[1]
    assert cache_marked(turns, None) == turns and cache_marked(turns, 999) == turns


def test_anthropic_requests_mark_the_static_prefix_and_usage_counts_the_cache(
        fault_server: FaultServer) -> None:
    fault_server.prompt_cache.min_tokens = 256
    backend = anthropic(fault_server)
    backend.local = False  # price it as the real API (the protocol server is on loopback)
    j = judge(backend, examples=load_examples())
    first = j.score(QUERY.format("c1"), RESPONSES)
    second = j.score(QUERY.format("c2"), ["Lyon.", "GOOD: Paris, of course."])
    bodies = [r.body for r in fault_server.records]
    static = [b["messages"][0]["content"][0] for b in bodies]
    assert all(block["cache_control"] == {"type": "ephemeral"} for block in static)
    assert static[0]["text"] == static[1]["text"]  # the same bytes for both items
    assert not static[0]["text"].endswith(ITEM_MARKER) and \
        bodies[0]["messages"][0]["content"][1]["text"].startswith(ITEM_MARKER)
    u1, u2 = first.usage, second.usage
    assert u1.cache_write_tokens > 0 and u1.cached_prompt_tokens == 0
    assert u2.cached_prompt_tokens == u1.cache_write_tokens and u2.cache_write_tokens == 0
    assert u2.prompt_tokens > u2.cached_prompt_tokens  # cached tokens are prompt tokens too
    for u in (u1, u2):
        assert u.cost_usd == pytest.approx(call_cost(
            "claude-sonnet-4-6", u.prompt_tokens, u.completion_tokens,
            cached_prompt_tokens=u.cached_prompt_tokens, cache_write_tokens=u.cache_write_tokens))
    assert u2.cost_usd is not None and u1.cost_usd is not None and u2.cost_usd < u1.cost_usd


def test_openai_cached_tokens_are_recorded(fault_server: FaultServer) -> None:
    fault_server.prompt_cache.min_tokens = 256
    j = judge(openai(fault_server, server_flavour="openai"), examples=load_examples())
    first = j.score(QUERY.format("o1"), RESPONSES)
    second = j.score(QUERY.format("o2"), RESPONSES[::-1])
    assert first.usage.cached_prompt_tokens == 0
    assert 256 <= second.usage.cached_prompt_tokens < second.usage.prompt_tokens
    assert second.usage.cached_prompt_tokens % 128 == 0


def test_cached_tokens_are_billed_at_the_cache_prices() -> None:
    read, write = CACHE_PRICES["claude-sonnet-4-6"]
    price_in, price_out = PRICES["claude-sonnet-4-6"]
    cost = call_cost("claude-sonnet-4-6", 1000, 100, cached_prompt_tokens=600,
                     cache_write_tokens=300)
    assert cost == pytest.approx((100 * price_in + 600 * read + 300 * write
                                  + 100 * price_out) / 1e6)
    assert (read, write) == (pytest.approx(0.1 * price_in), pytest.approx(1.25 * price_in))
    # OpenAI: reads at the cached price, no write charge; a model without cache prices pays input.
    assert call_cost("gpt-4o", 1000, 0, cached_prompt_tokens=1000) == pytest.approx(1.25e-3)
    assert call_cost("gpt-4", 1000, 0, cached_prompt_tokens=1000) == call_cost("gpt-4", 1000, 0)
    assert call_cost("gpt-4o-2024-08-06", 1000, 0, cached_prompt_tokens=1000) == \
        pytest.approx(1.25e-3)  # a dated snapshot uses its base name's prices
    assert set(CACHE_PRICES) <= set(PRICES)


def test_bench_report_shows_the_cached_share(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.prompt_cache.min_tokens = 256
    items = [BenchItem(id=f"i{i}", query=QUERY.format(f"b{i}"), responses=RESPONSES,
                     label=Label.best_of(0)) for i in range(4)]
    run(items, judge(anthropic(fault_server), examples=load_examples()), out_dir=tmp_path / "r",
        samples=1, dataset_name="llmbar", concurrency=1)
    summary = report.summary_frame([tmp_path / "r"])
    share = summary.loc["r", "cached_prompt_share"]
    assert 0 < share < 100
    assert "cached_prompt_share" in report.render_report([tmp_path / "r"])


def test_pairwise_baseline_writes_its_choice_under_a_schema(fault_server: FaultServer) -> None:
    from judgekit.bench.baseline import PairwiseBaselineJudge

    j = PairwiseBaselineJudge(openai(fault_server, server_flavour="openai"), config=CFG)
    verdict = j.score(QUERY.format("pw"), RESPONSES, samples=2)
    assert verdict.best == 0 and all(s.structured and s.status is SampleStatus.OK
                                     for s in verdict.samples)
    names = {r.body["response_format"]["json_schema"]["name"] for r in fault_server.records}
    assert names == {"best_response"}
