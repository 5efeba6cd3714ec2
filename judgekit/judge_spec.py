"""`JudgeSpec`: how to build a Judge, as plain data.

A Judge holds clients, a loaded model and event-loop-bound state, so it is neither picklable nor
storable. Where a judge must be rebuilt somewhere else (a Ray actor on another node, a batch run
collected by another process), the spec travels instead: the model spec and the `Judge(...)`
keyword arguments, JSON values only. An `api_key` is never written to disk (`stored()` drops it):
the rebuilt judge reads the provider's environment variable.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from judgekit.judge import Judge

SECRET_OPTIONS = frozenset({"api_key"})


class JudgeSpec(BaseModel):
    """`Judge(model, **options)` as data: picklable (Ray) and JSON round-trippable (run dirs)."""

    model_config = ConfigDict(frozen=True)

    model: str | None = Field(None, description="model spec; None is the embedded model")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Judge keyword arguments (JSON values only)")

    @field_validator("options")
    @classmethod
    def _plain_data(cls, options: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(options)
        except (TypeError, ValueError) as exc:
            raise ValueError("JudgeSpec options must be plain JSON values (strings, numbers, "
                             f"lists, dicts), so the spec can travel and be stored: {exc}") from exc
        return options

    def build(self) -> Judge:
        from judgekit.judge import Judge

        return Judge(self.model, **self.options)

    def stored(self) -> JudgeSpec:
        """This spec without secrets, for writing to disk."""
        return JudgeSpec(model=self.model,
                         options={k: v for k, v in self.options.items()
                                  if k not in SECRET_OPTIONS})
