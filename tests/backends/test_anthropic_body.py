"""How the Anthropic backend reads a message body (`judgekit.backends.anthropic_body`), over real
HTTP through the real SDK, from a server that answers canned bodies: bodies with extra block
types, extra and null fields read as a reference reading of the SDK's own `Message` gives
(written here), a forced tool call's input is the structured answer, and bodies whose read
fields have the wrong type are a typed, one-line, retried failure. A message batch result reads
by the same rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.types import Message
from support.canned_server import CannedServer

from judgekit.backends.anthropic_backend import AnthropicBackend
from judgekit.batch_api.anthropic import AnthropicBatchProvider
from judgekit.config import GenerationConfig
from judgekit.errors import TransientBackendError
from judgekit.retry import RetryPolicy

CFG = GenerationConfig(timeout=5.0, max_tokens=64, temperature=0.7)
SCHEMA = {"type": "object", "properties": {"best": {"type": "integer"}}, "required": ["best"]}
MSGS = [{"role": "user", "content": "judge this"}]


async def no_sleep(_: float) -> None:
    return None


def backend(server: CannedServer, retries: int = 0) -> AnthropicBackend:
    return AnthropicBackend("claude-sonnet-4-6", base_url=server.anthropic_url,
                            api_key="sk-ant-test",
                            retry=RetryPolicy(max_retries=retries, sleep=no_sleep))


def message(content: Any, stop: Any = "end_turn", usage: Any = None, **extra: Any) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": usage if usage is not None else {"input_tokens": 20, "output_tokens": 6},
            **extra}


TEXT = {"type": "text", "text": "Score: \\boxed{7}"}
BODIES: dict[str, dict[str, Any]] = {
    "plain": message([TEXT]),
    "thinking, citations and extra fields": message(
        [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
         {"type": "text", "text": "part one, ", "citations": None},
         {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
         {"type": "text", "text": "part two"}],
        stop="max_tokens", container=None, context_management={"applied_edits": []}),
    "cache tokens": message([TEXT], usage={
        "input_tokens": 12, "output_tokens": 5, "cache_read_input_tokens": 1024,
        "cache_creation_input_tokens": 300, "server_tool_use": None, "service_tier": "standard"}),
    "null usage fields": message([TEXT], usage={
        "input_tokens": 9, "output_tokens": 4, "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None}),
    "empty content, null stop reason": message([], stop=None),
}


def reference(body: dict[str, Any]) -> tuple[str, str | None, tuple[int, int, int, int]]:
    """The body through the SDK's own Message (its lenient `construct`, as the SDK reads a
    response): text blocks joined, or the tool call's input as JSON; the stop reason; and
    (prompt tokens counting cached and written ones, completion, cached, written)."""
    sdk = Message.construct(**body)
    tool = next((b for b in sdk.content if b.type == "tool_use"), None)
    text = (json.dumps(tool.input, ensure_ascii=False) if tool is not None
            else "".join(b.text for b in sdk.content if b.type == "text"))
    u = sdk.usage
    cached, written = u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0
    return text, sdk.stop_reason, (u.input_tokens + cached + written, u.output_tokens, cached,
                                   written)


@pytest.mark.parametrize("name", sorted(BODIES))
async def test_a_body_reads_as_the_sdks_own_model_reads_it(canned_server: CannedServer,
                                                           name: str) -> None:
    body = BODIES[name]
    text, stop, tokens = reference(body)
    canned_server.body = json.dumps(body)
    b = backend(canned_server)
    result = await b.generate(MSGS, CFG)
    await b.aclose()
    (c,) = result.completions
    assert (c.text, c.finish_reason, c.structured_fallback) == (text, stop, None)
    u = result.usage
    assert (u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens,
            u.cache_write_tokens) == tokens
    assert u.calls == 1 and u.retries == 0


async def test_a_forced_tool_call_is_the_structured_answer(canned_server: CannedServer) -> None:
    answer = {"best": 2, "note": "é"}
    canned_server.body = json.dumps(message(
        [{"type": "text", "text": "I'll call the tool."},
         {"type": "tool_use", "id": "toolu_1", "name": "judgement", "input": answer}],
        stop="tool_use"))
    b = backend(canned_server)
    (c,) = (await b.generate(MSGS, CFG.with_(json_schema=SCHEMA))).completions
    assert json.loads(c.text) == answer and "é" in c.text and c.structured_fallback is None
    canned_server.body = json.dumps(message([TEXT]))  # the model answered without the tool
    (c,) = (await b.generate(MSGS, CFG.with_(json_schema=SCHEMA))).completions
    await b.aclose()
    assert c.text == TEXT["text"] and c.structured_fallback is not None


WRONG = {
    "text is a number": (json.dumps(message([{"type": "text", "text": 7}])), "content.0.text"),
    "a block without a type": (json.dumps(message([{"text": "\\boxed{9}"}])), "content.0.type"),
    "content is a string": (json.dumps(message("\\boxed{9}")), "content"),
    "truncated JSON": ('{"content": [{"type": "text", "text": "\\\\boxed{9', "body"),
    "an HTML page": ("<html>\\boxed{9}</html>", "body"),
}


@pytest.mark.parametrize("name", sorted(WRONG))
async def test_a_body_with_a_wrong_type_is_a_typed_retried_failure(canned_server: CannedServer,
                                                                     name: str) -> None:
    text, field = WRONG[name]
    canned_server.body = text
    b = backend(canned_server, retries=1)
    with pytest.raises(TransientBackendError) as info:
        await b.generate(MSGS, CFG)
    await b.aclose()
    message_text = str(info.value)
    assert "malformed response" in message_text and field in message_text
    assert "\n" not in message_text and "boxed" not in message_text
    assert canned_server.requests == 2 and info.value.retries == 1


def batch_line(msg: Any) -> dict[str, Any]:
    return {"custom_id": "i0-p0-s0", "result": {"type": "succeeded", "message": msg}}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_a_batch_result_reads_as_an_online_body(canned_server: CannedServer, name: str) -> None:
    body = BODIES[name]
    text, stop, tokens = reference(body)
    custom_id, outcome = AnthropicBatchProvider(backend(canned_server)).read(batch_line(body))
    assert custom_id == "i0-p0-s0" and not isinstance(outcome, Exception)
    (c,) = outcome.completions
    assert (c.text, c.finish_reason) == (text, stop)
    # Batch usage counts Anthropic's input tokens as they are (priced at the batch tier).
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (
        body["usage"]["input_tokens"], tokens[1])


@pytest.mark.parametrize("name", sorted(k for k in WRONG if "JSON" not in k and "HTML" not in k))
def test_a_batch_result_with_a_wrong_type_is_a_recorded_transient_failure(
        canned_server: CannedServer, name: str) -> None:
    msg = json.loads(WRONG[name][0])
    _, outcome = AnthropicBatchProvider(backend(canned_server)).read(batch_line(msg))
    assert isinstance(outcome, TransientBackendError)
    assert "malformed batch response" in str(outcome) and WRONG[name][1] in str(outcome)
