"""Bias probes (position, length, agreement among samples) on hand-computed cases, their report
section and plot, and `judgekit bench bias` on a scripted stand-in judge (no model)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest
from support.bench_standin import SampleSpec, ScriptedJudgeStandIn, make_verdict

from judgekit.bench import metrics as m
from judgekit.bench import report as rp
from judgekit.bench.cli import add_bench_parser
from judgekit.bench.datasets import load_dataset
from judgekit.bench.items import BenchItem, Label
from judgekit.bench.plots import plot_bias
from judgekit.bench.runner import ResultRecord, read_results, run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rec(item_id: str, label: Label, specs: list[SampleSpec], *, n: int = 2,
        lengths: list[int] | None = None, order: list[int] | None = None) -> ResultRecord:
    """make_verdict shows sample 0 in the caller's order, sample 1 reversed, and so on."""
    metadata = {m.LENGTHS_KEY: lengths} if lengths is not None else {}
    return ResultRecord(item_id=item_id, label=label, n_responses=n, metadata=metadata,
                        verdict=make_verdict(item_id, n, specs), order=order)


def test_first_position_win_rate() -> None:
    recs = [
        rec("A", Label.best_of(0), [[8.0, 3.0], [8.0, 3.0]]),  # shown first: 0 (wins), 1 (loses)
        rec("B", Label.best_of(1), [[5.0, 5.0], [2.0, 9.0]]),  # a tie; shown first 1 (wins)
        rec("C", Label.best_of(2), [[9.0, 1.0, 1.0]], n=3),  # shown first 0 (wins)
        rec("D", Label.best_of(0), ["parse_failure", [1.0, 9.0]]),  # shown first 1 (wins)
        rec("E", Label.binary(error=False), [[9.0]], n=1),  # one response: no position
    ]
    out = m.first_position_wins(recs)
    assert (out["samples"], out["decided"], out["ties"], out["first_wins"]) == (6, 5, 1, 4)
    assert out["first_position_win_rate"] == 4 / 5
    assert out["chance"] == pytest.approx((4 * 0.5 + 1 / 3) / 5)
    # gold shown first in A's first sample, B's second and D's second (of 6 valid samples)
    assert out["gold_shown_first"] == 2 / 6
    assert m.first_position_wins([])["first_position_win_rate"] is None


def test_length_bias_hand_computed() -> None:
    recs = [
        rec("P1", Label.best_of(0), [[8.0, 4.0]], lengths=[100, 50]),  # longer right, correct
        rec("P2", Label.best_of(0), [[3.0, 7.0]], lengths=[30, 90]),  # longer wrong, wrong
        rec("P3", Label.best_of(0), [[9.0, 2.0]], lengths=[40, 80]),  # longer wrong, correct
        rec("P4", Label.best_of(1), [[6.0, 6.0]], lengths=[50, 50]),  # equal lengths
        # a --reverse record: lengths are stored in dataset order, the record shows 1 then 0
        rec("P5", Label.best_of(0), [[6.0, 4.0]], lengths=[20, 70], order=[1, 0]),
        rec("P6", Label.best_of(0), [[6.0, 4.0]]),  # no lengths: left out
        rec("P7", Label.best_of(0), [[6.0, 4.0, 1.0]], n=3, lengths=[1, 2, 3]),  # not a pair
    ]
    out = m.length_bias(recs)  # the records were voted under the strict rule
    dx = [50, -60, -40, 0, 50]
    ds = [4, -4, 7, 0, 2]
    sxy = sum(a * b for a, b in zip(dx, ds, strict=True))
    assert out["pairs"] == 5
    assert out["correlation"] == pytest.approx(
        sxy / math.sqrt(sum(a * a for a in dx) * sum(b * b for b in ds)))
    assert (out["decided"], out["longer_win_rate"]) == (4, 3 / 4)  # P3: the shorter won
    assert (out["n_longer_right"], out["acc_longer_right"]) == (2, 1.0)  # P1, P5
    assert (out["n_longer_wrong"], out["acc_longer_wrong"]) == (2, 0.5)  # P2 wrong, P3 right


def test_length_correlation_does_not_depend_on_listing_order() -> None:
    a = [rec("x", Label.best_of(0), [[8.0, 4.0]], lengths=[100, 50]),
         rec("y", Label.best_of(0), [[3.0, 7.0]], lengths=[30, 35])]
    b = [a[0], rec("y", Label.best_of(1), [[7.0, 3.0]], lengths=[35, 30])]  # y listed swapped
    assert m.length_bias(a)["correlation"] == pytest.approx(m.length_bias(b)["correlation"])


def test_record_lengths_from_mapping_and_metadata() -> None:
    r = rec("x", Label.best_of(0), [[8.0, 4.0]], order=[1, 0])
    assert m.record_lengths(r) is None
    assert m.record_lengths(r, {"x": [3, 9]}) == [9, 3]  # dataset order, remapped
    assert m.record_lengths(r, {"x": [3, 9, 1]}) is None  # does not fit the item
    assert m.record_lengths(rec("y", Label.best_of(0), [[1.0, 2.0]], lengths=[4, 5])) == [4, 5]


def test_sample_agreement() -> None:
    recs = [
        rec("A", Label.best_of(0), [[8.0, 3.0], [7.0, 1.0], [9.0, 2.0], [5.0, 5.0]]),
        rec("B", Label.best_of(1), [[1.0, 9.0], [2.0, 8.0]]),
        rec("C", Label.best_of(1), [[1.0, 9.0], "parse_failure"]),  # one valid sample
        rec("D", Label.binary(error=True), [[8.0], [3.0]], n=1),  # good vs bad
    ]
    out = m.sample_agreement(recs)
    assert out["items"] == 3
    assert out["per_item"] == [3 / 6, 1.0, 0.0]
    assert out["agreement"] == pytest.approx(0.5)
    assert out["unanimous_rate"] == pytest.approx(1 / 3)


def _items(n: int) -> list[BenchItem]:
    """Pairs whose responses differ in length by 2 characters; the gold is the longer one in
    even items and the shorter one in odd items."""
    out = []
    for i in range(n):
        short, long_ = "s", "lll"
        responses = [long_, short] if i % 4 in (0, 3) else [short, long_]
        gold = responses.index(long_) if i % 2 == 0 else responses.index(short)
        out.append(BenchItem(id=f"i{i}", query="q", responses=responses,
                             label=Label.best_of(gold),
                             metadata={m.LENGTHS_KEY: [len(r) for r in responses]}))
    return out


def prefers_longer(item: dict[str, Any], k: int) -> list[SampleSpec]:
    top = max(len(r) for r in item["responses"])
    return [[9.0 if len(r) == top else 2.0 for r in item["responses"]]] * k


def prefers_first(item: dict[str, Any], k: int) -> list[SampleSpec]:
    return [[9.0] + [2.0] * (len(item["responses"]) - 1)] * k


def test_bias_frame_and_plot_on_twin_runs(tmp_path: Path) -> None:
    fwd, rev = tmp_path / "fwd", tmp_path / "rev"
    run(_items(8), ScriptedJudgeStandIn(prefers_longer), out_dir=fwd, dataset_name="mine")
    run(_items(8), ScriptedJudgeStandIn(prefers_longer), out_dir=rev, dataset_name="mine",
        reverse=True)
    frame = rp.bias_frame([fwd, rev])
    assert list(frame.columns) == ["fwd", "rev", "fwd + rev"]
    both = frame["fwd + rev"]
    assert both["reverse_consistency"] == 100.0  # the preference follows the text
    assert both["longer_win_rate"] == 100.0 and both["length_score_corr"] == 1.0
    assert both["acc_longer_wrong"] == 0.0 and both["n_longer_wrong"] == 8
    assert both["acc_longer_right"] == 100.0 and both["n_longer_right"] == 8
    assert both["first_position_win_rate"] == 50.0  # the longer one is first half the time
    assert "Bias probes" in rp.render_report([fwd, rev])
    path = plot_bias([fwd, rev], tmp_path / "bias.png")
    assert path is not None and path.read_bytes()[:8] == PNG_SIGNATURE

    pf, pr = tmp_path / "pf", tmp_path / "pr"
    run(_items(8), ScriptedJudgeStandIn(prefers_first), out_dir=pf, dataset_name="mine")
    run(_items(8), ScriptedJudgeStandIn(prefers_first), out_dir=pr, dataset_name="mine",
        reverse=True)
    frame = rp.bias_frame([pf, pr])
    assert frame.loc["first_position_win_rate"].tolist() == [100.0, 100.0, 100.0]
    assert frame.loc["reverse_consistency", "pf + pr"] == 0.0
    assert frame.loc["length_score_corr", "pf + pr"] == 0.0  # position, not length


def test_bias_frame_reads_lengths_of_a_registered_dataset(tmp_path: Path) -> None:
    items = load_dataset("llmbar", subset="llmbar-natural", limit=4)
    out = tmp_path / "run"
    run(items, ScriptedJudgeStandIn(prefers_longer), out_dir=out, dataset_name="llmbar",
        subset="llmbar-natural")
    assert not any(m.LENGTHS_KEY in r.metadata for r in read_results(out))
    frame = rp.bias_frame([out])
    assert frame.loc["longer_win_rate", "run"] == 100.0  # lengths came from the dataset


# -- CLI --------------------------------------------------------------------------------------
def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="judgekit")
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_bias_on_a_registered_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from judgekit.bench import runner

    monkeypatch.setattr(runner, "make_judge",
                        lambda *a, **k: ScriptedJudgeStandIn(prefers_first))
    out = tmp_path / "bias"
    argv = ["bench", "bias", "llmbar", "--subset", "llmbar-natural", "--limit", "3",
            "--out", str(out), "--no-progress"]
    assert _main(argv) == 0
    text = capsys.readouterr().out
    assert "first_position_win_rate" in text and "forward + reverse" in text
    assert (out / "bias.png").read_bytes()[:8] == PNG_SIGNATURE
    fwd, rev = read_results(out / "forward"), read_results(out / "reverse")
    assert len(fwd) == len(rev) == 3 and all(r.order == [1, 0] for r in rev)
    real = {it.id: [len(x) for x in it.responses]
            for it in load_dataset("llmbar", subset="llmbar-natural", limit=3)}
    assert {r.item_id: r.metadata[m.LENGTHS_KEY] for r in fwd} == real
    info = json.loads((out / "reverse" / "run.json").read_text())
    assert (info["subset"], info["limit"], info["reverse"]) == ("llmbar-natural", 3, True)
    assert _main(argv) == 0  # re-running resumes: nothing judged again
    assert "0 judged now" in capsys.readouterr().out


def test_cli_bias_on_an_own_file_and_bad_arguments(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from judgekit.bench import runner

    monkeypatch.setattr(runner, "make_judge",
                        lambda *a, **k: ScriptedJudgeStandIn(prefers_longer))
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps({"id": f"x{i}", "query": "q",
                                          "responses": ["a" * (i + 1), "bb"], "label": "A>B"})
                              for i in range(4)) + "\n")
    out = tmp_path / "b"
    assert _main(["bench", "bias", str(data), "--out", str(out), "--no-progress",
                  "--format", "csv"]) == 0
    text = capsys.readouterr().out
    assert ",forward,reverse,forward + reverse" in text and "longer_win_rate,100" in text
    assert _main(["bench", "bias", "no-such-dataset"]) == 2
    assert _main(["bench", "bias", "llmbar", "--meta", "--baseline", "pairwise"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("judgekit bench bias: error:" in line for line in err)


def test_plots_leave_the_pyplot_backend_alone(tmp_path: Path) -> None:
    """A notebook's inline plotting keeps working after judgekit writes a plot."""
    import matplotlib

    fwd = tmp_path / "fwd"
    run(_items(4), ScriptedJudgeStandIn(prefers_longer), out_dir=fwd, dataset_name="mine")
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        assert plot_bias([fwd], tmp_path / "bias.png") is not None
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
