"""Pure functions for inference-time scaling: balanced permutations, the tie rule, the
meta-guided keep rule and voting over samples. `judgekit.aggregate` composes them into the one
function that turns samples into a Verdict's scores; nothing else counts votes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from judgekit.schema import Judgement


class VotingMethod(StrEnum):
    SUM = "sum"  # the paper's: S*_i = sum_j S_ij, widening 1-10 to k..10k
    MEAN = "mean"
    MAJORITY = "majority"  # each sample votes for its single best response (no vote on a tie)


class TieRule(StrEnum):
    STRICT = "strict"  # a tie has no best response (the paper's training rule: a tie is wrong)
    RANDOM = "random"  # the paper's evaluation rule: shuffle, then argmax (seeded tie-break)


NEUTRAL_SCORE = 5.5
"""The midpoint of the 1-10 scale: a single response's score above it reads as "good", below as
"bad" (binary labels in benchmarks and the SPCT rule); a missing score counts as this."""


@dataclass(frozen=True, slots=True)
class VoteResult:
    """The outcome of one vote: an in-process value of every item's vote (a dataclass, not a
    Pydantic model: it is never serialised, and validating it cost a share of each judgement)."""

    scores: list[float | None]
    best: int | None
    tie: bool
    used_samples: int


def balanced_permutations(n: int, k: int, seed: int = 0) -> list[list[int]]:
    """k presentation orders of n responses; `perm[p]` is the response shown at position p.

    Samples come in blocks of n cyclic rotations of one base order, so within each full block every
    response sits in every position exactly once (a Latin square). The first base order is the
    identity (a single sample shows the caller's order); later blocks use seeded random bases.
    """
    if n < 1 or k < 1:
        raise ValueError("n and k must be at least 1")
    if k == 1:  # the common case (one sample): the identity, no generator to seed
        return [list(range(n))]
    rng = random.Random(seed)
    perms: list[list[int]] = []
    base = list(range(n))
    for j in range(k):
        block, shift = divmod(j, n)
        if shift == 0 and block > 0:
            base = list(range(n))
            rng.shuffle(base)
        perms.append(base[shift:] + base[:shift])
    return perms


def unpermute(shown: Sequence[float], permutation: Sequence[int]) -> list[float]:
    """Scores in shown order -> scores in the caller's order."""
    out = [0.0] * len(shown)
    for pos, original in enumerate(permutation):
        out[original] = float(shown[pos])
    return out


def top_set(scores: Sequence[float | None]) -> list[int]:
    """Indices holding the highest non-None score ([] when there is none)."""
    valid = [(i, s) for i, s in enumerate(scores) if s is not None]
    if not valid:
        return []
    top = max(s for _, s in valid)
    return [i for i, s in valid if s == top]


def best_index(scores: Sequence[float | None], tie_rule: TieRule | str = TieRule.STRICT,
               seed: int | str = 0) -> tuple[int | None, bool]:
    """(best, tie). Strict: best is None on a tie. Random: a seeded pick among the tied.
    No valid score at all gives (None, False)."""
    leaders = top_set(scores)
    if not leaders:
        return None, False
    if len(leaders) == 1:
        return leaders[0], False
    if TieRule(tie_rule) is TieRule.RANDOM:
        return random.Random(seed).choice(leaders), True
    return None, True


def unique_best(scores: Sequence[float | None] | None) -> int | None:
    """The single highest-scored index; None on a tie for the top or with no scores (the SPCT
    correctness rule: a tie is wrong)."""
    return best_index(scores or [], TieRule.STRICT)[0]


def pick_best(scores: Sequence[float | None], tie_rule: TieRule | str = TieRule.STRICT,
              seed: int | str = 0) -> int | None:
    """The evaluation pick under a tie rule. Like `best_index`, except that under the random
    rule an item with no valid score at all is a seeded random guess among all responses (the
    paper's evaluation treats a failed judgement as a coin flip, not as a wrong answer)."""
    best, _ = best_index(scores, tie_rule, seed)
    if best is None and TieRule(tie_rule) is TieRule.RANDOM and scores and not top_set(scores):
        return random.Random(seed).randrange(len(scores))
    return best


def vote(samples: Sequence[Judgement], n_responses: int,
         method: VotingMethod | str = VotingMethod.SUM,
         tie_rule: TieRule | str = TieRule.STRICT, seed: int | str = 0,
         kept: set[int] | None = None) -> VoteResult:
    """Vote over the valid samples (only those in `kept`, when given). Invalid samples are
    excluded (and counted elsewhere)."""
    used = [s for s in samples if s.valid and s.scores is not None
            and (kept is None or s.sample_index in kept)]
    if not used:
        return VoteResult(scores=[None] * n_responses, best=None, tie=False, used_samples=0)
    method = VotingMethod(method)
    totals = [0.0] * n_responses
    for s in used:
        assert s.scores is not None
        if method is VotingMethod.MAJORITY:
            b, _ = best_index(s.scores, TieRule.STRICT)
            if b is not None:
                totals[b] += 1.0
        else:
            for i, v in enumerate(s.scores):
                totals[i] += v
    if method is VotingMethod.MEAN:
        totals = [t / len(used) for t in totals]
    best, tie = best_index(totals, tie_rule, seed)
    return VoteResult(scores=list(totals), best=best, tie=tie, used_samples=len(used))


def select_kept(samples: Sequence[Judgement], k_meta: int) -> set[int]:
    """sample_index of the samples meta-guided voting keeps: the k_meta valid samples with the
    highest meta scores (ties keep the earlier sample); valid samples that the meta judge could
    not rate fill the remaining places in sample order, so a failing meta judge degrades to
    plain voting instead of discarding everything."""
    if k_meta < 1:
        raise ValueError(f"k_meta must be at least 1, got {k_meta}")
    valid = sorted((s for s in samples if s.valid), key=lambda s: s.sample_index)
    ranked = sorted((s for s in valid if s.meta_score is not None),
                    key=lambda s: (-(s.meta_score or 0.0), s.sample_index))
    keep = [s.sample_index for s in ranked[:k_meta]]
    unrated = [s.sample_index for s in valid if s.meta_score is None]
    keep += unrated[:max(0, k_meta - len(keep))]
    return set(keep)
