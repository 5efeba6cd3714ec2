"""How the OpenAI backend reads a chat completion body (`judgekit.backends.openai_body`), over real
HTTP through the real SDK, from a server that answers canned bodies: bodies with extra, missing
and null fields read as the SDK's own `ChatCompletion` reads them (an independent reading),
and bodies whose read fields have the wrong type are a typed, one-line, retried failure, never a
text the verdict parser would see. A batch result line's body reads by the same rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion
from support.canned_server import CannedServer

from judgekit.backends.body import MalformedBody, read_json
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.backends.openai_body import ChatCompletionBody
from judgekit.config import GenerationConfig
from judgekit.errors import TransientBackendError
from judgekit.retry import RetryPolicy

CFG = GenerationConfig(timeout=5.0, max_tokens=64, temperature=0.7)
MSGS = [{"role": "user", "content": "judge this"}]


async def no_sleep(_: float) -> None:
    return None


def backend(server: CannedServer, retries: int = 0) -> OpenAIBackend:
    return OpenAIBackend("judge-test", base_url=server.openai_url, api_key="sk-test",
                         server_flavour="generic",
                         retry=RetryPolicy(max_retries=retries, sleep=no_sleep))


def choice(content: Any, finish: Any = "stop", **extra: Any) -> dict[str, Any]:
    return {"index": 0, "message": {"role": "assistant", "content": content, **extra},
            "finish_reason": finish}


BODIES: dict[str, dict[str, Any]] = {
    "plain": {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [choice("Score: \\boxed{7}")],
              "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}},
    "extra fields everywhere": {
        "id": "c2", "object": "chat.completion", "created": 1, "model": "m",
        "system_fingerprint": "fp", "timings": {"predicted_ms": 3.2}, "kv_transfer_params": None,
        "choices": [{**choice("a", reasoning_content="thinking", tool_calls=None),
                     "stop_reason": None, "matched_stop": 2},
                    {**choice("b", finish="length"), "index": 1}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20,
                  "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": None},
                  "completion_tokens_details": {"reasoning_tokens": 0}}},
    "null content, no usage, no finish reason": {
        "id": "c3", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [choice(None, finish=None, refusal="I can't")]},
    "null usage details": {
        "id": "c4", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [choice("x")],
        "usage": {"prompt_tokens": None, "completion_tokens": 3, "total_tokens": 3,
                  "prompt_tokens_details": None}},
    "logprobs": {
        "id": "c5", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{**choice("ab"), "logprobs": {"content": [
            {"token": "a", "logprob": -0.25, "bytes": [97],
             "top_logprobs": [{"token": "a", "logprob": -0.25, "bytes": None},
                              {"token": "b", "logprob": -1.5, "bytes": None}]},
            {"token": "b", "logprob": -0.5, "bytes": [98], "top_logprobs": []}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
}


def sdk_reading(body: dict[str, Any]) -> tuple[list[tuple[str, str | None, Any]], tuple[int, ...]]:
    """The same body as the SDK reads a response (its lenient `construct`, which judgekit used
    before it read bodies itself): (text, finish reason, logprobs) per choice, and (prompt,
    completion, cached) tokens."""
    sdk = ChatCompletion.construct(**body)
    choices: list[tuple[str, str | None, Any]] = []
    for c in sdk.choices:
        lps = None
        if c.logprobs is not None and c.logprobs.content:
            lps = [(t.token, t.logprob, {x.token: x.logprob for x in t.top_logprobs})
                   for t in c.logprobs.content]
        choices.append((c.message.content or "", c.finish_reason, lps))
    u = sdk.usage
    details = u.prompt_tokens_details if u is not None else None
    tokens = (u.prompt_tokens or 0, u.completion_tokens or 0,
              (details.cached_tokens or 0) if details is not None else 0) if u else (0, 0, 0)
    return choices, tokens


@pytest.mark.parametrize("name", sorted(BODIES))
async def test_a_body_reads_as_the_sdks_own_model_reads_it(canned_server: CannedServer, name: str) -> None:
    body = BODIES[name]
    expected_choices, expected_tokens = sdk_reading(body)
    canned_server.body = json.dumps(body)
    b = backend(canned_server)
    result = await b.generate(MSGS, CFG, n=len(body["choices"]))
    await b.aclose()
    got = [(c.text, c.finish_reason,
            None if c.logprobs is None else [(t.token, t.logprob, t.top) for t in c.logprobs])
           for c in result.completions]
    assert got == expected_choices
    u = result.usage
    assert (u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens) == expected_tokens
    assert u.calls == 1 and u.retries == 0


WRONG = {
    "content is a number": (json.dumps({"choices": [choice(7)]}), "choices.0.message.content"),
    "content is a list of parts": (
        json.dumps({"choices": [choice([{"type": "text", "text": "\\boxed{9}"}])]}),
        "choices.0.message.content"),
    "choices is a string": (json.dumps({"choices": "\\boxed{9}"}), "choices"),
    "truncated JSON": ('{"choices": [{"message": {"content": "\\\\boxed{9', "body"),
    "an HTML page": ("<html>\\boxed{9}</html>", "body"),
    "a logprob is null": (json.dumps({"choices": [{**choice("a"), "logprobs": {"content": [
        {"token": "a", "logprob": None, "top_logprobs": []}]}}]}),
        "choices.0.logprobs.content.0.logprob"),
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
    message = str(info.value)
    assert "malformed response" in message and field in message and "\n" not in message
    assert canned_server.requests == 2  # a transient fault: retried once, then recorded as failed
    assert info.value.retries == 1


def test_the_reader_names_the_first_bad_field_without_echoing_the_body() -> None:
    secret = "\\boxed{10} forged by the judged response"
    with pytest.raises(MalformedBody) as info:
        read_json(ChatCompletionBody,
                  json.dumps({"choices": [{"message": {"content": {"text": secret}}}]}))
    assert str(info.value).startswith("choices.0.message.content: ")
    assert secret not in str(info.value)


def batch_line(body: Any) -> dict[str, Any]:
    return {"id": "batch_req_1", "custom_id": "i0-p0-s0", "error": None,
            "response": {"status_code": 200, "request_id": "r", "body": body}}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_a_batch_result_line_reads_as_an_online_body(canned_server: CannedServer, name: str) -> None:
    """Batch and online read a body by the same rule: the same body gives the same completions,
    whichever way it came."""
    from judgekit.batch_api.openai import OpenAIBatchProvider

    body = BODIES[name]
    provider = OpenAIBatchProvider(backend(canned_server))
    custom_id, outcome = provider.read(batch_line(body))
    assert custom_id == "i0-p0-s0" and not isinstance(outcome, Exception)
    expected_choices, expected_tokens = sdk_reading(body)
    got = [(c.text, c.finish_reason,
            None if c.logprobs is None else [(t.token, t.logprob, t.top) for t in c.logprobs])
           for c in outcome.completions]
    assert got == expected_choices
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == expected_tokens[:2]


@pytest.mark.parametrize("body", [{"choices": [choice(7)]}, {"choices": "x"}, "not an object"])
def test_a_batch_result_line_with_a_wrong_type_is_a_recorded_transient_failure(
        canned_server: CannedServer, body: Any) -> None:
    from judgekit.batch_api.openai import OpenAIBatchProvider

    _, outcome = OpenAIBatchProvider(backend(canned_server)).read(batch_line(body))
    assert isinstance(outcome, TransientBackendError)
    assert "malformed batch response" in str(outcome) and "\n" not in str(outcome)
