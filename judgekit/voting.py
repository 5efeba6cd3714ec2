"""Pure functions for inference-time scaling: balanced permutations and voting over samples."""

from __future__ import annotations

import random
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel

from judgekit.schema import Judgement


class VotingMethod(StrEnum):
    SUM = "sum"  # the paper's: S*_i = sum_j S_ij, widening 1-10 to k..10k
    MEAN = "mean"
    MAJORITY = "majority"  # each sample votes for its single best response (no vote on a tie)


class TieRule(StrEnum):
    STRICT = "strict"  # a tie has no best response (the paper's training rule: a tie is wrong)
    RANDOM = "random"  # the paper's evaluation rule: shuffle, then argmax (seeded tie-break)


class VoteResult(BaseModel):
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


def best_index(scores: Sequence[float | None], tie_rule: TieRule | str = TieRule.STRICT,
               seed: int = 0) -> tuple[int | None, bool]:
    """(best, tie). Strict: best is None on a tie. Random: a seeded pick among the tied."""
    valid = [(i, s) for i, s in enumerate(scores) if s is not None]
    if not valid:
        return None, False
    top = max(s for _, s in valid)
    leaders = [i for i, s in valid if s == top]
    if len(leaders) == 1:
        return leaders[0], False
    if len(scores) == 1:
        return 0, False
    if TieRule(tie_rule) is TieRule.RANDOM:
        return random.Random(seed).choice(leaders), True
    return None, True


def vote(samples: Sequence[Judgement], n_responses: int,
         method: VotingMethod | str = VotingMethod.SUM,
         tie_rule: TieRule | str = TieRule.STRICT, seed: int = 0) -> VoteResult:
    """Vote over the valid, kept samples. Invalid samples are excluded (and counted elsewhere)."""
    used = [s for s in samples if s.valid and s.kept and s.scores is not None]
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


def select_top_meta(samples: Sequence[Judgement], k_meta: int) -> set[int]:
    """sample_index of the k_meta valid samples with the highest meta scores (meta-guided voting).

    Ties in meta score keep the earlier sample, so the choice is deterministic.
    """
    ranked = sorted((s for s in samples if s.valid and s.meta_score is not None),
                    key=lambda s: (-(s.meta_score or 0.0), s.sample_index))
    return {s.sample_index for s in ranked[:max(k_meta, 0)]}
