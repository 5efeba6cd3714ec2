"""What every provider's batch API shares: requests with stable custom ids, job states, and
results read back as the outcomes an online call gives (`GenerationResult` or a `BackendError`),
so the sampler cannot tell a batch result from an online one.

A provider is one module with a `BatchProvider` subclass (SDK imported lazily, through the
judge's own backend: same key, base URL, retry policy and secrets). It submits a list of
`BatchRequest`s as one provider job, reports the job's state, cancels it, downloads its raw result
lines and reads each line into (custom id, outcome). Everything else (chunking, the run
directory, resuming, resubmitting, voting) is provider-free, in `judgekit.batch_api.run`.

Errors of one request inside a finished job extend the tree of `judgekit.errors`::

    BackendError
    ├── TransientBackendError
    │   └── BatchRequestNotRun   the job ended before the request ran (expired, cancelled,
    │                            the job failed, or no result line came back)
    └── (an errored request maps like an online HTTP error: 429/5xx transient, 4xx fatal)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, Field

from judgekit.backends.base import GenerationOutcome
from judgekit.backends.body import MalformedBody
from judgekit.backends.remote import RemoteBackend
from judgekit.config import GenerationConfig
from judgekit.cost import Price, call_cost
from judgekit.errors import (
    AuthenticationError,
    BackendError,
    FatalBackendError,
    RateLimitError,
    TransientBackendError,
)
from judgekit.schema import Message, Usage

T = TypeVar("T")


class BatchRequestNotRun(TransientBackendError):
    """The provider did not run this request: the job expired or was cancelled first, the whole
    job failed, or its results hold no line for it. Resubmitting it may succeed."""


def request_error(status: int | None, kind: str, message: str) -> BackendError:
    """The judgekit error of one request that errored inside a batch, mapped as the same HTTP
    error of an online call would be (so a recorded failure reads the same either way)."""
    text = f"batch request failed ({kind}{', HTTP ' + str(status) if status else ''}): {message}"
    if status == 429 or kind == "rate_limit_error":
        return RateLimitError(text, status_code=status)
    if status in (401, 403) or kind in ("authentication_error", "permission_error"):
        return AuthenticationError(text, status_code=status)
    if (status is not None and status >= 500) or kind in ("api_error", "overloaded_error",
                                                          "server_error", "request_timeout"):
        return TransientBackendError(text, status_code=status)
    return FatalBackendError(text, status_code=status)


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: `n` samples of one prompt under `config`, named `custom_id`."""

    custom_id: str
    messages: list[Message]
    n: int
    config: GenerationConfig


class JobStatus(BaseModel):
    """A provider job as last seen. `state` is the provider's own word (OpenAI: validating,
    in_progress, finalizing, completed, expired, cancelling, cancelled, failed; Anthropic:
    in_progress, canceling, ended); `terminal` says no further change will come."""

    state: str
    terminal: bool = False
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = Field(None, description="why the whole job failed, where it did")


class BatchProvider(ABC):
    """One provider's batch endpoints, driven through the judge's online backend.

    Subclasses set `name`, `max_requests` (the provider's cap per job), and
    `one_sample_per_request` (True where the API has no `n`: each sample is its own request).
    """

    name: ClassVar[str]
    max_requests: ClassVar[int]
    one_sample_per_request: ClassVar[bool] = False

    def __init__(self, backend: RemoteBackend[Any],
                 batch_prices: Mapping[str, Price] | None = None) -> None:
        self.backend = backend
        self.batch_prices = dict(batch_prices) if batch_prices else None

    @property
    def client(self) -> Any:
        """The SDK client of the running event loop (the backend's own)."""
        return self.backend.client

    async def managed(self, fn: Callable[[], Awaitable[T]], what: str) -> T:
        """One management call (upload, create, retrieve, cancel, download) under the backend's
        retry policy, its SDK errors mapped and scrubbed of secrets like an online call's."""
        result, _ = await self.backend.sdk_call(fn, what=what)
        return result

    def malformed_result(self, exc: MalformedBody) -> BackendError:
        """The recorded failure of a batch result whose body cannot be read: transient, as
        online, so the sample can be sent again."""
        return TransientBackendError(f"{self.backend.spec}: malformed batch response: {exc}")

    def usage(self, prompt_tokens: int, completion_tokens: int) -> Usage:
        """One batch request's usage, priced at the batch tier (0.0 on a loopback server)."""
        cost = call_cost(self.backend.model, prompt_tokens, completion_tokens, self.batch_prices,
                         local=self.backend.local, tier="batch")
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, calls=1,
                     cost_usd=cost)

    async def prepare(self, config: GenerationConfig) -> None:
        """Resolve, once, what requests of `config` carry to this server, as the online backend
        does before its first call (an OpenAI-compatible server's flavour)."""
        return None

    def fallback_note(self, config: GenerationConfig) -> str | None:
        """Why a request of `config` goes without its JSON schema (recorded on each completion,
        as online: `Completion.structured_fallback`), or None when it carries it."""
        return None

    @abstractmethod
    async def submit(self, requests: Sequence[BatchRequest], tag: str) -> str:
        """Create one provider job for `requests`; returns its id. `tag` names the job where the
        provider keeps metadata (so `find` can recover a job whose id was never stored)."""

    @abstractmethod
    async def retrieve(self, job_id: str) -> JobStatus:
        """The job's current state."""

    @abstractmethod
    async def cancel(self, job_id: str) -> JobStatus:
        """Ask the provider to cancel the job; requests already done keep their results."""

    @abstractmethod
    async def download(self, job_id: str) -> list[dict[str, Any]]:
        """Every raw result line of a terminal job (successes and per-request errors)."""

    @abstractmethod
    def read(self, line: dict[str, Any]) -> tuple[str, GenerationOutcome]:
        """One raw result line as (custom id, the outcome an online call would have given)."""

    async def find(self, tag: str) -> str | None:
        """The id of a job submitted with `tag`, where the provider can say; else None."""
        return None
