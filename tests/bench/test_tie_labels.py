"""Tie-labelled items: accuracy leaves them out (as the papers report it); agreement counts them,
a tie label agreeing with a tie verdict. From loader to report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support.bench_standin import SampleSpec, ScriptedJudgeStandIn, make_verdict

from judgekit.bench import metrics as m
from judgekit.bench import report as rp
from judgekit.bench.generic import FieldMap, load_dataframe
from judgekit.bench.items import Label
from judgekit.bench.runner import ResultRecord, run


def rec(item_id: str, label: Label, specs: list[SampleSpec] | None, n: int = 2) -> ResultRecord:
    verdict = make_verdict(item_id, n, specs) if specs is not None else None
    return ResultRecord(item_id=item_id, subset="s", label=label, n_responses=n, metadata={},
                        verdict=verdict)


RECORDS = [
    rec("best-right", Label.best_of(0), [[9.0, 2.0]]),
    rec("best-wrong", Label.best_of(0), [[2.0, 9.0]]),
    rec("best-judge-tie", Label.best_of(1), [[5.0, 5.0]]),
    rec("tie-judge-tie", Label.tie(), [[6.0, 6.0]]),
    rec("tie-judge-picks", Label.tie(), [[7.0, 6.0]]),
    rec("tie-no-valid", Label.tie(), ["parse_failure"]),
    rec("tie-failed", Label.tie(), None),  # no judgement at all: counted, not judged
    rec("tie3-partial", Label.tie([0, 2]), [[8.0, 1.0, 8.0]], n=3),
    rec("tie3-wrong-set", Label.tie([0, 2]), [[8.0, 8.0, 8.0]], n=3),
    rec("rank-top-shared", Label.ranking([1, 1, 3]), [[4.0, 4.0, 1.0]], n=3),
    rec("binary", Label.binary(error=True), [[3.0]], n=1),
]


def test_accuracy_leaves_tie_labels_out() -> None:
    strict = m.accuracy(RECORDS, "strict")
    assert (strict.n, strict.correct) == (3, 1)


def test_agreement_counts_tie_labels() -> None:
    out = m.tie_label_agreement(RECORDS)
    # judged best/tie items: 3 best + 5 tie (the failed items, with no valid sample, are not
    # judged; binary is neither)
    assert out["items"] == 8 and out["tie_labelled"] == 5
    # agree: best-right, tie-judge-tie, tie3-partial, rank-top-shared
    assert out["agree"] == 4 and out["agreement"] == pytest.approx(4 / 8)
    assert out["tie_agree"] == 3 and out["tie_agreement"] == pytest.approx(3 / 5)
    assert m.count_tie_labels(RECORDS) == 7  # the failed one too
    assert m.gold_tie(RECORDS[0]) is None and m.gold_tie(RECORDS[3]) == frozenset({0, 1})


def test_report_shows_tie_labels_separately(tmp_path: Path) -> None:
    """PandaLM-style data with three annotators (0 = tie) through the loader, runner and report."""
    df = pd.DataFrame({
        "id": [f"p{i}" for i in range(6)], "query": ["q"] * 6, "responses": [["a", "b"]] * 6,
        "a1": [1, 2, 0, 0, 1, 1], "a2": [1, 2, 0, 1, 2, 1], "a3": [2, 2, 0, 2, 0, 1],
    })
    items = load_dataframe(df, FieldMap(label=["a1", "a2", "a3"], label_format="index1",
                                        tie_labels=["0"]))
    assert [str(it.label) for it in items] == ["best=0", "best=1", "tie", "tie", "tie", "best=0"]

    def script(item: dict[str, Any], k: int) -> list[SampleSpec]:
        scores = {"p0": [8.0, 2.0], "p1": [8.0, 2.0], "p2": [5.0, 5.0], "p3": [5.0, 5.0],
                  "p4": [9.0, 1.0], "p5": [9.0, 1.0]}[item["id"]]
        return [scores] * k

    out = tmp_path / "pandalm"
    run(items, ScriptedJudgeStandIn(script), out_dir=out, dataset_name="pandalm")
    summary = rp.summary_frame([out])
    row = summary.loc["pandalm"]
    assert row["accuracy"] == pytest.approx(100 * 2 / 3, abs=0.01)  # p0, p5 right; p1 wrong
    assert row["accuracy_items"] == 3
    assert row["tie_labelled"] == 3
    assert row["agreement_incl_ties"] == pytest.approx(100 * 4 / 6, abs=0.01)  # + p2, p3
    bench = rp.benchmark_frame([out])
    assert bench.loc["pandalm: tie_labelled_items", "pandalm"] == 3
    pct = pytest.approx(100 * 4 / 6, abs=0.01)
    assert bench.loc["pandalm: agreement_incl_ties", "pandalm"] == pct
    assert bench.loc["pandalm: tie_agreement", "pandalm"] == pytest.approx(100 * 2 / 3, abs=0.01)
    assert "agreement_incl_ties" in rp.render_report([out])


def test_tie_free_runs_show_no_tie_agreement(tmp_path: Path) -> None:
    items = load_dataframe(pd.DataFrame({"query": ["q"] * 2, "responses": [["a", "b"]] * 2,
                                         "label": [0, 1]}))
    out = tmp_path / "plain"
    run(items, ScriptedJudgeStandIn(), out_dir=out, dataset_name="plain")
    row = rp.summary_frame([out]).loc["plain"]
    assert row["tie_labelled"] == 0 and pd.isna(row["agreement_incl_ties"])
    assert "plain: agreement_incl_ties" not in rp.benchmark_frame([out]).index
