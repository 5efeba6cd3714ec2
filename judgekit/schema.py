"""The typed results that cross every boundary: principles, critiques, one judgement sample, the verdict.

All models are Pydantic and JSON round-trippable (`Verdict.model_validate_json(v.model_dump_json())`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

Message = dict[str, str]
"""A chat message: {"role": "system"|"user"|"assistant", "content": str}."""


class SampleStatus(StrEnum):
    """Why a sample does or does not count. Only OK and FORCED samples carry scores."""

    OK = "ok"
    FORCED = "forced"  # free text did not parse; the scores line was completed under a grammar
    PARSE_FAILURE = "parse_failure"
    API_ERROR = "api_error"

    @property
    def valid(self) -> bool:
        return self in (SampleStatus.OK, SampleStatus.FORCED)


class Usage(BaseModel):
    """Token and cost accounting. Adds up with `+`; retries and re-asks are included.

    Frozen: a sample's usage, its call's and its Verdict's may be one object (a single call
    needs no sum), so none may change in place; `+` and `total` make new ones."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = Field(0, description="prompt tokens the provider read from its "
                                      "prompt cache (part of prompt_tokens)")
    cache_write_tokens: int = Field(0, description="prompt tokens written to the provider's "
                                    "prompt cache (Anthropic cache creation)")
    calls: int = 0
    cached_calls: int = 0
    retries: int = 0
    cost_usd: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage.total((self, other))

    @staticmethod
    def total(usages: Any) -> Usage:
        """The sum of `usages` (a cost when any has one): summed field by field, not through a
        chain of intermediate models; one usage is its own sum (Usage is frozen)."""
        usages = usages if isinstance(usages, list | tuple) else list(usages)
        if len(usages) == 1:
            return usages[0]
        prompt = completion = cached = written = calls = cached_calls = retries = 0
        cost: float | None = None
        for u in usages:
            prompt += u.prompt_tokens
            completion += u.completion_tokens
            cached += u.cached_prompt_tokens
            written += u.cache_write_tokens
            calls += u.calls
            cached_calls += u.cached_calls
            retries += u.retries
            if u.cost_usd is not None:
                cost = (cost or 0.0) + u.cost_usd
        return Usage(prompt_tokens=prompt, completion_tokens=completion,
                     cached_prompt_tokens=cached, cache_write_tokens=written, calls=calls,
                     cached_calls=cached_calls, retries=retries, cost_usd=cost)


class Principle(BaseModel):
    """One self-written evaluation criterion. `weight` is normalised to sum to 1 in a Judgement."""

    name: str
    description: str = ""
    weight: float = Field(1.0, ge=0.0)


class AggregateRule(StrEnum):
    """Which number of a critique is the response's score in a sample."""

    OVERALL = "overall"  # the final score the judge wrote in its scores line (the paper's rule)
    WEIGHTED = "weighted"  # sum_i w_i * s_i over the principles' fixed-form criterion scores


class Critique(BaseModel):
    """The judge's analysis of one response (in the caller's order, not the shown order).

    Both values are kept whatever the aggregate rule: `overall` (the final scores line) and
    `weighted` (from the fixed-form 'Criterion scores' line, when every criterion has a score).
    """

    analysis: str = ""
    principle_scores: dict[str, float] = Field(default_factory=dict)
    overall: float | None = Field(None, description="the model's own overall 1-10 score")
    weighted: float | None = Field(None, description="sum of w_i * s_i where every principle "
                                   "has a fixed-form criterion score")
    weighted_missing: str | None = Field(None, description="why `weighted` is None: no, several, "
                                         "only quoted, or a malformed 'Criterion scores' line")
    weighted_fallback: bool = Field(False, description="the weighted rule was asked for, but a "
                                    "criterion score was missing: the overall score was used")
    fixes: list[str] = Field(default_factory=list, description="suggested fixes, where the "
                             "format asks for them")

    def score(self, rule: AggregateRule | str = AggregateRule.OVERALL) -> float | None:
        """This response's score under `rule` (weighted falls back to overall when missing)."""
        if AggregateRule(rule) is AggregateRule.WEIGHTED and self.weighted is not None:
            return self.weighted
        return self.overall


class Judgement(BaseModel):
    """One sampled judgement of all responses of an item.

    `permutation[p]` is the caller's index of the response shown at position p. `scores` and
    `critiques` are already mapped back to the caller's order. Scores are None unless the status
    is valid: a failure is never silently a score.
    """

    model_config = ConfigDict(use_enum_values=False)

    sample_index: int = 0
    status: SampleStatus
    permutation: list[int] = Field(default_factory=list)
    principles: list[Principle] = Field(default_factory=list)
    critiques: list[Critique] = Field(default_factory=list)
    scores: list[float] | None = None
    raw_text: str = ""
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    attempts: int = 1
    truncated: bool = Field(False, description="the first output was cut off (one of the "
                            "backend's declared cut-off reasons: token limit, context window, "
                            "content filter, refusal); it was never accepted as it stood "
                            "(forced, re-asked or failed)")
    hinted: bool = False
    meta_score: float | None = None
    kept: bool = True
    structured: bool = Field(False, description="written under the format's JSON schema (raw_text "
                             "is that JSON) or output grammar")
    structured_fallback: str | None = Field(
        None, description="structured output was asked for, but this sample was written in free "
        "text: why (the server refused the schema, or is not known to support one)")

    @field_validator("scores")
    @classmethod
    def _scores_in_range(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(not (1.0 <= s <= 10.0) for s in v):
            raise ValueError(f"scores must lie in [1, 10], got {v}")
        return v

    @property
    def valid(self) -> bool:
        return self.status.valid and self.scores is not None


class Verdict(BaseModel):
    """The voted result for one item.

    `scores[i]` is response i's final score (sum over kept valid samples by default, so the range
    widens to k..10k); `best` is the index of the single best response, or None on a tie or when no
    sample was valid. Every sample is kept in `samples`, discarded ones included.
    """

    item_id: str | None = None
    n_responses: int
    scores: list[float | None]
    best: int | None = None
    tie: bool = False
    voting: str = "sum"
    tie_rule: str = "strict"
    aggregate: str = "overall"
    k: int = 1
    k_meta: int | None = None
    k_meta_setting: int | None = Field(None, description="the k_meta asked for (None: the "
                                       "default rule); a vote over the first j samples keeps "
                                       "`aggregate.k_meta_for(j, k_meta_setting)`")
    valid_samples: int = 0
    invalid_samples: int = 0
    samples: list[Judgement] = Field(default_factory=list)
    model: str = ""
    meta_model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    wall_time_s: float = 0.0
    seed: int | None = Field(None, description="the item's seed: permutations, sampling and the "
                             "random tie-break derive from it")
    error: str | None = Field(None, description="set when the whole item failed")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.valid_samples > 0

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_row(self) -> dict[str, Any]:
        """A flat dict for a pandas row (one per verdict)."""
        row: dict[str, Any] = {
            "item_id": self.item_id,
            "n_responses": self.n_responses,
            "best": self.best,
            "tie": self.tie,
            "k": self.k,
            "k_meta": self.k_meta,
            "valid_samples": self.valid_samples,
            "invalid_samples": self.invalid_samples,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "cost_usd": self.usage.cost_usd,
            "wall_time_s": self.wall_time_s,
            "error": self.error,
            "model": self.model,
        }
        for i, s in enumerate(self.scores):
            row[f"score_{i}"] = s
        return row

    def samples_frame(self) -> Any:
        """A pandas DataFrame with one row per sample."""
        import pandas as pd

        rows = []
        for j in self.samples:
            rows.append({
                "sample_index": j.sample_index,
                "status": j.status.value,
                "permutation": j.permutation,
                "scores": j.scores,
                "n_principles": len(j.principles),
                "meta_score": j.meta_score,
                "kept": j.kept,
                "hinted": j.hinted,
                "attempts": j.attempts,
                "prompt_tokens": j.usage.prompt_tokens,
                "completion_tokens": j.usage.completion_tokens,
                "error": j.error,
            })
        return pd.DataFrame(rows)
