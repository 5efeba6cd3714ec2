"""One object for every generation knob, shared by all backends."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


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
        """A copy with some fields changed, each change validated by its field's own rule.

        The other fields were validated when this config was made and no rule spans two
        fields, so only the changes are checked (every request derives a config or two: a
        whole re-validation cost more than the rest of the change, `benchmarks/
        bench_concurrency.py --profile`). A change that fails is validated with the whole
        model, so the error is the model's own."""
        try:
            checked = {name: _field_adapter(name).validate_python(value)
                       for name, value in changes.items()}
        except (KeyError, ValidationError):
            return GenerationConfig.model_validate({**dict(self), **changes})  # raises
        return self.model_copy(update=checked)


@cache
def _field_adapter(name: str) -> TypeAdapter[Any]:
    """The validator of one GenerationConfig field (KeyError for a name that is none)."""
    info = GenerationConfig.model_fields[name]
    return TypeAdapter(Annotated[info.annotation, info])
