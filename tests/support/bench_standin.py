"""A test-only stand-in for `judgekit.judge.Judge` with the same `ascore_many` shape.

It is NOT a judge: it returns scripted Verdicts (scores chosen by a function of the item), so the
benchmark runner, results files and metrics can be tested exactly and without a model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from judgekit.batch import JudgeItem
from judgekit.schema import Judgement, SampleStatus, Usage, Verdict
from judgekit.scorer import ScorerSettings

SampleSpec = list[float] | str  # scores in caller order, or "parse_failure" / "api_error"


def default_script(item: dict[str, Any], k: int) -> list[SampleSpec]:
    """Deterministic: every sample scores response i as 5 + (len(response) % 5)."""
    n = len(item["responses"])
    return [[float(1 + (len(r) + i) % 10) for i, r in enumerate(item["responses"])]
            for _ in range(k)] if n else []


def make_verdict(item_id: str | None, n: int, specs: Sequence[SampleSpec],
                 meta_scores: Sequence[float | None] | None = None,
                 k_meta: int | None = None) -> Verdict:
    samples: list[Judgement] = []
    for j, spec in enumerate(specs):
        perm = list(range(n)) if j % 2 == 0 else list(range(n))[::-1]
        usage = Usage(prompt_tokens=100, completion_tokens=20, calls=1)
        if isinstance(spec, str):
            status = SampleStatus(spec)
            samples.append(Judgement(sample_index=j, status=status, permutation=perm,
                                     error=spec, usage=usage))
        else:
            samples.append(Judgement(sample_index=j, status=SampleStatus.OK, permutation=perm,
                                     scores=list(spec), usage=usage))
        if meta_scores is not None:
            samples[-1].meta_score = meta_scores[j]
    used = [s for s in samples if s.valid]
    if k_meta is not None:
        ranked = sorted((s for s in used if s.meta_score is not None),
                        key=lambda s: (-(s.meta_score or 0.0), s.sample_index))[:k_meta]
        keep = {s.sample_index for s in ranked}
        for s in samples:
            s.kept = s.sample_index in keep
        used = [s for s in used if s.kept]
    if used:
        totals: list[float | None] = [sum(s.scores[i] for s in used if s.scores) for i in range(n)]
    else:
        totals = [None] * n
    valid_totals = [t for t in totals if t is not None]
    best: int | None = None
    tie = False
    if valid_totals:
        top = max(valid_totals)
        leaders = [i for i, t in enumerate(totals) if t == top]
        best, tie = (leaders[0], False) if len(leaders) == 1 else (None, n > 1)
    valid = sum(1 for s in samples if s.valid)
    error = None if valid else "no valid sample"
    return Verdict(item_id=item_id, n_responses=n, scores=totals, best=best, tie=tie,
                   k=len(specs), k_meta=k_meta, valid_samples=valid,
                   invalid_samples=len(samples) - valid, samples=samples, model="standin",
                   usage=Usage.total(s.usage for s in samples), wall_time_s=0.01, error=error)


class ScriptedJudgeStandIn:
    """A `judgekit.scorer.Scorer` of scripted Verdicts. `script(item, k)` gives the per-sample
    specs (the item as a dict); `crash_after=N` raises RuntimeError once N items have finished
    (a simulated kill); `delay` sleeps per item (seconds); `settings` replaces its settings
    (a resume test changes them)."""

    model = "standin"
    own_settings: ScorerSettings | None = None

    def settings(self) -> ScorerSettings:
        return self.own_settings or ScorerSettings(scorer=type(self).__name__, model=self.model)

    async def aclose(self) -> None:
        return None

    def __init__(self, script: Callable[[dict[str, Any], int], list[SampleSpec]] = default_script,
                 *, crash_after: int | None = None, delay: float = 0.0,
                 raise_for: set[str] | None = None) -> None:
        self.script = script
        self.crash_after = crash_after
        self.delay = delay
        self.raise_for = raise_for or set()
        self.calls: list[str] = []

    async def ascore_many(self, items: Sequence[JudgeItem | dict[str, Any]], samples: int = 1, *,
                          meta: Any = None, k_meta: int | None = None,
                          concurrency: int | None = None, progress: bool = False,
                          on_result: Callable[[int, Verdict], Any] | None = None
                          ) -> list[Verdict]:
        out: list[Verdict] = []
        for idx, given in enumerate(items):
            item = given.model_dump() if isinstance(given, JudgeItem) else given
            if self.crash_after is not None and len(self.calls) >= self.crash_after:
                raise RuntimeError("simulated crash")
            if self.delay:
                await asyncio.sleep(self.delay)
            self.calls.append(item["id"])
            n = len(item["responses"])
            if item["id"] in self.raise_for:
                verdict = Verdict(item_id=item["id"], n_responses=n, scores=[None] * n,
                                  k=samples, error="ConnectionError: scripted failure")
            else:
                verdict = make_verdict(item["id"], n, self.script(item, samples))
            out.append(verdict)
            if on_result is not None:
                on_result(idx, verdict)
        return out
