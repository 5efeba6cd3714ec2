"""SPCT training logic without a model: the correctness rule, the GRPO reward, RFT decisions and
statistics over a scripted judge, the reward adapter, configs and the CLI's errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from judgekit.bench.items import BenchItem, Label
from judgekit.formats import GRMFormat, grm_messages
from judgekit.schema import Judgement, SampleStatus, Usage, Verdict
from judgekit.train.cli import main as train_main
from judgekit.train.config import ConfigError, GRPOStageConfig, RFTConfig, load_config
from judgekit.train.data import TrainDataError, TrainItem, load_train_items, to_train_item
from judgekit.train.grpo import grpo_rows
from judgekit.train.reward_adapter import JudgeReward
from judgekit.train.rewards import (
    BinaryRule,
    grm_rule_reward,
    judgement_correct,
    rule_reward,
    unique_best,
)
from judgekit.train.rft import RFTStats, generate_rft
from judgekit.train.sft import rft_rows

# --------------------------------------------------------------------------------------------
# the rule
# --------------------------------------------------------------------------------------------


def test_unique_best_is_strict() -> None:
    assert unique_best([3, 9, 4]) == 1
    assert unique_best([9, 9, 4]) is None
    assert unique_best([]) is None
    assert unique_best(None) is None


def test_correct_pairwise_tie_is_wrong() -> None:
    assert judgement_correct([8, 3], best=0)
    assert not judgement_correct([3, 8], best=0)
    assert not judgement_correct([8, 8], best=0)  # tie: wrong even though 0 is among the top
    assert not judgement_correct(None, best=0)


def test_correct_binary_threshold() -> None:
    assert judgement_correct([6], good=True)
    assert not judgement_correct([5], good=True)
    assert judgement_correct([5], good=False)
    assert not judgement_correct([6], good=False)
    assert not judgement_correct([5.5], good=True) and not judgement_correct([5.5], good=False)
    assert judgement_correct([7], good=False, rule=BinaryRule(threshold=8))


def test_rule_reward_reads_text_like_the_judge() -> None:
    assert rule_reward("Analysis: fine.\nScores: \\boxed{7, 3}", 2, best=0) == 1.0
    assert rule_reward("Scores: \\boxed{3, 7}", 2, best=0) == -1.0
    assert rule_reward("Scores: \\boxed{7, 7}", 2, best=0) == -1.0
    assert rule_reward("I like the first one.", 2, best=0) == -1.0  # unreadable
    assert rule_reward("Scores: \\boxed{7, 3, 2}", 2, best=0) == -1.0  # wrong count
    assert rule_reward("Scores: \\boxed{8}", 1, good=True) == 1.0


def test_grm_rule_reward_columns_and_metrics() -> None:
    logged: dict[str, float] = {}
    completions = [[{"role": "assistant", "content": "Scores: \\boxed{2, 9}"}],
                   [{"role": "assistant", "content": "Scores: \\boxed{9, 2}"}],
                   [{"role": "assistant", "content": "no scores"}],
                   "Scores: \\boxed{3}"]
    out = grm_rule_reward(["p"] * 4, completions, n_responses=[2, 2, 2, 1], best=[1, 1, 1, -1],
                          good=[-1, -1, -1, 0], threshold=[5.5] * 4,
                          log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == [1.0, -1.0, -1.0, 1.0]
    assert logged == {"grm/correct_frac": 0.5, "grm/unparseable_frac": 0.25}
    assert grm_rule_reward.__name__ == "grm_rule_reward"


# --------------------------------------------------------------------------------------------
# items
# --------------------------------------------------------------------------------------------


def test_to_train_item_from_bench_items_and_dicts() -> None:
    bi = BenchItem(id="a", query="q", responses=["x", "y"], label=Label.best_of(1), subset="s")
    it = to_train_item(bi)
    assert it is not None and it.best == 1 and it.good is None and it.subset == "s"
    binary = BenchItem(id="b", query="q", responses=["x"], label=Label.binary(error=True))
    it2 = to_train_item(binary)
    assert it2 is not None and it2.good is False
    assert to_train_item(BenchItem(id="t", query="q", responses=["x", "y"], label=Label.tie())) is None
    assert to_train_item({"id": "d", "query": "q", "responses": ["x", "y"], "best": 0}).best == 0
    assert to_train_item({"query": "q", "responses": ["x"], "error": False}, 7).id == "7"
    assert to_train_item({"id": "l", "query": "q", "responses": ["x", "y"],
                          "label": {"kind": "best", "best": 1}}).best == 1
    with pytest.raises(TrainDataError):
        to_train_item({"id": "bad", "query": "q", "responses": ["x"], "best": 0})


def test_load_train_items_from_file_with_offset(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    rows = [{"id": str(i), "query": f"q{i}", "responses": ["a", "b"], "best": i % 2}
            for i in range(5)] + [{"id": "tie", "query": "q", "responses": ["a", "b"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, skipped = load_train_items(items_file=path, offset=1, limit=2)
    assert [it.id for it in items] == ["1", "2"] and skipped == 1
    with pytest.raises(TrainDataError):
        load_train_items(items_file=path, offset=10)


def test_real_llmbar_items_load() -> None:
    items, skipped = load_train_items(dataset="llmbar", subset="llmbar-natural", limit=3)
    assert len(items) == 3 and skipped == 0 and all(it.n_responses == 2 for it in items)


# --------------------------------------------------------------------------------------------
# RFT over a scripted judge
# --------------------------------------------------------------------------------------------


class ScriptedJudge:
    """Returns pre-set sample scores (in caller order) per item id; hinted calls use `hinted`."""

    format = GRMFormat()
    model = "scripted"

    def __init__(self, plain: dict[str, list[Any]], hinted: dict[str, list[Any]]) -> None:
        self.plain, self.hinted = plain, hinted
        self.calls: list[tuple[str, int, int | None]] = []

    async def ascore(self, query: Any, responses: Sequence[str], samples: int = 1, *,
                     hint_best: int | None = None, seed: int | None = None,
                     item_id: str | None = None, **_: Any) -> Verdict:
        assert item_id is not None
        self.calls.append((item_id, samples, hint_best))
        script = (self.hinted if hint_best is not None else self.plain)[item_id]
        assert len(script) == samples
        n = len(responses)
        out = []
        for j, s in enumerate(script):
            perm = list(range(n))[j % n:] + list(range(n))[:j % n]
            if s is None:
                out.append(Judgement(sample_index=j, status=SampleStatus.PARSE_FAILURE,
                                     permutation=perm, raw_text="garbage", error="no scores"))
                continue
            status = SampleStatus.OK
            if isinstance(s, tuple):
                s, status = s[0], SampleStatus.FORCED
            shown = [s[i] for i in perm]
            out.append(Judgement(sample_index=j, status=status, permutation=perm, scores=list(s),
                                 raw_text=f"judgement {j}\nScores: \\boxed{{{', '.join(map(str, shown))}}}",
                                 hinted=hint_best is not None, usage=Usage(completion_tokens=5)))
        return Verdict(item_id=item_id, n_responses=n, scores=[None] * n, k=samples, samples=out)

    @property
    def pipeline(self) -> Any:
        """RFT's hinted sampling goes through the judge's pipeline (`Pipeline.judge`)."""
        return SimpleNamespace(judge=self.ascore)


def _items() -> list[TrainItem]:
    return [TrainItem(id=i, query=f"query {i}", responses=["r0", "r1"], best=0)
            for i in ("easy", "mixed", "hard", "forced", "broken")] + [
        TrainItem(id="single", query="q", responses=["only"], good=False)]


def _script() -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    plain: dict[str, list[Any]] = {
        "easy": [[9, 2], [8, 3], [7, 1]],           # all right: too easy
        "mixed": [[9, 2], [2, 9], [5, 5]],          # one right, one wrong, one tie (wrong)
        "hard": [[2, 9], [3, 8], None],             # none right -> hinted
        "forced": [([9, 1],), [1, 9], [1, 9]],      # a right forced sample
        "broken": [None, None, None],               # all invalid -> hinted
        "single": [[3], [8], [5]],                  # binary bad: 3 and 5 right, 8 wrong
    }
    hinted: dict[str, list[Any]] = {"hard": [[9, 3]], "broken": [[1, 2]]}
    return plain, hinted


def test_rft_decisions_and_stats(tmp_path: Path) -> None:
    judge = ScriptedJudge(*_script())
    stats = generate_rft(_items(), judge, tmp_path, samples=3, hint_samples=1)
    records = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (tmp_path / "rft.jsonl").read_text().splitlines()]
    by = {(r["item_id"], r["sample_index"], r["hinted"]): r["decision"] for r in records}
    assert by[("easy", 0, False)] == "dropped_too_easy"
    assert [by[("mixed", j, False)] for j in range(3)] == ["kept", "rejected_wrong", "rejected_wrong"]
    assert by[("hard", 2, False)] == "rejected_invalid" and by[("hard", 0, True)] == "kept"
    assert by[("forced", 0, False)] == "kept"
    assert by[("broken", 0, True)] == "rejected_wrong"
    assert [by[("single", j, False)] for j in range(3)] == ["kept", "rejected_wrong", "kept"]
    # hints only for pairwise items with no right sample
    assert sorted((c[0], c[2]) for c in judge.calls if c[2] is not None) == [("broken", 0), ("hard", 0)]

    assert stats.items == 6 and stats.samples == 18 and stats.hinted_samples == 2
    assert stats.dropped_too_easy == 1 and stats.dropped_too_easy_samples == 3
    assert stats.kept == len(rows) == 5 and stats.hinted_kept == 1 and stats.kept_forced == 1
    assert stats.samples == (stats.kept_plain + stats.rejected_wrong + stats.rejected_invalid
                             + stats.rejected_forced + stats.dropped_too_easy_samples)
    assert stats.hinted_samples == (stats.hinted_kept + stats.hinted_rejected_wrong
                                    + stats.hinted_rejected_invalid + stats.hinted_rejected_forced)
    assert stats.items_none_correct == 2 and stats.items_hinted == 2
    assert stats.kept_items == 4  # mixed, hard (hinted), forced, single
    assert json.loads((tmp_path / "rft_stats.json").read_text())["kept"] == 5
    assert sum(r["decision"] == "kept" for r in records) == stats.kept

    # rows: the exact prompt for the sample's order, the raw judgement, metadata
    hard = next(r for r in rows if r["item_id"] == "hard")
    assert hard["hinted"] and hard["hint_position"] == 1
    assert "The best response is" not in hard["messages"][0]["content"]  # plain prompt
    mixed = next(r for r in rows if r["item_id"] == "mixed")
    assert mixed["messages"][:-1] == grm_messages("query mixed", ["r0", "r1"])
    assert mixed["messages"][-1] == {"role": "assistant",
                                     "content": "judgement 0\nScores: \\boxed{9, 2}"}
    forced = next(r for r in rows if r["item_id"] == "forced")
    assert forced["status"] == "forced" and forced["permutation"] == [0, 1]
    # SFT sees prompt/completion pairs
    pairs = rft_rows(tmp_path)
    assert len(pairs) == 5 and pairs[0]["completion"][0]["role"] == "assistant"
    assert len(rft_rows(tmp_path, include_hinted=False)) == 4


def test_rft_options_keep_forced_off_and_no_hint(tmp_path: Path) -> None:
    judge = ScriptedJudge(*_script())
    stats = generate_rft(_items(), judge, tmp_path, samples=3, hint=False, keep_forced=False,
                         drop_too_easy=False, prompt_with_hint=True)
    assert stats.rejected_forced == 1 and stats.kept_forced == 0
    assert stats.hinted_samples == 0 and stats.dropped_too_easy == 0
    assert stats.kept == 3 + 1 + 2  # easy (not dropped), mixed, single
    assert all(c[2] is None for c in judge.calls)


def test_rft_stats_add() -> None:
    a, b = RFTStats(items=1, kept=2), RFTStats(items=2, kept=1, wall_time_s=9.0)
    a.add(b)
    assert a.items == 3 and a.kept == 3 and a.wall_time_s == 0.0


# --------------------------------------------------------------------------------------------
# GRPO rows
# --------------------------------------------------------------------------------------------


def test_grpo_rows_label_follows_shuffle() -> None:
    items = [TrainItem(id=str(i), query=f"q{i}", responses=["A", "B", "C"], best=i % 3)
             for i in range(12)] + [TrainItem(id="s", query="q", responses=["only"], good=True)]
    rows = grpo_rows(items, examples=False, seed=3)
    for row, item in zip(rows, items, strict=True):
        perm = row["permutation"]
        if item.best is not None:
            assert perm[row["best"]] == item.best and row["good"] == -1
        else:
            assert row["best"] == -1 and row["good"] == 1
        shown = [item.responses[i] for i in perm]
        assert row["prompt"] == grm_messages(item.query, shown)
    assert len({tuple(r["permutation"]) for r in rows[:12]}) > 1  # actually shuffled
    assert grpo_rows(items, examples=False, seed=3) == rows  # seeded


# --------------------------------------------------------------------------------------------
# reward adapter over a scripted judge
# --------------------------------------------------------------------------------------------


class LengthJudge:
    """Scores each response by its length (capped at 10); responses saying FAIL are unreadable."""

    model = "length"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, list[str], int]] = []

    async def ascore(self, query: Any, responses: Sequence[str], samples: int = 1,
                     **_: Any) -> Verdict:
        self.calls.append((query, list(responses), samples))
        out = []
        for j in range(samples):
            if any("FAIL" in r for r in responses):
                out.append(Judgement(sample_index=j, status=SampleStatus.PARSE_FAILURE))
            else:
                out.append(Judgement(sample_index=j, status=SampleStatus.OK,
                                     permutation=list(range(len(responses))),
                                     scores=[float(min(10, max(1, len(r) + j))) for r in responses]))
        return Verdict(n_responses=len(responses), scores=[None] * len(responses), k=samples,
                       samples=out)


def test_judge_reward_pointwise() -> None:
    judge = LengthJudge()
    reward = JudgeReward(judge, samples=2)
    prompts = [[{"role": "user", "content": "hi"}]] * 3
    completions = [[{"role": "assistant", "content": "abc"}],
                   [{"role": "assistant", "content": "FAIL"}],
                   [{"role": "assistant", "content": "abcdef"}]]
    logged: dict[str, float] = {}
    out = reward(prompts=prompts, completions=completions, completion_ids=[[1]] * 3,
                 log_metric=lambda k, v: logged.__setitem__(k, v), best=[0, 0, 0])
    assert out == [3.5, 1.0, 6.5]  # mean over 2 samples (j adds 0 then 1); a failure: lowest
    assert reward.stats == {"calls": 3, "completions": 3, "failed": 1}
    assert logged == {"judge_reward/failed_frac": pytest.approx(1 / 3)}
    assert judge.calls[0] == ([{"role": "user", "content": "hi"}], ["abc"], 2)
    assert reward.__name__ == "judge_reward"


def test_judge_reward_group_and_failure_value() -> None:
    judge = LengthJudge()
    reward = JudgeReward(judge, mode="group", failure_reward=0.0, normalize=True, max_group=2,
                         name="grm")
    prompts = ["p1", "p1", "p1", "p2"]
    out = reward(prompts, ["a", "abc", "FAIL", "abcd"])
    assert [c[1] for c in judge.calls] == [["a", "abc"], ["FAIL"], ["abcd"]]
    assert out == [0.0, pytest.approx(2 / 9), 0.0, pytest.approx(3 / 9)]
    assert reward.failed == 1 and reward.__name__ == "grm"
    with pytest.raises(ValueError):
        JudgeReward(judge, mode="listwise")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# configs and CLI
# --------------------------------------------------------------------------------------------


def test_config_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "grpo.yaml"
    path.write_text("dataset: llmbar\nout_dir: runs/x\nbeta: 0.02\nmax_steps: 10\n")
    cfg = load_config(GRPOStageConfig, path, {"max_steps": 2, "beta": None})
    assert cfg.beta == 0.02 and cfg.max_steps == 2 and cfg.num_generations == 4
    assert GRPOStageConfig(dataset="x", out_dir=Path("o")).beta == 0.08
    (tmp_path / "c.json").write_text(json.dumps({"items_file": "i.jsonl", "out_dir": "o"}))
    assert load_config(RFTConfig, tmp_path / "c.json").samples == 3
    with pytest.raises(ConfigError, match="--nonsense"):
        load_config(RFTConfig, None, {"dataset": "x", "out_dir": "o", "nonsense": 1})
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(RFTConfig, None, {"out_dir": "o"})
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(RFTConfig, tmp_path / "bad.yaml")


def test_cli_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = [
        ["rft", "--dataset", "llmbar", "--out-dir", str(tmp_path), "--samples", "0"],
        ["rft", "--dataset", "llmbar", "--out-dir", str(tmp_path), "--samples", "two"],
        ["grpo", "--dataset", "llmbar", "--out-dir", str(tmp_path),
         "--per-device-train-batch-size", "3"],
        ["sft", "--out-dir", str(tmp_path), "--dataset-path", str(tmp_path / "missing.jsonl")],
        ["rft", "--dataset", "no-such-benchmark", "--out-dir", str(tmp_path)],
        ["grpo", "--dataset", "llmbar", "--out-dir", str(tmp_path), "--scale-rewards", "odd"],
        ["rft", "--config", str(tmp_path / "missing.yaml")],
    ]
    for argv in cases:
        with pytest.raises(SystemExit) as exc:
            raise SystemExit(train_main(argv))
        assert exc.value.code == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "error:" in err, (argv, err)


def test_cli_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert train_main(["grpo", "--dataset", "llmbar", "--out-dir", "o", "--beta", "0.01",
                       "--no-examples", "--limit", "none", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["beta"] == 0.01 and cfg["examples"] is False and cfg["limit"] is None


def test_too_easy_items_from_rft_samples(tmp_path: Path) -> None:
    from judgekit.train.grpo import too_easy_items

    generate_rft(_items(), ScriptedJudge(*_script()), tmp_path, samples=3)
    assert too_easy_items(tmp_path) == {"easy"}
    assert too_easy_items(tmp_path / "samples.jsonl") == {"easy"}
    with pytest.raises(TrainDataError):
        too_easy_items(tmp_path / "nowhere")


def test_cli_runs_a_stage_and_prints_one_line(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from judgekit.train import cli

    seen: list[Any] = []

    def fake_sft(cfg: Any) -> dict[str, Any]:
        seen.append(cfg)
        return {"global_steps": 2, "seconds_per_step": 1.5, "train_loss": 0.25,
                "model_dir": str(cfg.out_dir), "judge_spec": f"hf:{cfg.out_dir}"}

    cls, _, help_text = cli.STAGES["sft"]
    monkeypatch.setitem(cli.STAGES, "sft", (cls, cli._describe_training("sft", fake_sft), help_text))
    assert train_main(["sft", "--dataset-path", "r.jsonl", "--out-dir", "o", "--max-steps", "2",
                       "--lora", "--lora-target-modules", "q_proj,v_proj"]) == 0
    assert seen[0].max_steps == 2 and seen[0].lora and seen[0].learning_rate == 5e-6
    from judgekit.train.common import lora_config

    assert set(lora_config(seen[0]).target_modules) == {"q_proj", "v_proj"}
    out = capsys.readouterr().out.strip()
    assert out == "sft: 2 steps, 1.5 s/step, train loss 0.2500 -> o (load with Judge(model='hf:o'))"
