"""What the OpenAI and Anthropic backends share: key handling, throttling, retries, cost, one SDK
client per event loop, and a repr without secrets."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from judgekit.backends.base import Backend
from judgekit.config import GenerationConfig
from judgekit.cost import Price, call_cost
from judgekit.errors import AuthenticationError, BackendError, CapabilityError
from judgekit.looplocal import LoopLocal
from judgekit.ratelimit import Throttle, estimate_tokens
from judgekit.redact import Secret, safe_url, scrub, url_secrets
from judgekit.retry import RetryPolicy
from judgekit.schema import Message, Usage

ClientT = TypeVar("ClientT")
R = TypeVar("R")

# Local OpenAI-compatible servers (transformers serve, vLLM, llama.cpp) accept any key.
PLACEHOLDER_KEY = "not-needed"


def is_loopback_url(url: str | None) -> bool:
    """True for http(s)://localhost / 127.x / ::1 base URLs (a model served on this machine)."""
    if not url:
        return False
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RemoteBackend(Backend, Generic[ClientT]):
    """Base of the HTTP API backends. Subclasses set `provider`, the env var names, `_new_client`
    and `generate`.

    Arguments: `base_url` / `api_key` (else the provider's environment variables; a base URL
    without a key gets a placeholder key, for local servers); `max_concurrency` requests in
    flight and optional `requests_per_minute` / `tokens_per_minute` budgets, per instance;
    `max_retries` for the default retry policy, or a whole `retry=RetryPolicy(...)` (which wins);
    `prices` overriding `judgekit.cost.PRICES`; `extra_body` merged into every request body.
    """

    provider: str = ""
    key_env: str = ""
    base_url_env: str = ""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int = 6,
        prices: Mapping[str, Price] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not model:
            raise ValueError(f"{self.provider} backend needs a model name")
        self._import_sdk()  # fail at construction, not at the first request
        self.model = model
        raw_url = base_url or os.environ.get(self.base_url_env) or None
        # The URL as given may carry credentials or a key in its query: the SDK gets it from a
        # Secret, everything else sees the cleaned `base_url`.
        self._raw_base_url = Secret(raw_url or "")
        self.base_url = safe_url(raw_url)
        key = api_key or os.environ.get(self.key_env) or None
        if key is None:
            if self.base_url is None:
                raise AuthenticationError(
                    f"no {self.provider} API key: pass api_key= or set {self.key_env} "
                    f"(for a local server set base_url=, which needs no key)")
            key = PLACEHOLDER_KEY
        self._key = Secret(key)
        self._secrets = [self._key, *(Secret(s) for s in url_secrets(raw_url))]
        self.local = is_loopback_url(self.base_url)
        self.prices = dict(prices) if prices else None
        self.extra_body = dict(extra_body) if extra_body else None
        self.retry_policy = retry if retry is not None else RetryPolicy(max_retries=max_retries)
        self.throttle = Throttle(max_concurrency, requests_per_minute, tokens_per_minute)
        self._clients: LoopLocal[ClientT] = LoopLocal(self._new_client)

    # -- identity -------------------------------------------------------------------------------

    @property
    def spec(self) -> str:
        """`provider:model`, plus `@base_url` (without credentials) when a base URL is set."""
        return f"{self.provider}:{self.model}" + (f"@{self.base_url}" if self.base_url else "")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(spec={self.spec!r}, "
                f"max_concurrency={self.throttle.max_concurrency}, "
                f"max_retries={self.retry_policy.max_retries})")

    # -- plumbing -------------------------------------------------------------------------------

    def _import_sdk(self) -> None:
        """Import the provider SDK or raise MissingDependencyError (SDKs are imported lazily)."""

    def _new_client(self) -> ClientT:
        raise NotImplementedError

    @property
    def client(self) -> ClientT:
        """The SDK client of the running event loop."""
        return self._clients.get()

    @property
    def _sdk_base_url(self) -> str | None:
        return self._raw_base_url.get() or None

    def scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def cost(self, prompt_tokens: int, completion_tokens: int, *, cached: int = 0,
             written: int = 0) -> float | None:
        """USD for one call; `cached` / `written` prompt tokens (part of `prompt_tokens`) are
        billed at the model's cache-read / cache-write prices."""
        return call_cost(self.model, prompt_tokens, completion_tokens, self.prices,
                         local=self.local, cached_prompt_tokens=cached,
                         cache_write_tokens=written)

    async def _call(
        self,
        send: Callable[[], Awaitable[R]],
        messages: list[Message],
        config: GenerationConfig,
        n: int,
    ) -> tuple[R, int]:
        """One logical request: throttled per attempt, bounded by `config.timeout` per attempt,
        retried under the policy. Returns (response, retries)."""

        async def attempt() -> R:
            async with self.throttle.slot(estimate_tokens(messages, config.max_tokens, n)):
                # The SDK timeout covers each network phase; this one bounds the whole attempt
                # (a server that trickles bytes forever).
                async with asyncio.timeout(config.timeout + 1.0):
                    return await send()

        try:
            return await self.retry_policy.call(attempt, secrets=self._secrets,
                                                what=f"{self.spec} request")
        except BackendError as err:
            # Belt and braces: no message leaves with the key in it.
            err.args = tuple(self.scrub(str(a)) for a in err.args)
            raise

    def check_config(self, config: GenerationConfig, n: int) -> None:
        """Refuse what an HTTP API cannot honour, rather than silently ignoring it."""
        if n < 1:
            raise ValueError("n must be >= 1")
        if config.grammar and not self.capabilities.grammar:
            raise CapabilityError(
                f"{self.spec} cannot constrain output to a grammar; for a server with its own "
                "guided decoding, pass it through extra_body=")
        if config.json_schema is not None and not self.capabilities.json_schema:
            raise CapabilityError(f"{self.spec} cannot constrain output to a JSON schema")

    def usage(self, prompt_tokens: int, completion_tokens: int, retries: int, *,
              cached: int = 0, written: int = 0) -> Usage:
        """One call's usage; `cached` / `written`: prompt tokens read from / written to the
        provider's prompt cache (both part of `prompt_tokens`)."""
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, calls=1,
                     retries=retries, cached_prompt_tokens=cached, cache_write_tokens=written,
                     cost_usd=self.cost(prompt_tokens, completion_tokens, cached=cached,
                                        written=written))

    async def aclose(self) -> None:
        """Close this loop's SDK client; clients of other loops are dropped (their loops are gone
        or not ours to drive)."""
        client = self._clients.pop_current()
        self._clients.clear()
        if client is not None:
            close = getattr(client, "close", None)
            if close is not None:
                await close()
