"""Per-backend throttling: bounded in-flight requests plus optional request/token budgets per minute.

Concurrency is an asyncio.Semaphore; the per-minute budgets are aiolimiter leaky buckets (a small,
well-kept library, so no home-made token bucket). Both are per event loop (see `LoopLocal`).
The slot is taken per HTTP attempt, not per retried call, so a task sleeping in backoff does not
hold a connection slot, and every retry spends request budget just like the server counts it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from judgekit.looplocal import LoopLocal
from judgekit.schema import Message


@dataclass
class _LoopState:
    semaphore: Any  # asyncio.Semaphore
    rpm: Any | None  # aiolimiter.AsyncLimiter
    tpm: Any | None


def estimate_tokens(messages: list[Message], max_tokens: int, n: int = 1) -> int:
    """A cheap upper-ish estimate of the tokens one request spends, for the tokens-per-minute budget.

    About 4 characters per token for the prompt plus the full completion allowance for each of the
    `n` completions; good enough to stay under a provider's TPM limit without a tokenizer.
    """
    prompt = sum(len(m.get("content", "")) for m in messages) // 4 + 4 * len(messages)
    return prompt + max_tokens * n


class Throttle:
    """Limits one backend instance: at most `max_concurrency` requests in flight, and optionally
    `requests_per_minute` / `tokens_per_minute`."""

    def __init__(
        self,
        max_concurrency: int = 8,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        period: float = 60.0,
    ) -> None:
        """`period` is the budget window in seconds (60: per minute; tests use shorter ones)."""
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        for name, value in (("requests_per_minute", requests_per_minute),
                            ("tokens_per_minute", tokens_per_minute)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0")
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.period = period
        self._state: LoopLocal[_LoopState] = LoopLocal(self._new_state)

    def _new_state(self) -> _LoopState:
        import asyncio

        rpm = tpm = None
        if self.requests_per_minute or self.tokens_per_minute:
            from aiolimiter import AsyncLimiter

            if self.requests_per_minute:
                rpm = AsyncLimiter(self.requests_per_minute, self.period)
            if self.tokens_per_minute:
                tpm = AsyncLimiter(self.tokens_per_minute, self.period)
        return _LoopState(asyncio.Semaphore(self.max_concurrency), rpm, tpm)

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        """Hold one request slot; `tokens` is the request's estimated token spend."""
        state = self._state.get()
        async with state.semaphore:
            if state.rpm is not None:
                await state.rpm.acquire()
            if state.tpm is not None and tokens > 0:
                # A request larger than the whole budget waits for a full bucket, not forever.
                await state.tpm.acquire(min(float(tokens), state.tpm.max_rate))
            yield

    def __repr__(self) -> str:
        return (f"Throttle(max_concurrency={self.max_concurrency}, "
                f"requests_per_minute={self.requests_per_minute}, "
                f"tokens_per_minute={self.tokens_per_minute})")
