"""The benchmark item schema: one query, its responses, and the gold label.

A `Label` says what the right answer is, in one of four kinds:

* ``best``    one response is best (pairwise or best-of-N): `best` is its 0-based index;
* ``tie``     the responses are judged equal (human-labelled pairwise data with ties);
* ``ranking`` a full or partial order: `ranks[i]` is response i's rank, 1 = best, equal ranks tie;
* ``binary``  a single response with an error flag (ReaLMistake, XSTest): `error=True` means the
  response is bad. A judge is right when it scores a good response high (high score = no error).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator

from judgekit.rubric import Rubric
from judgekit.schema import Message


class LabelKind(StrEnum):
    BEST = "best"
    TIE = "tie"
    RANKING = "ranking"
    BINARY = "binary"


class Label(BaseModel):
    """The gold answer of one item. Build it with the class methods, e.g. `Label.best_of(1)`."""

    kind: LabelKind
    best: int | None = Field(default=None, ge=0, description="kind=best: 0-based index of the best")
    tied: list[int] | None = Field(default=None, description="kind=tie: the tied indices (None = all)")
    ranks: list[int] | None = Field(default=None, description="kind=ranking: rank per response, 1 = best")
    error: bool | None = Field(default=None, description="kind=binary: True when the response is bad")

    @model_validator(mode="after")
    def _fields_match_kind(self) -> Label:
        need = {LabelKind.BEST: "best", LabelKind.RANKING: "ranks", LabelKind.BINARY: "error"}
        field = need.get(self.kind)
        if field is not None and getattr(self, field) is None:
            raise ValueError(f"a {self.kind.value} label needs `{field}`")
        if self.ranks is not None and any(r < 1 for r in self.ranks):
            raise ValueError(f"ranks start at 1, got {self.ranks}")
        return self

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def best_of(cls, index: int) -> Label:
        return cls(kind=LabelKind.BEST, best=index)

    @classmethod
    def tie(cls, indices: Sequence[int] | None = None) -> Label:
        return cls(kind=LabelKind.TIE, tied=list(indices) if indices is not None else None)

    @classmethod
    def ranking(cls, ranks: Sequence[int]) -> Label:
        return cls(kind=LabelKind.RANKING, ranks=list(ranks))

    @classmethod
    def binary(cls, *, error: bool) -> Label:
        return cls(kind=LabelKind.BINARY, error=error)

    # -- derived ------------------------------------------------------------------------------
    @property
    def best_index(self) -> int | None:
        """The single best response, if the label names one (a ranking with a unique top)."""
        if self.kind is LabelKind.BEST:
            return self.best
        if self.kind is LabelKind.RANKING and self.ranks:
            top = min(self.ranks)
            if self.ranks.count(top) == 1:
                return self.ranks.index(top)
        return None

    def check(self, n_responses: int) -> None:
        """Raise ValueError when the label does not fit an item with `n_responses` responses."""
        if self.kind is LabelKind.BEST and self.best is not None and self.best >= n_responses:
            raise ValueError(f"best index {self.best} out of range for {n_responses} responses")
        if self.kind is LabelKind.TIE and self.tied is not None and (
                len(self.tied) < 2 or any(not 0 <= i < n_responses for i in self.tied)):
            raise ValueError(f"tied indices {self.tied} invalid for {n_responses} responses")
        if self.kind is LabelKind.RANKING and self.ranks is not None \
                and len(self.ranks) != n_responses:
            raise ValueError(f"{len(self.ranks)} ranks for {n_responses} responses")
        if self.kind is LabelKind.BINARY and n_responses != 1:
            raise ValueError("a binary (error flag) label needs exactly one response")

    def remap(self, order: Sequence[int]) -> Label:
        """The same label after reordering responses: new position p holds old index order[p]."""
        new_of_old = {old: new for new, old in enumerate(order)}
        if self.kind is LabelKind.BEST and self.best is not None:
            return Label.best_of(new_of_old[self.best])
        if self.kind is LabelKind.TIE and self.tied is not None:
            return Label.tie(sorted(new_of_old[i] for i in self.tied))
        if self.kind is LabelKind.RANKING and self.ranks is not None:
            return Label.ranking([self.ranks[old] for old in order])
        return self.model_copy()

    def __str__(self) -> str:
        if self.kind is LabelKind.BEST:
            return f"best={self.best}"
        if self.kind is LabelKind.TIE:
            return "tie" if self.tied is None else "tie=" + ",".join(map(str, self.tied))
        if self.kind is LabelKind.RANKING:
            return "ranks=" + ",".join(map(str, self.ranks or []))
        return "error" if self.error else "no_error"


class BenchItem(BaseModel):
    """One benchmark item. `query` is a string or a chat conversation whose last turn is the query."""

    id: str
    query: str | list[Message]
    responses: list[str] = Field(min_length=1)
    label: Label
    subset: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    reference: str | None = Field(default=None, description="a reference answer, when the "
                                  "source gives one; the judge sees it in a fenced block")
    rubric: Rubric | None = Field(default=None, description="a user rubric for this item (the "
                                  "generic loader's `rubric=` puts one on every item)")

    @model_validator(mode="after")
    def _label_fits(self) -> BenchItem:
        self.label.check(len(self.responses))
        if isinstance(self.query, list) and not self.query:
            raise ValueError("the conversation is empty")
        return self

    def judge_input(self) -> dict[str, Any]:
        """The dict `Judge.ascore_many` takes: id, query, responses, and the reference answer
        and rubric where the item has them."""
        out: dict[str, Any] = {"id": self.id, "query": self.query,
                               "responses": list(self.responses)}
        if self.reference is not None:
            out["reference"] = self.reference
        if self.rubric is not None:
            out["principles"] = self.rubric.principles
            out["principles_mode"] = self.rubric.mode.value
        return out

    def reordered(self, order: Sequence[int]) -> BenchItem:
        """A copy whose position p holds response order[p]; the label follows the responses."""
        if sorted(order) != list(range(len(self.responses))):
            raise ValueError(f"{order} is not a permutation of {len(self.responses)} responses")
        return self.model_copy(update={
            "responses": [self.responses[i] for i in order],
            "label": self.label.remap(order),
        })


def stable_position(key: str, n: int) -> int:
    """A deterministic position in [0, n) derived from a string (sha256), for placing gold answers.

    Loaders whose source lists the chosen response first use it so that the gold position does
    not leak: a judge that always picks "Response 1" scores about 1/n, not 100%.
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


def place_best(key: str, best: str, others: Sequence[str]) -> tuple[list[str], int]:
    """Insert `best` among `others` at `stable_position(key)`; returns (responses, best index)."""
    pos = stable_position(key, len(others) + 1)
    responses = list(others)
    responses.insert(pos, best)
    return responses, pos
