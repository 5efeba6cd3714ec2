"""Anthropic messages API (or a compatible server through `base_url`).

The API has no `n`, so `n` completions are `n` parallel requests (bounded by the throttle). System
messages move to the `system` parameter. No log-probabilities are offered, so `logprobs` is None,
and no seed (`config.seed` is ignored).

Structured output is a forced tool call: the schema is the tool's `input_schema`, `tool_choice`
names the tool, and the tool call's input (as JSON) is the completion's text. A server that
refuses tools falls back once to free text, recorded on each completion, as does an answer that
comes back without the tool call.

Prompt caching: when the request says where the static prefix of the prompt ends
(`GenerationConfig.cache_prefix_chars`), the first user turn is sent as two text blocks, the
static one marked `cache_control: ephemeral`, so later items read it from the cache. Usage
counts the cached and written tokens as prompt tokens (Anthropic's `input_tokens` leaves them
out) and bills them at the cache prices.
"""

from __future__ import annotations

from typing import Any

from judgekit.backends import flavours
from judgekit.backends.anthropic_body import MessageBody, MessageUsageBody
from judgekit.backends.base import BackendCapabilities, Completion, GenerationResult
from judgekit.backends.body import MalformedBody, read_json
from judgekit.backends.remote import RemoteBackend, gather_requests, map_sdk_error
from judgekit.config import GenerationConfig
from judgekit.errors import (
    BackendError,
    MissingDependencyError,
    StructuredOutputRejected,
    TransientBackendError,
)
from judgekit.schema import Message, Usage

NO_TOOL_CALL = "the answer came without the forced tool call"

ANTHROPIC_CUTOFF_REASONS = frozenset({"max_tokens", "model_context_window_exceeded", "refusal"})
"""The Messages API's `stop_reason`s for an answer that did not end by itself: the token limit,
the context window, and a refusal (its text stops mid-answer, whatever it holds so far)."""


def split_system(messages: list[Message]) -> tuple[str | None, list[dict[str, str]]]:
    """(system text, user/assistant turns): system messages are joined, consecutive turns of one
    role merged (the API wants alternating roles)."""
    system = [m["content"] for m in messages if m.get("role") == "system"]
    turns: list[dict[str, str]] = []
    for m in messages:
        role = m.get("role")
        if role == "system":
            continue
        if role not in ("user", "assistant"):
            raise ValueError(f"unsupported message role for Anthropic: {role!r}")
        if turns and turns[-1]["role"] == role:
            turns[-1] = {"role": role, "content": turns[-1]["content"] + "\n\n" + m["content"]}
        else:
            turns.append({"role": role, "content": m["content"]})
    return ("\n\n".join(system) if system else None), turns


class AnthropicBackend(RemoteBackend[Any]):
    """`anthropic:<model>`. Key from `api_key` or ANTHROPIC_API_KEY, URL from `base_url` or
    ANTHROPIC_BASE_URL."""

    provider = "anthropic"
    CAPABILITIES = BackendCapabilities(json_schema=True, cutoff_reasons=ANTHROPIC_CUTOFF_REASONS)
    key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"

    _refused: str | None = None  # why the server refused the forced tool call, once it did

    def _import_sdk(self) -> None:
        try:
            import anthropic  # noqa: F401
        except ImportError as exc:  # pragma: no cover - anthropic is a core dependency
            raise MissingDependencyError("anthropic", "anthropic") from exc

    def _new_client(self) -> Any:
        import anthropic

        # max_retries=0: judgekit.retry is the only retry policy (and counts its retries).
        return anthropic.AsyncAnthropic(api_key=self._key.get(), base_url=self._sdk_base_url,
                                        max_retries=0)

    def map_error(self, exc: BaseException) -> BackendError | None:
        """The anthropic SDK's exceptions as judgekit errors (529 overloaded is a retryable
        5xx); "prompt is too long" / "exceed context limit" 400s are ContextLengthErrors."""
        import anthropic

        return map_sdk_error(anthropic, exc)

    def request_params(self, messages: list[Message], config: GenerationConfig,
                structured: bool = True) -> dict[str, Any]:
        system, turns = split_system(messages)
        params: dict[str, Any] = {
            "model": self.model,
            "messages": cache_marked(turns, config.cache_prefix_chars),
            "max_tokens": config.max_tokens,
            "timeout": config.timeout,
        }
        if system:
            params["system"] = system
        if config.stop:
            params["stop_sequences"] = list(config.stop)
        # anthropic>=1.0 dropped temperature/top_p from create()'s signature; the API still takes
        # them in the body on models with sampling options. Sent only when not the API default
        # (1.0), since the newest models reject other values: use temperature=1.0 with those.
        body: dict[str, Any] = {}
        temperature = min(config.temperature, 1.0)  # the API's range is 0-1
        if temperature != 1.0:
            body["temperature"] = temperature
        if config.top_p != 1.0:
            body["top_p"] = config.top_p
        body.update(self.extra_body or {})
        if body:
            params["extra_body"] = body
        if structured and config.json_schema is not None and self._refused is None:
            name = flavours.schema_name(config.json_schema)
            params["tools"] = [{"name": name, "description": "Record your answer in this form.",
                                "input_schema": config.json_schema}]
            params["tool_choice"] = {"type": "tool", "name": name}
        return params

    async def _request(self, messages: list[Message], config: GenerationConfig
                       ) -> tuple[Completion, Usage]:
        params = self.request_params(messages, config)
        spent = Usage()
        try:
            response, retries = await self._send(params, messages, config)
        except StructuredOutputRejected as err:
            # Once, and never as a server fault: the same request without the tool.
            self._refused = str(err)
            spent = Usage(calls=1, retries=err.retries)
            params = self.request_params(messages, config, structured=False)
            response, retries = await self._send(params, messages, config)
        if response.content is None:
            raise TransientBackendError(f"{self.spec}: response without content")
        text, tool_answer = response.answer()
        fallback = None
        if config.json_schema is not None and not tool_answer:
            fallback = flavours.fallback_note(self._refused or NO_TOOL_CALL)
        u = response.usage or MessageUsageBody()
        cached = u.cache_read_input_tokens or 0
        written = u.cache_creation_input_tokens or 0
        return (Completion(text=text, finish_reason=response.stop_reason,
                           structured_fallback=fallback),
                spent + self.usage(u.prompt_tokens, u.output_tokens or 0, retries, cached=cached,
                                   written=written))

    async def _send(self, params: dict[str, Any], messages: list[Message],
                    config: GenerationConfig) -> tuple[MessageBody, int]:
        """One request under the retry policy; one with a forced tool that the server refuses
        raises StructuredOutputRejected (never retried). The body is read by `anthropic_body`
        (through the SDK's public `with_raw_response`), not into the SDK's Message."""

        async def send() -> MessageBody:
            try:
                raw = await self.client.messages.with_raw_response.create(**params)
            except Exception as exc:
                import anthropic

                refused = flavours.refusal(exc, anthropic) if "tools" in params else None
                if refused is None:
                    raise
                raise refused from None
            try:
                return read_json(MessageBody, await raw.read())
            except MalformedBody as exc:
                raise self.malformed_response(exc, raw.status_code) from None

        return await self._call(send, messages, config, 1)

    async def generate(
        self, messages: list[Message], config: GenerationConfig, n: int = 1
    ) -> GenerationResult:
        """`n` parallel requests (the API has no `n`)."""
        self.check_config(config, n)
        results = await gather_requests([self._request(messages, config) for _ in range(n)])
        return GenerationResult(completions=[c for c, _ in results],
                                usage=Usage.total(u for _, u in results))


def cache_marked(turns: list[dict[str, str]], prefix_chars: int | None) -> list[dict[str, Any]]:
    """`turns` with the first user turn split at `prefix_chars` into a static text block marked
    for Anthropic's prompt cache and the rest (unchanged when there is nothing to split)."""
    if not prefix_chars or not turns or turns[0]["role"] != "user":
        return list(turns)
    text = turns[0]["content"]
    if not 0 < prefix_chars < len(text):
        return list(turns)
    first = {"role": "user", "content": [
        {"type": "text", "text": text[:prefix_chars], "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": text[prefix_chars:]}]}
    return [first, *turns[1:]]
