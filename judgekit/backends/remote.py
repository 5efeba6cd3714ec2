"""What the OpenAI and Anthropic backends share: key handling, throttling, retries, error
mapping helpers, a circuit breaker, cost, one SDK client per event loop, and a repr without
secrets.

Each provider maps its own SDK's exceptions (`map_error`) with the HTTP helpers here
(`status_error`, `transport_error`, `parse_retry_after`); the retry policy asks the backend
(`should_retry`) and never looks at a foreign exception type.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import ipaddress
import json
import os
import re
import sys
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from judgekit.backends.base import Backend
from judgekit.backends.body import MalformedBody
from judgekit.config import GenerationConfig
from judgekit.cost import Price, call_cost
from judgekit.errors import (
    APITimeoutError,
    AuthenticationError,
    BackendError,
    CapabilityError,
    CircuitOpenError,
    ConfigurationError,
    ContextLengthError,
    FatalBackendError,
    MissingAPIKeyError,
    RateLimitError,
    ServerUnreachableError,
    TransientBackendError,
)
from judgekit.looplocal import LoopLocal
from judgekit.ratelimit import Throttle, estimate_tokens
from judgekit.redact import Secret, is_http_url, safe_url, scrub, url_secrets
from judgekit.retry import RetryPolicy
from judgekit.schema import Message, Usage

ClientT = TypeVar("ClientT")
R = TypeVar("R")

# Local OpenAI-compatible servers (transformers serve, vLLM, llama.cpp) accept any key.
PLACEHOLDER_KEY = "not-needed"

_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
_HTTP_MODULES = ("httpx2", "httpx")

# How servers say that the prompt does not fit the model's context (always with a 4xx):
# OpenAI and vLLM "maximum context length is N tokens", Anthropic "prompt is too long" and
# "input length and `max_tokens` exceed context limit", llama.cpp "exceeds the available context
# size", SGLang "longer than the model's context length", TGI "`inputs` tokens + `max_new_tokens`
# must be <=", and the `context_length_exceeded` / `exceed_context_size_error` codes.
CONTEXT_LENGTH_PATTERNS = re.compile(
    r"context_length_exceeded|exceed_context_size|maximum context length"
    r"|context (?:length|window|size|limit) (?:is )?exceeded|exceeds? (?:the )?(?:available )?"
    r"context(?: size| length| window| limit)?|exceed context limit|prompt is too long"
    r"|longer than the model'?s (?:maximum )?context|inputs.? tokens \+ .?max_new_tokens"
    r"|too many (?:input )?tokens",
    re.IGNORECASE)


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


# -- mapping HTTP failures (used by each provider's `map_error`) --------------------------------

def parse_retry_after(headers: Mapping[str, str] | Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (delta-seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = str(raw).strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_context_length_message(text: str) -> bool:
    """True when an error text says the prompt does not fit the model's context."""
    return bool(CONTEXT_LENGTH_PATTERNS.search(text))


def status_error(status: int, message: str, headers: Any = None, *,
                 context_length: bool | None = None) -> BackendError:
    """The judgekit error for an HTTP error status. `context_length` is the provider's own
    verdict (e.g. an error code); None falls back to the message's wording on a 4xx."""
    if status == 429:
        return RateLimitError(message, status_code=status, retry_after=parse_retry_after(headers))
    if status in (401, 403):
        return AuthenticationError(
            f"authentication failed (HTTP {status}): the API key is missing, wrong or lacks "
            f"access; set it with api_key= or the provider's environment variable. {message}",
            status_code=status)
    if context_length is None:
        context_length = 400 <= status < 500 and is_context_length_message(message)
    if context_length:
        return ContextLengthError(
            f"the prompt does not fit the model's context (HTTP {status}); shorten the input or "
            f"lower max_tokens. {message}", status_code=status)
    if status in _RETRYABLE_4XX or status >= 500:
        return TransientBackendError(message, status_code=status,
                                     retry_after=parse_retry_after(headers))
    return FatalBackendError(message, status_code=status)


def transport_error(exc: BaseException, message: str) -> BackendError | None:
    """The judgekit error for a transport-level failure (the HTTP client's exceptions, a
    deadline, a body that is not JSON), or None when `exc` is none of those (a bug)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    for name in _HTTP_MODULES:
        http = sys.modules.get(name)
        if http is None:
            continue
        if isinstance(cause, http.ConnectError | http.ConnectTimeout):
            return ServerUnreachableError(f"cannot reach the server: {message}")
        if isinstance(cause, http.TimeoutException):
            return APITimeoutError(f"request timed out: {message}")
        if isinstance(cause, http.TransportError):
            return TransientBackendError(f"connection failed: {message}")
    if isinstance(exc, TimeoutError):  # asyncio.timeout / wait_for deadlines
        return APITimeoutError(f"request timed out: {message}")
    if isinstance(exc, json.JSONDecodeError):
        return TransientBackendError(f"malformed response: {message}")
    return None


def map_sdk_error(sdk: Any, exc: BaseException, *,
                  context_length: Callable[[Any], bool | None] = lambda exc: None
                  ) -> BackendError | None:
    """Map the exceptions of a Stainless-generated SDK (`openai`, `anthropic` share the shape:
    APIResponseValidationError, APITimeoutError, APIConnectionError, APIStatusError).
    `context_length(status_exc)` is the provider's own reading of a context-length error."""
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, sdk.APIResponseValidationError):
        return TransientBackendError(f"malformed response: {message}",
                                     status_code=getattr(exc, "status_code", None))
    if isinstance(exc, sdk.APIConnectionError):  # APITimeoutError is one too
        mapped = transport_error(exc, message)
        if mapped is not None:
            return mapped
        if isinstance(exc, sdk.APITimeoutError):
            return APITimeoutError(f"request timed out: {message}")
        return TransientBackendError(f"connection failed: {message}")
    if isinstance(exc, sdk.APIStatusError):
        return status_error(int(exc.status_code), message,
                            getattr(getattr(exc, "response", None), "headers", None),
                            context_length=context_length(exc))
    return transport_error(exc, message)


T = TypeVar("T")


def spent_usage(error: BaseException) -> Usage | None:
    """The whole usage of a `generate` that failed although some of its sibling requests (OpenAI
    top-ups, Anthropic's parallel samples) succeeded: their tokens, calls and retries, plus one
    call and the retries of each failed request. None when the error carries no such record
    (then the call spent one call and `error.retries`)."""
    return error.usage if isinstance(error, BackendError) else None


async def gather_requests(calls: list[Awaitable[tuple[T, Usage]]]) -> list[tuple[T, Usage]]:
    """Run the sibling requests of one `generate` concurrently. When some fail, the first
    failure is raised with the usage of the ones that succeeded attached (`spent_usage`), so a
    sibling's failure does not lose what the others cost."""
    if len(calls) == 1:  # the common case (one request for all n): no task to schedule
        return [await calls[0]]
    results = await asyncio.gather(*calls, return_exceptions=True)
    done: list[tuple[T, Usage]] = []
    failures: list[BackendError] = []
    for r in results:
        if isinstance(r, BackendError):
            failures.append(r)
        elif isinstance(r, BaseException):
            raise r  # a bug, not a failed call
        else:
            done.append(r)
    if not failures:
        return done
    first = failures[0]
    spent = Usage.total(u for _, u in done) + Usage(
        calls=len(failures), retries=sum(f.retries for f in failures))
    first.usage = spent
    raise first


class CircuitBreaker:
    """Fails calls fast once a server has refused `threshold` connection attempts in a row.

    Open for `cooldown` seconds; then one probe call goes through (the others still fail fast),
    and any answer from the server closes the circuit again. Thread-safe: one per backend,
    shared by every event loop that uses it.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 5.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._failures = 0
        self._opened_at: float | None = None
        self._last = ""
        self._lock = threading.Lock()

    def check(self, what: str) -> None:
        """Raise CircuitOpenError when the circuit is open (a probe is let through after the
        cool-down)."""
        if self._opened_at is None:
            return
        with self._lock:
            if self._opened_at is None:
                return
            now = time.monotonic()
            if now - self._opened_at >= self.cooldown:
                self._opened_at = now  # this call is the probe; the others keep failing fast
                return
            raise CircuitOpenError(
                f"{what}: not sent, the last {self._failures} connection attempts failed "
                f"({self._last}); trying again in {self.cooldown - (now - self._opened_at):.1f}s")

    def record(self, error: BackendError | None) -> None:
        """Count an attempt's outcome: a connection failure, or any answer from the server."""
        if isinstance(error, ServerUnreachableError):
            if isinstance(error, CircuitOpenError):
                return
            with self._lock:
                self._failures += 1
                self._last = str(error)
                if self._failures >= self.threshold:
                    self._opened_at = time.monotonic()
        elif self._failures:
            with self._lock:
                self._failures = 0
                self._opened_at = None

    @property
    def open(self) -> bool:
        return self._opened_at is not None


_NO_SLOT = contextlib.nullcontext()


class _LoopClient(Generic[ClientT]):
    """One event loop's SDK client, closed before that loop closes.

    `Judge.score()` runs `asyncio.run` per call; an SDK client left open when its loop closes
    is finalised later from another loop ("Event loop is closed" noise, sockets left to the GC).
    An async generator that has started is closed by the loop's `shutdown_asyncgens()`, which
    `asyncio.run` calls before closing the loop: its `finally` closes the client in time.
    """

    def __init__(self, client: ClientT) -> None:
        self.client = client
        self._guard: AsyncGenerator[None, None] | None = None

    async def _close_at_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            close = getattr(self.client, "close", None)
            if close is not None:
                await close()

    async def close_with_loop(self) -> None:
        """Arrange (once) for the client to be closed when its event loop shuts down."""
        if self._guard is None:
            self._guard = self._close_at_shutdown()
            await anext(self._guard)

    async def aclose(self) -> None:
        if self._guard is not None:
            guard, self._guard = self._guard, None
            await guard.aclose()
        else:
            close = getattr(self.client, "close", None)
            if close is not None:
                await close()


class RemoteBackend(Backend, Generic[ClientT]):
    """Base of the HTTP API backends. Subclasses set `provider`, the env var names, `_new_client`
    and `generate`.

    Arguments: `base_url` / `api_key` (else the provider's environment variables; a base URL
    without a key gets a placeholder key, for local servers); `max_concurrency` requests in
    flight (default None: no cap of its own, the caller's concurrency is the cap) and optional
    `requests_per_minute` / `tokens_per_minute` budgets, per instance and across every thread and
    event loop that uses it, sent evenly (at most one second's worth at once, or `burst`
    requests); a whole `retry=RetryPolicy(...)`, and `max_retries` (which
    overrides that policy's, default 6); `prices` overriding `judgekit.cost.PRICES`;
    `extra_body` merged into every request body.

    Subclasses map their SDK's exceptions in `map_error` and may refine `should_retry`.
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
        max_concurrency: int | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        burst: int | None = None,
        max_retries: int | None = None,
        prices: Mapping[str, Price] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not model:
            raise ValueError(f"{self.provider} backend needs a model name")
        self._import_sdk()  # fail at construction, not at the first request
        self.model = model
        raw_url = base_url or os.environ.get(self.base_url_env) or None
        if raw_url is not None and not is_http_url(raw_url):
            where = "base_url" if base_url else self.base_url_env
            raise ConfigurationError(
                f"{where} {safe_url(raw_url)!r} is not an http(s) URL; give the server's "
                "address, e.g. http://localhost:8000/v1")
        # The URL as given may carry credentials or a key in its query: the SDK gets it from a
        # Secret, everything else sees the cleaned `base_url`.
        self._raw_base_url = Secret(raw_url or "")
        self.base_url = safe_url(raw_url)
        key = api_key or os.environ.get(self.key_env) or None
        if key is None:
            if self.base_url is None:
                raise MissingAPIKeyError(
                    f"no {self.provider} API key: set {self.key_env} (or pass api_key=); a "
                    "local server needs none: give its --base-url / base_url=")
            key = PLACEHOLDER_KEY
        self._key = Secret(key)
        self._secrets = [self._key, *(Secret(s) for s in url_secrets(raw_url))]
        self.local = is_loopback_url(self.base_url)
        self.prices = dict(prices) if prices else None
        self.extra_body = dict(extra_body) if extra_body else None
        policy = retry if retry is not None else RetryPolicy()
        self.retry_policy = policy if max_retries is None else \
            dataclasses.replace(policy, max_retries=max_retries)
        self.throttle = Throttle(max_concurrency, requests_per_minute, tokens_per_minute,
                                 burst=burst)
        self.breaker = CircuitBreaker()
        self._clients: LoopLocal[_LoopClient[ClientT]] = LoopLocal(
            lambda: _LoopClient(self._new_client()))

    # -- identity -------------------------------------------------------------------------------

    @property
    def spec(self) -> str:
        """`provider:model`, plus `@base_url` (without credentials) when a base URL is set."""
        return f"{self.provider}:{self.model}" + (f"@{self.base_url}" if self.base_url else "")

    @property
    def identity(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def endpoint(self) -> str | None:
        return self.base_url

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(spec={self.spec!r}, "
                f"max_concurrency={self.throttle.max_concurrency}, "
                f"max_retries={self.retry_policy.max_retries})")

    # -- plumbing -------------------------------------------------------------------------------

    def _import_sdk(self) -> None:
        """Import the provider SDK or raise MissingDependencyError (SDKs are imported lazily)."""

    def _new_client(self) -> ClientT:
        raise NotImplementedError

    def map_error(self, exc: BaseException) -> BackendError | None:
        """The judgekit error for an exception raised by this provider's SDK, or None when it is
        not a failed call (a bug, which then propagates unchanged). The default knows transport
        errors only; providers add their SDK's types (see `map_sdk_error`)."""
        return transport_error(exc, f"{type(exc).__name__}: {exc}")

    @property
    def client(self) -> ClientT:
        """The SDK client of the running event loop."""
        return self._clients.get().client

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
        """One generation request: throttled per attempt, bounded by `config.timeout` per
        attempt, retried under the policy. Returns (response, retries)."""
        tokens = estimate_tokens(messages, config.max_tokens, n) if not self.throttle.unlimited \
            else 0
        return await self.sdk_call(send, what="request", timeout=config.timeout + 1.0,
                                   throttled=True, tokens=tokens)

    async def sdk_call(
        self,
        send: Callable[[], Awaitable[R]],
        *,
        what: str = "request",
        timeout: float | None = None,
        throttled: bool = False,
        tokens: int = 0,
    ) -> tuple[R, int]:
        """One SDK call at this backend's boundary: its exceptions mapped (`map_error`) and
        scrubbed of secrets, retried under the policy as `should_retry` decides, counted by the
        circuit breaker; `throttled` calls take a request slot (and `tokens` of the budget) per
        attempt, and `timeout` bounds each whole attempt. Returns (result, retries)."""
        await self._clients.get().close_with_loop()
        limited = throttled and not self.throttle.unlimited

        async def attempt() -> R:
            self.breaker.check(self.spec)
            error: BackendError | None
            async with self.throttle.slot(tokens) if limited else _NO_SLOT:
                try:
                    # The SDK timeout covers each network phase; this one bounds the whole
                    # attempt (a server that trickles bytes forever).
                    async with asyncio.timeout(timeout):
                        response = await send()
                except BackendError as err:
                    error = err
                except Exception as exc:  # mapped at this boundary; a bug maps to None
                    error = self.map_error(exc)
                    if error is None:
                        raise
                else:
                    self.breaker.record(None)
                    return response
            self.breaker.record(error)
            # Raised outside the except block: no __context__ pointing at the SDK error (its
            # request object holds the key in its headers), and no key in the message.
            error.args = tuple(self.scrub(str(a)) for a in error.args)
            raise error

        return await self.retry_policy.call(attempt, should_retry=self.should_retry,
                                            what=f"{self.spec} {what}")

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

    def malformed_response(self, exc: MalformedBody, status_code: int | None) -> BackendError:
        """The recorded failure of a response body this backend cannot read (`judgekit.backends.
        body`): transient, so retried like a server fault, as the SDK's own validation errors
        are (`map_sdk_error`)."""
        return TransientBackendError(f"{self.spec}: malformed response: {exc}",
                                     status_code=status_code)

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
        holder = self._clients.pop_current()
        self._clients.clear()
        if holder is not None:
            await holder.aclose()
