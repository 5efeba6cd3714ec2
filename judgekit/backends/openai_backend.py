"""OpenAI chat completions, and any OpenAI-compatible server (vLLM, transformers serve, llama.cpp)
through `base_url`.

`n` completions are asked in ONE request (the prompt is sent, and billed, once for the n choices).
Servers that return fewer choices than asked (transformers serve returns one) are topped up with
parallel requests, each billed for its prompt; the backend remembers how many choices the server
gives and splits later calls up front. A failed top-up fails the call, but the error keeps what
the successful requests cost (`spent_usage`).

Structured output depends on the server (`server_flavour`, see `judgekit.backends.flavours`):
OpenAI's strict JSON schemas, llama.cpp's schema or GBNF grammar, vLLM / SGLang / Ollama
schemas; `auto` asks the server what it is. A refused schema falls back once to free text,
recorded on each completion. Cached prompt tokens (`prompt_tokens_details.cached_tokens`: OpenAI
caches a static prefix of 1,024 tokens or more by itself) are recorded and billed at the cached
price.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from judgekit.backends import flavours
from judgekit.backends.base import BackendCapabilities, Completion, GenerationResult
from judgekit.backends.body import MalformedBody, read_json
from judgekit.backends.openai_body import (
    ChatCompletionBody,
    UsageBody,
    completion_from_choice,
)
from judgekit.backends.remote import RemoteBackend, gather_requests, map_sdk_error, spent_usage
from judgekit.config import GenerationConfig
from judgekit.errors import (
    BackendError,
    MissingDependencyError,
    StructuredOutputRejected,
    TransientBackendError,
)
from judgekit.schema import Message, Usage

_OFFICIAL_HOSTS = ("api.openai.com",)
REPROBE_S = 30.0
"""Seconds before a server that did not answer the flavour probe is asked again."""


class OpenAIBackend(RemoteBackend[Any]):
    """`openai:<model>`. Key from `api_key` or OPENAI_API_KEY, URL from `base_url` or
    OPENAI_BASE_URL; a local server with no key gets a placeholder key.

    `server_flavour` says how the server takes a JSON schema or grammar: `openai`, `llamacpp`,
    `vllm`, `sglang`, `ollama`, `generic` (none) or `auto` (ask the server); default `openai`
    for OpenAI's API and `auto` for any other base URL. Other arguments: see `RemoteBackend`.
    """

    provider = "openai"
    CAPABILITIES = BackendCapabilities(logprobs=True, cutoff_reasons=flavours.OPENAI_CUTOFF_REASONS)
    key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"

    # How many choices one request returns at most; learnt from the server (None: trust `n`).
    _choices_cap: int | None = None

    def __init__(self, model: str, *, server_flavour: flavours.ServerFlavour | None = None,
                 **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        # OpenAI's own API, not a compatible server: decided once, from the fixed base URL.
        self._official = self.base_url is None or any(h in self.base_url for h in _OFFICIAL_HOSTS)
        self.server_flavour = flavours.check_flavour(server_flavour, official=self._official)
        self._detected: tuple[str, str] | None = None  # (flavour, evidence) once `auto` asked
        self._detect_lock = threading.Lock()  # one detection, whatever the concurrency
        self._probe_after = 0.0  # monotonic time before which a silent server is not asked
        self._refused: str | None = None  # why the server refused the schema, once it did

    @property
    def capabilities(self) -> BackendCapabilities:
        """What the server's flavour can enforce (see `judgekit.backends.flavours`)."""
        detected = self._detected[0] if self._detected else None
        return flavours.capabilities(self.server_flavour, detected)

    def settings(self) -> dict[str, str | None]:
        return {"server_flavour": self.server_flavour}

    @property
    def flavour(self) -> str:
        """The flavour requests are written for (`generic` while `auto` has not asked yet)."""
        if self.server_flavour != "auto":
            return self.server_flavour
        return self._detected[0] if self._detected else "generic"

    async def resolve_flavour(self, config: GenerationConfig) -> None:
        """Ask an `auto` server what it is, once, before its first structured request (online
        and batch requests alike: one flavour resolution for both). A server that does not
        answer is asked again at most every `REPROBE_S` seconds (its requests go out as
        `generic` meanwhile, under their own deadline)."""
        if self.server_flavour != "auto" or self._detected is not None:
            return
        if config.json_schema is None and config.grammar is None:
            return
        if time.monotonic() < self._probe_after:
            return

        def detect_once() -> None:
            with self._detect_lock:
                if self._detected is None and time.monotonic() >= self._probe_after:
                    found = flavours.detect_flavour(self._sdk_base_url or "", self._key.get(),
                                                    timeout=min(2.0, config.timeout))
                    if found is None:
                        self._probe_after = time.monotonic() + REPROBE_S
                    self._detected = found

        await asyncio.to_thread(detect_once)

    def structured_request(self, config: GenerationConfig) -> tuple[dict[str, Any], str | None]:
        """(body fields carrying the schema / grammar, why they are not sent when asked): the
        one rule for what a request of `config` carries to this server, online or in a batch
        (after `resolve_flavour`)."""
        if config.json_schema is None and config.grammar is None:
            return {}, None
        if self._refused is not None:
            return {}, flavours.fallback_note(self._refused)
        fields = flavours.structured_fields(self.flavour, config)
        if config.json_schema is not None and "response_format" not in fields:
            why = self._detected[1] if self._detected else f"{self.flavour} takes no JSON schema"
            return fields, flavours.fallback_note(why)
        return fields, None

    def _import_sdk(self) -> None:
        try:
            import openai  # noqa: F401
        except ImportError as exc:  # pragma: no cover - openai is a core dependency
            raise MissingDependencyError("openai", "openai") from exc

    def _new_client(self) -> Any:
        import openai

        # max_retries=0: judgekit.retry is the only retry policy (and counts its retries).
        return openai.AsyncOpenAI(api_key=self._key.get(), base_url=self._sdk_base_url,
                                  max_retries=0)

    def map_error(self, exc: BaseException) -> BackendError | None:
        """The openai SDK's exceptions as judgekit errors; a 4xx whose code is
        `context_length_exceeded` (or whose text says so, as vLLM and llama.cpp word it) is a
        ContextLengthError, never retried."""
        import openai

        return map_sdk_error(openai, exc, context_length=_openai_context_length)

    def request_params(self, messages: list[Message], config: GenerationConfig, n: int,
                seed_offset: int, structured: dict[str, Any] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": config.temperature,
            "timeout": config.timeout,
        }
        # OpenAI's own API wants max_completion_tokens (its reasoning models reject max_tokens);
        # compatible servers know max_tokens.
        params["max_completion_tokens" if self._official else "max_tokens"] = config.max_tokens
        if n > 1:
            params["n"] = n
        if config.top_p != 1.0:
            params["top_p"] = config.top_p
        if config.stop:
            params["stop"] = list(config.stop)
        if config.seed is not None:
            # Top-up requests get distinct seeds, else a seeded server returns the same sample.
            params["seed"] = config.seed + seed_offset
        if config.logprobs:
            params["logprobs"] = True
            if config.top_logprobs:
                params["top_logprobs"] = config.top_logprobs
        body = {**(structured or {}), **(self.extra_body or {})}
        if body:
            params["extra_body"] = body
        return params

    async def _request(self, messages: list[Message], config: GenerationConfig, n: int,
                       seed_offset: int = 0) -> tuple[list[Completion], Usage]:
        structured, note = self.structured_request(config)
        spent: Usage | None = None  # a refused schema's call, when there was one
        try:
            response, retries = await self._send(
                self.request_params(messages, config, n, seed_offset, structured), messages, config, n,
                bool(structured))
        except StructuredOutputRejected as err:
            # Once, and never as a server fault: the same request without the parameter.
            self._refused = str(err)
            note = flavours.fallback_note(self._refused)
            spent = Usage(calls=1, retries=err.retries)
            response, retries = await self._send(
                self.request_params(messages, config, n, seed_offset), messages, config, n, False)
        completions = [completion_from_choice(choice, note) for choice in response.choices or ()]
        u = response.usage or UsageBody()
        usage = self.usage(u.prompt_tokens or 0, u.completion_tokens or 0, retries,
                           cached=u.cached_tokens)
        return completions, usage if spent is None else spent + usage

    async def _send(self, params: dict[str, Any], messages: list[Message],
                    config: GenerationConfig, n: int, structured: bool
                    ) -> tuple[ChatCompletionBody, int]:
        """One request under the retry policy; a structured one that the server refuses raises
        StructuredOutputRejected (never retried). The body is read by `openai_body` (through
        the SDK's public `with_raw_response`), not into the SDK's ChatCompletion: see there why."""

        async def send() -> ChatCompletionBody:
            try:
                raw = await self.client.chat.completions.with_raw_response.create(**params)
            except Exception as exc:
                import openai

                refused = flavours.refusal(exc, openai) if structured else None
                if refused is None:
                    raise
                raise refused from None
            try:
                response = read_json(ChatCompletionBody, raw.content)
            except MalformedBody as exc:
                raise self.malformed_response(exc, raw.status_code) from None
            if not response.choices:
                raise TransientBackendError(f"{self.spec}: response without choices")
            return response

        return await self._call(send, messages, config, n)

    async def generate(
        self, messages: list[Message], config: GenerationConfig, n: int = 1
    ) -> GenerationResult:
        """`n` completions: one request for all, topped up in parallel if the server gives fewer."""
        self.check_config(config, n)
        await self.resolve_flavour(config)
        completions: list[Completion] = []
        paid: list[Usage] = []  # each request's usage, summed once at the end
        per_request = n if self._choices_cap is None else min(n, self._choices_cap)
        while len(completions) < n:
            missing = n - len(completions)
            sizes = [per_request] * (missing // per_request)
            if missing % per_request:
                sizes.append(missing % per_request)
            offsets = [len(completions) + sum(sizes[:i]) for i in range(len(sizes))]
            try:
                results = await gather_requests([
                    self._request(messages, config, size, seed_offset=off)
                    for size, off in zip(sizes, offsets, strict=True)])
            except BackendError as err:
                # Earlier rounds (the first request, before its top-ups) were paid for too.
                spent = spent_usage(err)
                err.usage = Usage.total([*paid, spent if spent is not None
                                         else Usage(calls=1, retries=err.retries)])
                raise
            for (got, u), asked in zip(results, sizes, strict=True):
                completions.extend(got)
                paid.append(u)
                if len(got) < asked:
                    self._choices_cap = max(1, len(got))
            per_request = min(per_request, self._choices_cap or per_request)
        return GenerationResult(completions=completions[:n], usage=Usage.total(paid))


def _openai_context_length(exc: Any) -> bool | None:
    """True for OpenAI's `context_length_exceeded` code; None lets the wording decide."""
    code = getattr(exc, "code", None)
    if code is None and isinstance(getattr(exc, "body", None), dict):
        code = exc.body.get("code")
    return True if code in ("context_length_exceeded", "exceed_context_size_error") else None
