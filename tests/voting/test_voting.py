"""Voting and permutation bookkeeping: hand-computed cases and hypothesis properties."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.prompt_blocks import shown_responses

from judgekit.backends.base import Backend, Completion, GenerationResult
from judgekit.config import GenerationConfig
from judgekit.formats import GRMFormat
from judgekit.judge import Judge
from judgekit.sampler import Sampler
from judgekit.schema import Judgement, Message, SampleStatus, Usage
from judgekit.voting import (
    TieRule,
    VotingMethod,
    balanced_permutations,
    best_index,
    select_kept,
    unpermute,
    vote,
)


def _judgement_from_text(text: str, n: int, perm: list[int], index: int, usage: Usage
                         ) -> Judgement:
    return Sampler(_ReadingJudgeBackend(), GRMFormat()).judgement_from_text(text, n, perm, index,
                                                                          usage)


def ok(index: int, scores: list[float], meta: float | None = None, kept: bool = True) -> Judgement:
    return Judgement(sample_index=index, status=SampleStatus.OK, scores=scores, meta_score=meta,
                     kept=kept, permutation=list(range(len(scores))))


def failed(index: int, status: SampleStatus = SampleStatus.PARSE_FAILURE) -> Judgement:
    return Judgement(sample_index=index, status=status, error="unreadable")


# -- vote: hand-computed --------------------------------------------------------------------------
THREE = [ok(0, [7, 3]), ok(1, [5, 6]), ok(2, [8, 8])]


def test_vote_sum() -> None:
    r = vote(THREE, 2, VotingMethod.SUM)
    assert r.scores == [20.0, 17.0]  # 7+5+8, 3+6+8
    assert (r.best, r.tie, r.used_samples) == (0, False, 3)


def test_vote_mean() -> None:
    r = vote(THREE, 2, "mean")
    assert r.scores == pytest.approx([20 / 3, 17 / 3])
    assert (r.best, r.tie) == (0, False)


def test_vote_majority_counts_single_best_only() -> None:
    # Sample 0 votes for 0, sample 1 for 1, sample 2 is a tie and casts no vote.
    r = vote(THREE, 2, VotingMethod.MAJORITY)
    assert r.scores == [1.0, 1.0]
    assert (r.best, r.tie) == (None, True)
    r = vote([*THREE, ok(3, [2, 9])], 2, "majority")
    assert r.scores == [1.0, 2.0]
    assert (r.best, r.tie, r.used_samples) == (1, False, 4)


def test_majority_and_sum_can_disagree() -> None:
    # Two mild wins for response 0 and one landslide for response 1.
    samples = [ok(0, [6, 5]), ok(1, [6, 5]), ok(2, [1, 10])]
    assert vote(samples, 2, "sum").best == 1  # 13 vs 20
    assert vote(samples, 2, "majority").best == 0  # 2 votes vs 1


def test_vote_three_responses_sum_tie() -> None:
    samples = [ok(0, [9, 5, 1]), ok(1, [5, 9, 1])]
    r = vote(samples, 3, "sum")
    assert r.scores == [14.0, 14.0, 2.0]
    assert (r.best, r.tie) == (None, True)
    rr = vote(samples, 3, "sum", tie_rule="random", seed=3)
    assert rr.tie is True and rr.best in (0, 1)


def test_invalid_and_discarded_samples_are_excluded() -> None:
    samples = [ok(0, [7, 3]), failed(1), failed(2, SampleStatus.API_ERROR), ok(3, [2, 9], kept=False),
               ok(4, [6, 4])]
    # `kept` is an input only through the `kept` argument: a stored flag never filters.
    assert vote(samples, 2, "sum").scores == [15.0, 16.0]
    r = vote(samples, 2, "sum", kept={0, 4})
    assert r.scores == [13.0, 7.0]
    assert r.used_samples == 2
    # FORCED samples count like OK ones.
    forced = Judgement(sample_index=5, status=SampleStatus.FORCED, scores=[1, 10])
    assert vote([*samples, forced], 2, kept={0, 4, 5}).scores == [14.0, 17.0]


def test_no_valid_sample_gives_no_scores() -> None:
    r = vote([failed(0), failed(1)], 3)
    assert r.scores == [None, None, None]
    assert (r.best, r.tie, r.used_samples) == (None, False, 0)


def test_single_response_has_no_tie() -> None:
    assert vote([ok(0, [4]), ok(1, [6])], 1).scores == [10.0]
    assert vote([ok(0, [4])], 1).best == 0


def test_judgement_rejects_out_of_range_scores() -> None:
    with pytest.raises(ValueError):
        ok(0, [0, 5])
    with pytest.raises(ValueError):
        ok(0, [5, 10.5])


# -- best_index -----------------------------------------------------------------------------------
def test_best_index_strict() -> None:
    assert best_index([3.0, 9.0, 4.0]) == (1, False)
    assert best_index([9.0, 9.0, 4.0]) == (None, True)
    assert best_index([9.0, 9.0, 4.0], TieRule.STRICT) == (None, True)
    assert best_index([None, 4.0, 2.0]) == (1, False)
    assert best_index([None, None]) == (None, False)
    assert best_index([5.0]) == (0, False)


def test_best_index_random_tie_break_is_seeded() -> None:
    scores = [9.0, 2.0, 9.0, 9.0]
    picks = [best_index(scores, "random", seed=s) for s in range(60)]
    assert all(tie for _, tie in picks)
    chosen = Counter(b for b, _ in picks)
    assert set(chosen) == {0, 2, 3}  # only the leaders, and each of them some of the time
    # Reproducible: the same seed gives the same pick.
    assert [best_index(scores, TieRule.RANDOM, seed=s) for s in range(60)] == picks
    # No tie: the random rule changes nothing.
    assert best_index([1.0, 8.0], "random", seed=1) == (1, False)


# -- select_kept ----------------------------------------------------------------------------------
def test_select_kept() -> None:
    samples = [ok(0, [7, 3], meta=0.2), ok(1, [2, 9], meta=0.9), ok(2, [5, 5], meta=0.6),
               failed(3), ok(4, [8, 1], meta=None), ok(5, [6, 3], meta=0.6)]
    samples[3].meta_score = 0.99  # an invalid sample is never kept, whatever its meta score
    assert select_kept(samples, 1) == {1}
    assert select_kept(samples, 2) == {1, 2}  # 2 and 5 tie at 0.6: the earlier one stays
    assert select_kept(samples, 3) == {1, 2, 5}
    # The unrated valid sample 4 fills a place once the rated ones run out.
    assert select_kept(samples, 5) == {0, 1, 2, 4, 5}
    assert select_kept(samples, 10) == {0, 1, 2, 4, 5}
    with pytest.raises(ValueError, match="k_meta"):
        select_kept(samples, 0)


def test_meta_guided_vote_over_kept_samples() -> None:
    samples = [ok(0, [7, 3], meta=0.2), ok(1, [2, 9], meta=0.9), ok(2, [4, 8], meta=0.7),
               ok(3, [9, 1], meta=0.1)]
    assert vote(samples, 2).best == 0  # 22 vs 21 over all four
    keep = select_kept(samples, 2)
    r = vote(samples, 2, kept=keep)
    assert r.scores == [6.0, 17.0] and r.best == 1 and r.used_samples == 2


# -- permutation bookkeeping ----------------------------------------------------------------------
def test_balanced_permutations_small_cases() -> None:
    assert balanced_permutations(3, 3, seed=0) == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    assert balanced_permutations(2, 1) == [[0, 1]]
    assert balanced_permutations(1, 4) == [[0]] * 4
    assert balanced_permutations(4, 9, seed=7) == balanced_permutations(4, 9, seed=7)
    with pytest.raises(ValueError):
        balanced_permutations(0, 3)
    with pytest.raises(ValueError):
        balanced_permutations(3, 0)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 6), k=st.integers(1, 20), seed=st.integers(0, 2**31 - 1))
def test_balanced_permutations_properties(n: int, k: int, seed: int) -> None:
    perms = balanced_permutations(n, k, seed)
    assert len(perms) == k
    assert all(sorted(p) == list(range(n)) for p in perms)
    assert perms[0] == list(range(n))  # one sample shows the caller's order
    counts = Counter((resp, pos) for p in perms for pos, resp in enumerate(p))
    cells = [counts[(r, pos)] for r in range(n) for pos in range(n)]
    if k % n == 0:
        assert all(c == k // n for c in cells)
    else:
        assert max(cells) - min(cells) <= -(-k // n) - k // n  # ceil(k/n) - floor(k/n) = 1
        assert min(cells) >= k // n
    # Each response is shown exactly k times in all.
    assert all(sum(counts[(r, pos)] for pos in range(n)) == k for r in range(n))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 6), k=st.integers(1, 20), seed=st.integers(0, 10**6))
def test_shuffled_presentation_maps_back(data: st.DataObject, n: int, k: int, seed: int) -> None:
    true = data.draw(st.lists(st.integers(1, 10), min_size=n, max_size=n))
    labels = [f"answer-{i}" for i in range(n)]
    for j, perm in enumerate(balanced_permutations(n, k, seed)):
        shown = [true[i] for i in perm]  # the judge sees response perm[p] at position p
        # A judge that reads the scores shown to it returns them in shown order ...
        assert unpermute(shown, perm) == [float(t) for t in true]
        # ... and the same judgement as text goes back to the caller's order too.
        analysis = "\n".join(f"Response {p + 1}: about {labels[perm[p]]}" for p in range(n))
        text = f"Analysis:\n{analysis}\nScores: \\boxed{{{', '.join(map(str, shown))}}}"
        jd = _judgement_from_text(text, n, list(perm), j, Usage())
        assert jd.status is SampleStatus.OK
        assert jd.scores == [float(t) for t in true]
        assert jd.permutation == list(perm)
        assert [c.overall for c in jd.critiques] == [float(t) for t in true]
        assert all(f"about {labels[i]}" in jd.critiques[i].analysis for i in range(n))


def test_judgement_from_text_failure_keeps_raw_and_no_scores() -> None:
    jd = _judgement_from_text("no scores here", 2, [1, 0], 3, Usage(completion_tokens=5))
    assert jd.status is SampleStatus.PARSE_FAILURE
    assert jd.scores is None and not jd.valid
    assert jd.raw_text == "no scores here" and jd.sample_index == 3
    assert jd.usage.completion_tokens == 5 and jd.error


# -- through the Judge: shown order in, caller order out, invalid samples counted ----------------
class _ReadingJudgeBackend(Backend):
    """Scores each shown response by the number written in it ("worth 7" -> 7), in shown order;
    replies with unreadable text when the response shown first is `fail_first`."""

    spec = "scripted:reader"

    def __init__(self, fail_first: str | None = None) -> None:
        self.fail_first = fail_first
        self.shown: list[list[str]] = []

    async def generate(self, messages: list[Message], config: GenerationConfig,
                       n: int = 1) -> GenerationResult:
        shown = shown_responses(messages[-1]["content"])
        self.shown.append(shown)
        if shown[0] == self.fail_first:
            text = "I refuse to score."
        else:
            text = "Scores: \\boxed{" + ", ".join(re.search(r"worth (\d+)", s).group(1)  # type: ignore[union-attr]
                                                  for s in shown) + "}"
        return GenerationResult(completions=[Completion(text=text) for _ in range(n)],
                                usage=Usage(calls=1, completion_tokens=7 * n))

    async def aclose(self) -> None:
        return None


RESPONSES = ["worth 7", "worth 3", "worth 9"]


async def test_judge_maps_every_sample_back_to_caller_order() -> None:
    backend = _ReadingJudgeBackend()
    judge = Judge(backend, examples=False, max_reasks=0)  # type: ignore[arg-type]
    verdict = await judge.ascore("q", RESPONSES, samples=6)
    # Two balanced blocks of three rotations: each response is shown first exactly twice.
    assert Counter(s.permutation[0] for s in verdict.samples) == {0: 2, 1: 2, 2: 2}
    assert len(backend.shown) == len({tuple(p.permutation) for p in verdict.samples})
    for s in verdict.samples:
        assert s.scores == [7.0, 3.0, 9.0]
    assert verdict.scores == [42.0, 18.0, 54.0]
    assert verdict.best == 2 and verdict.valid_samples == 6 and verdict.invalid_samples == 0


async def test_judge_counts_and_excludes_invalid_samples() -> None:
    backend = _ReadingJudgeBackend(fail_first="worth 3")
    judge = Judge(backend, examples=False, max_reasks=0)  # type: ignore[arg-type]
    verdict = await judge.ascore("q", RESPONSES, samples=6)
    bad = [s for s in verdict.samples if not s.valid]
    # Every response is shown first in exactly two of the six samples.
    assert len(bad) == 2 and all(s.status is SampleStatus.PARSE_FAILURE for s in bad)
    assert all(s.permutation[0] == 1 and s.scores is None for s in bad)
    assert (verdict.valid_samples, verdict.invalid_samples) == (4, 2)
    assert verdict.scores == [28.0, 12.0, 36.0]
    assert verdict.best == 2
