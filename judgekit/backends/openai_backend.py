"""OpenAI chat completions, and any OpenAI-compatible server (vLLM, transformers serve, llama.cpp)
through `base_url`.

`n` completions are asked in ONE request (the prompt is sent, and billed, once for the n choices).
Servers that return fewer choices than asked (transformers serve returns one) are topped up with
parallel requests, each billed for its prompt; the backend remembers how many choices the server
gives and splits later calls up front. A failed top-up fails the call, but the error keeps what
the successful requests cost (`spent_usage`).
"""

from __future__ import annotations

import math
from typing import Any

from judgekit.backends._remote import RemoteBackend, gather_requests, map_sdk_error, spent_usage
from judgekit.backends.base import BackendCapabilities, Completion, GenerationResult, TokenLogprob
from judgekit.config import GenerationConfig
from judgekit.errors import BackendError, MissingDependencyError, TransientBackendError
from judgekit.schema import Message, Usage

_OFFICIAL_HOSTS = ("api.openai.com",)


class OpenAIBackend(RemoteBackend[Any]):
    """`openai:<model>`. Key from `api_key` or OPENAI_API_KEY, URL from `base_url` or
    OPENAI_BASE_URL; a local server with no key gets a placeholder key."""

    provider = "openai"
    CAPABILITIES = BackendCapabilities(logprobs=True)
    key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"

    # How many choices one request returns at most; learnt from the server (None: trust `n`).
    _choices_cap: int | None = None

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

    @property
    def _official(self) -> bool:
        return self.base_url is None or any(h in self.base_url for h in _OFFICIAL_HOSTS)

    def _params(self, messages: list[Message], config: GenerationConfig, n: int,
                seed_offset: int) -> dict[str, Any]:
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
        if self.extra_body:
            params["extra_body"] = self.extra_body
        return params

    async def _request(self, messages: list[Message], config: GenerationConfig, n: int,
                       seed_offset: int = 0) -> tuple[list[Completion], Usage]:
        params = self._params(messages, config, n, seed_offset)

        async def send() -> Any:
            response = await self.client.chat.completions.create(**params)
            if not getattr(response, "choices", None):
                raise TransientBackendError(f"{self.spec}: response without choices")
            return response

        response, retries = await self._call(send, messages, config, n)
        completions = [_completion(choice) for choice in response.choices]
        u = getattr(response, "usage", None)
        prompt = int(getattr(u, "prompt_tokens", 0) or 0)
        completion = int(getattr(u, "completion_tokens", 0) or 0)
        return completions, self.usage(prompt, completion, retries)

    async def generate(
        self, messages: list[Message], config: GenerationConfig, n: int = 1
    ) -> GenerationResult:
        """`n` completions: one request for all, topped up in parallel if the server gives fewer."""
        self.check_config(config, n)
        completions: list[Completion] = []
        usage = Usage()
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
                err.usage = usage + (spent if spent is not None
                                     else Usage(calls=1, retries=err.retries))
                raise
            for (got, u), asked in zip(results, sizes, strict=True):
                completions.extend(got)
                usage = usage + u
                if len(got) < asked:
                    self._choices_cap = max(1, len(got))
            per_request = min(per_request, self._choices_cap or per_request)
        return GenerationResult(completions=completions[:n], usage=usage)


def _openai_context_length(exc: Any) -> bool | None:
    """True for OpenAI's `context_length_exceeded` code; None lets the wording decide."""
    code = getattr(exc, "code", None)
    if code is None and isinstance(getattr(exc, "body", None), dict):
        code = exc.body.get("code")
    return True if code in ("context_length_exceeded", "exceed_context_size_error") else None


def _completion(choice: Any) -> Completion:
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None) or ""
    return Completion(text=text, finish_reason=getattr(choice, "finish_reason", None),
                      logprobs=_logprobs(getattr(choice, "logprobs", None)))


def _logprobs(lp: Any) -> list[TokenLogprob] | None:
    content = getattr(lp, "content", None) if lp is not None else None
    if not content:
        return None
    out = []
    for tok in content:
        logprob = float(tok.logprob)
        top = {t.token: float(t.logprob) for t in (getattr(tok, "top_logprobs", None) or [])
               if t.logprob is not None and math.isfinite(float(t.logprob))}
        out.append(TokenLogprob(token=tok.token, logprob=logprob, top=top))
    return out
