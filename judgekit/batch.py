"""The batch loop every judge shares: bounded concurrency, a progress bar that counts failed
items and retries, input order kept, an item's failure recorded on its Verdict instead of
aborting the batch, and an early stop with one clear error when the backend fails for everyone
(`RunAbortedError`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from judgekit.errors import (
    ITEM_FAILURES,
    RUN_FAILURES,
    APITimeoutError,
    AuthenticationError,
    RunAbortedError,
    ServerUnreachableError,
    describe_error,
    recorded_error_class,
)
from judgekit.rubric import PrinciplesMode, Rubric, as_principle
from judgekit.schema import Message, Principle, SampleStatus, Verdict

CONNECTION_FAILURES_TO_ABORT = 5
"""Consecutive items that got no answer from the server after which a batch stops."""

NO_ANSWER: tuple[type[Exception], ...] = (ServerUnreachableError, APITimeoutError)
"""The failures that mean the server gave no answer at all: it could not be reached (or the
circuit is open), or it accepted the request and ran out the deadline."""


class JudgeItem(BaseModel):
    """One thing to judge in a batch: a query (or conversation) and its responses, optionally
    a reference answer and a rubric (as `Judge.ascore` takes them)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    query: str | list[Message]
    responses: list[str] = Field(min_length=1)
    reference: str | None = None
    principles: list[Principle] | None = None
    principles_mode: PrinciplesMode | None = None

    @model_validator(mode="before")
    @classmethod
    def _rubric(cls, data: Any) -> Any:
        """Criteria in any form `principles=` accepts (tuples, dicts, names, or a Rubric, whose
        mode applies unless the item gives one)."""
        if not isinstance(data, dict) or data.get("principles") is None:
            return data
        value = data["principles"]
        if isinstance(value, Rubric):
            return {**data, "principles": value.principles,
                    "principles_mode": data.get("principles_mode") or value.mode}
        if isinstance(value, list | tuple):  # a rubric's mode is fixed unless given
            return {**data, "principles": [as_principle(v) for v in value],
                    "principles_mode": data.get("principles_mode") or PrinciplesMode.FIXED}
        return data


class SystemicFailureWatch:
    """Reads each finished item's recorded failures and says when the batch must stop: at once
    for a rejected key (AuthenticationError), and after `max_unreachable` items in a row that
    got no answer from the server (`NO_ANSWER`: unreachable, an open circuit, or timed out).
    Any item with a valid sample resets the run."""

    def __init__(self, max_unreachable: int = CONNECTION_FAILURES_TO_ABORT) -> None:
        self.max_unreachable = max_unreachable
        self.unreachable = 0
        self.error: str | None = None
        """The recorded error that explains the stop (the first of the run, not a later
        `CircuitOpenError` that only echoes it)."""

    @staticmethod
    def failure_kinds(verdict: Verdict) -> list[type[Exception]]:
        """The error classes of the item's failed calls (read back from the recorded text)."""
        texts = [s.error for s in verdict.samples if s.status is SampleStatus.API_ERROR]
        if not verdict.samples:
            texts.append(verdict.error)
        return [k for k in map(recorded_error_class, texts) if k is not None]

    def check(self, verdict: Verdict) -> str | None:
        """The reason to stop after this item, or None to go on."""
        if verdict.valid_samples > 0:
            self.unreachable = 0
            self.error = None
            return None
        kinds = self.failure_kinds(verdict)
        auth = next((k for k in kinds if issubclass(k, AuthenticationError)), None)
        if auth is not None:
            self.error = verdict.error
            return "the server rejected the API key or its access (AuthenticationError)"
        if kinds and all(issubclass(k, NO_ANSWER) for k in kinds):
            if self.unreachable == 0 or self.error is None or "CircuitOpenError" in self.error:
                self.error = verdict.error
            self.unreachable += 1
            if self.unreachable >= self.max_unreachable:
                if all(issubclass(k, ServerUnreachableError) for k in kinds):
                    return (f"{self.unreachable} items in a row could not reach the server "
                            "(ServerUnreachableError)")
                return (f"{self.unreachable} items in a row got no answer from the server "
                        "within the timeout (APITimeoutError)")
        return None


class ItemsBar:
    """A progress bar over items that shows trouble: once an item fails or a call is retried,
    the bar carries `failed=N, retries=M` (a run that meets faults must not look like a clean
    one). Shared by every loop that judges items (`score_batch`, Ray runs)."""

    def __init__(self, total: int, *, desc: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, disable=not enabled, desc=desc, unit="item")
        self.failed = 0
        self.retries = 0

    def done(self, verdict: Verdict) -> None:
        """Count one finished item."""
        self.failed += verdict.error is not None
        self.retries += verdict.usage.retries
        if self.failed or self.retries:
            self.bar.set_postfix(failed=self.failed, retries=self.retries, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


async def score_batch(
    items: Sequence[JudgeItem], score_one: Callable[[JudgeItem], Awaitable[Verdict]], *,
    model: str, samples: int, concurrency: int, progress: bool,
    on_result: Callable[[int, Verdict], Any] | None, desc: str,
    watch: SystemicFailureWatch | None = None,
) -> list[Verdict]:
    """Judge `items` with at most `concurrency` in flight; results in input order.

    An item whose judging raises one of `ITEM_FAILURES` becomes a Verdict with `error` set.
    When the backend fails for everyone (see `SystemicFailureWatch`), or a `RUN_FAILURES` error
    occurs (a damaged response cache), no further item starts, the items in flight finish and
    are recorded (`on_result`), and `RunAbortedError` is raised with one message that says why;
    a re-run of the same batch then resumes.
    """
    watch = watch if watch is not None else SystemicFailureWatch()
    out: list[Verdict | None] = [None] * len(items)
    bar = ItemsBar(len(items), desc=desc, enabled=progress)
    stop: list[tuple[str, str | None]] = []  # (why the batch stops, the error behind it)
    halted = False  # an unexpected error escaped: it propagates, and no item starts after it
    pending = iter(enumerate(items))  # shared by the workers: each item is taken exactly once

    async def one(idx: int, item: JudgeItem) -> None:
        start = time.perf_counter()
        try:
            verdict = await score_one(item)
        except RUN_FAILURES as exc:  # nothing judged: stop, and keep the item for a resume
            stop.append((str(exc), None))  # it names the file and the way out
            return
        except ITEM_FAILURES as exc:
            verdict = Verdict(item_id=item.id, n_responses=len(item.responses),
                              scores=[None] * len(item.responses), k=samples, model=model,
                              error=describe_error(exc),
                              wall_time_s=round(time.perf_counter() - start, 4))
        out[idx] = verdict
        bar.done(verdict)
        if on_result is not None:
            on_result(idx, verdict)
        reason = watch.check(verdict)
        if reason is not None:
            stop.append((reason, watch.error or "?"))

    async def worker() -> None:
        # `concurrency` workers pull items one at a time, rather than a task per item waiting
        # on a semaphore: a batch of 100,000 items holds `concurrency` coroutines, not 100,000
        # (and the garbage collector has that much less to walk).
        nonlocal halted
        for idx, item in pending:
            if stop or halted:
                return
            try:
                await one(idx, item)
            except BaseException:
                halted = True
                raise

    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(items)))))
    finally:
        bar.close()
    if stop:
        reason, cause = stop[0]
        finished = sum(v is not None for v in out)
        error = RunAbortedError(
            f"stopped after {finished} of {len(items)} items: {reason}."
            + (f" The error: {cause}." if cause else "")
            + " Finished items are kept; fix the cause and re-run to resume.",
            cause=reason, finished=finished, total=len(items))
        error.verdicts = {i: v for i, v in enumerate(out) if v is not None}
        raise error
    return [v for v in out if v is not None]


def verdicts_frame(verdicts: Sequence[Verdict]) -> Any:
    """A pandas DataFrame with one row per verdict."""
    import pandas as pd

    return pd.DataFrame([v.to_row() for v in verdicts])
