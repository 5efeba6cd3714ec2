"""The plain LLM-as-a-judge baseline: "which response is best?", no principles, no 1-10 scores.

`PairwiseBaselineJudge` has the same `ascore` / `ascore_many` shape as `judgekit.judge.Judge`, so
the benchmark runner, the results files and the metrics treat both alike.

How a choice is stored: each sample's `Judgement.scores` holds **10 for the chosen response and 1
for every other one** (in the caller's order). Summing those over k samples (the usual voting) is
exactly a majority vote over the samples' choices, and a tie in the sums is a tie in the vote.
A sample whose answer names no response is a PARSE_FAILURE with no scores, as in the GRM judge.
Responses are shown in balanced permutations (one per sample), like the GRM judge, so a
position-biased baseline is not flattered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from judgekit.backends.base import Backend, GenerationResult
from judgekit.backends.registry import resolve_backend
from judgekit.config import GenerationConfig
from judgekit.errors import BackendError, JudgekitError, ParseError, describe_error
from judgekit.judge import seed_for_item
from judgekit.parsing import parse_best_index
from judgekit.prompts import pairwise_baseline_messages
from judgekit.schema import Judgement, Message, SampleStatus, Usage, Verdict
from judgekit.voting import balanced_permutations, vote

CHOSEN_SCORE = 10.0
OTHER_SCORE = 1.0
SAMPLING_TEMPERATURE = 0.5


def choice_scores(chosen: int, n: int) -> list[float]:
    """The stored scores of one baseline sample: 10 for the chosen response, 1 for the others."""
    return [CHOSEN_SCORE if i == chosen else OTHER_SCORE for i in range(n)]


class PairwiseBaselineJudge:
    """LLM-as-a-judge through any backend: the prompt asks for the best response's number.

    One sample decodes greedily; k > 1 samples use temperature 0.5 and one balanced permutation
    of the responses each. Meta-guided voting does not apply (there is no critique to rate).
    """

    def __init__(self, model: str | Backend | None = None, *,
                 config: GenerationConfig | None = None, max_tokens: int | None = None,
                 temperature: float | None = None, seed: int = 0, concurrency: int = 4,
                 template_dir: str | None = None, **backend_kwargs: Any) -> None:
        self.backend: Backend = resolve_backend(model, **backend_kwargs)
        self.config = config or GenerationConfig.model_validate({"max_tokens": 512})
        if max_tokens is not None:
            self.config = self.config.with_(max_tokens=max_tokens)
        self.temperature = temperature
        self.seed = seed
        self.concurrency = concurrency
        self.template_dir = template_dir

    @property
    def model(self) -> str:
        return f"baseline:{self.backend.spec}"

    def __repr__(self) -> str:
        return f"PairwiseBaselineJudge(model={self.backend.spec!r})"

    def _config(self, samples: int, seed: int) -> GenerationConfig:
        if samples == 1 and self.temperature is None:
            return self.config.with_(temperature=0.0, seed=seed)
        temp = self.temperature if self.temperature is not None else SAMPLING_TEMPERATURE
        return self.config.with_(temperature=temp, seed=seed)

    async def ascore(self, query: str | Sequence[Message], responses: Sequence[str],
                     samples: int = 1, *, meta: Any = None, item_id: str | None = None,
                     **_: Any) -> Verdict:
        if meta:
            raise ValueError("the pairwise baseline has no meta-guided voting")
        responses = list(responses)
        if not responses:
            raise ValueError("at least one response is needed")
        if samples < 1:
            raise ValueError("samples must be at least 1")
        start = time.perf_counter()
        n = len(responses)
        seed = seed_for_item(self.seed, query, responses)
        perms = balanced_permutations(n, samples, seed)
        config = self._config(samples, seed)
        groups: dict[tuple[int, ...], list[int]] = {}
        for j, p in enumerate(perms):
            groups.setdefault(tuple(p), []).append(j)

        async def call(perm: tuple[int, ...]) -> GenerationResult:
            messages = pairwise_baseline_messages(query, [responses[i] for i in perm],
                                                  template_dir=self.template_dir)
            return await self.backend.generate(messages, config, len(groups[perm]))

        outcomes = await asyncio.gather(*(call(p) for p in groups), return_exceptions=True)
        judgements: list[Judgement | None] = [None] * samples
        for perm, outcome in zip(groups, outcomes, strict=True):
            indices = groups[perm]
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, BackendError | JudgekitError | OSError
                                  | asyncio.TimeoutError):
                    raise outcome
                for j in indices:
                    judgements[j] = Judgement(sample_index=j, status=SampleStatus.API_ERROR,
                                              permutation=list(perm), error=describe_error(outcome),
                                              usage=Usage(calls=1 if j == indices[0] else 0))
                continue
            for pos, j in enumerate(indices):
                usage = outcome.usage if pos == 0 else Usage()
                text = outcome.completions[pos].text if pos < len(outcome.completions) else ""
                judgements[j] = self._judgement(text, list(perm), j, usage)
        done = [jd for jd in judgements if jd is not None]
        result = vote(done, n, "sum", "strict", seed)
        valid = sum(1 for jd in done if jd.valid)
        error = None
        if valid == 0:
            first = next((jd.error for jd in done if jd.error), None)
            kinds = ", ".join(sorted({jd.status.value for jd in done}))
            error = f"no valid sample ({kinds}): {first}"
        return Verdict(item_id=item_id, n_responses=n, scores=result.scores, best=result.best,
                       tie=result.tie, voting="sum", k=samples, valid_samples=valid,
                       invalid_samples=len(done) - valid, samples=done, model=self.model,
                       usage=Usage.total(jd.usage for jd in done),
                       wall_time_s=round(time.perf_counter() - start, 4), error=error,
                       metadata={"judge": "pairwise_baseline"})

    @staticmethod
    def _judgement(text: str, perm: list[int], index: int, usage: Usage) -> Judgement:
        n = len(perm)
        try:
            shown = parse_best_index(text, n)
        except ParseError as exc:
            return Judgement(sample_index=index, status=SampleStatus.PARSE_FAILURE,
                             permutation=perm, raw_text=text, error=str(exc), usage=usage)
        return Judgement(sample_index=index, status=SampleStatus.OK, permutation=perm,
                         scores=choice_scores(perm[shown], n), raw_text=text, usage=usage)

    async def ascore_many(self, items: Sequence[dict[str, Any]], samples: int = 1, *,
                          meta: Any = None, concurrency: int | None = None,
                          progress: bool = True,
                          on_result: Callable[[int, Verdict], Any] | None = None,
                          **_: Any) -> list[Verdict]:
        """Same contract as `Judge.ascore_many`: input order, failures as Verdicts with `error`."""
        from judgekit.batch import JudgeItem, score_batch

        parsed = [JudgeItem.model_validate(i) for i in items]

        async def one(item: JudgeItem) -> Verdict:
            return await self.ascore(item.query, item.responses, samples, meta=meta,
                                     item_id=item.id)

        return await score_batch(parsed, one, model=self.model, samples=samples,
                                 concurrency=concurrency or self.concurrency, progress=progress,
                                 on_result=on_result, desc="baseline")

    async def aclose(self) -> None:
        await self.backend.aclose()
