"""Anthropic's Message Batches: the requests go in the create call itself (no file), the job runs
within 24 h (`in_progress` -> `canceling` -> `ended`), and its results stream back as JSONL, one
line per request: `succeeded`, `errored`, `canceled` or `expired`.

The Messages API has no `n`, so each sample is its own request (as online, where n samples are
n parallel calls); each request's `params` are the online backend's own (`AnthropicBackend.request_params`).
The API keeps no metadata on a job, so `find` cannot recover a job whose id a crash lost (see
`judgekit.batch_api.run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

from judgekit.backends.anthropic_backend import AnthropicBackend
from judgekit.backends.anthropic_body import MessageBody, MessageUsageBody
from judgekit.backends.base import Completion, GenerationOutcome, GenerationResult
from judgekit.backends.body import MalformedBody, read_parsed
from judgekit.batch_api.base import (
    BatchProvider,
    BatchRequest,
    BatchRequestNotRun,
    JobStatus,
    request_error,
)

_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


class AnthropicBatchProvider(BatchProvider):
    """`anthropic:<model>` through Message Batches (100,000 requests per job at most)."""

    name = "anthropic"
    max_requests: ClassVar[int] = 100_000
    one_sample_per_request: ClassVar[bool] = True

    def params(self, request: BatchRequest) -> dict[str, Any]:
        """The request's params: the online backend's, minus the client-side timeout, with
        `extra_body` (temperature, top_p, user extras) merged in as the SDK would online."""
        backend = cast(AnthropicBackend, self.backend)
        params = backend.request_params(request.messages, request.config)
        params.pop("timeout", None)
        extra = params.pop("extra_body", None) or {}
        return {**params, **extra}

    async def submit(self, requests: Sequence[BatchRequest], tag: str) -> str:
        if any(r.n != 1 for r in requests):
            raise ValueError("Message Batches take one sample per request")
        body = [{"custom_id": r.custom_id, "params": self.params(r)} for r in requests]
        job = await self.managed(lambda: self.client.messages.batches.create(requests=body),
                                 "message batch create")
        return str(job.id)

    @staticmethod
    def _status(job: Any) -> JobStatus:
        counts = getattr(job, "request_counts", None)
        return JobStatus(
            state=str(job.processing_status), terminal=job.processing_status == "ended",
            counts={k: int(getattr(counts, k, 0) or 0) for k in _COUNTS}
            if counts is not None else {})

    async def retrieve(self, job_id: str) -> JobStatus:
        job = await self.managed(lambda: self.client.messages.batches.retrieve(job_id),
                                 "message batch retrieve")
        return self._status(job)

    async def cancel(self, job_id: str) -> JobStatus:
        job = await self.managed(lambda: self.client.messages.batches.cancel(job_id),
                                 "message batch cancel")
        return self._status(job)

    async def download(self, job_id: str) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            decoder = await self.client.messages.batches.results(job_id)
            return [item.to_dict() async for item in decoder]

        return await self.managed(fetch, "message batch results download")

    def read(self, line: dict[str, Any]) -> tuple[str, GenerationOutcome]:
        custom_id = str(line.get("custom_id"))
        result = line.get("result") or {}
        kind = result.get("type")
        if kind == "succeeded":
            try:
                message = read_parsed(MessageBody, result.get("message") or {})
            except MalformedBody as exc:
                return custom_id, self.malformed_result(exc)
            # Under a JSON schema the answer is the forced tool call's input, as online.
            text, _ = message.answer()
            usage = message.usage or MessageUsageBody()
            return custom_id, GenerationResult(
                completions=[Completion(text=text, finish_reason=message.stop_reason)],
                usage=self.usage(usage.input_tokens or 0, usage.output_tokens or 0))
        if kind == "errored":
            err = (result.get("error") or {}).get("error") or {}
            return custom_id, request_error(None, str(err.get("type") or "error"),
                                            str(err.get("message") or ""))
        if kind in ("canceled", "expired"):
            return custom_id, BatchRequestNotRun(f"the request was {kind} before it ran")
        return custom_id, BatchRequestNotRun(f"unknown batch result type {kind!r}")
