"""SIMULATION, no model: does voting over k samples scale as the theory says?

A simulated judge looks at random pairs and, in each sample, prefers the right response with
probability p = 0.65 (independently across samples). Its scores are 1-10 integers written in the
shown order of a balanced permutation and mapped back with the real `unpermute`; votes go through
the real `vote`, `select_kept` and `Judgement` objects.

What theory says, for odd k and samples that never tie within themselves:
  * majority voting is right when more than k/2 samples are right: P(Binomial(k, p) > k/2);
  * sum voting is the same when every sample's winner leads by the same margin (the sum is
    margin * (right - wrong)); with margins that vary independently of correctness its exact
    expectation is computed below by convolution, ties included (a tie can now happen).

Tolerance: over N independent pairs the measured accuracy is a mean of Bernoulli trials with
standard error sqrt(q(1-q)/N) (about 0.005-0.0075 at N = 4000), so a correct implementation lies
within 3 SE of the expectation except with probability 0.3% per comparison. Everything is seeded,
so the test is deterministic; 3 SE only decides which expectations the code may claim to meet.
Samples for k = 1, 3, 9, 15 are prefixes of the same 15 draws per pair (common random numbers),
so the rise with k is measured without independent noise between the k values.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest

from judgekit.schema import Judgement, SampleStatus
from judgekit.voting import balanced_permutations, select_kept, unpermute, vote

P = 0.65
N_PAIRS = 4000
KS = (1, 3, 9, 15)
SEED = 20250404


@dataclass
class SimItem:
    label: int  # index of the better response (caller's order)
    samples: list[Judgement]
    right: list[bool]  # whether each sample's own argmax is the label


def simulate(n_pairs: int, k: int, *, margins: tuple[int, ...], seed: int,
             meta_noise: float | None = None) -> list[SimItem]:
    """k samples per pair from a judge with single-sample accuracy P.

    Each sample: the right response wins with probability P; the winner's score is the loser's
    plus a margin drawn from `margins` (independent of correctness); the loser's score is uniform
    in 1..10-margin. With `meta_noise`, each sample gets a meta score 1{sample right} + N(0, sd).
    """
    rng = random.Random(seed)
    items: list[SimItem] = []
    for item in range(n_pairs):
        label = rng.randrange(2)
        perms = balanced_permutations(2, k, seed=seed + item)
        samples: list[Judgement] = []
        right: list[bool] = []
        for j, perm in enumerate(perms):
            correct = rng.random() < P
            winner = label if correct else 1 - label
            margin = rng.choice(margins)
            low = rng.randint(1, 10 - margin)
            caller_scores = [0.0, 0.0]
            caller_scores[winner], caller_scores[1 - winner] = low + margin, low
            shown = [caller_scores[i] for i in perm]  # what the judge writes, in shown order
            jd = Judgement(sample_index=j, status=SampleStatus.OK, permutation=list(perm),
                           scores=unpermute(shown, perm))
            if meta_noise is not None:
                jd.meta_score = float(correct) + rng.gauss(0.0, meta_noise)
            samples.append(jd)
            right.append(correct)
        items.append(SimItem(label, samples, right))
    return items


def accuracy(items: list[SimItem], k: int, method: str, *, k_meta: int | None = None,
             tie_rule: str = "strict") -> tuple[float, float]:
    """(accuracy, tie rate) of voting over each item's first k samples (a tie counts as wrong)."""
    hits = ties = 0
    for idx, it in enumerate(items):
        samples = it.samples[:k]
        keep = select_kept(samples, k_meta) if k_meta is not None else None
        r = vote(samples, 2, method, tie_rule=tie_rule, seed=idx, kept=keep)
        hits += r.best == it.label
        ties += r.tie
    return hits / len(items), ties / len(items)


def p_majority(k: int, p: float = P) -> float:
    return sum(math.comb(k, j) * p**j * (1 - p) ** (k - j) for j in range(k // 2 + 1, k + 1))


def p_sum(k: int, margins: tuple[int, ...], p: float = P) -> tuple[float, float]:
    """Exact (P(win), P(tie)) of sum voting: the right response's lead is a sum of k independent
    terms, +m with probability p and -m otherwise, m uniform over `margins`."""
    dist = {0: 1.0}
    for _ in range(k):
        nxt: dict[int, float] = {}
        for d, pr in dist.items():
            for m in margins:
                for step, ps in ((m, p), (-m, 1 - p)):
                    nxt[d + step] = nxt.get(d + step, 0.0) + pr * ps / len(margins)
        dist = nxt
    return sum(v for d, v in dist.items() if d > 0), dist.get(0, 0.0)


def three_se(q: float, n: int = N_PAIRS) -> float:
    return 3 * math.sqrt(q * (1 - q) / n)


@pytest.fixture(scope="module")
def varied() -> list[SimItem]:
    """Margins 1-3, independent of correctness."""
    return simulate(N_PAIRS, max(KS), margins=(1, 2, 3), seed=SEED)


@pytest.fixture(scope="module")
def constant() -> list[SimItem]:
    """Every winner leads by exactly 2 (levels still random)."""
    return simulate(N_PAIRS, max(KS), margins=(2,), seed=SEED + 1)


def test_simulated_judge_has_the_stated_single_sample_accuracy(varied: list[SimItem]) -> None:
    rate = sum(it.right[0] for it in varied) / len(varied)
    assert abs(rate - P) <= three_se(P)
    # No sample ties within itself, and its argmax is what `right` says.
    for it in varied[:200]:
        for s, r in zip(it.samples, it.right, strict=True):
            assert s.scores is not None and s.scores[0] != s.scores[1]
            assert (s.scores.index(max(s.scores)) == it.label) == r


def test_majority_voting_tracks_binomial(varied: list[SimItem]) -> None:
    measured = []
    for k in KS:
        acc, tie = accuracy(varied, k, "majority")
        expected = p_majority(k)
        assert tie == 0.0  # odd k and no tie inside a sample: never a tied vote
        assert abs(acc - expected) <= three_se(expected), (k, acc, expected)
        measured.append(acc)
    assert measured == sorted(measured) and measured[-1] - measured[0] > 0.2


def test_sum_voting_with_constant_margin_tracks_binomial(constant: list[SimItem]) -> None:
    measured = []
    for k in KS:
        acc, tie = accuracy(constant, k, "sum")
        expected = p_majority(k)
        assert tie == 0.0
        assert abs(acc - expected) <= three_se(expected), (k, acc, expected)
        measured.append(acc)
    assert measured == sorted(measured)
    # Here the sum is margin * (right - wrong): item by item it agrees with majority voting.
    for it in constant[:300]:
        assert vote(it.samples, 2, "sum").best == vote(it.samples, 2, "majority").best


def test_sum_voting_with_varied_margins_tracks_its_exact_expectation(
        varied: list[SimItem]) -> None:
    measured = []
    for k in KS:
        expected_win, expected_tie = p_sum(k, (1, 2, 3))
        acc, tie = accuracy(varied, k, "sum")  # strict: a tied sum counts as wrong
        assert abs(acc - expected_win) <= three_se(expected_win), (k, acc, expected_win)
        assert abs(tie - expected_tie) <= three_se(max(expected_tie, 1e-3)), (k, tie, expected_tie)
        # A seeded random tie-break turns half of the ties into hits, on average.
        acc_r, _ = accuracy(varied, k, "sum", tie_rule="random")
        want = expected_win + expected_tie / 2
        assert abs(acc_r - want) <= three_se(want), (k, acc_r, want)
        measured.append(acc_r)
    assert measured == sorted(measured) and measured[-1] - measured[0] > 0.15
    # Margins that carry no information make sum voting no better than majority voting here.
    assert p_sum(15, (1, 2, 3))[0] < p_majority(15)


@pytest.mark.parametrize(("k", "method"), [(8, "sum"), (16, "sum"), (9, "majority"),
                                           (15, "majority")])
def test_meta_guided_voting_beats_plain_voting(k: int, method: str) -> None:
    """A noisy but informative meta judge (meta score = 1{right} + N(0, 1), AUC about 0.76):
    keeping its top k/2 samples beats voting over all k."""
    items = simulate(1500, k, margins=(1, 2, 3), seed=SEED + k, meta_noise=1.0)
    plain, _ = accuracy(items, k, method, tie_rule="random")
    guided, _ = accuracy(items, k, method, k_meta=max(1, k // 2), tie_rule="random")
    # The kept samples really are better than average.
    kept_right = [r for it in items for s, r in zip(it.samples, it.right, strict=True)
                  if s.sample_index in select_kept(it.samples, max(1, k // 2))]
    assert sum(kept_right) / len(kept_right) > P + 0.1
    # Paired comparison on the same items: require a margin well beyond the noise
    # (the SE of a difference of two accuracies on 1500 items is at most about 0.018).
    assert guided - plain > 0.03, (plain, guided)


def test_uninformative_meta_judge_does_not_help() -> None:
    """Control: with pure-noise meta scores, keeping half the samples only loses votes."""
    items = simulate(1500, 16, margins=(1, 2, 3), seed=SEED + 99, meta_noise=1e6)
    plain, _ = accuracy(items, 16, "sum", tie_rule="random")
    guided, _ = accuracy(items, 16, "sum", k_meta=8, tie_rule="random")
    assert guided <= plain + 0.01
