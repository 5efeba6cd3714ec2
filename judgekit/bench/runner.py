"""Run a judge over a benchmark, one results line per item, resumable.

Files in the output directory:

* ``run.json``      what was run: dataset, subset, model, samples, meta, limit, seed, start time
                    (and every resume time), and `settings`: every setting of the judge that
                    changes results (`judge_settings`);
* ``results.jsonl`` one `ResultRecord` per line, appended (flush + fsync) as each item finishes:
                    item id, subset, gold label, the item's metadata, the full Verdict, and
                    what the judge saw (query, responses, reference, rubric) so that
                    `judgekit view` can show an item without the source file.

Re-running the same command resumes: items that already have a result are skipped. A resume
with different settings is refused (naming the differences), since one results file must hold one
run; `overwrite=True` discards the old run instead. An item without a valid sample is *failed*
(`ResultRecord.failed`): so the run's summary line, the report and the exit code (1) say. It is
judged again on the next run when it is *unanswered*, no sample having reached the model's text
(the judge raised, or every sample was an API error); two kinds of failure are final even so:
parse failures (judging again would read the same answers), and an item whose prompt does not
fit the model's context (judging it again cannot help; reported apart). When an item appears more than once (a
failure, then a success), the last line wins. A truncated last line (a killed run) is cut off
before appending, and a line that does not decode is skipped with a warning (its item is judged
again). When the backend fails for everyone (a rejected key, a dead server), the run stops early
with `BenchRunAborted`, its finished items kept for the resume.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field, ValidationError

from judgekit.bench.datasets import DatasetError, load_dataset, select
from judgekit.bench.items import BenchItem, Label
from judgekit.errors import (
    ContextLengthError,
    JudgekitError,
    RunAbortedError,
    recorded_error_class,
)
from judgekit.rubric import Rubric
from judgekit.schema import Message, SampleStatus, Verdict

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
# run.json fields that must agree for a resume to append to the same results file (with
# `settings`, the judge's own)
RESUME_KEYS = ("dataset", "subset", "model", "baseline", "samples", "meta", "k_meta", "seed",
               "reverse")


class BenchRunError(JudgekitError, ValueError):
    """A run that cannot start: e.g. resuming into a directory made by a different command."""


class BenchRunAborted(BenchRunError, RunAbortedError):
    """The run stopped early because the backend failed for everyone; finished items are kept
    and re-running the same command resumes."""


class BatchJudge(Protocol):
    """What the runner needs from a judge (`judgekit.judge.Judge`, `PairwiseBaselineJudge`)."""

    async def ascore_many(self, items: Any, samples: int = 1, **kwargs: Any) -> list[Verdict]: ...


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
    settings: dict[str, Any] | None = Field(
        None, description="every judge setting that changes results (`judge_settings`); None in "
        "runs made before it was recorded")
    extra: dict[str, Any] = Field(default_factory=dict)


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
def repair_results(path: Path) -> int:
    """Cut a truncated last line (no trailing newline) off the file; returns bytes removed."""
    if not path.exists():
        return 0
    with path.open("rb+") as fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
        return len(data) - keep


def iter_records(path: Path) -> list[ResultRecord]:
    """Every parseable line, in file order (a torn or corrupt line is skipped with a warning)."""
    out: list[ResultRecord] = []
    if not path.exists():
        return out
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(ResultRecord.model_validate_json(line))
            except (ValidationError, ValueError) as exc:  # incl. bytes that are not UTF-8
                warnings.warn(f"{path}:{n}: skipping an unreadable line "
                              f"({exc.__class__.__name__}); its item is judged again unless "
                              "another line holds its result", stacklevel=2)
    return out


def read_results(out_dir: str | os.PathLike[str]) -> list[ResultRecord]:
    """The latest record per item, in first-seen order; a success is never replaced by a later
    failure of the same item."""
    latest: dict[str, ResultRecord] = {}
    for rec in iter_records(Path(out_dir) / RESULTS_FILE):
        prev = latest.get(rec.item_id)
        if prev is not None and not prev.unanswered and rec.unanswered:
            continue
        latest[rec.item_id] = rec
    return list(latest.values())


def read_run_info(out_dir: str | os.PathLike[str]) -> RunInfo:
    path = Path(out_dir) / RUN_FILE
    try:
        return RunInfo.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError) as exc:
        raise BenchRunError(f"{path}: not a judgekit bench run ({exc.__class__.__name__})") from exc


def _write_json_atomic(path: Path, data: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


class _Appender:
    def __init__(self, path: Path) -> None:
        self.fh = path.open("a", encoding="utf-8")

    def write(self, record: ResultRecord) -> None:
        self.fh.write(record.model_dump_json() + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


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


def _digest(value: Any) -> str | None:
    """A short sha256 of a JSON-able value or of bytes (None stays None)."""
    if value is None:
        return None
    data = value if isinstance(value, bytes) else json.dumps(
        value, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:16]


def _template_digest(template: str, template_dir: str | os.PathLike[str] | None) -> str | None:
    """The hash of a template's source and of the partials it may include: the file in
    `template_dir` if there, else the shipped one."""
    from judgekit.prompts import builtin_prompt_dir

    roots = ([Path(template_dir)] if template_dir else []) + [builtin_prompt_dir()]
    main = next((root / template for root in roots if (root / template).is_file()), None)
    if main is None:
        return None
    parts = [main.read_bytes()]
    for root in roots:
        parts.extend(p.read_bytes() for p in sorted((root / "_partials").glob("*.jinja")))
    return _digest(b"\0".join(parts))


def _plain(value: Any) -> Any:
    """Enums, paths and the like as plain JSON values."""
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "value", str(v))))


def _meta_name(meta: Any) -> str | None:
    """A MetaSpec as recorded: None, "same-as-judge", a spec string, or the scorer's spec."""
    if meta is None or meta is False:
        return None
    if meta is True:
        return "same-as-judge"
    return meta if isinstance(meta, str) else str(getattr(meta, "spec", type(meta).__name__))


def judge_settings(judge: Any) -> dict[str, Any]:
    """Every setting of `judge` that changes its results, as plain JSON values: recorded in
    run.json and compared on resume. The one place to adjust when the judge gains a setting."""
    from judgekit.formats import GRMFormat
    from judgekit.judge import Judge

    if not isinstance(judge, Judge):  # a stand-in or a judge of the caller's own
        return {"judge": type(judge).__name__, "model": _model_name(judge, None)}
    fmt = judge.format
    return _plain({
        "judge": type(judge).__name__,
        "model": judge.backend.spec,
        "format": fmt.name,
        "aggregate": judge.aggregate,
        "generation": judge.config.model_dump(exclude={"timeout"}),
        "temperature": judge.sampling_temperature,
        "seed": judge.seed,
        "voting": judge.voting,
        "tie_rule": judge.tie_rule,
        "k_meta": judge.k_meta,
        "meta_model": _meta_name(judge.meta),
        "template": fmt.template,
        "template_hash": _template_digest(fmt.template, fmt.template_dir),
        "system": _digest(fmt.system),
        "examples": _digest([e.model_dump(mode="json") for e in fmt.examples])
        if isinstance(fmt, GRMFormat) else None,
        "max_criteria": fmt.max_criteria if isinstance(fmt, GRMFormat) else None,
        "structured": judge.structured,
        "max_reasks": judge.sampler.max_reasks,
        # Everything else the format is configured with (rubrics, output modes, ...).
        "format_fingerprint": fmt.fingerprint(),
    })


def _differences(old: RunInfo, new: RunInfo) -> list[str]:
    diff = [f"{k}: {getattr(old, k)!r} -> {getattr(new, k)!r}" for k in RESUME_KEYS
            if getattr(old, k) != getattr(new, k)]
    if old.settings is not None and new.settings is not None:
        for key in sorted(set(old.settings) | set(new.settings)):
            before, after = old.settings.get(key), new.settings.get(key)
            if before != after:
                diff.append(f"{key}: {before!r} -> {after!r}")
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


def _model_name(judge: Any, model: str | None) -> str | None:
    if model is not None:
        return model
    name = getattr(judge, "model", None)
    return name if isinstance(name, str) else None


async def arun(
    dataset: str | Sequence[BenchItem],
    judge: BatchJudge,
    *,
    out_dir: str | os.PathLike[str],
    subset: str | None = None,
    samples: int = 1,
    meta: bool = False,
    k_meta: int | None = None,
    limit: int | None = None,
    stratify: bool = False,
    concurrency: int = 4,
    seed: int = 0,
    reverse: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    model: str | None = None,
    baseline: str | None = None,
    dataset_name: str | None = None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Judge every selected item not yet done in `out_dir`, appending results as they finish.

    `dataset` is a registered name or a list of BenchItems (then name it with `dataset_name`).
    `reverse=True` shows every item's responses in reverse order (pair it with a normal run for
    position consistency). `stratify=True` spreads `limit` evenly over subsets instead of taking
    the first items. `seed` is recorded and used by the report's random tie-break.
    Resuming with settings that differ from the recorded ones raises BenchRunError;
    `overwrite=True` deletes the old run's files and starts afresh. A stop because the backend
    fails for everyone raises BenchRunAborted after recording the finished items.
    """
    if samples < 1:
        raise BenchRunError("samples must be at least 1")
    if limit is not None and limit < 1:
        raise BenchRunError("limit must be at least 1")
    if isinstance(dataset, str):
        name = dataset
        items = load_dataset(dataset, subset=subset, limit=limit, data_dir=data_dir,
                             stratify=stratify)
    else:
        name = dataset_name or "custom"
        items = select(list(dataset), subset, limit, stratify)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise DatasetError("item ids must be unique")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = RunInfo(dataset=name, subset=subset, model=_model_name(judge, model),
                   baseline=baseline, samples=samples, meta=meta, k_meta=k_meta, limit=limit,
                   stratify=stratify, seed=seed,
                   reverse=reverse, concurrency=concurrency, n_items=len(items),
                   started_at=_now(), settings=judge_settings(judge), extra=extra or {})
    run_path = out / RUN_FILE
    results_path = out / RESULTS_FILE
    if overwrite:
        for path in (run_path, results_path):
            path.unlink(missing_ok=True)
    if run_path.exists():
        old = read_run_info(out)
        _check_resume(old, info, out)
        info = old.model_copy(update={"limit": limit, "stratify": stratify,
                                      "n_items": len(items),
                                      "resumed_at": [*old.resumed_at, _now()],
                                      "concurrency": concurrency, "finished_at": None,
                                      "settings": old.settings or info.settings})
    _write_json_atomic(run_path, info.model_dump_json(indent=2))

    if repair_results(results_path):
        warnings.warn(f"{results_path}: removed a truncated last line", stacklevel=2)
    done = {rec.item_id for rec in read_results(out) if rec.final}
    todo = [it for it in items if it.id not in done]
    orders: list[list[int] | None] = []
    shown: list[BenchItem] = []
    for it in todo:
        if reverse and len(it.responses) > 1:
            order = list(range(len(it.responses)))[::-1]
            shown.append(it.reordered(order))
            orders.append(order)
        else:
            shown.append(it)
            orders.append(None)

    written: set[int] = set()
    appender = _Appender(results_path)

    def on_result(index: int, verdict: Verdict) -> None:
        if index in written or not 0 <= index < len(shown):
            return
        appender.write(_record(shown[index], verdict, orders[index]))
        written.add(index)

    # meta=True asks Judge for meta-guided voting with its own model as meta judge; a judge
    # built with a meta model of its own gets meta=None ("use yours").
    meta_arg: bool | None = meta
    if meta and getattr(judge, "meta", None) is not None:
        meta_arg = None
    kwargs: dict[str, Any] = {"meta": meta_arg, "concurrency": concurrency,
                              "progress": progress, "on_result": on_result}
    if k_meta is not None:
        kwargs["k_meta"] = k_meta
    try:
        if shown:
            verdicts = await judge.ascore_many([it.judge_input() for it in shown], samples,
                                               **kwargs)
            for index, verdict in enumerate(verdicts):  # a judge that skipped on_result
                on_result(index, verdict)
    except RunAbortedError as exc:
        for index, finished in exc.verdicts.items():  # a judge that skipped on_result
            if isinstance(finished, Verdict):
                on_result(index, finished)
        raise BenchRunAborted(
            f"{exc} Results so far: {results_path}",
            cause=exc.cause, finished=exc.finished, total=exc.total) from None
    finally:
        appender.close()
    missing = [i for i in range(len(shown)) if i not in written]
    if missing:  # the judge returned fewer verdicts than items: record them as failed
        appender = _Appender(results_path)
        try:
            for i in missing:
                appender.write(_record(shown[i], None, orders[i], error="no verdict returned"))
        finally:
            appender.close()
    info = info.model_copy(update={"finished_at": _now()})
    _write_json_atomic(run_path, info.model_dump_json(indent=2))
    return RunResult(out_dir=out, n_items=len(items), already_done=len(items) - len(todo),
                     judged=len(todo), **run_counts(read_results(out), ids))


def run(dataset: str | Sequence[BenchItem], judge: BatchJudge, **kwargs: Any) -> RunResult:
    """Sync twin of `arun` (also inside Jupyter)."""
    from judgekit.runtime import run_sync

    return run_sync(arun(dataset, judge, **kwargs))


def make_judge(model: str | None = None, *, baseline: str | None = None, seed: int = 0,
               max_tokens: int | None = None, temperature: float | None = None,
               concurrency: int = 4, meta_model: str | None = None, examples: bool = True,
               cache: Any = True, **backend_kwargs: Any) -> Any:
    """The judge `bench run` uses: `Judge` (GRM), or `PairwiseBaselineJudge` for
    `baseline="pairwise"`. `model=None` is the embedded local model. `examples=False` drops the
    GRM prompt's few-shot examples (shorter prompts). The response cache is on by default
    (`cache=True`: the shared sqlite file; a path; or False), so a re-run or a resumed run pays
    nothing for calls that already finished."""
    if baseline not in (None, "pairwise"):
        raise BenchRunError(f"unknown baseline {baseline!r} (known: pairwise)")
    if baseline == "pairwise":
        from judgekit.bench.baseline import PairwiseBaselineJudge

        baseline_judge = PairwiseBaselineJudge(model, seed=seed, max_tokens=max_tokens,
                                               temperature=temperature, concurrency=concurrency,
                                               **backend_kwargs)
        if cache:
            from judgekit.cache import wrap_with_cache

            baseline_judge.backend = wrap_with_cache(baseline_judge.backend, cache)
        return baseline_judge
    from judgekit.judge import Judge

    kwargs: dict[str, Any] = dict(backend_kwargs)
    if meta_model is not None:
        kwargs["meta"] = meta_model
    return Judge(model, seed=seed, max_tokens=max_tokens, temperature=temperature,
                 concurrency=concurrency, examples=examples, cache=cache, **kwargs)


async def aclose_judge(judge: Any) -> None:
    close = getattr(judge, "aclose", None)
    if close is not None:
        result = close()
        if asyncio.iscoroutine(result):
            await result

