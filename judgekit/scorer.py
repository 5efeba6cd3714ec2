"""`Scorer`: what every judging runner offers the code that drives it (the bench runner, the
improve runner, Ray and batch wrappers), declared once so nothing has to probe for it.

A scorer has a model label, an `ascore_many` that judges items into results (Verdicts, or the
improve loop's traces), an `aclose`, and `settings()`: every setting that changes its results,
as a pydantic model. A resumable run fingerprints exactly those settings (plus its own data
mapping), so two runs agree when, and only when, their settings do. Where a model is served
(its endpoint) is recorded beside them but never part of them: a local server restarted on
another port serves the same model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from judgekit.meta import MetaArg, NotGiven

ItemT = TypeVar("ItemT", contravariant=True)
ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)

UNCOMPARED = frozenset({"endpoint"})
"""Settings recorded with a run but never compared on resume (they cannot change results)."""


class ScorerSettings(BaseModel):
    """Every setting of a scorer that changes its results. Subclasses add their own fields;
    `endpoint` is where the model is served (recorded, never fingerprinted)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scorer: str = Field(description="the kind of scorer (Judge, PairwiseBaselineJudge, ...)")
    model: str = Field(description="the model, without where it is served")
    endpoint: str | None = Field(None, description="where the model is served (a base URL); "
                                 "recorded, not compared")
    meta_model: str | None = Field(None, description="the scorer's own meta judge, if any: "
                                   "a run asking for meta-guided voting uses it")

    def record(self) -> dict[str, Any]:
        """The settings as plain JSON values (what run.json stores)."""
        return self.model_dump(mode="json")


class Scorer(Protocol[ItemT, ResultT_co]):
    """What a runner drives. `meta` follows `judgekit.meta.MetaArg` (NOT_GIVEN: the scorer's
    own; None or False: none); scorers without a meta judge refuse any other value."""

    @property
    def model(self) -> str:
        """The model label results carry."""
        ...

    def settings(self) -> ScorerSettings:
        """Every setting that changes results (see the module docstring)."""
        ...

    async def ascore_many(self, items: Sequence[ItemT], samples: int = 1, *,
                          meta: MetaArg = NotGiven.VALUE, k_meta: int | None = None,
                          concurrency: int | None = None, progress: bool = True,
                          on_result: Callable[[int, Any], Any] | None = None
                          ) -> Sequence[ResultT_co]:
        """Results in input order; `on_result(index, result)` as each one ends."""
        ...

    async def aclose(self) -> None:
        """Release clients and connections."""
        ...


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short sha256 of settings (plain JSON values), the uncompared ones left out."""
    kept = {k: v for k, v in settings.items() if k not in UNCOMPARED}
    blob = json.dumps(kept, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`name: old -> new` for every compared setting that differs (nested ones by dotted
    name), so a refusal names exactly what changed."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key in UNCOMPARED:
            continue
        before, after = old.get(key), new.get(key)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            out += differences(before, after, f"{prefix}{key}.")
        elif (isinstance(before, list) and isinstance(after, list)
              and len(before) == len(after) and before != after
              and all(isinstance(v, Mapping) for v in before + after)):
            out += differences({str(i): v for i, v in enumerate(before)},
                               {str(i): v for i, v in enumerate(after)}, f"{prefix}{key}.")
        elif before != after:
            out.append(f"{prefix}{key}: {before!r} -> {after!r}")
    return out


if TYPE_CHECKING:  # mypy proves that every scorer keeps the protocol
    from judgekit.batch import JudgeItem
    from judgekit.batch_api import BatchScorer
    from judgekit.bench.baseline import PairwiseBaselineJudge
    from judgekit.improve import ImproveItem, ImproveLoop, ImproveTrace
    from judgekit.judge import Judge
    from judgekit.ray import RayScorer
    from judgekit.schema import Verdict

    def _conforming(judge: Judge, baseline: PairwiseBaselineJudge, batch: BatchScorer,
                    ray: RayScorer, loop: ImproveLoop) -> None:
        scorers: list[Scorer[JudgeItem, Verdict]] = [judge, baseline, batch, ray]
        improver: Scorer[ImproveItem, ImproveTrace] = loop
        del scorers, improver


__all__ = ["UNCOMPARED", "Scorer", "ScorerSettings", "differences", "fingerprint"]
