"""Stored runs for plot tests: many subsets (RMB-like names, one named like a URL, one the judge
always gets wrong, best-of-4 subsets beside pairs), k samples with or without meta scores.

The runs are written by the real runner from a scripted stand-in judge (no model), so the plots
read them exactly as they read a real run."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from judgekit.bench.items import BenchItem, Label
from judgekit.bench.runner import run
from judgekit.schema import Verdict
from support.bench_standin import ScriptedJudgeStandIn, make_verdict

ALWAYS_WRONG = "pairwise/Harmlessness/Violent Crimes"
URL_SUBSET = "https://cohere.ai/"


def many_subsets(n_pair: int = 50, n_bon: int = 8) -> list[str]:
    """RMB-like subset names: `n_pair` pairwise and `n_bon` best-of-4 ones, a URL among them."""
    topics = ["Brainstorming", "Chat/Casual Conversation", "Code/Data Management",
              "Reasoning/Mathematical Reasoning", "Open QA", "Closed QA", "Rewrite",
              "Role Playing/Celebrity Impersonation", "Summarization", "Translation/EN->ZH"]
    names = [f"pairwise/Helpfulness/{topics[i % len(topics)]} {i}" for i in range(n_pair - 2)]
    names += [ALWAYS_WRONG, URL_SUBSET]
    names += [f"bestofn/Harmlessness/S{i} Non-Violent Crimes" for i in range(n_bon)]
    return names


def items_for(subsets: list[str], per_subset: int) -> list[BenchItem]:
    out = []
    for s_i, subset in enumerate(subsets):
        n = 4 if subset.startswith("bestofn") else 2
        for j in range(per_subset + s_i % 7):
            gold = (s_i + j) % n
            out.append(BenchItem(id=f"s{s_i}-{j}-g{gold}", query="q",
                                 responses=[f"r{x}" * (1 + x) for x in range(n)],
                                 label=Label.best_of(gold), subset=subset))
    return out


class SubsetSkillStandIn(ScriptedJudgeStandIn):
    """Samples pick the gold response with a probability that depends on the subset (never in
    ALWAYS_WRONG); with `meta`, right samples get higher meta scores, and with `meta_none`
    the meta judge rated nothing (every meta score None)."""

    def __init__(self, subsets: list[str], *, meta: bool = False, meta_none: bool = False,
                 skill: float = 0.0) -> None:
        super().__init__()
        self.p = {s: (0.0 if s == ALWAYS_WRONG else 0.35 + 0.6 * ((i * 37) % 100) / 100 + skill)
                  for i, s in enumerate(subsets)}
        self.by_id: dict[str, str] = {}
        self.meta = meta
        self.meta_none = meta_none

    async def ascore_many(self, items: Any, samples: int = 1, **kw: Any) -> list[Verdict]:
        out = []
        for idx, given in enumerate(items):
            item = given.model_dump()
            rng = random.Random(item["id"])
            n = len(item["responses"])
            gold = int(item["id"].split("-g")[1])
            subset = self.by_id[item["id"]]
            specs: list[list[float]] = []
            metas: list[float | None] = []
            for _ in range(samples):
                right = rng.random() < self.p[subset]
                winner = gold if right else (gold + 1 + rng.randrange(n - 1)) % n
                scores = [3.0] * n
                scores[winner] = 8.0
                specs.append(scores)
                metas.append(None if self.meta_none else rng.random() + (0.6 if right else 0))
            rated = self.meta and not self.meta_none
            v = make_verdict(item["id"], n, specs, metas if self.meta else None,
                             k_meta=max(1, samples // 2) if rated else None)
            out.append(v)
            if kw.get("on_result"):
                kw["on_result"](idx, v)
        return out


def write_run(out: Path, subsets: list[str], *, per_subset: int = 12, samples: int = 1,
              meta: bool = False, meta_none: bool = False, skill: float = 0.0) -> Path:
    items = items_for(subsets, per_subset)
    judge = SubsetSkillStandIn(subsets, meta=meta, meta_none=meta_none, skill=skill)
    judge.by_id = {it.id: it.subset for it in items}
    run(items, judge, out_dir=out, samples=samples, meta=meta, dataset_name="rmb-like", seed=1)
    return out
