"""OpenAI's Batch API: a JSONL file of chat-completion requests is uploaded (`files`, purpose
`batch`), run as one job (`batches`, 24 h window), and read back from its output file (successes)
and error file (per-request errors, and requests the job never ran: `batch_expired`,
`batch_cancelled`).

Each request's body is the online backend's own request body (`OpenAIBackend.request_params`,
with the constraint `OpenAIBackend.structured_request` resolves for the server's flavour), so a
batch request and an online call ask the model the same thing: `n` samples in one request, the
same seed, token limit, `extra_body` and JSON schema or none (a server that says nothing about
itself gets free text either way, recorded on each completion).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from judgekit.backends.base import GenerationOutcome, GenerationResult
from judgekit.backends.body import MalformedBody, read_parsed
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.backends.openai_body import (
    ChatCompletionBody,
    UsageBody,
    completion_from_choice,
)
from judgekit.batch_api.base import (
    BatchProvider,
    BatchRequest,
    BatchRequestNotRun,
    JobStatus,
    request_error,
)
from judgekit.config import GenerationConfig
from judgekit.errors import TransientBackendError

ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "expired", "cancelled", "failed"})
_NOT_RUN_CODES = frozenset({"batch_expired", "batch_cancelled"})


class OpenAIBatchProvider(BatchProvider):
    """`openai:<model>` through the Batch API (50,000 requests per job at most)."""

    name = "openai"
    max_requests: ClassVar[int] = 50_000

    @property
    def openai(self) -> OpenAIBackend:
        return cast(OpenAIBackend, self.backend)

    async def prepare(self, config: GenerationConfig) -> None:
        await self.openai.resolve_flavour(config)

    def fallback_note(self, config: GenerationConfig) -> str | None:
        return self.openai.structured_request(config)[1]

    def body(self, request: BatchRequest) -> dict[str, Any]:
        """The request body: the online backend's parameters, minus the client-side timeout,
        with `extra_body` merged in (the SDK would merge it into the body online). `prepare`
        has resolved the server's flavour."""
        structured, _ = self.openai.structured_request(request.config)
        params = self.openai.request_params(request.messages, request.config, request.n, 0,
                                            structured)
        params.pop("timeout", None)
        extra = params.pop("extra_body", None) or {}
        return {**params, **extra}

    def jsonl(self, requests: Sequence[BatchRequest]) -> bytes:
        lines = [json.dumps({"custom_id": r.custom_id, "method": "POST", "url": ENDPOINT,
                             "body": self.body(r)}, ensure_ascii=False) for r in requests]
        return ("\n".join(lines) + "\n").encode("utf-8")

    async def submit(self, requests: Sequence[BatchRequest], tag: str) -> str:
        data = self.jsonl(requests)
        uploaded = await self.managed(
            lambda: self.client.files.create(file=(f"{tag}.jsonl", data, "application/jsonl"),
                                             purpose="batch"), "batch file upload")
        job = await self.managed(
            lambda: self.client.batches.create(
                input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
                metadata={"judgekit_job": tag}), "batch create")
        return str(job.id)

    @staticmethod
    def _status(job: Any) -> JobStatus:
        counts = getattr(job, "request_counts", None)
        errors = getattr(getattr(job, "errors", None), "data", None) or []
        error = "; ".join(f"{getattr(e, 'code', None)}: {getattr(e, 'message', None)}"
                          for e in errors) or None
        return JobStatus(
            state=str(job.status), terminal=job.status in TERMINAL, error=error,
            counts={k: int(getattr(counts, k, 0) or 0) for k in ("total", "completed", "failed")}
            if counts is not None else {})

    async def retrieve(self, job_id: str) -> JobStatus:
        job = await self.managed(lambda: self.client.batches.retrieve(job_id), "batch retrieve")
        return self._status(job)

    async def cancel(self, job_id: str) -> JobStatus:
        job = await self.managed(lambda: self.client.batches.cancel(job_id), "batch cancel")
        return self._status(job)

    async def download(self, job_id: str) -> list[dict[str, Any]]:
        job = await self.managed(lambda: self.client.batches.retrieve(job_id), "batch retrieve")
        lines: list[dict[str, Any]] = []
        for file_id in (job.output_file_id, job.error_file_id):
            if not file_id:
                continue
            text = await self._file_text(file_id)
            lines.extend(json.loads(line) for line in text.splitlines() if line.strip())
        return lines

    async def _file_text(self, file_id: str) -> str:
        content = await self.managed(lambda: self.client.files.content(file_id),
                                     "batch results download")
        return str(content.text)

    def read(self, line: dict[str, Any]) -> tuple[str, GenerationOutcome]:
        custom_id = str(line.get("custom_id"))
        error = line.get("error")
        if error:  # the job never ran it, or a request-level failure without a response
            code = str(error.get("code") or "")
            message = str(error.get("message") or "")
            if code in _NOT_RUN_CODES:
                return custom_id, BatchRequestNotRun(f"{code}: {message}")
            return custom_id, request_error(None, code or "error", message)
        response = line.get("response") or {}
        status = int(response.get("status_code") or 0)
        body = response.get("body") or {}
        if status != 200:
            err = body.get("error") if isinstance(body, dict) else None
            err = err if isinstance(err, dict) else {}
            return custom_id, request_error(status, str(err.get("type") or err.get("code")
                                                         or "error"),
                                            str(err.get("message") or body))
        try:
            completion = read_parsed(ChatCompletionBody, body)
        except MalformedBody as exc:
            return custom_id, self.malformed_result(exc)
        if not completion.choices:
            return custom_id, TransientBackendError(f"{self.backend.spec}: batch response "
                                                    "without choices")
        usage = completion.usage or UsageBody()
        return custom_id, GenerationResult(
            completions=[completion_from_choice(c) for c in completion.choices],
            usage=self.usage(usage.prompt_tokens or 0, usage.completion_tokens or 0))

    async def find(self, tag: str) -> str | None:
        """A job submitted with `tag` among the newest 100 (its id was lost in a crash between
        the provider creating it and the run directory recording it)."""
        page = await self.managed(lambda: self.client.batches.list(limit=100), "batch list")
        for job in getattr(page, "data", []) or []:
            if (getattr(job, "metadata", None) or {}).get("judgekit_job") == tag:
                return str(job.id)
        return None
