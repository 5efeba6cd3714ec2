"""A Judge as a TRL `reward_funcs` entry: the GRM as the reward model for RL on other models
(the paper's third use of a trained GRM).

TRL 1.16's GRPOTrainer calls `reward(prompts=..., completions=..., completion_ids=..., **columns)`
and wants one float per completion; it reads a `None` as NaN, and a completion for which every
reward function returned None is "unscorable": left out of its group's mean/std and given zero
advantage. So the default for a failed judgement is None (never a made-up score); set
`failure_reward` to a number to penalise failures instead. Failures are counted on the adapter
and logged through TRL's `log_metric`.

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
from judgekit.schema import Message, Verdict
from judgekit.train.rewards import completion_text
from judgekit.voting import VotingMethod


def _query_of(prompt: Any) -> str | list[Message]:
    """The judge's query: a string prompt as is, a TRL conversation through the one message
    normaliser (which names a malformed turn)."""
    return as_query(prompt)


class JudgeReward:
    """Callable reward function over a `judgekit.judge.Judge` (or anything with `ascore`)."""

    def __init__(self, judge: Any = None, *, samples: int = 1,
                 mode: Literal["pointwise", "group"] = "pointwise", max_group: int | None = None,
                 failure_reward: float | None = None, normalize: bool = False,
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
        self.failure_reward = failure_reward
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
                 **kwargs: Any) -> list[float | None]:
        from judgekit.runtime import run_sync

        rewards = run_sync(self.ascore(prompts, completions))
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and rewards:
            log_metric(f"{self.__name__}/failed_frac", self.last_failed / len(rewards))
        return rewards

    async def ascore(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float | None]:
        """One reward per completion, in order."""
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
        if self.failure_reward is not None:
            out = [self.failure_reward if r is None else r for r in out]
        return out

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
