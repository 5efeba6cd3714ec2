"""One object for every generation knob, shared by all backends."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GenerationConfig(BaseModel):
    """Sampling and request settings. `temperature=0` means greedy decoding.

    `seed` makes local sampling reproducible and is passed to APIs that accept one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)
    timeout: float = Field(
        60.0, gt=0.0, description="seconds per request attempt (remote backends). 60: a judge "
        "writes at most max_tokens (512 by default), which a hosted API or a GPU server at 30 "
        "tokens/s or more finishes in under 20 s; a slow server needs a longer one")
    grammar: str | None = Field(
        None, description="EBNF the output must match; only backends with supports_grammar=True "
        "accept it (the Judge never sends it elsewhere)")
    json_schema: dict[str, Any] | None = Field(
        None, description="a JSON schema the whole output must follow; only backends that declare "
        "`json_schema` accept it, and each completion says if the server refused it "
        "(`Completion.structured_fallback`)")
    cache_prefix_chars: int | None = Field(
        None, ge=1, description="the first N characters of the first user message are a static "
        "prefix shared by many requests (instructions, criteria, examples): backends with "
        "explicit prompt caching (Anthropic) mark it as cacheable")

    def with_(self, **changes: object) -> GenerationConfig:
        """A copy with some fields changed (validated). Built from the fields as they are, not
        a deep `model_dump`: a request's config carries a JSON schema, copied per request
        otherwise (`benchmarks/bench_concurrency.py --profile`)."""
        return GenerationConfig.model_validate({**dict(self), **changes})
