"""The one small async protocol every backend implements.

A new provider is one module with a class that satisfies `Backend`, registered in
`judgekit.backends.registry`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field

from judgekit.config import GenerationConfig
from judgekit.schema import Message, Usage


class TokenLogprob(BaseModel):
    """One generated token with its log-probability and the top alternatives where given."""

    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class Completion(BaseModel):
    text: str
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None


class GenerationResult(BaseModel):
    """`usage` covers the whole call (prompt billed once for n choices, retries included)."""

    completions: list[Completion]
    usage: Usage = Field(default_factory=Usage)


@runtime_checkable
class Backend(Protocol):
    """Generate `n` completions of one chat prompt."""

    @property
    def spec(self) -> str:
        """The model spec string, without secrets (used in cache keys and results)."""
        ...

    async def generate(
        self, messages: list[Message], config: GenerationConfig, n: int = 1
    ) -> GenerationResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ScoreForcingBackend(Backend, Protocol):
    """A backend that can complete a scores line under a grammar (local models only).

    Each of `prefixes` is assistant text so far (one failed sample each); the result holds one
    forced continuation per prefix, in order, each matching `Scores: \\boxed{s1, ..., sn}` with
    integers 1-10. All prefixes are completed in one batched call.
    """

    async def force_scores(
        self, messages: list[Message], prefixes: list[str], n_responses: int,
        config: GenerationConfig,
    ) -> GenerationResult: ...
