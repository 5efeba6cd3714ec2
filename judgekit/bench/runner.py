"""Run a scorer over a benchmark, one results line per item, resumable.

Files in the output directory:

* ``run.json``      what was run: dataset, subset, model, samples, meta, limit, seed, start time
                    (and every resume time), where the model was served (`endpoint`), and
                    `settings`: every setting that changes results (the scorer's own,
                    `Scorer.settings()`, with the run's data mapping and run settings), whose
                    hash is the run's `fingerprint`;
* ``results.jsonl`` one `ResultRecord` per line, appended (flush + fsync) as each item finishes:
                    item id, subset, gold label, the item's metadata, the full Verdict, and
                    what the judge saw (query, responses, reference, rubric) so that
                    `judgekit view` can show an item without the source file
                    (`judgekit.runstore` keeps the file).

Re-running the same command resumes: items that already have a result are skipped. A resume
with different settings is refused (naming the differences), since one results file must hold one
run; `overwrite=True` discards the old run instead. The endpoint is not a setting: a local server
restarted on another port resumes. An item without a valid sample is *failed*
(`ResultRecord.failed`): so the run's summary line, the report and the exit code (1) say. It is
judged again on the next run when it is *unanswered*, no sample having reached the model's text
(the judge raised, or every sample was an API error); two kinds of failure are final even so:
parse failures (judging again would read the same answers), and an item whose prompt does not
fit the model's context (judging it again cannot help; reported apart). When an item appears
more than once (a failure, then a success), the last line wins. A torn last line (a killed run)
is cut off before appending, and a line that does not decode is skipped and counted (its item is
judged again). When the backend fails for everyone (a rejected key, a dead server), the run
stops early with `BenchRunAborted`, its finished items kept for the resume.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from judgekit.batch import JudgeItem
from judgekit.bench.datasets import DatasetError, load_dataset, select
from judgekit.bench.items import BenchItem, Label
from judgekit.errors import (
    ContextLengthError,
    JudgekitError,
    RunAbortedError,
    recorded_error_class,
)
from judgekit.meta import NOT_GIVEN, MetaArg
from judgekit.rubric import Rubric
from judgekit.runstore import RunStore, latest
from judgekit.schema import Message, SampleStatus, Verdict
from judgekit.scorer import Scorer, differences, fingerprint

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
SETTINGS_VERSION = 2
"""run.json `settings` since the Scorer protocol: the scorer's settings, `data` and `run`."""
LEGACY_RESUME_KEYS = ("dataset", "subset", "samples", "meta", "k_meta", "seed", "reverse")
"""What older run.json files compare outside `settings`."""

BenchScorer = Scorer[JudgeItem, Verdict]
"""What the runner drives: Judge, the baseline, BatchScorer, RayScorer, or a caller's own."""


class BenchRunError(JudgekitError, ValueError):
    """A run that cannot start: e.g. resuming into a directory made by a different command."""


class BenchRunAborted(BenchRunError, RunAbortedError):
    """The run stopped early because the backend failed for everyone; finished items are kept
    and re-running the same command resumes."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ResultRecord(BaseModel):
    """One results.jsonl line. `label` is in the order the judge saw the responses; `order`
    (reversed runs only) maps shown position p to the dataset's response order[p]."""

    item_id: str
    subset: str = ""
    label: Label
    n_responses: int
    order: list[int] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    verdict: Verdict | None = None
    error: str | None = None
    finished_at: str = ""
    # What the judge saw, in the order it saw it (like `label`); None in runs made before they
    # were stored, which still load (the viewer says the text is missing).
    query: str | list[Message] | None = None
    responses: list[str] | None = None
    reference: str | None = None
    rubric: Rubric | None = None

    @property
    def context_length(self) -> bool:
        """The item failed because its prompt does not fit the model's context (every failed
        call a ContextLengthError): a final result, reported apart from other failures."""
        if self.verdict is None or not self.unanswered:
            return False
        texts = [s.error for s in self.verdict.samples if s.status is SampleStatus.API_ERROR]
        texts = texts or [self.verdict.error]
        kinds = [recorded_error_class(t) for t in texts]
        return bool(kinds) and all(k is not None and issubclass(k, ContextLengthError)
                                   for k in kinds)

    @property
    def final(self) -> bool:
        """Done for good: a judgement, or a failure that judging again cannot fix."""
        return not self.unanswered or self.context_length

    @property
    def failed(self) -> bool:
        """No valid sample: the item has no score (whatever the reason). A failed item is
        counted as failed in the run's summary line, the report and the exit code."""
        return self.verdict is None or not any(s.valid for s in self.verdict.samples)

    @property
    def unanswered(self) -> bool:
        """No judgement at all (to be retried): no verdict, or an error with no sample that
        reached the model's text (every sample an API error, or none)."""
        if self.verdict is None:
            return True
        if self.verdict.error is None:
            return False
        reached = (SampleStatus.OK, SampleStatus.FORCED, SampleStatus.PARSE_FAILURE)
        return not any(s.status in reached for s in self.verdict.samples)


class RunInfo(BaseModel):
    """run.json."""

    dataset: str
    subset: str | None = None
    model: str | None = None
    baseline: str | None = None
    samples: int = 1
    meta: bool = False
    limit: int | None = None
    stratify: bool = False
    k_meta: int | None = None
    seed: int = 0
    reverse: bool = False
    concurrency: int = 4
    n_items: int = 0
    started_at: str = ""
    resumed_at: list[str] = Field(default_factory=list)
    finished_at: str | None = None
    endpoint: str | None = Field(None, description="where the model was served (a base URL); "
                                 "recorded, never compared: a resume may use another port")
    settings: dict[str, Any] | None = Field(
        None, description="every setting that changes results: the scorer's "
        "(`Scorer.settings()`), `data` (the data mapping) and `run`; None in runs made before "
        "it was recorded")
    fingerprint: str | None = Field(None, description="a hash of `settings`")
    extra: dict[str, Any] = Field(default_factory=dict)


class RunSpec(BaseModel):
    """One run of the runner: what to judge, where the results go, and how (`arun`'s input,
    built by `judgekit bench run` from its arguments).

    `dataset` is a registered name, or the name of the own `items`. `data` is the data mapping
    of own items (`data_mapping`: the file's content hash, field mapping, label format, tie
    labels, ...), part of the run's settings. `reverse=True` shows every item's responses in
    reverse order (pair it with a normal run for position consistency). `stratify=True` spreads
    `limit` evenly over subsets instead of taking the first items. `seed` is recorded (a Judge
    draws its own item seeds; the report breaks ties as each Verdict did). `overwrite=True`
    deletes an old run's files first."""

    model_config = ConfigDict(frozen=True)

    dataset: str = "custom"
    items: list[BenchItem] | None = None
    out_dir: Path
    subset: str | None = None
    samples: int = 1
    meta: bool = False
    k_meta: int | None = None
    limit: int | None = None
    stratify: bool = False
    concurrency: int = 4
    seed: int = 0
    reverse: bool = False
    data_dir: Path | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    baseline: str | None = None
    progress: bool = False
    overwrite: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, dataset: str | Sequence[BenchItem], *, dataset_name: str | None = None,
           **fields: Any) -> RunSpec:
        """A spec for a registered dataset name, or for a list of items (named `dataset_name`,
        default "custom")."""
        if isinstance(dataset, str):
            return cls(dataset=dataset, **fields)
        return cls(dataset=dataset_name or "custom", items=list(dataset), **fields)

    def run_settings(self) -> dict[str, Any]:
        """The run's own settings that change results."""
        return {"dataset": self.dataset, "subset": self.subset, "samples": self.samples,
                "meta": self.meta, "k_meta": self.k_meta, "seed": self.seed,
                "reverse": self.reverse}


def data_mapping(path: str | os.PathLike[str], mapping: BaseModel | None = None
                 ) -> dict[str, Any]:
    """The data mapping of an own file, as a run records it: a hash of the file's content and
    the mapping's every field (columns, label format, tie labels, ...)."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return {"file_sha256": digest,
            "mapping": mapping.model_dump(mode="json") if mapping is not None else None}


@dataclass
class RunResult:
    """What a run holds after this call: `judged` items were sent to the judge now; `failed`
    counts the run's items without a valid sample (however long ago they were judged), `valid`
    those with one."""

    out_dir: Path
    n_items: int
    already_done: int
    judged: int
    failed: int
    context_length: int = 0
    """Of the failed items, those whose prompt does not fit the model's context (final)."""
    valid: int = 0
    meta_unrated: int = 0
    """Valid samples of meta-guided items that the meta judge could not rate (kept or not)."""

    def __str__(self) -> str:
        text = (f"{self.out_dir}: {self.n_items} items, {self.already_done} already done, "
                f"{self.judged} judged now; {self.valid} with a valid sample, "
                f"{self.failed} failed (no valid sample)")
        if self.context_length:
            text += f" ({self.context_length} too long for the model's context)"
        if self.meta_unrated:
            text += f"; {self.meta_unrated} samples the meta judge could not rate"
        return text


def run_counts(records: Sequence[ResultRecord], ids: Sequence[str]) -> dict[str, int]:
    """The run's items `ids` by outcome, from their latest records (an item with no record
    yet counts as failed): valid, failed, context_length, meta_unrated."""
    latest = {r.item_id: r for r in records}
    valid = failed = too_long = unrated = 0
    for item_id in ids:
        rec = latest.get(item_id)
        if rec is None or rec.failed:
            failed += 1
            too_long += rec is not None and rec.context_length
            continue
        valid += 1
        assert rec.verdict is not None
        if rec.verdict.k_meta is not None:
            unrated += sum(s.valid and s.meta_score is None for s in rec.verdict.samples)
    return {"valid": valid, "failed": failed, "context_length": too_long,
            "meta_unrated": unrated}


# --------------------------------------------------------------------------------------------
# results.jsonl
# --------------------------------------------------------------------------------------------
def results_store(out_dir: str | os.PathLike[str]) -> RunStore[ResultRecord]:
    return RunStore(Path(out_dir) / RESULTS_FILE, ResultRecord)


def repair_results(path: Path) -> int:
    """Cut a torn last line (no trailing newline) off the file; returns bytes removed."""
    return RunStore(path, ResultRecord).repair()


def read_results(out_dir: str | os.PathLike[str]) -> list[ResultRecord]:
    """The latest record per item, in first-seen order; a success is never replaced by a later
    failure of the same item. A torn or corrupt line is healed first (`RunStore.heal`: reported
    in one line, once); where the file cannot be written, it is skipped with a warning."""
    store = results_store(out_dir)
    try:
        healed = store.heal()
    except OSError:  # a read-only copy of a run: read around the damage
        healed = None
    if healed:
        warnings.warn(healed, stacklevel=2)
    records = store.load().records
    return list(latest(records, lambda r: r.item_id, lambda r: r.unanswered).values())


def read_run_info(out_dir: str | os.PathLike[str]) -> RunInfo:
    path = Path(out_dir) / RUN_FILE
    try:
        return RunInfo.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchRunError(f"{path}: not a judgekit bench run ({exc.__class__.__name__})") from exc


def _write_json_atomic(path: Path, data: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def _record(item: BenchItem, verdict: Verdict | None, order: list[int] | None,
            error: str | None = None) -> ResultRecord:
    return ResultRecord(item_id=item.id, subset=item.subset, label=item.label,
                        n_responses=len(item.responses), order=order, metadata=item.metadata,
                        verdict=verdict, error=error if error else (verdict.error if verdict
                                                                     else None),
                        finished_at=_now(), query=item.query, responses=list(item.responses),
                        reference=item.reference, rubric=item.rubric)


def _differences(old: RunInfo, new: RunInfo) -> list[str]:
    assert new.settings is not None
    if old.settings is not None and old.settings.get("version") == SETTINGS_VERSION:
        return differences(old.settings, new.settings)
    # A run recorded before the Scorer protocol: its top-level keys, and the judge settings
    # both record (its model named the endpoint too, so it is not compared).
    before, after = old.model_dump(), new.model_dump()
    diff = [f"{k}: {before[k]!r} -> {after[k]!r}" for k in LEGACY_RESUME_KEYS
            if before[k] != after[k]]
    if old.settings is not None:
        common = {k: v for k, v in new.settings.items() if k in old.settings and k != "model"}
        diff += differences({k: old.settings[k] for k in common}, common)
    return diff


def _check_resume(old: RunInfo, new: RunInfo, out: Path) -> None:
    diff = _differences(old, new)
    if diff:
        raise BenchRunError(
            f"{out} holds a run with other settings ({'; '.join(diff)}); resuming would mix "
            "them in one results file. Use another --out directory, or --overwrite to discard "
            "that run and start afresh")
    if old.settings is None:
        warnings.warn(f"{out}: this run predates recorded settings; resuming it assumes the "
                      "judge settings are unchanged", stacklevel=3)
    elif old.settings.get("version") != SETTINGS_VERSION:
        warnings.warn(f"{out}: this run predates the full settings record (data mapping, "
                      "batch and Ray settings); resuming it assumes those are unchanged",
                      stacklevel=3)


def _items(spec: RunSpec) -> list[BenchItem]:
    if spec.items is None:
        items = load_dataset(spec.dataset, subset=spec.subset, limit=spec.limit,
                             data_dir=spec.data_dir, stratify=spec.stratify)
    else:
        items = select(list(spec.items), spec.subset, spec.limit, spec.stratify)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise DatasetError("item ids must be unique")
    return items


def _open_run(spec: RunSpec, scorer: BenchScorer, n_items: int) -> RunInfo:
    """Write run.json, or check it against an existing run and record the resume."""
    if spec.samples < 1:
        raise BenchRunError("samples must be at least 1")
    if spec.limit is not None and spec.limit < 1:
        raise BenchRunError("limit must be at least 1")
    out = spec.out_dir
    out.mkdir(parents=True, exist_ok=True)
    run_path = out / RUN_FILE
    scored = scorer.settings()
    settings = {"version": SETTINGS_VERSION, **scored.record(), "data": spec.data,
                "run": spec.run_settings()}
    info = RunInfo(dataset=spec.dataset, subset=spec.subset, model=scored.model,
                   baseline=spec.baseline, samples=spec.samples, meta=spec.meta,
                   k_meta=spec.k_meta, limit=spec.limit, stratify=spec.stratify,
                   seed=spec.seed, reverse=spec.reverse, concurrency=spec.concurrency,
                   n_items=n_items, started_at=_now(), endpoint=scored.endpoint,
                   settings=settings, fingerprint=fingerprint(settings), extra=spec.extra)
    if spec.overwrite:
        for path in (run_path, out / RESULTS_FILE):
            path.unlink(missing_ok=True)
    if run_path.exists():
        old = read_run_info(out)
        _check_resume(old, info, out)
        info = old.model_copy(update={
            "limit": spec.limit, "stratify": spec.stratify, "n_items": n_items,
            "resumed_at": [*old.resumed_at, _now()], "concurrency": spec.concurrency,
            "finished_at": None, "endpoint": scored.endpoint, "settings": settings,
            "fingerprint": info.fingerprint})
    _write_json_atomic(run_path, info.model_dump_json(indent=2))
    return info


def _meta_arg(spec: RunSpec, scorer: BenchScorer) -> MetaArg:
    """A run with meta-guided voting uses the scorer's own meta judge when it has one, else
    the judge's own model; without, none."""
    if not spec.meta:
        return None
    return NOT_GIVEN if scorer.settings().meta_model is not None else True


async def arun(spec: RunSpec, scorer: BenchScorer) -> RunResult:
    """Judge every selected item of `spec` not yet done in `spec.out_dir` with `scorer`,
    appending results as they finish.

    Resuming with settings that differ from the recorded ones raises BenchRunError naming
    them. A stop because the backend fails for everyone raises BenchRunAborted after recording
    the finished items.
    """
    items = _items(spec)
    info = _open_run(spec, scorer, len(items))
    store = results_store(spec.out_dir)
    healed = store.heal()
    if healed:  # once: the file is sound from now on
        warnings.warn(healed, stacklevel=2)
    records = latest(store.load().records, lambda r: r.item_id, lambda r: r.unanswered)
    done = {key for key, rec in records.items() if rec.final}
    todo = [it for it in items if it.id not in done]
    orders: list[list[int] | None] = []
    shown: list[BenchItem] = []
    for it in todo:
        if spec.reverse and len(it.responses) > 1:
            order = list(range(len(it.responses)))[::-1]
            shown.append(it.reordered(order))
            orders.append(order)
        else:
            shown.append(it)
            orders.append(None)

    written: set[int] = set()
    with store.appending() as out:

        def on_result(index: int, verdict: Verdict) -> None:
            if index in written or not 0 <= index < len(shown):
                return
            out.write(_record(shown[index], verdict, orders[index]))
            written.add(index)

        try:
            if shown:
                verdicts = await scorer.ascore_many(
                    [JudgeItem.model_validate(it.judge_input()) for it in shown], spec.samples,
                    meta=_meta_arg(spec, scorer), k_meta=spec.k_meta,
                    concurrency=spec.concurrency, progress=spec.progress, on_result=on_result)
                for index, verdict in enumerate(verdicts):  # a scorer that skipped on_result
                    on_result(index, verdict)
        except RunAbortedError as exc:
            for index, finished in exc.verdicts.items():  # a scorer that skipped on_result
                if isinstance(finished, Verdict):
                    on_result(index, finished)
            raise BenchRunAborted(
                f"{exc} Results so far: {store.path}",
                cause=exc.cause, finished=exc.finished, total=exc.total) from None
        # the scorer returned fewer verdicts than items: record the rest as failed
        for i in range(len(shown)):
            if i not in written:
                out.write(_record(shown[i], None, orders[i], error="no verdict returned"))
    info = info.model_copy(update={"finished_at": _now()})
    _write_json_atomic(spec.out_dir / RUN_FILE, info.model_dump_json(indent=2))
    return RunResult(out_dir=spec.out_dir, n_items=len(items),
                     already_done=len(items) - len(todo), judged=len(todo),
                     **run_counts(read_results(spec.out_dir), [it.id for it in items]))


def run(dataset: str | Sequence[BenchItem] | RunSpec, scorer: BenchScorer,
        **fields: Any) -> RunResult:
    """Sync twin of `arun` (also inside Jupyter). `dataset` is a RunSpec, or a registered name
    or list of items with the RunSpec's fields as keywords (`RunSpec.of`)."""
    from judgekit.runtime import run_sync

    spec = dataset if isinstance(dataset, RunSpec) else RunSpec.of(dataset, **fields)
    return run_sync(arun(spec, scorer))


def make_judge(model: str | None = None, *, baseline: str | None = None, seed: int = 0,
               max_tokens: int | None = None, temperature: float | None = None,
               concurrency: int = 4, meta_model: str | None = None, examples: bool = True,
               cache: Any = True, **backend_kwargs: Any) -> BenchScorer:
    """The judge `bench run` uses: `Judge` (GRM), or `PairwiseBaselineJudge` for
    `baseline="pairwise"`. `model=None` is the embedded local model. `examples=False` drops the
    GRM prompt's few-shot examples (shorter prompts). The response cache is on by default
    (`cache=True`: the shared sqlite file; a path; or False), so a re-run or a resumed run pays
    nothing for calls that already finished."""
    if baseline not in (None, "pairwise"):
        raise BenchRunError(f"unknown baseline {baseline!r} (known: pairwise)")
    if baseline == "pairwise":
        from judgekit.bench.baseline import PairwiseBaselineJudge

        return PairwiseBaselineJudge(model, seed=seed, max_tokens=max_tokens,
                                     temperature=temperature, concurrency=concurrency,
                                     cache=cache, **backend_kwargs)
    from judgekit.judge import Judge

    kwargs: dict[str, Any] = dict(backend_kwargs)
    if meta_model is not None:
        kwargs["meta"] = meta_model
    return Judge(model, seed=seed, max_tokens=max_tokens, temperature=temperature,
                 concurrency=concurrency, examples=examples, cache=cache, **kwargs)
