"""Provider batch APIs (OpenAI Batch, Anthropic Message Batches): half the price of online calls
and no rate limits to fight, for runs of 10^4 items and more.

    handle = await asubmit_batch(judge, items, samples=4, run_dir="runs/b1")
    verdicts = await handle.acollect()              # polls until the provider is done
    verdicts = collect_batch("runs/b1", judge)      # later, from another process

The run directory holds the whole state (see `judgekit.batch_api.run`); results go through the
judge's own sampler, meta judge and vote. SDKs are imported when a provider is used.
"""

from judgekit.batch_api.base import BatchProvider, BatchRequest, BatchRequestNotRun, JobStatus
from judgekit.batch_api.run import (
    BatchHandle,
    BatchNotReady,
    BatchRunError,
    BatchScorer,
    acollect_batch,
    asubmit_batch,
    collect_batch,
    open_batch,
    submit_batch,
)

__all__ = [
    "BatchHandle",
    "BatchNotReady",
    "BatchProvider",
    "BatchRequest",
    "BatchRequestNotRun",
    "BatchRunError",
    "BatchScorer",
    "JobStatus",
    "acollect_batch",
    "asubmit_batch",
    "collect_batch",
    "open_batch",
    "submit_batch",
]
