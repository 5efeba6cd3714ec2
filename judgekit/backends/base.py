"""The one small async protocol every backend implements, with its capabilities declared.

A new provider is one module with a subclass of `Backend`, registered in
`judgekit.backends.registry`. What a backend can do beyond `generate` is declared in its
`CAPABILITIES` (never probed with hasattr): the sampler reads them to decide whether to batch
every prompt of an item into one call, send a grammar or a JSON schema, or complete a scores line
under a grammar when free text did not parse. Defaults are the safe ones (inspect_ai's `ModelAPI`
style), so a minimal provider implements `spec` and `generate` only.

Errors are mapped once, at the backend's boundary: a backend raises `BackendError` subclasses
(`judgekit.errors`) for every failure of the model call, and nothing else (a bug propagates as
itself). Which of those errors are worth a retry is the provider's decision (`should_retry`).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from judgekit.config import GenerationConfig
from judgekit.errors import BackendError, CapabilityError, is_recorded_failure
from judgekit.schema import Message, Usage


class TokenLogprob(BaseModel):
    """One generated token with its log-probability and the top alternatives where given."""

    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


KNOWN_CUTOFF_REASONS = frozenset({"length", "content_filter", "max_tokens",
                                  "model_context_window_exceeded", "refusal"})
"""Every provider's spelling of "the answer was cut off" known to judgekit (OpenAI's and the
compatible servers' `length` and `content_filter`; Anthropic's `max_tokens`,
`model_context_window_exceeded` and `refusal`): the cut-off reasons of a backend that declares
none, so that an undeclared provider errs on the side of refusing text."""


class Completion(BaseModel):
    text: str
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    structured_fallback: str | None = Field(
        None, description="set when the request carried a JSON schema but this text was written "
        "without it (the server refused the parameter, or is not known to support one): why. "
        "The text is then free text, read by the format's text parser")


class GenerationResult(BaseModel):
    """`usage` covers the whole call (prompt billed once for n choices, retries included)."""

    completions: list[Completion]
    usage: Usage = Field(default_factory=Usage)


class BackendCapabilities(BaseModel):
    """What a backend can do beyond plain `generate`. Every flag defaults to the safe `False`,
    and the cut-off reasons to every spelling judgekit knows."""

    model_config = ConfigDict(frozen=True)

    batched: bool = Field(False, description="generate_many runs all its prompts in ONE batched "
                          "model call (local models); otherwise prompts are sent concurrently")
    grammar: bool = Field(False, description="honours GenerationConfig.grammar (EBNF) while "
                          "decoding")
    complete_under_grammar: bool = Field(
        False, description="can continue given assistant text under a grammar: the sampler "
        "completes an unreadable sample's scores line this way (status `forced`)")
    logprobs: bool = Field(False, description="returns token log-probabilities when asked")
    json_schema: bool = Field(
        False, description="honours GenerationConfig.json_schema: the output is JSON under the "
        "schema (OpenAI strict json_schema, an Anthropic forced tool call, a compatible server's "
        "guided decoding). A server that refuses the parameter is answered in free text once "
        "more, and each such completion says so (`Completion.structured_fallback`)")
    cutoff_reasons: frozenset[str] = Field(
        KNOWN_CUTOFF_REASONS, description="the provider's complete list of finish reasons that "
        "mean the answer did not end by itself (token limit, context window, content filter, "
        "refusal): such text is never read as it stands, whatever box it holds")

    def cut_off(self, completion: Completion) -> bool:
        """Whether `completion` stopped for one of this provider's cut-off reasons."""
        return completion.finish_reason in self.cutoff_reasons


GenerationRequest = tuple[list[Message], int]
"""One prompt and how many samples to draw from it."""

GenerationOutcome = GenerationResult | BackendError
"""What `generate_many` returns per request: the result, or the recorded failure of its call."""


class Backend(ABC):
    """Generate `n` completions of one chat prompt.

    Subclasses set `CAPABILITIES` and implement `spec` and `generate`; they override
    `generate_many` and `complete_under_grammar` only when they declare those capabilities.
    """

    CAPABILITIES: ClassVar[BackendCapabilities] = BackendCapabilities()

    @property
    def capabilities(self) -> BackendCapabilities:
        """The declared capabilities (a wrapper such as the cache reports its inner backend's)."""
        return self.CAPABILITIES

    @property
    @abstractmethod
    def spec(self) -> str:
        """The model spec string, without secrets (used in cache keys and results)."""

    @property
    def identity(self) -> str:
        """The model without where it is served (`spec` less any base URL): what results are
        compared by, so a server restarted on another port is the same model."""
        return self.spec

    @property
    def endpoint(self) -> str | None:
        """Where the model is served, when `spec` names a base URL; recorded, never compared."""
        return None

    def settings(self) -> dict[str, str | None]:
        """Backend settings that change results beyond the model (an OpenAI-compatible
        server's flavour decides which constraint its requests carry); none by default."""
        return {}

    @abstractmethod
    async def generate(self, messages: list[Message], config: GenerationConfig,
                       n: int = 1) -> GenerationResult:
        """n completions of `messages`; raises a `BackendError` subclass on failure."""

    async def generate_many(self, requests: list[GenerationRequest],
                            config: GenerationConfig) -> list[GenerationOutcome]:
        """Several prompts, n samples each; one outcome per request, in order.

        A failed call is returned in its place (it becomes a recorded sample failure) so that
        the other requests' results and usage are kept. The default sends the requests
        concurrently; batched local backends run them in one model call.
        """
        if len(requests) == 1:  # the common case (one prompt for all k): no task to schedule
            messages, n = requests[0]
            try:
                return [await self.generate(messages, config, n)]
            except Exception as exc:
                return [_as_outcome(exc)]
        gathered = await asyncio.gather(*(self.generate(m, config, n) for m, n in requests),
                                        return_exceptions=True)
        return [_as_outcome(g) for g in gathered]

    async def complete_under_grammar(self, messages: list[Message], prefixes: list[str],
                                     grammar: str, config: GenerationConfig) -> GenerationResult:
        """Continue each prefix (assistant text so far) under `grammar`, greedily; one
        completion per prefix, in order. Only backends that declare the capability have it."""
        raise CapabilityError(f"{self.spec} cannot complete text under a grammar")

    def should_retry(self, error: BackendError) -> bool:
        """Whether a failed call is worth another attempt. Providers refine this; the default
        trusts the error class (429, 5xx, timeouts and dropped connections are transient)."""
        return error.retryable

    async def aclose(self) -> None:
        """Release clients and connections; the default has nothing to release."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def _as_outcome(result: GenerationResult | BaseException) -> GenerationOutcome:
    """A finished call of `generate_many` as its outcome: a recorded failure stands in its
    place; any other exception is a bug, not a failed call, and is raised."""
    if isinstance(result, BaseException):
        if not is_recorded_failure(result):
            raise result
        assert isinstance(result, BackendError)
    return result
