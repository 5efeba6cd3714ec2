"""Reports and plots from stored runs, and the `bench` CLI (no model is called)."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import pytest
from support.bench_standin import SampleSpec, ScriptedJudgeStandIn, make_verdict

from judgekit.bench import report as rp
from judgekit.bench.cli import add_bench_parser
from judgekit.bench.items import BenchItem, Label
from judgekit.bench.plots import write_plots
from judgekit.bench.runner import run
from judgekit.schema import Verdict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class MetaStandIn(ScriptedJudgeStandIn):
    """Noisy samples (the gold response usually wins) with meta scores that favour right ones."""

    async def ascore_many(self, items: Any, samples: int = 1, **kw: Any) -> list[Verdict]:
        out = []
        for idx, given in enumerate(items):
            item = given.model_dump()
            rng = random.Random(item["id"])
            gold = int(item["id"].split("-g")[1])
            specs: list[SampleSpec] = []
            metas: list[float | None] = []
            for _ in range(samples):
                right = rng.random() < 0.6
                winner = gold if right else 1 - gold
                scores = [3.0, 3.0]
                scores[winner] = 8.0
                specs.append(scores)
                metas.append(rng.random() + (0.5 if right else 0.0))
            v = make_verdict(item["id"], 2, specs, metas, k_meta=max(1, samples // 2))
            out.append(v)
            if kw.get("on_result"):
                kw["on_result"](idx, v)
        return out


def _items(n: int, **meta: Any) -> list[BenchItem]:
    return [BenchItem(id=f"i{i}-g{i % 2}", query="q", responses=["a", "b"],
                      label=Label.best_of(i % 2), subset=f"grp{i % 3}",
                      metadata={**meta, "chosen_style": i % 3, "rejected_style": (i // 3) % 3}
                      if meta.get("rm") else dict(meta))
            for i in range(n)]


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    a, b, c = tmp_path / "grm-k8", tmp_path / "grm-k1", tmp_path / "baseline"
    run(_items(30), MetaStandIn(), out_dir=a, samples=8, dataset_name="llmbar", seed=1)
    run(_items(30), MetaStandIn(), out_dir=b, samples=1, dataset_name="llmbar", seed=1)
    run(_items(30), ScriptedJudgeStandIn(), out_dir=c, samples=1, dataset_name="llmbar",
        baseline="pairwise")
    return [a, b, c]


def test_frames_compare_runs_side_by_side(runs: list[Path]) -> None:
    summary = rp.summary_frame(runs)
    assert list(summary.index) == ["grm-k8", "grm-k1", "baseline"]
    assert summary.loc["grm-k8", "k"] == 8 and summary.loc["baseline", "judge"] == \
        "baseline:pairwise"
    assert 0 <= summary.loc["grm-k8", "accuracy"] <= 100
    subsets = rp.subset_frame(runs)
    assert set(subsets.index) == {"grp0", "grp1", "grp2"} and "grm-k8 n" in subsets.columns
    scaling = rp.scaling_frame(runs)
    assert list(scaling.index) == list(range(1, 9))
    assert "grm-k8" in scaling.columns and "grm-k8 meta" in scaling.columns
    bench = rp.benchmark_frame(runs)
    assert bench.loc["llmbar: accuracy", "paper: GRM-27B greedy"] == 78.3


def test_render_all_formats(runs: list[Path]) -> None:
    table = rp.render_report(runs, "table")
    assert "grm-k8" in table and "accuracy_items" in table and "78.3" in table
    assert "barely help" in table
    md = rp.render_report(runs, "markdown")
    assert "| accuracy |" in md
    assert md.count("## ") >= 4
    csv_text = rp.render_report(runs, "csv")
    assert csv_text.splitlines()[0] == "section,row,column,value"
    assert any(line.startswith("scaling,") for line in csv_text.splitlines())
    with pytest.raises(ValueError):
        rp.render_report(runs, "html")


def test_plots_are_pngs(runs: list[Path], tmp_path: Path) -> None:
    rm = tmp_path / "rm"
    run(_items(27, rm=True, domain="chat"), MetaStandIn(), out_dir=rm, samples=2,
        dataset_name="rm-bench")
    paths = write_plots([*runs, rm], tmp_path / "plots")
    names = {p.name for p in paths}
    assert {"scaling.png", "subsets.png"} <= names
    assert any(n.startswith("rmbench_matrix") for n in names)
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5_000


def test_rmbench_and_binary_benchmark_rows(tmp_path: Path) -> None:
    rm = tmp_path / "rm"
    run(_items(27, rm=True, domain="chat"), MetaStandIn(), out_dir=rm, samples=1,
        dataset_name="rm-bench")
    frame = rp.benchmark_frame([rm])
    assert {"rm-bench: chat/hard", "rm-bench: average/total", "rm-bench: total"} <= \
        set(frame.index)
    bi = tmp_path / "bin"
    items = [BenchItem(id=f"b{i}", query="q", responses=["r" * (i + 1)],
                       label=Label.binary(error=i % 2 == 0)) for i in range(10)]
    run(items, ScriptedJudgeStandIn(), out_dir=bi, dataset_name="realmistake")
    frame = rp.benchmark_frame([bi])
    assert "realmistake: roc_auc" in frame.index
    assert frame.loc["realmistake: roc_auc", "paper: GRM-27B greedy"] == 72.2


# -- CLI --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="judgekit")
    sub = parser.add_subparsers(dest="command")
    add_bench_parser(sub)
    return parser


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return int(args.func(args))


def test_cli_report_and_plots(runs: list[Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    plots = tmp_path / "p"
    assert _main(["bench", "report", *map(str, runs), "--format", "markdown",
                  "--plots", str(plots)]) == 0
    out = capsys.readouterr()
    assert "grm-k8" in out.out and (plots / "scaling.png").is_file()
    assert _main(["bench", "report", str(runs[0]), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("section,row,column,value")


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["bench", "list", "--no-count"]) == 0
    out = capsys.readouterr().out
    assert "llmbar" in out and "realmistake" in out


@pytest.mark.parametrize("argv", [
    ["bench", "run", "llmbar", "--samples", "0"],
    ["bench", "run", "llmbar", "--limit", "x"],
    ["bench", "run", "llmbar", "--baseline", "listwise"],
    ["bench", "report", "--format", "pdf", "d"],
    ["bench", "frobnicate"],
])
def test_cli_bad_arguments_exit_2_with_one_line(argv: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err


@pytest.mark.parametrize("argv", [
    ["bench", "run", "no-such-dataset"],
    ["bench", "run", "llmbar", "--meta", "--baseline", "pairwise"],
    ["bench", "run", "missing.jsonl"],
    ["bench", "report", "/nonexistent/run"],
])
def test_cli_semantic_errors_return_2(argv: list[str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err


def test_cli_run_own_jsonl_file_with_baseline_on_a_fake_backend(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps({"id": f"x{i}", "query": "q",
                                          "responses": ["a", "b"], "label": "A>B"})
                              for i in range(3)) + "\n")
    from judgekit.bench import runner

    monkeypatch.setattr(runner, "make_judge", lambda *a, **k: ScriptedJudgeStandIn())
    out = tmp_path / "run"
    assert _main(["bench", "run", str(data), "--out", str(out), "--no-progress"]) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    info = json.loads((out / "run.json").read_text())
    assert info["dataset"] == "mine"


def test_paired_position_consistency_section(tmp_path: Path) -> None:
    def by_text(item: dict[str, Any], k: int) -> list[SampleSpec]:
        return [[9.0 if r == "b" else 2.0 for r in item["responses"]]] * k

    def by_position(item: dict[str, Any], k: int) -> list[SampleSpec]:
        return [[9.0, 2.0]] * k

    fwd, rev = tmp_path / "fwd", tmp_path / "rev"
    run(_items(8), ScriptedJudgeStandIn(by_text), out_dir=fwd, dataset_name="llmbar")
    run(_items(8), ScriptedJudgeStandIn(by_text), out_dir=rev, dataset_name="llmbar",
        reverse=True)
    frame = rp.paired_frame([fwd, rev])
    assert list(frame.index) == ["fwd vs rev"] and frame.loc["fwd vs rev", "items"] == 8
    assert frame.loc["fwd vs rev", "consistency"] == 100.0  # preference follows the text
    assert "reverse twin" in rp.render_report([fwd, rev])
    pf, pr = tmp_path / "pf", tmp_path / "pr"
    run(_items(8), ScriptedJudgeStandIn(by_position), out_dir=pf, dataset_name="llmbar")
    run(_items(8), ScriptedJudgeStandIn(by_position), out_dir=pr, dataset_name="llmbar",
        reverse=True)
    assert rp.paired_frame([pf, pr]).loc["pf vs pr", "consistency"] == 0.0  # always "first"
