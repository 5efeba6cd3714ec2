"""The batch loop every judge shares: bounded concurrency, a progress bar, input order kept, and
an item's failure recorded on its Verdict instead of aborting the batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from judgekit.errors import ITEM_FAILURES, describe_error
from judgekit.schema import Message, Verdict


class JudgeItem(BaseModel):
    """One thing to judge in a batch: a query (or conversation) and its responses."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    query: str | list[Message]
    responses: list[str] = Field(min_length=1)


async def score_batch(
    items: Sequence[JudgeItem], score_one: Callable[[JudgeItem], Awaitable[Verdict]], *,
    model: str, samples: int, concurrency: int, progress: bool,
    on_result: Callable[[int, Verdict], Any] | None, desc: str,
) -> list[Verdict]:
    """Judge `items` with at most `concurrency` in flight; results in input order.

    An item whose judging raises one of `ITEM_FAILURES` becomes a Verdict with `error` set.
    """
    from tqdm.auto import tqdm

    limit = asyncio.Semaphore(concurrency)
    out: list[Verdict | None] = [None] * len(items)
    bar = tqdm(total=len(items), disable=not progress, desc=desc, unit="item")

    async def one(idx: int, item: JudgeItem) -> None:
        async with limit:
            start = time.perf_counter()
            try:
                verdict = await score_one(item)
            except ITEM_FAILURES as exc:
                verdict = Verdict(item_id=item.id, n_responses=len(item.responses),
                                  scores=[None] * len(item.responses), k=samples, model=model,
                                  error=describe_error(exc),
                                  wall_time_s=round(time.perf_counter() - start, 4))
            out[idx] = verdict
            bar.update(1)
            if on_result is not None:
                on_result(idx, verdict)

    try:
        await asyncio.gather(*(one(i, it) for i, it in enumerate(items)))
    finally:
        bar.close()
    return [v for v in out if v is not None]


def verdicts_frame(verdicts: Sequence[Verdict]) -> Any:
    """A pandas DataFrame with one row per verdict."""
    import pandas as pd

    return pd.DataFrame([v.to_row() for v in verdicts])
