"""The one retry policy for remote backends, and the one place SDK exceptions become judgekit errors.

The provider SDKs' own retries are switched off (max_retries=0) so that every retry happens here,
is counted in `Usage.retries`, and follows one rule set:

* retried with exponential backoff and jitter: 429, 408/409/425, 5xx (incl. Anthropic's 529),
  timeouts, dropped connections and malformed (non-JSON) bodies;
* a server's Retry-After / retry-after-ms header (seconds or an HTTP date) replaces the backoff
  for that wait, capped at `max_retry_after`;
* never retried: other 4xx. 401/403 raise `AuthenticationError`, the rest `FatalBackendError`.

Re-asking after an unparsable judgement is a different policy and lives in the judge, not here.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import tenacity

from judgekit.errors import (
    APITimeoutError,
    AuthenticationError,
    BackendError,
    FatalBackendError,
    RateLimitError,
    TransientBackendError,
)
from judgekit.redact import Secret, scrub

log = logging.getLogger("judgekit.retry")

T = TypeVar("T")
SleepFn = Callable[[float], Awaitable[None]]

_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
_SDK_MODULES = ("openai", "anthropic")
_HTTP_MODULES = ("httpx2", "httpx")


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


def _status_error(exc: Any, status: int, msg: str) -> BackendError:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    retry_after = parse_retry_after(headers)
    if status == 429:
        return RateLimitError(msg, status_code=status, retry_after=retry_after)
    if status in (401, 403):
        return AuthenticationError(
            f"authentication failed (HTTP {status}): the API key is missing, wrong or lacks "
            f"access; set it with api_key= or the provider's environment variable. {msg}",
            status_code=status,
        )
    if status in _RETRYABLE_4XX or status >= 500:
        return TransientBackendError(msg, status_code=status, retry_after=retry_after)
    return FatalBackendError(msg, status_code=status)


def map_exception(exc: BaseException, secrets: Iterable[str | Secret | None] = ()) -> BackendError | None:
    """The judgekit error for an SDK / transport exception, or None for anything else (bugs such as
    TypeError propagate unchanged). Messages are scrubbed of the given secrets."""
    if isinstance(exc, BackendError):
        return exc
    secrets = list(secrets)

    def message(prefix: str = "") -> str:
        return scrub(f"{prefix}{type(exc).__name__}: {exc}", secrets)

    for name in _SDK_MODULES:
        sdk = sys.modules.get(name)
        if sdk is None:
            continue
        if isinstance(exc, sdk.APIResponseValidationError):
            return TransientBackendError(message("malformed response: "),
                                         status_code=getattr(exc, "status_code", None))
        if isinstance(exc, sdk.APITimeoutError):
            return APITimeoutError(message("request timed out: "))
        if isinstance(exc, sdk.APIConnectionError):
            return TransientBackendError(message("connection failed: "))
        if isinstance(exc, sdk.APIStatusError):
            return _status_error(exc, int(exc.status_code), message())
    if isinstance(exc, TimeoutError):  # asyncio.timeout / wait_for deadlines
        return APITimeoutError(message("request timed out: "))
    if isinstance(exc, json.JSONDecodeError):
        return TransientBackendError(message("malformed response: "))
    for name in _HTTP_MODULES:
        http = sys.modules.get(name)
        if http is None:
            continue
        if isinstance(exc, http.TimeoutException):
            return APITimeoutError(message("request timed out: "))
        if isinstance(exc, http.TransportError):
            return TransientBackendError(message("connection failed: "))
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: wait ~ min(max_delay, initial_delay * 2**i) + U(0, jitter).

    `sleep` is injectable so tests run fast (or record the waits).
    """

    max_retries: int = 6
    initial_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 1.0
    max_retry_after: float = 120.0
    sleep: SleepFn | None = field(default=None, compare=False)

    def wait_for(self, exc: BaseException | None, attempt_number: int) -> float:
        """Seconds to sleep after failed attempt number `attempt_number` (1-based)."""
        if isinstance(exc, BackendError) and exc.retry_after is not None:
            return min(max(0.0, exc.retry_after), self.max_retry_after)
        backoff = tenacity.wait_exponential_jitter(
            initial=self.initial_delay, max=self.max_delay, jitter=self.jitter)
        return float(backoff(_FakeState(attempt_number)))  # type: ignore[arg-type]

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        secrets: Iterable[str | Secret | None] = (),
        what: str = "request",
    ) -> tuple[T, int]:
        """Run `fn` under this policy; returns (result, retries spent).

        On failure raises the judgekit error of the last attempt, with `.retries` set. The SDK
        exception is not chained (its request object holds the key in its headers).
        """
        secrets = list(secrets)
        retries = 0

        async def attempt() -> T:
            mapped: BackendError | None = None
            try:
                return await fn()
            except BackendError:
                raise
            except Exception as exc:
                mapped = map_exception(exc, secrets)
                if mapped is None:
                    raise
            raise mapped  # outside the except block: no __context__ pointing at the SDK error

        def before_sleep(state: tenacity.RetryCallState) -> None:
            nonlocal retries
            retries += 1
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.info("%s failed (%s); retry %d/%d in %.2fs", what,
                        scrub(str(exc), secrets), retries, self.max_retries, wait)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=lambda state: self.wait_for(
                state.outcome.exception() if state.outcome else None, state.attempt_number),
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, BackendError) and e.retryable),
            sleep=self.sleep or asyncio.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            result: T = await retrying(attempt)
        except BackendError as err:
            err.retries = retries
            raise
        return result, retries


@dataclass
class _FakeState:
    """Just enough of tenacity.RetryCallState for its wait strategies."""

    attempt_number: int
