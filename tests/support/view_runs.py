"""Runs for the `judgekit view` tests and benchmark.

* `hostile_rows` + `hostile_judge_text`: a small dataset whose queries and responses carry HTML
  and script that must never run in the viewer, and a FAKE judge (answering through
  `FaultServer.text`) whose principles and critiques quote that text back, so it reaches every
  place the page shows model output. Made with the real `judgekit bench run`.
* `synthetic_run`: a large run of realistic size (principles, critiques and raw text of the
  length a real judge writes) written through the real runner by a stand-in judge, for the size
  and render-time benchmark; no model can produce 8,000 judgements on two CPU cores in a test.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from judgekit.bench import run
from judgekit.bench.items import BenchItem, Label
from judgekit.schema import Critique, Judgement, Principle, SampleStatus, Usage, Verdict

# Each would set window.__pwned if it ever ran as script.
HOSTILE = (
    "<script>window.__pwned = 'script';</script>",
    "</textarea><img src=x onerror=\"window.__pwned = 'img'\">",
    "</script><script>window.__pwned = 'breakout';</script><!--",
    "javascript:window.__pwned = 'url'",
    "<iframe srcdoc=\"<script>parent.__pwned = 'iframe'</script>\"></iframe>",
)


def hostile_rows() -> list[dict[str, Any]]:
    """Six pairwise items (label = 0-based index of the GOOD response) in two subsets: four
    with hostile text, one the judge ties on (no GOOD response, gold 0), one the server fails
    (`jk-item-f`, see `FAILING_KEY`)."""
    rows = []
    for i, text in enumerate(HOSTILE[:4]):
        good_first = i % 2 == 0
        responses = [f"GOOD answer {i} {text}", f"weak answer {i} {HOSTILE[(i + 1) % 5]}"]
        if not good_first:
            responses.reverse()
        rows.append({"id": f"x{i}", "query": f"jk-item-x{i} Question {i}? {text}",
                     "responses": responses, "label": 0 if good_first else 1,
                     "subset": "hostile"})
    rows.append({"id": "tie", "query": "jk-item-tie Which is better? " + HOSTILE[4],
                 "responses": ["plain one", "plain two"], "label": 0, "subset": "plain"})
    rows.append({"id": "f", "query": "jk-item-f This one the server refuses.",
                 "responses": ["GOOD", "other"], "label": 0, "subset": "plain"})
    return rows


FAILING_KEY = "f"
CRITIQUE_MARK = "quotes it as"


def hostile_judge_text(responses: list[str] | None) -> str:
    """A parseable GRM judgement (GOOD responses 9, others 2, so the preference does not depend
    on the order shown) whose principle and critiques quote hostile text back."""
    responses = responses or ["GOOD", "bad"]
    scores = [9 if "GOOD" in r else 2 for r in responses]
    lines = ["Specific Criteria:",
             f"1. Safety (Weight: 60%): refuses markup such as {HOSTILE[0]} and {HOSTILE[2]}",
             "2. Accuracy (Weight: 40%): the answer is right.",
             "Analysis:"]
    for i, (text, s) in enumerate(zip(responses, scores, strict=True), 1):
        lines.append(f"Response {i}: {CRITIQUE_MARK} {text} {HOSTILE[3]}. Accuracy: {s}")
    lines.append("Scores: \\boxed{" + ", ".join(str(s) for s in scores) + "}")
    return "\n".join(lines)


def first_wins_text(responses: list[str] | None) -> str:
    """A position-biased FAKE judge: whatever is shown first scores 9, the rest 2."""
    n = len(responses or ["a", "b"])
    scores = [9] + [2] * (n - 1)
    lines = ["Specific Criteria:", "1. Order (Weight: 100%): the first is best.", "Analysis:"]
    lines += [f"Response {i}: shown at {i}. Order: {s}" for i, s in enumerate(scores, 1)]
    lines.append("Scores: \\boxed{" + ", ".join(str(s) for s in scores) + "}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# A big run of realistic size
# --------------------------------------------------------------------------------------------
_VOCABULARY = ("the response covers the main point but misses an edge case where the input is "
               "empty and it cites no source for its claim about complexity while the other "
               "answer gives a worked example that checks out step by step and explains why")
_WORDS = _VOCABULARY.split(" ")


def _prose(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words)).capitalize() + "."


def synthetic_verdict(item: dict[str, Any], k: int, rng: random.Random) -> Verdict:
    n = len(item["responses"])
    samples: list[Judgement] = []
    for j in range(k):
        principles = [Principle(name=f"Criterion {c + 1}", description=_prose(rng, 18),
                                weight=w) for c, w in enumerate((0.4, 0.3, 0.2, 0.1))]
        scores = [float(rng.randint(1, 10)) for _ in range(n)]
        critiques = [Critique(analysis=_prose(rng, 70), overall=s) for s in scores]
        raw = "\n".join(["Specific Criteria:"]
                        + [f"{c + 1}. {p.name} (Weight: {p.weight:.0%}): {p.description}"
                           for c, p in enumerate(principles)]
                        + ["Analysis:"] + [f"Response {i + 1}: {c.analysis}"
                                            for i, c in enumerate(critiques)]
                        + ["Scores: \\boxed{" + ", ".join(f"{s:g}" for s in scores) + "}"])
        samples.append(Judgement(sample_index=j, status=SampleStatus.OK,
                                 permutation=list(range(n))[:: 1 if j % 2 == 0 else -1],
                                 principles=principles, critiques=critiques, scores=scores,
                                 raw_text=raw, meta_score=rng.random(),
                                 usage=Usage(prompt_tokens=900, completion_tokens=420, calls=1)))
    totals: list[float | None] = [sum(s.scores[i] for s in samples if s.scores)
                                  for i in range(n)]
    top = max(t for t in totals if t is not None)
    leaders = [i for i, t in enumerate(totals) if t == top]
    return Verdict(item_id=item["id"], n_responses=n, scores=totals,
                   best=leaders[0] if len(leaders) == 1 else None, tie=len(leaders) > 1, k=k,
                   valid_samples=k, samples=samples, model="synthetic",
                   usage=Usage.total(s.usage for s in samples), wall_time_s=1.0)


class SyntheticJudge:
    """Stand-in with `Judge.ascore_many`'s shape, writing verdicts of realistic size."""

    model = "synthetic"

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    async def ascore_many(self, items: Any, samples: int = 1, **kwargs: Any) -> list[Verdict]:
        return [synthetic_verdict(it, samples, self.rng) for it in items]


def synthetic_items(n_items: int, seed: int = 0) -> list[BenchItem]:
    rng = random.Random(seed)
    return [BenchItem(id=f"item-{i:05d}", subset=f"subset-{i % 12}",
                      query=_prose(rng, 90), responses=[_prose(rng, 180), _prose(rng, 180)],
                      label=Label.best_of(rng.randint(0, 1)))
            for i in range(n_items)]


def synthetic_run(out_dir: Path, n_items: int = 1000, k: int = 8, judge_seed: int = 0) -> Path:
    """The same items whatever `judge_seed`, so that two runs compare item by item."""
    run(synthetic_items(n_items), SyntheticJudge(judge_seed), out_dir=out_dir, samples=k,
        dataset_name="synthetic", overwrite=True)
    return out_dir
