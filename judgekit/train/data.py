"""Labelled preference items for training, from benchmark items, plain dicts or a JSONL file.

Training needs one thing from a label: which response is best (pairwise / best-of-N), or, for a
single response, whether it is good (a binary label). Items whose label names neither (ties,
rankings without a unique top) cannot be judged right or wrong by the SPCT rule and are skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from judgekit.errors import JudgekitError
from judgekit.schema import Message


class TrainDataError(JudgekitError, ValueError):
    """Training items that cannot be read or carry no usable label."""


class TrainItem(BaseModel):
    """One labelled item. Exactly one of `best` (0-based, n >= 2) and `good` (n == 1) is set."""

    id: str
    query: str | list[Message]
    responses: list[str] = Field(min_length=1)
    best: int | None = Field(None, ge=0, description="index of the single best response")
    good: bool | None = Field(None, description="single response: True when it has no error")
    subset: str = ""

    @model_validator(mode="after")
    def _label_fits(self) -> TrainItem:
        n = len(self.responses)
        if (self.best is None) == (self.good is None):
            raise ValueError("a training item needs exactly one of `best` and `good`")
        if self.best is not None and not (n >= 2 and self.best < n):
            raise ValueError(f"best={self.best} does not fit {n} response(s)")
        if self.good is not None and n != 1:
            raise ValueError("a binary (`good`) label needs exactly one response")
        return self

    @property
    def n_responses(self) -> int:
        return len(self.responses)


def to_train_item(obj: Any, index: int = 0) -> TrainItem | None:
    """A TrainItem from a `bench.items.BenchItem`, a TrainItem or a dict; None when the label
    names no single best response and no binary flag (ties, rankings with a tied top).

    Dicts take `best` (0-based), `good` (bool), `error` (bool, the ReaLMistake sense) or a
    `label` in the BenchItem format; `id` defaults to the position.
    """
    if isinstance(obj, TrainItem):
        return obj
    label: Any = getattr(obj, "label", None)
    if label is not None and hasattr(obj, "responses") and not isinstance(obj, dict):
        data: dict[str, Any] = {"id": obj.id, "query": obj.query, "responses": list(obj.responses),
                                "subset": getattr(obj, "subset", "")}
        return _with_label(data, label)
    if not isinstance(obj, dict):
        raise TrainDataError(f"item {index}: expected a BenchItem or a dict, got {type(obj).__name__}")
    data = {"id": str(obj.get("id", index)), "query": obj.get("query"),
            "responses": obj.get("responses"), "subset": str(obj.get("subset", "") or "")}
    if obj.get("best") is not None:
        data["best"] = obj["best"]
    elif obj.get("good") is not None:
        data["good"] = bool(obj["good"])
    elif obj.get("error") is not None:
        data["good"] = not bool(obj["error"])
    elif obj.get("label") is not None:
        from judgekit.bench.items import Label

        try:
            return _with_label(data, Label.model_validate(obj["label"]))
        except ValidationError as exc:
            raise TrainDataError(f"item {data['id']}: bad label: {_first_error(exc)}") from exc
    else:
        return None
    try:
        return TrainItem.model_validate(data)
    except ValidationError as exc:
        raise TrainDataError(f"item {data['id']}: {_first_error(exc)}") from exc


def _with_label(data: dict[str, Any], label: Any) -> TrainItem | None:
    best = label.best_index
    if best is not None and len(data["responses"]) >= 2:
        data["best"] = best
    elif getattr(label, "error", None) is not None and len(data["responses"]) == 1:
        data["good"] = not label.error
    else:
        return None
    try:
        return TrainItem.model_validate(data)
    except ValidationError as exc:
        raise TrainDataError(f"item {data['id']}: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))


def to_train_items(objs: Iterable[Any]) -> tuple[list[TrainItem], int]:
    """(usable items, number skipped for lack of a usable label)."""
    items: list[TrainItem] = []
    skipped = 0
    for i, obj in enumerate(objs):
        it = to_train_item(obj, i)
        if it is None:
            skipped += 1
        else:
            items.append(it)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise TrainDataError("training item ids must be unique")
    return items, skipped


def read_items_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Items from a JSONL file (one dict per line) or a JSON list."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrainDataError(f"cannot read items file {p}: {exc}") from exc
    try:
        if p.suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise TrainDataError(f"{p}: expected a JSON list of items")
            return [dict(x) for x in data]
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise TrainDataError(f"{p}: not valid JSON/JSONL: {exc}") from exc


def load_train_items(*, dataset: str | None = None, subset: str | None = None,
                     limit: int | None = None, offset: int = 0,
                     data_dir: str | os.PathLike[str] | None = None,
                     items_file: str | os.PathLike[str] | None = None,
                     items: Sequence[Any] | None = None) -> tuple[list[TrainItem], int]:
    """Training items from exactly one source: a registered benchmark (`dataset`, optional
    `subset` pattern), an items file, or a list. `offset`/`limit` slice the usable items, so a
    held-out split is `offset=k`. Returns (items, skipped for lack of a usable label)."""
    sources = sum(x is not None for x in (dataset, items_file, items))
    if sources != 1:
        raise TrainDataError("give exactly one of dataset, items_file and items")
    raw: Sequence[Any]
    if dataset is not None:
        from judgekit.bench.datasets import load_dataset

        raw = load_dataset(dataset, subset=subset, data_dir=data_dir)
    elif items_file is not None:
        raw = read_items_file(items_file)
    else:
        raw = list(items or [])
    usable, skipped = to_train_items(raw)
    if subset is not None and dataset is None:
        from judgekit.bench.datasets import subset_matches

        usable = [it for it in usable if subset_matches(it.subset, subset)]
    usable = usable[max(offset, 0):]
    if limit is not None:
        usable = usable[:max(limit, 0)]
    if not usable:
        raise TrainDataError("no usable training items (need a best index or a binary label)")
    return usable, skipped
