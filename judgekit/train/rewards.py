"""The SPCT correctness rule and the rule-based GRPO reward (the paper's Eq. 10/11).

A judgement is *correct* when
* n >= 2: its scores pick the labelled best response uniquely (strict: a tie for the top is
  wrong, even when the labelled best is among the tied), or
* n == 1 (binary label): its score lands on the label's side of `BinaryRule.threshold`: a good
  response (no error) needs a score above the threshold, a bad one a score below it. The paper
  writes "S_1 = r_1" for 0/1 ground truth; with 1-10 scores we read that as a threshold at the
  scale's midpoint (5.5, the same neutral point `bench.metrics` uses), so on integer scores 6-10
  means "good" and 1-5 "bad". A score exactly on the threshold (possible for weighted scores) is
  undecided and counts as wrong.

The GRPO reward is +1 for a correct completion, -1 otherwise, and -1 for one whose scores cannot
be read: there is no separate format reward (the paper's setting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from judgekit.errors import ParseError
from judgekit.formats import GRMFormat
from judgekit.schema import AggregateRule
from judgekit.voting import NEUTRAL_SCORE, unique_best

NEUTRAL_THRESHOLD = NEUTRAL_SCORE


@dataclass(frozen=True)
class BinaryRule:
    """How a single-response score is read against a good/bad label."""

    threshold: float = NEUTRAL_THRESHOLD

    def correct(self, score: float, good: bool) -> bool:
        return score > self.threshold if good else score < self.threshold


DEFAULT_RULE = BinaryRule()


def judgement_correct(scores: Sequence[float] | None, *, best: int | None = None,
                      good: bool | None = None, rule: BinaryRule = DEFAULT_RULE) -> bool:
    """Whether scores (in the caller's order) agree with the label; None scores are wrong."""
    if scores is None or len(scores) == 0:
        return False
    if good is not None:
        if len(scores) != 1:
            raise ValueError("a binary label needs exactly one score")
        return rule.correct(float(scores[0]), good)
    if best is None:
        raise ValueError("give `best` (n >= 2) or `good` (n == 1)")
    if len(scores) < 2:
        raise ValueError("a best-response label needs at least two scores")
    return unique_best(scores) == best


def rule_outcome(text: str, n_responses: int, *, best: int | None = None,
                 good: bool | None = None, rule: BinaryRule = DEFAULT_RULE,
                 aggregate: AggregateRule | str = AggregateRule.OVERALL) -> str:
    """"correct", "wrong" or "unparseable" for one GRM completion (responses in label order).

    Scores are read exactly as the Judge reads them (`GRMFormat.parse`: the final scores line,
    or the weighted criterion sum under `aggregate="weighted"`), so RL optimises what inference
    votes on; a completion cut off before its final line is unparseable.
    """
    try:
        parsed = GRMFormat(aggregate=aggregate).parse(text, n_responses)
    except ParseError:
        return "unparseable"
    return "correct" if judgement_correct(parsed.scores, best=best, good=good, rule=rule) else "wrong"


def rule_reward(text: str, n_responses: int, *, best: int | None = None, good: bool | None = None,
                rule: BinaryRule = DEFAULT_RULE) -> float:
    """+1 for a correct completion, -1 for a wrong or unreadable one."""
    outcome = rule_outcome(text, n_responses, best=best, good=good, rule=rule)
    return 1.0 if outcome == "correct" else -1.0


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversation whose assistant turns are joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    parts = [str(m.get("content", "")) for m in completion
             if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
    return "\n".join(parts)


def grm_rule_reward(prompts: Sequence[Any], completions: Sequence[Any], *,
                    n_responses: Sequence[int], best: Sequence[int], good: Sequence[int],
                    threshold: Sequence[float] | None = None, **kwargs: Any) -> list[float]:
    """TRL `reward_funcs` entry for GRPO on a GRM: one +1/-1 per completion.

    The label columns come from `grpo.build_grpo_dataset`: `best` is the best response's shown
    position (-1 for binary items) and `good` is 1/0 for binary items (-1 otherwise). A column
    of labels per completion is what TRL passes (it repeats dataset columns per generation).
    """
    del prompts
    outcomes: list[str] = []
    for i, completion in enumerate(completions):
        rule = BinaryRule(float(threshold[i])) if threshold is not None else BinaryRule()
        is_binary = int(good[i]) >= 0
        outcomes.append(rule_outcome(completion_text(completion), int(n_responses[i]),
                                     best=None if is_binary else int(best[i]),
                                     good=bool(good[i]) if is_binary else None, rule=rule))
    log_metric = kwargs.get("log_metric")
    if callable(log_metric) and outcomes:
        for kind in ("correct", "unparseable"):
            log_metric(f"grm/{kind}_frac", outcomes.count(kind) / len(outcomes))
    return [1.0 if o == "correct" else -1.0 for o in outcomes]


grm_rule_reward.__name__ = "grm_rule_reward"
