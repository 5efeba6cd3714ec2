"""The plain LLM-as-a-judge baseline: "which response is best?", no principles, no 1-10 scores.

It is the same `Judge` with `PairwiseFormat`: the same sampler (balanced permutations, one per
sample, so a position-biased baseline is not flattered), the same vote and the same Verdict. How
a choice is stored: each sample's scores hold 10 for the chosen response and 1 for every other
(in the caller's order), so the sum vote is exactly a majority vote over the samples' choices.
Meta-guided voting does not apply (there is no critique to rate).
"""

from __future__ import annotations

from typing import Any

from judgekit.backends.base import Backend
from judgekit.formats import CHOSEN_SCORE, OTHER_SCORE, PairwiseFormat, choice_scores
from judgekit.judge import Judge

__all__ = ["CHOSEN_SCORE", "OTHER_SCORE", "PairwiseBaselineJudge", "choice_scores"]


class PairwiseBaselineJudge(Judge):
    """`Judge(model, format=PairwiseFormat())`, named for the runner and reports."""

    def __init__(self, model: str | Backend | None = None, *, template_dir: str | None = None,
                 **kwargs: Any) -> None:
        # Structured output follows the same rule as the GRM judge's (a JSON schema where the
        # backend enforces one), so the two are compared on equal terms.
        super().__init__(model, format=PairwiseFormat(template_dir=template_dir), **kwargs)

    @property
    def model(self) -> str:
        return f"baseline:{self.backend.spec}"

    def __repr__(self) -> str:
        return f"PairwiseBaselineJudge(model={self.backend.spec!r})"
