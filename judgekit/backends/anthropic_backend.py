"""Anthropic messages API (or a compatible server through `base_url`).

The API has no `n`, so `n` completions are `n` parallel requests (bounded by the throttle). System
messages move to the `system` parameter. No log-probabilities are offered, so `logprobs` is None,
and no seed (`config.seed` is ignored).
"""

from __future__ import annotations

from typing import Any

from judgekit.backends._remote import RemoteBackend, gather_requests, map_sdk_error
from judgekit.backends.base import Completion, GenerationResult
from judgekit.config import GenerationConfig
from judgekit.errors import BackendError, MissingDependencyError, TransientBackendError
from judgekit.schema import Message, Usage


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
    key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"

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

    def _params(self, messages: list[Message], config: GenerationConfig) -> dict[str, Any]:
        system, turns = split_system(messages)
        params: dict[str, Any] = {
            "model": self.model,
            "messages": turns,
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
        return params

    async def _request(self, params: dict[str, Any], messages: list[Message],
                       config: GenerationConfig) -> tuple[Completion, Usage]:
        async def send() -> Any:
            return await self.client.messages.create(**params)

        response, retries = await self._call(send, messages, config, 1)
        blocks = getattr(response, "content", None)
        if blocks is None:
            raise TransientBackendError(f"{self.spec}: response without content")
        text = "".join(getattr(b, "text", "") for b in blocks if getattr(b, "type", "") == "text")
        u = getattr(response, "usage", None)
        prompt = int(getattr(u, "input_tokens", 0) or 0)
        completion = int(getattr(u, "output_tokens", 0) or 0)
        return (Completion(text=text, finish_reason=getattr(response, "stop_reason", None)),
                self.usage(prompt, completion, retries))

    async def generate(
        self, messages: list[Message], config: GenerationConfig, n: int = 1
    ) -> GenerationResult:
        """`n` parallel requests (the API has no `n`)."""
        self.check_config(config, n)
        params = self._params(messages, config)
        results = await gather_requests([self._request(params, messages, config)
                                         for _ in range(n)])
        return GenerationResult(completions=[c for c, _ in results],
                                usage=Usage.total(u for _, u in results))
