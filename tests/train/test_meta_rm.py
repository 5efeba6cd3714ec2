"""Meta RM training: reading labelled samples from bench runs and RFT output, the split, the
held-out report (hand-computed), the CLI (no model); then a few real training steps on CPU
(marked train/model) with the trained directory used in meta-guided voting."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.bench_standin import SampleSpec, ScriptedJudgeStandIn
from support.fault_server import FaultServer

from judgekit.aggregate import aggregate
from judgekit.bench.items import BenchItem, Label
from judgekit.bench.metrics import roc_auc
from judgekit.bench.runner import run
from judgekit.schema import Judgement, SampleStatus
from judgekit.train.cli import main as train_main
from judgekit.train.config import MetaStageConfig
from judgekit.train.data import TrainDataError
from judgekit.train.meta_rm import (
    MetaItem,
    heldout_report,
    meta_split,
    read_sources,
    split_items,
)
from judgekit.train.rewards import BinaryRule


def _bench_items() -> list[BenchItem]:
    return [
        BenchItem(id="a", query="qa", responses=["a0", "a1"], label=Label.best_of(0)),
        BenchItem(id="b", query="qb", responses=["b0", "b1", "b2"], label=Label.best_of(2)),
        BenchItem(id="t", query="qt", responses=["t0", "t1"], label=Label.tie()),
        BenchItem(id="f", query="qf", responses=["f0", "f1"], label=Label.best_of(1)),
        BenchItem(id="s", query="qs", responses=["s0"], label=Label.binary(error=True)),
    ]


def _items_file(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": it.id, "query": it.query,
                                        "responses": it.responses}) + "\n"
                            for it in _bench_items()))
    return path


def favours_text_0(item: dict[str, Any], k: int) -> list[SampleSpec]:
    """Per sample: the response whose text ends in 0 scores 9, the others 2; item f fails."""
    if item["id"] == "f":
        return ["api_error"] * k
    if len(item["responses"]) == 1:
        return [[3.0], [7.0]][:k]
    return [[9.0 if r.endswith("0") else 2.0 for r in item["responses"]]] * k


def _cfg(tmp_path: Path, **kw: Any) -> MetaStageConfig:
    return MetaStageConfig(out_dir=tmp_path / "meta", **kw)


def test_samples_and_labels_from_bench_runs_in_both_orders(tmp_path: Path) -> None:
    fwd, rev = tmp_path / "fwd", tmp_path / "rev"
    judge = ScriptedJudgeStandIn(favours_text_0)
    run(_bench_items(), judge, out_dir=fwd, samples=2, dataset_name="mine")
    run(_bench_items(), judge, out_dir=rev, samples=2, dataset_name="mine", reverse=True)
    cfg = _cfg(tmp_path, samples_from=[fwd, rev], items_file=_items_file(tmp_path / "i.jsonl"))
    data = read_sources(cfg.samples_from, cfg)
    assert data.skipped_unlabelled == 2 and data.skipped_failed == 2  # t (tie) and f, twice
    got = {(it.id, Path(it.source).name): it for it in data.items}
    assert set(got) == {(i, run_) for i in "abs" for run_ in ("fwd", "rev")}
    assert got["a", "rev"].responses == ["a1", "a0"] and got["a", "rev"].best == 1
    assert got["b", "rev"].responses == ["b2", "b1", "b0"] and got["b", "rev"].best == 0
    assert got["s", "fwd"].good is False and got["s", "fwd"].best is None
    rule = BinaryRule()
    # the text ending in 0 wins every sample: right for a, wrong for b; s: 3 is right (bad)
    assert [got["a", "rev"].label(s, rule) for s in got["a", "rev"].samples] == [True, True]
    assert [got["b", "fwd"].label(s, rule) for s in got["b", "fwd"].samples] == [False, False]
    assert [got["s", "fwd"].label(s, rule) for s in got["s", "fwd"].samples] == [True, False]

    with pytest.raises(TrainDataError, match="items_file"):
        read_sources([fwd], _cfg(tmp_path, samples_from=[fwd]))
    (tmp_path / "few.jsonl").write_text(json.dumps({"id": "a", "query": "q",
                                                    "responses": ["x", "y"]}) + "\n")
    with pytest.raises(TrainDataError, match="'b' is not in the item source"):
        read_sources([fwd], _cfg(tmp_path, samples_from=[fwd], items_file=tmp_path / "few.jsonl"))
    with pytest.raises(TrainDataError, match="neither a bench run"):
        read_sources([tmp_path], _cfg(tmp_path, samples_from=[tmp_path]))


def _rft_dir(tmp_path: Path) -> Path:
    out = tmp_path / "rft"
    out.mkdir()
    items = _items_file(tmp_path / "items.jsonl")
    (out / "summary.json").write_text(json.dumps({"stage": "rft",
                                                  "config": {"items_file": str(items)}}))
    rows = [("a", 0, False, "ok", [8, 2], [0, 1]), ("a", 1, False, "forced", [2, 8], [1, 0]),
            ("a", 2, False, "parse_failure", None, [0, 1]), ("a", 0, True, "ok", [9, 1], [0, 1]),
            ("b", 0, False, "ok", [1, 2, 5], [2, 0, 1])]
    best = {"a": 0, "b": 2}
    (out / "samples.jsonl").write_text("".join(json.dumps(
        {"item_id": i, "sample_index": j, "hinted": h, "status": st, "scores": sc,
         "permutation": p, "best": best[i], "good": None, "correct": None, "decision": "x",
         "raw_text": f"judgement {i}{j}{h}"}) + "\n" for i, j, h, st, sc, p in rows))
    return out


def test_samples_from_rft_output(tmp_path: Path) -> None:
    rft = _rft_dir(tmp_path)
    cfg = _cfg(tmp_path, samples_from=[rft])
    data = read_sources(cfg.samples_from, cfg)
    assert data.skipped_hinted == 1
    a, b = sorted(data.items, key=lambda it: it.id)
    assert a.responses == ["a0", "a1"] and b.responses == ["b0", "b1", "b2"]
    rule = BinaryRule()
    assert [a.label(s, rule) for s in a.samples] == [True, False, None]
    assert [b.label(s, rule) for s in b.samples] == [True]
    assert a.samples[1].status is SampleStatus.FORCED and a.samples[1].permutation == [1, 0]
    with_hints = read_sources([rft], cfg.model_copy(update={"include_hinted": True}))
    assert sum(len(it.samples) for it in with_hints.items) == 5


def test_split_keeps_an_items_samples_on_one_side(tmp_path: Path) -> None:
    items = [MetaItem(id=f"i{n % 10}", query="q", responses=["x", "y"], best=0, source=str(n))
             for n in range(20)]  # every id twice (two sources)
    train, held = split_items(items, 0.2, seed=3)
    assert len({it.id for it in held}) == 2 and len(held) == 4
    assert not {it.id for it in train} & {it.id for it in held}
    assert split_items(items, 0.2, seed=3) == (train, held)
    assert split_items(items, 0.0)[1] == []
    assert len({it.id for it in split_items(items[:2], 0.01)[1]}) == 1  # at least one held out

    rft = _rft_dir(tmp_path)
    split = meta_split(_cfg(tmp_path, samples_from=[rft], eval_from=[rft],
                            include_hinted=True))
    assert split.train == [] and split.train_items_also_heldout == 2  # never trained on
    assert all(not s.hinted for it in split.heldout for s in it.samples)


def _jd(i: int, scores: list[float], meta: float, perm: list[int] | None = None) -> Judgement:
    return Judgement(sample_index=i, status=SampleStatus.OK, scores=scores, meta_score=meta,
                     permutation=perm or list(range(len(scores))))


def test_heldout_report_hand_computed() -> None:
    items = [
        # plain: 22 vs 22, a tie; meta keeps s0 and s3 (k_meta 2): 17 vs 5, right
        MetaItem(id="A", query="q", responses=["x", "y"], best=0,
                 samples=[_jd(0, [9, 2], 2.0), _jd(1, [2, 9], -1.0), _jd(2, [3, 8], -2.0),
                          _jd(3, [8, 3], 1.0)]),
        # plain: 7 vs 13, right; meta keeps s0 (k_meta 1): 5 vs 5, a tie
        MetaItem(id="B", query="q", responses=["x", "y"], best=1,
                 samples=[_jd(0, [5, 5], 0.5), _jd(1, [2, 8], 0.0)]),
        # one good response: plain mean 5.5 sits on the threshold (wrong); meta keeps the 8
        MetaItem(id="C", query="q", responses=["x"], good=True,
                 samples=[_jd(0, [8], 1.0), _jd(1, [3], 0.9)]),
    ]
    out = heldout_report(items)
    assert out["samples"] == 8 and out["positive_rate"] == 0.5
    # positives 2, 1, 0, 1.0 against negatives -1, -2, 0.5, 0.9: 14 of 16 pairs ordered
    assert out["roc_auc"] == 14 / 16
    assert out["voting_strict"] == pytest.approx(1 / 3)
    assert out["meta_strict"] == pytest.approx(2 / 3)
    assert out["delta_strict"] == pytest.approx(1 / 3)
    assert out["k"] == [2, 4] and out["k_meta"] == "k // 2"
    assert heldout_report(items, k_meta=4)["meta_strict"] == out["voting_strict"]  # keeps all


# -- CLI --------------------------------------------------------------------------------------
def test_cli_meta_config_lists_and_errors(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    assert train_main(["meta", "--samples-from", "runs/a", "runs/b", "--out-dir", "o",
                       "--eval-from", "none", "--lora", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["samples_from"] == ["runs/a", "runs/b"] and cfg["eval_from"] is None
    assert cfg["learning_rate"] == 1e-5 and cfg["lora"] is True
    for argv in (["meta", "--out-dir", "o"],
                 ["meta", "--samples-from", str(tmp_path), "--out-dir", "o"],
                 ["meta", "--samples-from", "x", "--out-dir", "o", "--eval-fraction", "1"]):
        assert train_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "judgekit train meta: error:" in err, err


def test_cli_meta_prints_one_line(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from judgekit.train import meta_rm

    def fake_run_meta(cfg: Any) -> dict[str, Any]:
        return {"global_steps": 3, "train_loss": 0.5, "model_dir": "o", "meta_spec": "classifier:o",
                "data": {"train_samples": 10, "train_items": 5, "train_positive_rate": 0.3,
                         "heldout_items": 2},
                "heldout": {"samples": 4, "items": 2, "roc_auc": 0.75, "voting_random": 0.5,
                            "meta_random": 1.0, "voting_strict": 0.0, "meta_strict": 0.5}}

    monkeypatch.setattr(meta_rm, "run_meta", fake_run_meta)
    assert train_main(["meta", "--samples-from", "r", "--out-dir", "o"]) == 0
    assert capsys.readouterr().out.strip() == (
        "meta: 10 samples from 5 items (30.0% correct), 3 steps, train loss 0.5000; held out 4 "
        "samples of 2 items: ROC-AUC 0.750, accuracy voting 50.0% -> meta-guided 100.0% "
        "(random tie-break; strict 0.0% -> 50.0%) -> o (use meta='classifier:o')")


# -- real training on CPU ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def _one_thread() -> Iterator[None]:
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield
    torch.set_num_threads(old)


def _separable_rft(out: Path, n_items: int) -> Path:
    """RFT-format samples whose correctness shows in the text: a right judgement says it
    checked the claims, a wrong one that it did not read the responses. A meta RM that learns
    anything at all must rank them apart; inverted labels or loss would rank them backwards."""
    out.mkdir(parents=True)
    items, rows = [], []
    for i in range(n_items):
        best = i % 2
        items.append({"id": f"q{i}", "query": f"Question {i}: which answer is right?",
                      "responses": [f"Answer A{i}.", f"Answer B{i}."]})
        for j in range(2):
            correct = (i + j) % 2 == 0
            scores = [8, 3] if (best if correct else 1 - best) == 0 else [3, 8]
            cue = ("Every claim was checked against the question." if correct
                   else "I did not read the responses.")
            rows.append({"item_id": f"q{i}", "sample_index": j, "hinted": False,
                         "status": "ok", "scores": scores, "permutation": [0, 1], "best": best,
                         "good": None,
                         "raw_text": f"Analysis: {cue}\nScores: \\boxed{{{scores[0]}, {scores[1]}}}"})
    (out / "items.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    (out / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    (out / "summary.json").write_text(json.dumps({"config": {"items_file":
                                                             str(out / "items.jsonl")}}))
    return out


@pytest.mark.train
@pytest.mark.model
def test_meta_rm_lora_learns_the_label_direction(tmp_path: Path, _one_thread: None) -> None:
    pytest.importorskip("peft")
    from judgekit.train.meta_rm import run_meta

    rft = _separable_rft(tmp_path / "rft", 12)
    out = tmp_path / "meta"
    cfg = MetaStageConfig(samples_from=[rft], out_dir=out, eval_fraction=0.34, max_steps=6,
                          per_device_train_batch_size=4, learning_rate=1e-3, lora=True,
                          lora_r=8, lora_alpha=16, max_length=512, save_checkpoints=False,
                          threads=1)
    s = run_meta(cfg)
    assert s["global_steps"] == 6 and s["data"]["train_samples"] == 16
    assert s["data"]["train_positive_rate"] == 0.5
    h = s["heldout"]
    assert h["samples"] == 8 and h["roc_auc"] is not None and h["roc_auc"] >= 0.9, h
    # each held-out item has one right and one wrong sample: keeping the top one is right
    assert h["meta_strict"] == 1.0 and h["voting_strict"] == 0.0
    assert not (out / "adapter_config.json").exists()  # LoRA merged: plain transformers loads it
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out)
    assert config.num_labels == 1 and config.problem_type == "multi_label_classification"


@pytest.mark.train
@pytest.mark.model
def test_meta_rm_from_embedded_samples_guides_voting(tmp_path: Path, _one_thread: None,
                                                     fault_server: FaultServer) -> None:
    from judgekit import Judge
    from judgekit.bench.datasets import load_dataset
    from judgekit.config import GenerationConfig
    from judgekit.meta import SequenceClassifierMetaScorer
    from judgekit.train.meta_rm import run_meta

    try:
        judge = Judge("embedded", max_tokens=32, temperature=1.0, examples=False,
                      max_criteria=2, seed=0, cache=False)
    except Exception as exc:  # the embedded model package is an optional extra
        pytest.skip(f"embedded model unavailable: {exc}")
    runs = tmp_path / "run"
    items = load_dataset("llmbar", subset="llmbar-natural", limit=4)
    run(items, judge, out_dir=runs, samples=2, dataset_name="llmbar", subset="llmbar-natural",
        concurrency=1)
    out = tmp_path / "meta"
    cfg = MetaStageConfig(samples_from=[runs], out_dir=out, eval_fraction=0.5, max_steps=2,
                          per_device_train_batch_size=2, learning_rate=1e-4, max_length=1024,
                          save_checkpoints=False, threads=1)
    s = run_meta(cfg)
    assert s["global_steps"] == 2 and s["meta_spec"] == f"classifier:{out}"
    assert s["data"]["train_items"] == 2 and s["data"]["heldout_items"] == 2

    # the summary's held-out figures, recomputed from meta_eval.jsonl and the run's samples
    rows = [json.loads(x) for x in (out / "meta_eval.jsonl").read_text().splitlines()]
    rated = [r for r in rows if r["meta_score"] is not None]
    assert all(r["status"] in ("ok", "forced") for r in rated)
    assert s["heldout"]["roc_auc"] == roc_auc([r["correct"] for r in rated],
                                              [r["meta_score"] for r in rated])
    by_id = {it.id: it for it in items}
    from judgekit.bench.runner import read_results

    right = {"plain": 0, "meta": 0}
    scorer = SequenceClassifierMetaScorer(out)
    for rec in read_results(runs):
        mine = {r["sample_index"]: r["meta_score"] for r in rows if r["item_id"] == rec.item_id}
        if not mine:
            continue
        assert rec.verdict is not None
        it = by_id[rec.item_id]
        # the classifier:DIR scorer gives the scores the stage stored
        again = scorer.score_sync(it.query, it.responses, rec.verdict.samples)
        assert again == pytest.approx([mine[s.sample_index] for s in rec.verdict.samples])
        samples = [s.model_copy(update={"meta_score": mine[s.sample_index]})
                   for s in rec.verdict.samples]
        for key, km in (("plain", None), ("meta", 1)):
            agg = aggregate(samples, 2, k_meta=km)
            right[key] += agg.best == it.label.best and not agg.tie
    assert s["heldout"]["voting_strict"] == right["plain"] / 2
    assert s["heldout"]["meta_strict"] == right["meta"] / 2

    # the trained directory plugs into a Judge as meta="classifier:DIR"
    live = Judge("openai:judge-test", base_url=fault_server.openai_url, api_key="sk-x",
                 examples=False, config=GenerationConfig(max_tokens=64),
                 meta=f"classifier:{out}")
    v = live.score("jk-item-m q", ["GOOD", "meh"], samples=4)
    assert v.meta_model == f"meta-classifier:{out}" and v.k_meta == 2
    metas = {x.sample_index: x.meta_score for x in v.samples}
    assert all(isinstance(x, float) for x in metas.values())
    kept = [float(metas[x.sample_index] or 0.0) for x in v.samples if x.kept]
    dropped = [float(metas[x.sample_index] or 0.0) for x in v.samples if not x.kept]
    assert len(kept) == 2 and min(kept) >= max(dropped)
