"""The one place where sampled judgements become voted scores.

`aggregate` is pure: meta filtering (which samples are kept), voting and the tie rule. The live
Judge builds every Verdict through `build_verdict`, which calls it; bench metrics recompute
Voting@j and MetaRM@j from stored samples with the same function, the pairwise baseline is the
same Judge with another format, and training rewards read `unique_best` from `judgekit.voting`.
So a Verdict and a report computed from its stored samples cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from judgekit.schema import AggregateRule, Judgement, Usage, Verdict
from judgekit.voting import TieRule, VotingMethod, best_index, select_kept, vote


@dataclass(frozen=True, slots=True)
class Aggregation:
    """The outcome of voting over one item's samples (an in-process value, never serialised:
    a dataclass, so that building one costs no validation)."""

    scores: list[float | None]
    best: int | None
    tie: bool
    kept: set[int]
    used_samples: int
    valid_samples: int
    invalid_samples: int


def k_meta_for(samples: int, setting: int | None) -> int:
    """The one k_meta rule: how many of `samples` samples meta-guided voting keeps. A given
    `setting` as it is (more than there are keeps them all); else the paper's default, half of
    the samples (at least one). Live Verdicts and every vote over the first j stored samples
    (scaling curves, reports) use this rule, so they agree."""
    if setting is not None:
        if setting < 1:
            raise ValueError(f"k_meta must be at least 1, got {setting}")
        return setting
    return max(1, samples // 2)


def aggregate(samples: Sequence[Judgement], n_responses: int, *,
              voting: VotingMethod | str = VotingMethod.SUM,
              tie_rule: TieRule | str = TieRule.STRICT, seed: int | str = 0,
              k_meta: int | None = None) -> Aggregation:
    """Vote over `samples`. With `k_meta`, meta-guided voting: only the samples
    `voting.select_kept` keeps (top meta scores, unrated valid samples filling the places) are
    counted. Without, every valid sample counts. Stored `kept` flags are ignored: they are an
    output of this function, never an input."""
    valid = [s for s in samples if s.valid]
    kept = select_kept(samples, k_meta) if k_meta is not None else {s.sample_index for s in valid}
    result = vote(samples, n_responses, voting, TieRule.STRICT, 0, kept=kept)
    best, tie = best_index(result.scores, tie_rule, seed) if result.used_samples else (None, False)
    return Aggregation(scores=result.scores, best=best, tie=tie, kept=kept,
                       used_samples=result.used_samples, valid_samples=len(valid),
                       invalid_samples=len(samples) - len(valid))


def build_verdict(samples: Sequence[Judgement], n_responses: int, *, k: int,
                  voting: VotingMethod | str = VotingMethod.SUM,
                  tie_rule: TieRule | str = TieRule.STRICT, seed: int | str = 0,
                  k_meta: int | None = None, k_meta_setting: int | None = None,
                  aggregate_rule: str = "overall",
                  model: str = "", meta_model: str | None = None, item_id: str | None = None,
                  extra_usage: Usage | None = None, wall_time_s: float = 0.0,
                  metadata: dict[str, Any] | None = None) -> Verdict:
    """The Verdict of one item: `aggregate` over the samples, each sample's `kept` flag set to
    what the vote used, and an `error` when no sample was valid (a failure is never a score).
    `k_meta` is the number kept (meta-guided voting; None: plain voting), `k_meta_setting` the
    one asked for (None: the default rule, `k_meta_for`)."""
    result = aggregate(samples, n_responses, voting=voting, tie_rule=tie_rule, seed=seed,
                       k_meta=k_meta)
    marked = [s.model_copy(update={"kept": s.valid and s.sample_index in result.kept})
              for s in samples]
    error = None
    if result.valid_samples == 0:
        kinds = sorted({s.status.value for s in samples})
        first = next((s.error for s in samples if s.error), None)
        error = f"no valid sample ({', '.join(kinds)}): {first}"
    return Verdict(
        item_id=item_id, n_responses=n_responses, scores=result.scores, best=result.best,
        tie=result.tie, voting=VotingMethod(voting).value, tie_rule=TieRule(tie_rule).value,
        aggregate=aggregate_rule, k=k, k_meta=k_meta, k_meta_setting=k_meta_setting,
        valid_samples=result.valid_samples,
        invalid_samples=result.invalid_samples, samples=marked, model=model,
        meta_model=meta_model,
        usage=Usage.total([*(s.usage for s in samples),
                           *([extra_usage] if extra_usage is not None else [])]),
        wall_time_s=round(wall_time_s, 4), seed=seed if isinstance(seed, int) else None,
        error=error, metadata=dict(metadata or {}))


def rescore(verdict: Verdict, rule: AggregateRule | str) -> Verdict:
    """The Verdict its stored samples give under another aggregate rule: each valid sample's
    scores become its critiques' `score(rule)` (weighted falls back to the written overall
    score), then the same vote, meta keep rule and tie rule. Samples without critiques (the
    pairwise format) keep their scores. No model is called."""
    rule = AggregateRule(rule)
    if rule.value == verdict.aggregate:
        return verdict
    samples = []
    for s in verdict.samples:
        new = [c.score(rule) for c in s.critiques]
        if s.valid and s.critiques and all(v is not None for v in new):
            s = s.model_copy(update={"scores": [float(v) for v in new if v is not None]})
        samples.append(s)
    seed = verdict.seed if verdict.seed is not None else 0
    result = aggregate(samples, verdict.n_responses, voting=verdict.voting,
                       tie_rule=verdict.tie_rule, seed=seed, k_meta=verdict.k_meta)
    return verdict.model_copy(update={
        "scores": result.scores, "best": result.best, "tie": result.tie,
        "aggregate": rule.value, "samples": samples})
