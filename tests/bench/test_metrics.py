"""Metrics, exactly, on hand-computed cases."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from support.bench_standin import SampleSpec, make_verdict

from judgekit.bench import metrics as m
from judgekit.bench.items import Label
from judgekit.bench.runner import ResultRecord
from judgekit.schema import Verdict


def rec(item_id: str, label: Label, specs: list[SampleSpec] | None, *, n: int = 2,
        subset: str = "s", metadata: dict[str, Any] | None = None,
        meta_scores: list[float | None] | None = None, order: list[int] | None = None,
        verdict: Verdict | None = None) -> ResultRecord:
    if verdict is None and specs is not None:
        verdict = make_verdict(item_id, n, specs, meta_scores)
    return ResultRecord(item_id=item_id, subset=subset, label=label, n_responses=n,
                        metadata=metadata or {}, verdict=verdict, order=order)


def test_accuracy_tie_rules_tie_rate_and_parse_stats() -> None:
    recs = [
        rec("A", Label.best_of(0), [[8.0, 3.0]], subset="x"),
        rec("B", Label.best_of(1), [[5.0, 5.0]], subset="x"),
        rec("C", Label.best_of(0), ["parse_failure"], subset="y"),  # failed: no valid sample
        rec("D", Label.best_of(1), [[9.0, 2.0]], subset="y"),
        rec("E", Label.best_of(0), None, subset="y"),  # failed: no verdict
    ]
    strict = m.accuracy(recs)  # the run's own rule (the verdicts say strict)
    assert (strict.n, strict.correct) == (3, 1)  # over the judged items A, B, D
    assert m.accuracy(recs, "strict") == strict
    # random: B's tie is broken with the item's seed, as the live Judge breaks it
    expected = 1 + (random.Random(0).choice([0, 1]) == 1)
    assert m.accuracy(recs, "random").correct == expected
    by = m.accuracy_by_subset(recs)
    assert by["x"].value == 0.5 and by["y"].value == 0.0 and by["y"].n == 1
    assert m.tie_rate(recs) == {"items": 3, "ties": 1, "tie_rate": 1 / 3}
    ps = m.parse_stats(recs)
    assert ps["samples"] == 4 and ps["samples_invalid"] == 1
    assert ps["invalid_sample_rate"] == 0.25
    assert ps["items_failed"] == 2 and ps["items_judged"] == 3


def test_random_tie_break_is_the_live_verdicts() -> None:
    """Issue 22 item 8: under tie_rule="random" the report's pick is `Verdict.best`, the tie
    broken with the item's own seed, never broken again with another."""
    from judgekit.aggregate import build_verdict
    from judgekit.schema import Judgement, SampleStatus

    recs = []
    for i in range(400):
        sample = Judgement(sample_index=0, status=SampleStatus.OK, permutation=[0, 1],
                           scores=[4.0, 4.0])
        verdict = build_verdict([sample], 2, k=1, tie_rule="random", seed=1000 + i)
        recs.append(rec(f"t{i}", Label.best_of(i % 2), None, verdict=verdict))
    picks = [m.revote(r.verdict).best for r in recs if r.verdict is not None]
    assert picks == [r.verdict.best for r in recs if r.verdict is not None]
    a = m.accuracy(recs)
    assert a.n == 400 and a.correct == sum(r.verdict is not None and r.verdict.best == i % 2
                                           for i, r in enumerate(recs))
    assert a.value is not None and 0.4 < a.value < 0.6
    assert m.accuracy(recs, "strict").correct == 0


def test_rmbench_matrix_hard_normal_easy() -> None:
    # two items per cell; number correct per cell (row = chosen style, col = rejected style)
    correct = [[2, 1, 0],
               [2, 2, 1],
               [2, 1, 2]]
    recs = []
    for i in range(3):
        for j in range(3):
            for t in range(2):
                ok = t < correct[i][j]
                scores = [9.0, 1.0] if ok else [1.0, 9.0]
                recs.append(rec(f"p{t}-c{i}r{j}", Label.best_of(0), [scores],
                                metadata={"chosen_style": i, "rejected_style": j,
                                          "domain": "chat"}))
    out = m.rmbench_matrix(recs)
    assert out["matrix"] == [[1.0, 0.5, 0.0], [1.0, 1.0, 0.5], [1.0, 0.5, 1.0]]
    assert out["hard"] == pytest.approx(1 / 3)        # (0.5 + 0 + 0.5) / 3
    assert out["normal"] == pytest.approx(1.0)
    assert out["easy"] == pytest.approx(2.5 / 3)      # (1 + 1 + 0.5) / 3
    assert out["total"] == pytest.approx(6.5 / 9) and out["n"] == 18
    dom = m.rmbench_by_domain(recs)
    assert dom["average"]["hard"] == pytest.approx(1 / 3)


def test_rmb_mean_of_four_parts_with_bon() -> None:
    def meta(goal: str, kind: str) -> dict[str, Any]:
        return {"goal": goal, "kind": kind}

    recs = [
        rec("hp1", Label.best_of(0), [[9.0, 1.0]], metadata=meta("Helpfulness", "pairwise")),
        rec("hp2", Label.best_of(0), [[1.0, 9.0]], metadata=meta("Helpfulness", "pairwise")),
        rec("mp1", Label.best_of(1), [[1.0, 9.0]], metadata=meta("Harmlessness", "pairwise")),
        rec("hb1", Label.best_of(2), [[1.0, 2.0, 9.0]], n=3, metadata=meta("Helpfulness", "bon")),
        # best-of-N: the labelled best must be THE argmax; second place is wrong
        rec("hb2", Label.best_of(2), [[9.0, 2.0, 8.0]], n=3, metadata=meta("Helpfulness", "bon")),
        rec("mb1", Label.best_of(0), [[5.0, 5.0, 1.0]], n=3,
            metadata=meta("Harmlessness", "bon")),
    ]
    out = m.rmb_scores(recs, "strict")
    assert (out["help_pairwise"], out["harm_pairwise"]) == (0.5, 1.0)
    assert (out["help_bon"], out["harm_bon"]) == (0.5, 0.0)
    assert out["rmb"] == pytest.approx(0.5) and out["parts"] == 4


def test_binary_auc_precision_recall_f1() -> None:
    recs = [
        rec("ok1", Label.binary(error=False), [[7.0], [9.0]], n=1),  # mean 8
        rec("ok2", Label.binary(error=False), [[6.0]], n=1),
        rec("er1", Label.binary(error=True), [[6.0]], n=1),
        rec("er2", Label.binary(error=True), [[2.0]], n=1),
    ]
    assert m.mean_score(recs[0]) == 8.0
    out = m.binary_scores(recs, threshold=5.5)
    assert out["roc_auc"] == pytest.approx(3.5 / 4)  # pairs: 1 + 1 + 0.5 + 1
    assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (1, 0, 1, 2)
    assert out["precision"] == 1.0 and out["recall"] == 0.5
    assert out["f1"] == pytest.approx(2 / 3) and out["accuracy"] == 0.75
    # a response with no valid score failed: counted apart, never scored
    recs.append(rec("er3", Label.binary(error=True), ["parse_failure"], n=1))
    assert m.binary_scores(recs)["n"] == 4


def test_roc_auc_matches_sklearn() -> None:
    rng = random.Random(0)
    y = [rng.random() < 0.6 for _ in range(300)]
    s = [float(rng.randint(1, 10)) for _ in range(300)]
    assert m.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert m.roc_auc([True, True], [1.0, 2.0]) is None


def test_cohen_kappa_hand_case_and_sklearn() -> None:
    human = [0, 0, 1, 1, "tie", "tie"]
    judge = [0, 1, 1, 1, "tie", 0]
    assert m.cohen_kappa(human, judge) == pytest.approx(0.5)
    hs, js = [str(x) for x in human], [str(x) for x in judge]
    assert m.cohen_kappa(hs, js) == pytest.approx(cohen_kappa_score(hs, js))
    assert m.cohen_kappa([1, 1], [1, 1]) is None
    recs = [
        rec("a", Label.best_of(0), [[9.0, 1.0]]),
        rec("b", Label.best_of(0), [[1.0, 9.0]]),
        rec("c", Label.best_of(1), [[1.0, 9.0]]),
        rec("d", Label.best_of(1), [[2.0, 9.0]]),
        rec("e", Label.tie(), [[5.0, 5.0]]),
        rec("f", Label.tie(), [[9.0, 5.0]]),
    ]
    out = m.human_agreement(recs)
    assert out["items"] == 6 and out["gold_ties"] == 2
    assert out["kappa"] == pytest.approx(0.5) and out["agreement"] == pytest.approx(4 / 6)


def test_position_consistency_from_sample_permutations() -> None:
    # make_verdict shows samples 0, 2 in order [0, 1] and samples 1, 3 in order [1, 0]
    item = rec("a", Label.best_of(0), [[9.0, 1.0], [8.0, 2.0], [1.0, 9.0], [7.0, 3.0]])
    single = rec("b", Label.best_of(0), [[9.0, 1.0]])
    out = m.position_consistency([item, single])
    # order A prefers {0, 1}, order B prefers {0, 0}: cross pairs agree 2 of 4
    assert out == {"items": 1, "consistency": 0.5}


def test_paired_position_consistency_across_reversed_runs() -> None:
    a = [rec("x", Label.best_of(0), [[9.0, 1.0]]), rec("y", Label.best_of(1), [[1.0, 9.0]]),
         rec("z", Label.best_of(0), [[5.0, 5.0]])]
    b = [rec("x", Label.best_of(1), [[1.0, 9.0]], order=[1, 0]),  # shown 1 = dataset 0
         rec("y", Label.best_of(0), [[1.0, 9.0]], order=[1, 0]),  # shown 1 = dataset 0
         rec("z", Label.best_of(1), [[4.0, 4.0]], order=[1, 0])]
    out = m.paired_position_consistency(a, b)
    # z ties in both orders: it says nothing about position and is left out
    assert out == {"items": 2, "consistency": 0.5, "undecided": 1}


def test_scaling_curve_plain_and_meta_from_stored_samples() -> None:
    from judgekit.aggregate import build_verdict

    samples = make_verdict("a", 2, [[4.0, 6.0], [9.0, 2.0], [5.0, 5.0], [6.0, 7.0]],
                           meta_scores=[0.1, 0.9, 0.5, 0.2]).samples
    live = build_verdict(samples, 2, k=4, k_meta=2, seed=3)  # the default rule: 4 // 2
    item = rec("a", Label.best_of(0), None, verdict=live)
    assert m.revote(live, 2, meta=False).scores == [13.0, 8.0]
    assert m.revote(live, 4, meta=False).scores == [24.0, 20.0]
    assert m.revote(live, 3).scores == [9.0, 2.0]  # k_meta at 3 samples: 3 // 2 = 1
    assert m.revote(live, 4).scores == live.scores == [14.0, 7.0]
    plain = [(k, a.correct) for k, a in m.scaling_curve([item])]
    assert plain == [(1, 0), (2, 1), (3, 1), (4, 1)]
    meta = [(k, a.correct) for k, a in m.scaling_curve([item], meta=True)]
    assert meta == [(1, 0), (2, 1), (3, 1), (4, 1)]
    assert m.has_meta_scores([item])
    # A k_meta that was given keeps that many at every j (all of them when there are fewer).
    given = build_verdict(samples, 2, k=4, k_meta=3, k_meta_setting=3)
    assert m.revote(given, 2).scores == [13.0, 8.0]
    assert m.revote(given, 3).scores == [18.0, 13.0]
    # A valid sample the meta judge did not rate fills a kept place (the live Verdict's rule).
    unrated = build_verdict(make_verdict("b", 2, [[4.0, 6.0]]).samples, 2, k=1, k_meta=1)
    assert m.revote(unrated, 1).scores == [4.0, 6.0]


def test_cost_stats() -> None:
    recs = [rec("a", Label.best_of(0), [[9.0, 1.0], [9.0, 1.0]]),
            rec("b", Label.best_of(0), [[9.0, 1.0]])]
    out = m.cost_stats(recs)
    assert out["prompt_tokens"] == 150 and out["completion_tokens"] == 30
    assert out["total_tokens"] == 180 and out["cost_usd"] is None
    assert out["wall_time_s"] == pytest.approx(0.01)
