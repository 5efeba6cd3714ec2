"""The one retry policy for remote backends: when to try a failed call again, and how long to wait.

The provider SDKs' own retries are switched off (max_retries=0) so that every retry happens here,
is counted in `Usage.retries`, and follows one rule set. The policy sees judgekit errors only:
each backend maps its SDK's exceptions at its boundary (`RemoteBackend.map_error`) and decides
which of them are worth another attempt (`Backend.should_retry`), so adding a provider touches
nothing here.

* backoff: exponential with jitter, `initial_delay * 2**i` capped at `max_delay`, plus U(0, jitter)
  (tenacity's `wait_exponential_jitter`);
* a server's Retry-After (carried on the error as `retry_after`) replaces the backoff for that
  wait, capped at `max_retry_after`;
* budgets: `max_retries` for transient errors (429, 5xx, timeouts, dropped connections), the
  short `connect_retries` with `connect_delay` for a server that cannot be reached at all
  (`ServerUnreachableError`), so a dead server fails in about a second, and `timeout_retries`
  for attempts that ran out of time (`APITimeoutError`): a server that accepts connections and
  never answers costs (timeout_retries + 1) timeouts per call, not (max_retries + 1). A
  timed-out attempt is retried at once: it has already waited its whole timeout.

Re-asking after an unparsable judgement is a different policy and lives in the judge, not here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

from judgekit.errors import APITimeoutError, BackendError, ServerUnreachableError

log = logging.getLogger("judgekit.retry")

T = TypeVar("T")
SleepFn = Callable[[float], Awaitable[None]]
RetryPredicate = Callable[[BackendError], bool]


def _retryable(error: BackendError) -> bool:
    return error.retryable


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
    connect_retries: int = 2
    connect_delay: float = 0.25
    timeout_retries: int = 1
    sleep: SleepFn | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_retries", "connect_retries", "timeout_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")

    def budget(self, error: BaseException | None) -> int:
        """How many retries a call that fails with `error` may spend in all."""
        if isinstance(error, ServerUnreachableError):
            return min(self.connect_retries, self.max_retries)
        return self.max_retries

    def gives_up(self, error: BaseException, attempt: int, timeouts: int) -> bool:
        """True when failed attempt number `attempt` (1-based) ends the call: the error's budget
        is spent, or this was timed-out attempt number `timeouts` and `timeout_retries` are
        spent (timed-out attempts of a call are counted apart: each one costs a whole timeout)."""
        if attempt > self.budget(error):
            return True
        return isinstance(error, APITimeoutError) and timeouts > self.timeout_retries

    def wait_for(self, exc: BaseException | None, attempt_number: int) -> float:
        """Seconds to sleep after failed attempt number `attempt_number` (1-based)."""
        if isinstance(exc, BackendError) and exc.retry_after is not None:
            return min(max(0.0, exc.retry_after), self.max_retry_after)
        if isinstance(exc, ServerUnreachableError):
            return min(self.connect_delay * 2 ** (attempt_number - 1), self.max_delay)
        if isinstance(exc, APITimeoutError):
            return 0.0  # the attempt has just waited out its whole timeout
        backoff = tenacity.wait_exponential_jitter(
            initial=self.initial_delay, max=self.max_delay, jitter=self.jitter)
        return float(backoff(_FakeState(attempt_number)))  # type: ignore[arg-type]

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        should_retry: RetryPredicate = _retryable,
        what: str = "request",
    ) -> tuple[T, int]:
        """Run `fn` under this policy; returns (result, retries spent).

        `fn` raises `BackendError`s for failed calls (anything else is a bug and propagates at
        once); `should_retry` is the backend's judgement of which are worth another attempt. On
        failure raises the error of the last attempt, with `.retries` set.
        """
        sleep = self.sleep or asyncio.sleep
        attempt = timeouts = 0
        while True:  # a plain loop: the common first-attempt success costs nothing extra
            attempt += 1
            try:
                return await fn(), attempt - 1
            except BackendError as err:
                timeouts += isinstance(err, APITimeoutError)
                if not should_retry(err) or self.gives_up(err, attempt, timeouts):
                    err.retries = attempt - 1
                    raise
                wait = self.wait_for(err, attempt)
                log.info("%s failed (%s); retry %d/%d in %.2fs", what, err, attempt,
                         self.budget(err), wait)
            await sleep(wait)


@dataclass
class _FakeState:
    """Just enough of tenacity.RetryCallState for its wait strategies."""

    attempt_number: int
