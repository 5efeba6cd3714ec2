"""The runner and metrics with the real `judgekit.judge.Judge` over a scripted backend (no model):
the GRM prompt, meta-guided voting and the stored samples the scaling curve needs."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from support.prompt_blocks import shown_responses

from judgekit.backends.base import Backend, Completion, GenerationResult
from judgekit.bench import metrics, report
from judgekit.bench.items import BenchItem, Label
from judgekit.bench.runner import read_results, run
from judgekit.config import GenerationConfig
from judgekit.schema import Message, SampleStatus, Usage

judge_mod = pytest.importorskip("judgekit.judge")


class GRMScript(Backend):
    """Scripted backend: GRM prompts get a judgement that is right 2 times in 3 (wrong ones say
    "(hasty)"); meta prompts rate hasty judgements 2 and the others 9."""

    spec = "scripted:grm"

    def __init__(self) -> None:
        self.counter = itertools.count()

    async def generate(self, messages: list[Message], config: GenerationConfig,
                       n: int = 1) -> GenerationResult:
        text = messages[-1]["content"]
        if text.startswith("You check the work of a judge"):
            tail = text.split("#### Judgement", 1)[-1]
            rating = 2 if "(hasty)" in tail else 9
            outs = [f"Rating: \\boxed{{{rating}}}"] * n
        else:
            shown = shown_responses(text)
            outs = []
            for _ in range(n):
                right = next(self.counter) % 3 != 2
                scores = [8 if ("GOOD" in s) == right else 3 for s in shown[-2:]]
                note = "" if right else " (hasty)"
                outs.append("Specific Criteria:\n- Accuracy (Weight: 100%)\n"
                            f"Analysis: compared{note}.\nScores: \\boxed{{{scores[0]}, "
                            f"{scores[1]}}}")
        return GenerationResult(completions=[Completion(text=t) for t in outs],
                                usage=Usage(prompt_tokens=40, completion_tokens=12, calls=1))

    async def aclose(self) -> None:
        return None


def _items(n: int) -> list[BenchItem]:
    return [BenchItem(id=f"i{k}", query=f"question {k}",
                      responses=["GOOD answer", "weak answer"] if k % 2 == 0
                      else ["weak answer", "GOOD answer"], label=Label.best_of(k % 2))
            for k in range(n)]


def test_real_judge_meta_guided_voting_through_the_runner(tmp_path: Path) -> None:
    judge = judge_mod.Judge(GRMScript(), examples=False, seed=0)
    run(_items(6), judge, out_dir=tmp_path, samples=4, meta=True, dataset_name="toy")
    recs = read_results(tmp_path)
    assert len(recs) == 6
    for rec in recs:
        assert rec.verdict is not None and rec.verdict.k == 4 and rec.verdict.k_meta == 2
        assert all(s.status is SampleStatus.OK for s in rec.verdict.samples)
        assert all(s.meta_score is not None for s in rec.verdict.samples)
        assert sum(s.kept for s in rec.verdict.samples) == 2
    assert metrics.has_meta_scores(recs)
    meta_curve = dict(metrics.scaling_curve(recs, meta=True))
    assert meta_curve[4].value == 1.0  # the meta judge filters out the hasty samples
    assert metrics.accuracy(recs).value == 1.0  # stored verdicts used the kept samples
    frame = report.scaling_frame([tmp_path])
    assert list(frame.columns) == [tmp_path.name, f"{tmp_path.name} n",
                                   f"{tmp_path.name} meta", f"{tmp_path.name} meta n"]


def test_real_judge_plain_voting_records_permutations(tmp_path: Path) -> None:
    judge = judge_mod.Judge(GRMScript(), examples=False, seed=0)
    run(_items(4), judge, out_dir=tmp_path, samples=2, dataset_name="toy")
    recs = read_results(tmp_path)
    perms = {tuple(s.permutation) for r in recs if r.verdict for s in r.verdict.samples}
    assert perms == {(0, 1), (1, 0)}
    assert metrics.position_consistency(recs)["items"] == 4
