"""A Judge as a TRL `reward_funcs` entry: the GRM as the reward model for RL on other models
(the paper's third use of a trained GRM).

TRL 1.16's GRPOTrainer calls `reward(prompts=..., completions=..., completion_ids=..., **columns)`
and wants one float per completion. A failed judgement (no valid sample: the judge's answer was
cut off, unreadable, or its call failed) gets a defined reward, never None: by default the
lowest score of the scale (1.0, or 0.0 with `normalize=True`), so a completion that breaks its
judge can never out-score one that was judged. `failure_reward` sets another number. Failures
are counted on the adapter and logged through TRL's `log_metric`.

Two designs, chosen by `mode`:

* ``"pointwise"`` (default): each completion is judged alone (n = 1) and its reward is its score.
  Rewards do not depend on which other completions share the group.
* ``"group"``: the completions of one prompt are judged together in one call (n = group size,
  shuffled per sample by the Judge's balanced permutations), so the judge compares them, which is
  what a pointwise GRM with several responses does best. `max_group` caps n; larger groups are
  split into chunks.

The reward is the completion's mean score over the valid samples (1-10), or mapped to [0, 1]
with `normalize=True`; `samples=k` draws k judgements per call (inference-time scaling). Calls
run concurrently up to `concurrency` (a local backend batches each call's k samples in one
generate call and serialises calls).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Literal

from judgekit.aggregate import aggregate
from judgekit.bench.messages import as_query
from judgekit.errors import ITEM_FAILURES
from judgekit.parsing import SCORE_MIN
from judgekit.schema import Message, Verdict
from judgekit.train.rewards import completion_text
from judgekit.voting import VotingMethod


def _query_of(prompt: Any) -> str | list[Message]:
    """The judge's query: a string prompt as is, a TRL conversation through the one message
    normaliser (which names a malformed turn)."""
    return as_query(prompt)


class JudgeReward:
    """Callable reward function over a `judgekit.judge.Judge` (or anything with `ascore`).

    Every completion gets a float. A completion whose judgement failed (no valid sample) gets
    `failure_reward`: by default `"lowest"`, the lowest score of the scale (1.0; 0.0 with
    `normalize=True`), so breaking the judge never pays; a number sets another value. It is
    never None, which TRL would read as "leave this completion out of the group".
    """

    def __init__(self, judge: Any = None, *, samples: int = 1,
                 mode: Literal["pointwise", "group"] = "pointwise", max_group: int | None = None,
                 failure_reward: float | Literal["lowest"] = "lowest", normalize: bool = False,
                 concurrency: int = 4, name: str = "judge_reward", **judge_kwargs: Any) -> None:
        if judge is None or isinstance(judge, str):
            from judgekit.judge import Judge

            judge = Judge(judge, **judge_kwargs)
        elif judge_kwargs:
            raise TypeError("judge_kwargs only apply when the judge is built from a spec")
        if mode not in ("pointwise", "group"):
            raise ValueError(f"mode must be 'pointwise' or 'group', not {mode!r}")
        if samples < 1:
            raise ValueError("samples must be at least 1")
        self.judge = judge
        self.samples = samples
        self.mode = mode
        self.max_group = max_group
        if failure_reward != "lowest" and not isinstance(failure_reward, int | float):
            raise ValueError(f"failure_reward must be a number or 'lowest', not {failure_reward!r}")
        self.failure_reward: float = (
            (0.0 if normalize else SCORE_MIN) if failure_reward == "lowest"
            else float(failure_reward))
        self.normalize = normalize
        self.concurrency = max(1, concurrency)
        self.__name__ = name
        self.calls = 0
        self.completions = 0
        self.failed = 0
        self.last_failed = 0

    def __repr__(self) -> str:
        return (f"JudgeReward({getattr(self.judge, 'model', self.judge)!r}, mode={self.mode!r}, "
                f"samples={self.samples})")

    @property
    def stats(self) -> dict[str, int]:
        return {"calls": self.calls, "completions": self.completions, "failed": self.failed}

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **kwargs: Any) -> list[float]:
        from judgekit.runtime import run_sync

        rewards = run_sync(self.ascore(prompts, completions))
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and rewards:
            log_metric(f"{self.__name__}/failed_frac", self.last_failed / len(rewards))
        return rewards

    async def ascore(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
        """One reward per completion, in order (`failure_reward` where the judgement failed)."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        texts = [completion_text(c) for c in completions]
        jobs: list[tuple[Any, list[int]]] = []
        if self.mode == "pointwise":
            jobs = [(prompts[i], [i]) for i in range(len(texts))]
        else:
            groups: dict[str, list[int]] = {}
            first: dict[str, Any] = {}
            for i, p in enumerate(prompts):
                key = p if isinstance(p, str) else json.dumps(p, sort_keys=True, default=str)
                groups.setdefault(key, []).append(i)
                first.setdefault(key, p)
            size = self.max_group or max((len(g) for g in groups.values()), default=1)
            for key, idx in groups.items():
                for start in range(0, len(idx), size):
                    jobs.append((first[key], idx[start:start + size]))
        out: list[float | None] = [None] * len(texts)
        limit = asyncio.Semaphore(self.concurrency)

        async def run(prompt: Any, idx: list[int]) -> None:
            async with limit:
                verdict = await self._judge(prompt, [texts[i] for i in idx])
            for pos, i in enumerate(idx):
                out[i] = self._reward(verdict, pos)

        await asyncio.gather(*(run(p, idx) for p, idx in jobs))
        self.calls += len(jobs)
        self.completions += len(texts)
        self.last_failed = sum(r is None for r in out)
        self.failed += self.last_failed
        return [self.failure_reward if r is None else r for r in out]

    async def _judge(self, prompt: Any, responses: list[str]) -> Verdict | None:
        try:
            verdict: Verdict = await self.judge.ascore(_query_of(prompt), responses,
                                                       samples=self.samples)
        except ITEM_FAILURES:
            return None
        return verdict

    def _reward(self, verdict: Verdict | None, position: int) -> float | None:
        """The response's mean score over the samples the vote used (the kept ones under
        meta-guided voting), through the same `aggregate` as the Verdict; None when no sample
        was valid."""
        if verdict is None:
            return None
        mean = aggregate(verdict.samples, verdict.n_responses, voting=VotingMethod.MEAN,
                         k_meta=verdict.k_meta).scores[position]
        if mean is None:
            return None
        return (mean - 1.0) / 9.0 if self.normalize else mean
