"""One object for every generation knob, shared by all backends."""

from __future__ import annotations

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
    timeout: float = Field(120.0, gt=0.0, description="seconds per request attempt")
    grammar: str | None = Field(
        None, description="EBNF the output must match; only backends with supports_grammar=True "
        "accept it (the Judge never sends it elsewhere)")

    def with_(self, **changes: object) -> GenerationConfig:
        """A copy with some fields changed (validated)."""
        return GenerationConfig.model_validate({**self.model_dump(), **changes})
