"""Per-backend throttling that holds across event loops and threads: optional bounded in-flight
requests, and optional request / token budgets per minute.

One backend instance is used from many places over its life: `Judge.score()` runs a fresh event
loop per call (`asyncio.run`), notebooks and `score_many` inside Jupyter run one in a worker
thread, and users call a judge from several threads. A limit kept per event loop would reset on
every call (six `score()` calls at 2 requests per minute ran at once), so each limit here is ONE
object per backend: its state sits behind a `threading.Lock` (held for a little arithmetic, never
across an await), and waiting is `asyncio.sleep` or a future of the waiter's own loop.

Why not a library: aiolimiter (used before) keeps its waiters as futures of one event loop, so it
cannot be shared across loops or threads. pyrate-limiter's default in-memory bucket and limits'
moving window log one entry per unit of weight (millions for a tokens-per-minute budget), and
with either, a wait shared by threads and event loops would still be ours to write. A token bucket
with reservations is a few lines of arithmetic under a lock.

The slot is taken per HTTP attempt, not per retried call, so a task sleeping in backoff does not
hold a connection slot, and every retry spends request budget just as the server counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from judgekit.schema import Message


def estimate_tokens(messages: list[Message], max_tokens: int, n: int = 1) -> int:
    """A cheap upper-ish estimate of the tokens one request spends, for the tokens-per-minute budget.

    About 4 characters per token for the prompt plus the full completion allowance for each of the
    `n` completions; good enough to stay under a provider's TPM limit without a tokenizer.
    """
    prompt = sum(len(m.get("content", "")) for m in messages) // 4 + 4 * len(messages)
    return prompt + max_tokens * n


class TokenBucket:
    """`budget` units per `period` seconds, refilled continuously, holding at most `burst` units
    (default: one second's worth, at least one unit and at most the period's budget). In any
    window of t seconds at most `budget * t / period + burst` units are granted: a per-minute
    budget never goes out as a burst at the start of the minute, which providers that count
    per second or over a sliding window answer with 429s. (The bucket used to hold a whole
    period's budget: 60 requests per minute went out in under 2 s.)

    `acquire(amount)` reserves at once (the level may go below zero) and then sleeps for as long
    as the reservation takes to be covered, so waiters are served in arrival order, from any
    thread or event loop, without polling. A cancelled waiter gives its reservation back.
    """

    def __init__(self, budget: float, period: float = 60.0, *,
                 burst: float | None = None) -> None:
        if budget <= 0 or period <= 0:
            raise ValueError("budget and period must be > 0")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.budget = float(budget)
        self.period = float(period)
        self._rate = self.budget / self.period
        # one second's worth, but never more than one period's budget (periods under a second
        # are for tests) nor less than one unit
        self.capacity = float(burst) if burst is not None else max(1.0, min(self.budget,
                                                                            self._rate))
        self._level = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, amount: float) -> float:
        """Take `amount` (at most a whole period's budget) now; returns the seconds to wait
        before using it."""
        amount = min(float(amount), self.budget)
        with self._lock:
            now = time.monotonic()
            self._level = min(self.capacity, self._level + (now - self._stamp) * self._rate)
            self._stamp = now
            self._level -= amount
            return 0.0 if self._level >= 0 else -self._level / self._rate

    def refund(self, amount: float) -> None:
        """Give back a reservation that was not used."""
        with self._lock:
            self._level = min(self.capacity, self._level + min(float(amount), self.budget))

    async def acquire(self, amount: float = 1.0) -> None:
        wait = self.reserve(amount)
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                self.refund(amount)
                raise

    def acquire_sync(self, amount: float = 1.0) -> None:
        wait = self.reserve(amount)
        if wait > 0:
            time.sleep(wait)


class ConcurrencyLimit:
    """A semaphore shared by every event loop and thread: at most `limit` holders at once.

    Waiters queue in arrival order as futures of their own loop; a release hands the slot to the
    first live waiter through `call_soon_threadsafe`.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.limit = limit
        self._free = limit
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._lock = threading.Lock()

    async def acquire(self) -> None:
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            loop = asyncio.get_running_loop()
            entry = (loop, loop.create_future())
            self._waiters.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            with self._lock:
                queued = entry in self._waiters
                if queued:
                    self._waiters.remove(entry)
            if not queued and entry[1].done() and not entry[1].cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, fut = self._waiters.popleft()
                if loop.is_closed():
                    continue
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._grant, fut)
                    return
            self._free += 1

    def _grant(self, fut: asyncio.Future[None]) -> None:
        if fut.cancelled():
            self.release()  # its waiter is gone: pass the slot on
        else:
            fut.set_result(None)

    @property
    def in_use(self) -> int:
        with self._lock:
            return self.limit - self._free


class Throttle:
    """Limits one backend instance, across every event loop and thread that uses it.

    `max_concurrency=None` (the default) sets no cap on requests in flight: the caller's own
    concurrency (a Judge's item workers, `score_many(concurrency=N)`, `bench run --concurrency`)
    is the cap. `requests_per_minute` / `tokens_per_minute` are token buckets over `period`
    holding one second's worth; `burst` sets how many requests may go out at once instead.
    """

    def __init__(
        self,
        max_concurrency: int | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        period: float = 60.0,
        burst: int | None = None,
    ) -> None:
        """`period` is the budget window in seconds (60: per minute; tests use shorter ones)."""
        for name, value in (("requests_per_minute", requests_per_minute),
                            ("tokens_per_minute", tokens_per_minute)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0")
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.period = period
        self.burst = burst
        self._slots = ConcurrencyLimit(max_concurrency) if max_concurrency is not None else None
        self._rpm = (TokenBucket(requests_per_minute, period, burst=burst)
                     if requests_per_minute else None)
        self._tpm = TokenBucket(tokens_per_minute, period) if tokens_per_minute else None
        self.unlimited = self._slots is None and self._rpm is None and self._tpm is None

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        """Hold one request slot; `tokens` is the request's estimated token spend."""
        if self._slots is not None:
            await self._slots.acquire()
        try:
            if self._rpm is not None:
                await self._rpm.acquire(1)
            if self._tpm is not None and tokens > 0:
                # A request larger than the whole budget takes a period's worth, not forever.
                await self._tpm.acquire(tokens)
            yield
        finally:
            if self._slots is not None:
                self._slots.release()

    def __repr__(self) -> str:
        return (f"Throttle(max_concurrency={self.max_concurrency}, "
                f"requests_per_minute={self.requests_per_minute}, "
                f"tokens_per_minute={self.tokens_per_minute})")
