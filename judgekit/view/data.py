"""What `judgekit view` puts in the page: the runs, the report's tables and every item with each
run's judgement of it, as one Pydantic model that becomes the page's JSON.

Items are matched across runs by item id and shown in the dataset's order of responses: a run
made with `--reverse` stored its responses, label, scores and critiques in the order its judge
saw them, and `ResultRecord.order` maps them back, so a forward run and its reversed twin line up
response for response. Whether an item was right, a tie or failed comes from the report's own
functions (`metrics.item_correct`, `ResultRecord.failed`, `metrics.revote`), never a second
copy of those rules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from judgekit.bench import metrics as m
from judgekit.bench.items import Label, LabelKind
from judgekit.bench.report import CAVEAT, BenchRun, report_tables
from judgekit.bench.runner import ResultRecord
from judgekit.schema import Judgement, Message, Verdict

FORMAT_VERSION = 1
MISSING_TEXT_NOTE = (
    "made before runs stored what the judge saw: its items show the judgement but not the "
    "query or the responses (re-run it with this version of judgekit to see them)")


class ViewTable(BaseModel):
    section: str
    title: str
    header: list[str]
    rows: list[list[str]]


class ViewPlot(BaseModel):
    name: str
    src: str = Field(description="a data: URI (image/png or image/svg+xml), made here")


class ViewRun(BaseModel):
    label: str
    path: str
    dataset: str
    subset: str = ""
    model: str
    judge: str
    k: int
    reverse: bool
    meta: bool
    seed: int
    n_items: int
    stored_text: bool = Field(description="its records carry the query and responses")


class ViewResult(BaseModel):
    """One run's judgement of one item, in the dataset's order of responses."""

    scores: list[float | None]
    pick: int | None = Field(description="the response the judge preferred (strict rule: "
                             "None on a tie or with no valid sample)")
    correct: bool | None = Field(description="strict rule; None when the item has no single "
                                 "gold best or no judgement")
    tie: bool = Field(description="the judge's top score is shared")
    failed: bool = Field(description="no valid sample (`ResultRecord.failed`)")
    error: str | None = None
    order: list[int] | None = Field(None, description="reversed runs: shown position p held "
                                    "response order[p]")
    verdict: Verdict | None = None


class ViewItem(BaseModel):
    id: str
    subset: str = ""
    query: str | list[Message] | None = None
    responses: list[str] | None = None
    reference: str | None = None
    rubric: dict[str, Any] | None = None
    label: str = Field(description="the gold label in words, responses numbered from 1")
    gold: list[int] = Field(default_factory=list, description="the gold best response, or the "
                            "responses a tie label holds equal (dataset order)")
    metadata: dict[str, Any] = Field(default_factory=dict)
    disagree: bool = Field(False, description="two runs that judged it prefer different "
                           "responses (or one ties)")
    results: list[ViewResult | None]
    mismatch: str | None = Field(None, description="the runs hold different items under this "
                                 "id (labels or responses differ): what differs")


class ViewData(BaseModel):
    format_version: int = FORMAT_VERSION
    judgekit_version: str
    generated_at: str
    runs: list[ViewRun]
    tables: list[ViewTable]
    caveat: str = CAVEAT
    plots: list[ViewPlot] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    items: list[ViewItem]


# --------------------------------------------------------------------------------------------
# Mapping a record back to the dataset's order
# --------------------------------------------------------------------------------------------
def _inverse(order: Sequence[int]) -> list[int]:
    inv = [0] * len(order)
    for shown, original in enumerate(order):
        inv[original] = shown
    return inv


def _to_dataset(values: Sequence[Any], order: Sequence[int] | None) -> list[Any]:
    """Values listed in shown order, listed in dataset order."""
    if order is None or len(order) != len(values):
        return list(values)
    out: list[Any] = list(values)
    for shown, original in enumerate(order):
        out[original] = values[shown]
    return out


def _sample_to_dataset(s: Judgement, order: Sequence[int]) -> Judgement:
    return s.model_copy(update={
        "critiques": _to_dataset(s.critiques, order),
        "scores": None if s.scores is None else _to_dataset(s.scores, order),
        "permutation": [order[p] if 0 <= p < len(order) else p for p in s.permutation],
    })


def _verdict_to_dataset(v: Verdict, order: Sequence[int] | None) -> Verdict:
    if order is None:
        return v
    return v.model_copy(update={
        "scores": _to_dataset(v.scores, order),
        "best": None if v.best is None else order[v.best],
        "samples": [_sample_to_dataset(s, order) for s in v.samples],
    })


def dataset_label(rec: ResultRecord) -> Label:
    return rec.label if rec.order is None else rec.label.remap(_inverse(rec.order))


def _gold(label: Label, n: int) -> list[int]:
    if label.best_index is not None:
        return [label.best_index]
    if label.kind is LabelKind.TIE:
        return list(label.tied) if label.tied is not None else list(range(n))
    if label.kind is LabelKind.RANKING and label.ranks:
        top = min(label.ranks)
        return [i for i, r in enumerate(label.ranks) if r == top]
    return []


def gold_text(label: Label, n: int) -> str:
    """The gold label as a reader says it: responses numbered from 1, as on the page."""
    if label.kind is LabelKind.BINARY:
        return "has an error" if label.error else "no error"
    if label.kind is LabelKind.RANKING and label.ranks:
        return "ranks " + ", ".join(str(r) for r in label.ranks)
    gold = _gold(label, n)
    if label.kind is LabelKind.TIE:
        return "tie of " + ", ".join(str(i + 1) for i in gold)
    return f"response {gold[0] + 1}" if gold else "none"


def view_result(rec: ResultRecord) -> ViewResult:
    """The run's live result for the item: its vote under the run's own rules
    (`metrics.revote`), failed when no sample was valid."""
    vote = m.revote(rec.verdict) if rec.verdict is not None else None
    scores = m.record_scores(rec)
    pick = vote.best if vote is not None else None
    order = rec.order
    return ViewResult(
        scores=_to_dataset(scores, order),
        pick=None if pick is None else (order[pick] if order else pick),
        correct=m.item_correct(rec),
        tie=vote is not None and vote.tie,
        failed=not m.judged(rec),
        error=rec.error,
        order=order,
        verdict=None if rec.verdict is None else _verdict_to_dataset(rec.verdict, order),
    )


def _stored_text(rec: ResultRecord) -> bool:
    return rec.responses is not None


def _mismatch(records: Sequence[ResultRecord]) -> str | None:
    """What differs between the runs' records of one item id, if anything: comparing runs
    side by side only means something on the same items."""
    labels = {dataset_label(r).model_dump_json() for r in records}
    texts = {json.dumps(_to_dataset(r.responses, r.order)) for r in records
             if r.responses is not None}
    queries = {json.dumps(r.query) for r in records if r.query is not None}
    parts = [name for name, seen in (("gold label", labels), ("responses", texts),
                                     ("query", queries)) if len(seen) > 1]
    if not parts:
        return None
    return f"The runs hold different items under this id: the {' and '.join(parts)} differ."


def _item(first: ResultRecord, results: list[ViewResult | None],
          texts: ResultRecord | None) -> ViewItem:
    label = dataset_label(first)
    used = [r for r in results if r is not None and not r.failed]
    prefs = {(r.pick, r.tie) for r in used}
    item = ViewItem(id=first.item_id, subset=first.subset,
                    label=gold_text(label, first.n_responses),
                    gold=_gold(label, first.n_responses), metadata=first.metadata,
                    disagree=len(prefs) > 1, results=results)
    if texts is not None:
        item.query = texts.query
        item.responses = _to_dataset(texts.responses or [], texts.order)
        item.reference = texts.reference
        item.rubric = None if texts.rubric is None else texts.rubric.model_dump(mode="json")
    return item


def view_items(runs: Sequence[BenchRun]) -> list[ViewItem]:
    """Every item of every run, with one result slot per run (None where that run has no
    record of the item). Items keep the order of the source file where the records know it
    (`metadata["source_row"]`), else the order the first run finished them in (items only later
    runs hold follow)."""
    by_run = [{r.item_id: r for r in run.records} for run in runs]
    ids: dict[str, None] = {}
    for run in runs:
        ids.update((r.item_id, None) for r in run.records)
    items: list[ViewItem] = []
    for item_id in ids:
        recs = [table.get(item_id) for table in by_run]
        present = [r for r in recs if r is not None]
        results = [None if rec is None else view_result(rec) for rec in recs]
        texts = next((r for r in present if _stored_text(r)), None)
        item = _item(present[0], results, texts)
        item.mismatch = _mismatch(present)
        items.append(item)
    rows = [it.metadata.get("source_row") for it in items]
    if all(isinstance(r, int) for r in rows):  # a file of the user's: its own row order
        items.sort(key=lambda it: int(it.metadata["source_row"]))
    return items


def view_runs(runs: Sequence[BenchRun]) -> list[ViewRun]:
    out: list[ViewRun] = []
    for r in runs:
        out.append(ViewRun(
            label=r.label, path=str(r.path), dataset=r.info.dataset, subset=r.info.subset or "",
            model=r.model, judge=f"baseline:{r.info.baseline}" if r.info.baseline else "grm",
            k=r.k, reverse=r.info.reverse, meta=r.info.meta, seed=r.info.seed,
            n_items=r.info.n_items,
            stored_text=all(_stored_text(x) for x in r.records)))
    return out


def view_data(runs: Sequence[BenchRun], *, plots: Sequence[ViewPlot] = (),
              notes: Sequence[str] = ()) -> ViewData:
    """The page's data. The tables are `report.report_tables`, the cells `bench report`
    prints."""
    from judgekit import __version__

    vruns = view_runs(runs)
    all_notes = list(notes)
    all_notes += [f"Run {r.label}: {MISSING_TEXT_NOTE}" for r in vruns if not r.stored_text]
    all_notes += [f"Run {r.label} holds no result yet." for r, run in zip(vruns, runs, strict=True)
                  if not run.records]
    tables = [ViewTable(section=t.section, title=t.title, header=t.header, rows=t.rows)
              for t in report_tables(list(runs))]
    return ViewData(judgekit_version=__version__,
                    generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    runs=vruns, tables=tables, plots=list(plots), notes=all_notes,
                    items=view_items(runs))
