"""The plain LLM-as-a-judge baseline through a scripted (fake) backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.prompt_blocks import position_of

from judgekit.backends.base import Backend, Completion, GenerationResult
from judgekit.bench import metrics
from judgekit.bench.baseline import PairwiseBaselineJudge, choice_scores
from judgekit.bench.items import BenchItem, Label
from judgekit.bench.runner import read_results, run
from judgekit.config import GenerationConfig
from judgekit.errors import TransientBackendError
from judgekit.schema import Message, SampleStatus, Usage


class ScriptedBackend(Backend):
    """A fake backend: `reply(prompt_text)` gives the completion text."""

    def __init__(self, reply: Callable[[str], str]) -> None:
        self.reply = reply
        self.prompts: list[str] = []
        self.configs: list[GenerationConfig] = []

    @property
    def spec(self) -> str:
        return "scripted:fake"

    async def generate(self, messages: list[Message], config: GenerationConfig,
                       n: int = 1) -> GenerationResult:
        text = messages[-1]["content"]
        self.prompts.append(text)
        self.configs.append(config)
        return GenerationResult(completions=[Completion(text=self.reply(text)) for _ in range(n)],
                                usage=Usage(prompt_tokens=50, completion_tokens=5, calls=1))

    async def aclose(self) -> None:
        return None


def _good_position(prompt: str) -> int:
    """1-based position of the response containing GOOD in the rendered prompt."""
    return position_of(prompt, "GOOD")


def test_choice_scores_encoding() -> None:
    assert choice_scores(1, 3) == [1.0, 10.0, 1.0]


async def test_picks_the_named_response_in_caller_order() -> None:
    backend = ScriptedBackend(lambda p: f"Response is better.\nBest: \\boxed{{{_good_position(p)}}}")
    judge = PairwiseBaselineJudge(backend)
    v = await judge.ascore("q", ["bad", "GOOD one"], samples=4, item_id="i")
    assert v.best == 1 and v.scores == [4.0, 40.0] and v.valid_samples == 4
    perms = [s.permutation for s in v.samples]
    assert [0, 1] in perms and [1, 0] in perms  # balanced orders
    assert all(s.scores == [1.0, 10.0] for s in v.samples)
    assert backend.configs[0].temperature == 0.5
    greedy = await judge.ascore("q", ["bad", "GOOD one"], samples=1)
    assert greedy.best == 1 and backend.configs[-1].temperature == 0.0


async def test_position_biased_judge_ties_under_balanced_orders() -> None:
    judge = PairwiseBaselineJudge(ScriptedBackend(lambda p: "Best: \\boxed{1}"))
    v = await judge.ascore("q", ["a", "b"], samples=2)
    assert v.tie and v.best is None and v.scores == [11.0, 11.0]


async def test_parse_failures_and_api_errors_are_recorded() -> None:
    judge = PairwiseBaselineJudge(ScriptedBackend(lambda p: "I cannot decide."))
    v = await judge.ascore("q", ["a", "b"], samples=2)
    assert v.valid_samples == 0 and v.error and v.scores == [None, None]
    assert {s.status for s in v.samples} == {SampleStatus.PARSE_FAILURE}

    class Down(ScriptedBackend):
        async def generate(self, messages: list[Message], config: GenerationConfig,
                           n: int = 1) -> GenerationResult:
            raise TransientBackendError("503 from server")

    v = await PairwiseBaselineJudge(Down(lambda p: "")).ascore("q", ["a", "b"], samples=1)
    assert v.samples[0].status is SampleStatus.API_ERROR and v.error
    with pytest.raises(ValueError, match="meta"):
        await judge.ascore("q", ["a", "b"], meta=True)


def test_baseline_through_the_runner(tmp_path: Path) -> None:
    items = [BenchItem(id=f"i{k}", query="q", responses=["GOOD", "bad"] if k % 2 == 0
                       else ["bad", "GOOD"], label=Label.best_of(k % 2)) for k in range(6)]
    judge = PairwiseBaselineJudge(
        ScriptedBackend(lambda p: f"Best: \\boxed{{{_good_position(p)}}}"))
    run(items, judge, out_dir=tmp_path, samples=2, dataset_name="toy", baseline="pairwise")
    recs = read_results(tmp_path)
    assert len(recs) == 6
    assert metrics.accuracy(recs).value == 1.0
    assert metrics.position_consistency(recs)["consistency"] == 1.0
