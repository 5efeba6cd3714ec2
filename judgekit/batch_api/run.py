"""A batch run: items submitted to a provider's batch API, its jobs tracked in a run directory,
results read back through the same sampler, meta judge and vote as an online run.

The run directory's files, and the records in them, are `judgekit.batch_api.records`'s.

**Requests.** An item's prompts are `judge.pipeline.plan(...)`'s: one per distinct permutation,
serving the samples shown in that order. OpenAI gets one request per prompt with `n` = its
samples; Anthropic, which has no `n`, one request per sample. A custom id names the item, the
permutation and the samples (`records.custom_id`).

**Resuming.** Every job is recorded (with its custom ids, before the provider is called) and its
provider id written as soon as the provider returns it, so a killed process polls and collects
the same jobs on the next call and never resubmits them. A job whose creation was in flight when
the process died is looked up by its tag where the provider keeps metadata (OpenAI); Anthropic
keeps none, so such a job is submitted again (the window is the single create call).

**Results.** Each request's outcome is what an online call gives (a `GenerationResult`, or the
`BackendError` of a request that errored, expired or was cancelled), so
the item's sampler reads them exactly as online and `Pipeline.verdict` votes: a batch run and an
online run over the same model outputs give the same Verdicts (cost aside: batch requests are
priced at batch prices). Requests carry the constraint the online backend resolves for its
server (`BatchProvider.prepare`), and a completion written without it records why, as online.

**Re-asks are online.** A sample whose text does not parse is re-asked (or completed under the
grammar) at once through the judge's online backend, at the standard price, by the same code as
an online run. A follow-up batch would add up to a day's latency for the few percent of samples
that need it, and a second code path.

**Failures.** A request that errored, expired or was cancelled is recorded on its samples as
`api_error`. `resubmit_failed()` (CLI: `--resubmit-failed`) sends those requests again as a new
job (round + 1); the newest outcome of a custom id wins.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judgekit.backends.base import Backend, GenerationOutcome, GenerationResult
from judgekit.batch import JudgeItem, score_batch
from judgekit.batch_api.base import BatchProvider, BatchRequest, BatchRequestNotRun
from judgekit.batch_api.records import (
    ITEMS_FILE,
    RESULTS_DIR,
    STATE_FILE,
    BatchState,
    ItemRecord,
    JobRecord,
    RequestRecord,
    custom_id,
    item_content,
    item_key,
    write_atomic,
)
from judgekit.cache import CachedBackend
from judgekit.config import GenerationConfig
from judgekit.cost import Price
from judgekit.errors import BackendError, CapabilityError, JudgekitError
from judgekit.judge_spec import JudgeSpec
from judgekit.meta import NOT_GIVEN, MetaArg, MetaScorer, NotGiven
from judgekit.runstore import RunStore
from judgekit.runtime import run_sync
from judgekit.sampler import SamplePrompt
from judgekit.schema import Verdict
from judgekit.structured import StructuredMode

if TYPE_CHECKING:
    from judgekit.judge import Judge
    from judgekit.pipeline import JudgeSettings


class BatchRunError(JudgekitError, ValueError):
    """A batch run that cannot go on as asked: a directory made by another judge or model, a
    provider without a batch API, a judge whose prompts differ from the ones submitted."""


class BatchNotReady(JudgekitError):
    """Collecting was asked not to wait (or timed out) while jobs were still running."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# Providers
# --------------------------------------------------------------------------------------------
def provider_for(backend: Backend, batch_prices: dict[str, Price] | None = None) -> BatchProvider:
    """The batch API of the judge's backend (under its response cache, if any)."""
    inner = backend.backend if isinstance(backend, CachedBackend) else backend
    from judgekit.backends.anthropic_backend import AnthropicBackend
    from judgekit.backends.openai_backend import OpenAIBackend

    if isinstance(inner, OpenAIBackend):
        from judgekit.batch_api.openai import OpenAIBatchProvider

        return OpenAIBatchProvider(inner, batch_prices)
    if isinstance(inner, AnthropicBackend):
        from judgekit.batch_api.anthropic import AnthropicBatchProvider

        return AnthropicBatchProvider(inner, batch_prices)
    raise BatchRunError(f"{backend.spec} has no batch API: batch runs need an openai: or "
                        "anthropic: model (for a local or self-served GRM, use judgekit.ray)")


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
class BatchRun:
    """The state of one run directory, and the operations on it. Not safe for two processes
    working on one directory at once (the last writer of batch.json wins)."""

    def __init__(self, run_dir: Path, state: BatchState, items: list[ItemRecord]) -> None:
        self.dir = run_dir
        self.state = state
        self.items = items
        self.by_key = {it.key: it for it in items}

    # -- files ------------------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> BatchRun:
        path = Path(run_dir)
        try:
            state = BatchState.model_validate_json((path / STATE_FILE).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise BatchRunError(f"{path}: not a batch run ({exc.__class__.__name__}: {exc})") \
                from exc
        # A torn last line was never submitted; a corrupt line is skipped and counted (its item
        # is added again, under a new index, when it is given again).
        items = RunStore(path / ITEMS_FILE, ItemRecord).load().records
        return cls(path, state, items)

    def save(self) -> None:
        write_atomic(self.dir / STATE_FILE, self.state.model_dump_json(indent=1))

    def results_path(self, job: JobRecord) -> Path:
        return self.dir / RESULTS_DIR / f"{job.tag}.jsonl"

    # -- items ------------------------------------------------------------------------------------
    def add_items(self, judge: Judge, items: Sequence[JudgeItem],
                  provider: BatchProvider) -> list[ItemRecord]:
        """The records of `items`: known ones (checked to be the same item) and new ones,
        appended to the items file before anything of theirs is submitted."""
        out: list[ItemRecord] = []
        fresh: list[ItemRecord] = []
        first = max((it.index for it in self.items), default=-1) + 1
        for item in items:
            key = item_key(item)
            known = self.by_key.get(key)
            if known is not None:
                if item_content(known) != item_content(item):
                    raise BatchRunError(f"item {key!r} in {self.dir} has other content than the "
                                        "item given now: use another run directory")
                out.append(known)
                continue
            rec = self._new_record(judge, item, key, first + len(fresh), provider)
            self.by_key[key] = rec
            fresh.append(rec)
            out.append(rec)
        store = RunStore(self.dir / ITEMS_FILE, ItemRecord)
        store.repair()  # never glue a new line onto a torn one
        store.append(fresh)
        self.items.extend(fresh)
        return out

    def _new_record(self, judge: Judge, item: JudgeItem, key: str, index: int,
                    provider: BatchProvider) -> ItemRecord:
        seed = judge.pipeline.item_seed(item.query, item.responses)
        prompts, _config, digest = item_prompts(judge, item, self.state.samples, seed)
        requests: list[RequestRecord] = []
        for pi, p in enumerate(prompts):
            groups = [[j] for j in p.samples] if provider.one_sample_per_request else [p.samples]
            for served in groups:
                requests.append(RequestRecord(custom_id=custom_id(index, p.permutation, served),
                                              prompt=pi, samples=served))
        return ItemRecord(index=index, key=key, id=item.id, query=item.query,
                          responses=list(item.responses), reference=item.reference,
                          principles=item.principles, principles_mode=item.principles_mode,
                          seed=seed, digest=digest, requests=requests)

    # -- jobs -------------------------------------------------------------------------------------
    def submitted_ids(self) -> set[str]:
        return {cid for job in self.state.jobs for cid in job.custom_ids}

    async def submit_requests(self, judge: Judge, provider: BatchProvider,
                              todo: Sequence[tuple[ItemRecord, RequestRecord]], round_: int,
                              max_requests: int | None = None) -> None:
        """Record, then submit, one job per chunk of `todo`."""
        size = min(max_requests or provider.max_requests, provider.max_requests)
        for start in range(0, len(todo), size):
            chunk = todo[start:start + size]
            job = JobRecord(tag=f"jk-{self.state.run_id}-{len(self.state.jobs)}",
                            custom_ids=[r.custom_id for _, r in chunk], round=round_,
                            submitted_at=_now())
            self.state.jobs.append(job)
            self.save()  # recorded before the provider hears of it
            await self._create(judge, provider, job, chunk)

    async def _create(self, judge: Judge, provider: BatchProvider, job: JobRecord,
                      chunk: Sequence[tuple[ItemRecord, RequestRecord]]) -> None:
        requests = [batch_request(judge, it, req, self.state.samples) for it, req in chunk]
        if requests:  # one run, one structured mode: the first request resolves the flavour
            await provider.prepare(requests[0].config)
        job.job_id = await provider.submit(requests, job.tag)
        job.state = "submitted"
        self.save()

    async def recover(self, judge: Judge, provider: BatchProvider) -> None:
        """Jobs whose create call a dead process left in flight: found by tag, else created."""
        for job in self.state.jobs:
            if job.job_id is not None:
                continue
            found = await provider.find(job.tag)
            if found is not None:
                job.job_id, job.state = found, "submitted"
                self.save()
                continue
            wanted = set(job.custom_ids)
            chunk = [(it, r) for it in self.items for r in it.requests if r.custom_id in wanted]
            await self._create(judge, provider, job, chunk)

    async def refresh(self, provider: BatchProvider) -> None:
        """Poll every unfinished job; download the results of each finished one (once)."""
        for job in self.state.jobs:
            if job.job_id is None:
                continue
            if not job.terminal:
                status = await provider.retrieve(job.job_id)
                job.state, job.terminal = status.state, status.terminal
                job.counts, job.error = status.counts, status.error
                self.save()
            if job.terminal and not job.downloaded:
                lines = await provider.download(job.job_id) if job.state != "failed" else []
                path = self.results_path(job)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, "".join(json.dumps(line, ensure_ascii=False) + "\n"
                                            for line in lines))
                job.downloaded = True
                self.save()

    def finished(self) -> bool:
        return all(job.terminal and job.downloaded for job in self.state.jobs)

    def outcomes(self, provider: BatchProvider) -> dict[str, GenerationOutcome]:
        """The newest outcome of every custom id of a finished job (later jobs win)."""
        out: dict[str, GenerationOutcome] = {}
        for job in self.state.jobs:
            if not (job.terminal and job.downloaded):
                continue
            seen: dict[str, GenerationOutcome] = {}
            path = self.results_path(job)
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        cid, outcome = provider.read(json.loads(line))
                        seen[cid] = outcome
            why = (f"the batch job failed: {job.error}" if job.state == "failed"
                   else f"no result for the request in job {job.job_id} ({job.state})")
            for cid in job.custom_ids:
                out[cid] = seen.get(cid) or BatchRequestNotRun(why)
        return out

    def poll_line(self) -> str:
        """One line for a human watching a poll: each job's state and its request counts."""
        jobs = [f"{job.job_id or '(submitting)'} {job.state}"
                + "".join(f", {k} {v}" for k, v in job.counts.items()) for job in self.state.jobs]
        return f"batch {self.dir}: " + "; ".join(jobs)

    def progress(self) -> dict[str, Any]:
        """Jobs by state and requests by outcome so far (for humans and logs)."""
        states: dict[str, int] = {}
        for job in self.state.jobs:
            states[job.state] = states.get(job.state, 0) + 1
        return {"jobs": states, "requests": sum(len(j.custom_ids) for j in self.state.jobs),
                "finished": self.finished()}


def _digest(prompts: Sequence[SamplePrompt], config: GenerationConfig) -> str:
    blob = json.dumps([[p.permutation, p.messages, p.samples] for p in prompts]
                      + [config.model_dump(mode="json", exclude={"timeout"})],
                      ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def item_prompts(judge: Judge, item: JudgeItem | ItemRecord, samples: int,
                 seed: int) -> tuple[list[SamplePrompt], GenerationConfig, str]:
    """The prompts, request config and digest of an item, exactly as an online run builds them."""
    plan = judge.pipeline.plan(item.query, item.responses, samples, seed,
                               reference=item.reference, principles=item.principles,
                               principles_mode=item.principles_mode)
    return plan.prompts, plan.config, _digest(plan.prompts, plan.config)


def batch_request(judge: Judge, item: ItemRecord, req: RequestRecord,
                  samples: int) -> BatchRequest:
    prompts, config, _ = item_prompts(judge, item, samples, item.seed)
    return BatchRequest(custom_id=req.custom_id, messages=prompts[req.prompt].messages,
                        n=len(req.samples), config=config)


def prompt_outcomes(prompts: Sequence[SamplePrompt], item: ItemRecord,
                    outcomes: dict[str, GenerationOutcome], fallback: str | None = None
                    ) -> tuple[list[SamplePrompt], list[GenerationOutcome]]:
    """One outcome per prompt, as `Sampler.collect` takes them. A prompt whose requests all
    succeeded gets their results merged (as an online call of n samples returns them); a prompt
    split over several requests of which some failed becomes one prompt per sample, so each
    sample keeps its own result or error. `fallback` is why the requests went without their
    schema (`BatchProvider.fallback_note`), recorded on every completion as online."""
    if fallback is not None:
        outcomes = {cid: _with_fallback(o, fallback) for cid, o in outcomes.items()}
    by_prompt: dict[int, list[RequestRecord]] = {}
    for req in item.requests:
        by_prompt.setdefault(req.prompt, []).append(req)
    out_prompts: list[SamplePrompt] = []
    out: list[GenerationOutcome] = []
    for pi, prompt in enumerate(prompts):
        reqs = by_prompt.get(pi, [])
        got = [outcomes.get(r.custom_id) or BatchRequestNotRun("not submitted") for r in reqs]
        if len(reqs) == 1:
            out_prompts.append(prompt)
            out.append(got[0])
        elif all(isinstance(g, GenerationResult) for g in got):
            results = [g for g in got if isinstance(g, GenerationResult)]
            out_prompts.append(prompt)
            out.append(GenerationResult(
                completions=[c for r in results for c in r.completions],
                usage=sum((r.usage for r in results[1:]), results[0].usage)))
        else:
            for req, g in zip(reqs, got, strict=True):
                out_prompts.append(SamplePrompt(prompt.permutation, prompt.messages,
                                                list(req.samples)))
                out.append(g)
    return out_prompts, out


def _with_fallback(outcome: GenerationOutcome, note: str) -> GenerationOutcome:
    if not isinstance(outcome, GenerationResult):
        return outcome
    return outcome.model_copy(update={"completions": [
        c.model_copy(update={"structured_fallback": note}) for c in outcome.completions]})


# --------------------------------------------------------------------------------------------
# The handle
# --------------------------------------------------------------------------------------------
class BatchHandle:
    """A submitted batch run: poll it, cancel it, resubmit its failures, collect its Verdicts.

    `keys` are the items this handle collects (in order); a handle from `open_batch` collects
    every item of the run.
    """

    def __init__(self, run: BatchRun, judge: Judge, provider: BatchProvider, keys: list[str],
                 meta: MetaArg = NOT_GIVEN) -> None:
        self.run = run
        self.judge = judge
        self.provider = provider
        self.keys = keys
        self.meta = meta

    @property
    def run_dir(self) -> Path:
        return self.run.dir

    async def astatus(self) -> dict[str, Any]:
        """Poll the provider once; jobs by state, and whether every job is done and local."""
        await self.run.refresh(self.provider)
        return self.run.progress()

    async def await_done(self, *, wait: bool = True, poll_interval: float = 30.0,
                         timeout: float | None = None, progress: bool = False) -> None:
        """Poll until every job has ended and its results are local (BatchNotReady when
        `wait=False` or `timeout` seconds pass first). With `progress`, every poll prints one
        line to stderr: each job's state and request counts (real jobs take hours)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        await self.run.recover(self.judge, self.provider)
        while True:
            await self.run.refresh(self.provider)
            if progress:
                print(self.run.poll_line(), file=sys.stderr, flush=True)
            if self.run.finished():
                return
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                raise BatchNotReady(f"{self.run.dir}: jobs still running {self.run.progress()}; "
                                    "collect again later (nothing is resubmitted)")
            await asyncio.sleep(poll_interval)

    async def acancel(self) -> dict[str, Any]:
        """Cancel every unfinished job; results of requests already done are kept."""
        for job in self.run.state.jobs:
            if job.job_id is not None and not job.terminal:
                status = await self.provider.cancel(job.job_id)
                job.state, job.terminal = status.state, status.terminal
                self.run.save()
        return self.run.progress()

    async def aresubmit_failed(self) -> int:
        """Send again every request of a finished job whose outcome is a failure (errored,
        expired, cancelled, or not run), as a new job; returns how many were resubmitted."""
        await self.run.refresh(self.provider)
        outcomes = self.run.outcomes(self.provider)
        pending = {cid for job in self.run.state.jobs if not job.terminal
                   for cid in job.custom_ids}
        todo = [(it, r) for it in self.run.items for r in it.requests
                if isinstance(outcomes.get(r.custom_id), BackendError)
                and r.custom_id not in pending]
        if todo:
            round_ = max(job.round for job in self.run.state.jobs) + 1
            await self.run.submit_requests(self.judge, self.provider, todo, round_)
        return len(todo)

    async def acollect(self, *, wait: bool = True, poll_interval: float = 30.0,
                       timeout: float | None = None, concurrency: int | None = None,
                       progress: bool = False, meta: MetaArg = NOT_GIVEN,
                       k_meta: int | None = None,
                       on_result: Callable[[int, Verdict], Any] | None = None) -> list[Verdict]:
        """The Verdicts of this handle's items, in order, once every job has ended. Unreadable
        samples are re-asked online; the meta judge (if any) runs online."""
        await self.await_done(wait=wait, poll_interval=poll_interval, timeout=timeout,
                              progress=progress)
        outcomes = self.run.outcomes(self.provider)
        state = self.run.state
        chosen_meta = self.chosen_meta(meta)
        used_k_meta = k_meta if k_meta is not None else state.k_meta
        records = [self.run.by_key[k] for k in self.keys]
        judge = self.judge
        built = {}
        for rec in records:  # refuse a different judge before any online call is made
            prompts, config, digest = item_prompts(judge, rec, state.samples, rec.seed)
            if digest != rec.digest:
                raise BatchRunError(f"item {rec.key!r}: this judge builds other prompts than "
                                    "the ones submitted (another template, examples, "
                                    "max_tokens or seed): collect with the submitting judge")
            built[rec.key] = (prompts, config)
        if built:  # the flavour the requests were written for, resolved as online
            await self.provider.prepare(next(iter(built.values()))[1])

        async def one(item: JudgeItem) -> Verdict:
            rec = self.run.by_key[str(item.id)]
            start = time.perf_counter()
            prompts, config = built[rec.key]
            shown, got = prompt_outcomes(prompts, rec, outcomes,
                                         self.provider.fallback_note(config))
            sampler = judge.pipeline.sampler_for(rec.principles, rec.principles_mode)
            judgements = await sampler.collect(shown, got, n_responses=len(rec.responses),
                                               config=config)
            return await judge.pipeline.verdict(
                rec.query, rec.responses, judgements, state.samples, fmt=sampler.format,
                meta=chosen_meta, k_meta=used_k_meta, item_id=rec.id, item_seed=rec.seed,
                start=start, reference=rec.reference)

        # score_batch keys items by position; the record key travels as the id
        keyed = [JudgeItem(id=r.key, query=r.query, responses=r.responses) for r in records]
        verdicts = await score_batch(keyed, one, model=judge.model, samples=state.samples,
                                     concurrency=concurrency or judge.concurrency,
                                     progress=progress, on_result=on_result, desc="collecting")
        for rec, v in zip(records, verdicts, strict=True):
            v.item_id = rec.id  # an item failure carries the key; the Verdict the item's id
        return verdicts

    def chosen_meta(self, meta: MetaArg) -> MetaArg:
        """The meta judge of a collect: the call's, else the one given at submission, else the
        one stored with the run (not given there: the judge's own)."""
        if not isinstance(meta, NotGiven):
            return meta
        if not isinstance(self.meta, NotGiven):
            return self.meta
        return NOT_GIVEN if self.run.state.meta is None else self.run.state.meta

    def collect(self, **kwargs: Any) -> list[Verdict]:
        """Sync twin of `acollect`."""
        return run_sync(self.acollect(**kwargs))

    def status(self) -> dict[str, Any]:
        return run_sync(self.astatus())

    def cancel(self) -> dict[str, Any]:
        return run_sync(self.acancel())

    def resubmit_failed(self) -> int:
        return run_sync(self.aresubmit_failed())


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------
async def asubmit_batch(judge: Judge | JudgeSpec, items: Sequence[JudgeItem | dict[str, Any]],
                        samples: int = 1, *, run_dir: str | os.PathLike[str],
                        meta: MetaArg = NOT_GIVEN, k_meta: int | None = None,
                        batch_prices: dict[str, Price] | None = None,
                        max_requests_per_job: int | None = None) -> BatchHandle:
    """Submit `items` (k = `samples` judgements each) to the batch API of the judge's provider,
    recording the run in `run_dir`. Calling it again on the same directory resumes: items
    already there are not submitted again, new ones are. `judge` may be a `JudgeSpec`, which is
    stored so that `collect_batch(run_dir)` can rebuild the judge in another process.
    `batch_prices` overrides `judgekit.cost.BATCH_PRICES`."""
    spec = judge if isinstance(judge, JudgeSpec) else None
    live = judge.build() if isinstance(judge, JudgeSpec) else judge
    if samples < 1:
        raise ValueError("samples must be at least 1")
    if live.sampler.mode is StructuredMode.GRAMMAR:
        raise CapabilityError("batch APIs take no output grammar (structured=True)")
    provider = provider_for(live.backend, batch_prices)
    parsed = [i if isinstance(i, JudgeItem) else JudgeItem.model_validate(i) for i in items]
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    stored_meta = _stored_meta(meta)
    if (path / STATE_FILE).exists():
        run = BatchRun.load(path)
        _check_same(run.state, live, provider, samples)
    else:
        run = BatchRun(path, BatchState(
            run_id=uuid.uuid4().hex[:10], provider=provider.name, model=live.model,
            identity=live.backend.identity, format=live.format.name, samples=samples,
            meta=stored_meta, k_meta=k_meta,
            judge_spec=spec.stored() if spec is not None else None, created_at=_now()), [])
        run.save()
    records = run.add_items(live, parsed, provider)
    await run.recover(live, provider)
    done = run.submitted_ids()
    todo = [(rec, r) for rec in run.items for r in rec.requests if r.custom_id not in done]
    if todo:
        await run.submit_requests(live, provider, todo, round_=0,
                                  max_requests=max_requests_per_job)
    return BatchHandle(run, live, provider, [r.key for r in records], meta=meta)


def submit_batch(judge: Judge | JudgeSpec, items: Sequence[JudgeItem | dict[str, Any]],
                 samples: int = 1, **kwargs: Any) -> BatchHandle:
    """Sync twin of `asubmit_batch`; safe inside Jupyter."""
    return run_sync(asubmit_batch(judge, items, samples, **kwargs))


def _stored_meta(meta: MetaArg) -> bool | str | None:
    """What batch.json keeps of a meta argument: None when not given (or a MetaScorer object,
    which cannot be stored: the handle holds it), False for none, else the spec."""
    if isinstance(meta, NotGiven | MetaScorer):
        return None
    return False if meta is None else meta


def _check_same(state: BatchState, judge: Judge, provider: BatchProvider, samples: int) -> None:
    # The model is compared without its endpoint where the run recorded it: the same provider
    # served on another port (a restarted proxy) keeps its jobs.
    model = ((state.identity, judge.backend.identity) if state.identity is not None
             else (state.model, judge.model))
    diff = {k: (old, new) for k, old, new in (
        ("provider", state.provider, provider.name), ("model", *model),
        ("format", state.format, judge.format.name), ("samples", state.samples, samples))
        if old != new}
    if diff:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise BatchRunError(f"this directory holds another batch run ({detail}); "
                            "use another run directory")


def open_batch(run_dir: str | os.PathLike[str], judge: Judge | JudgeSpec | None = None, *,
               batch_prices: dict[str, Price] | None = None) -> BatchHandle:
    """The handle of an existing run (every item), e.g. in another process. Without `judge`,
    the JudgeSpec stored at submission rebuilds it."""
    run = BatchRun.load(run_dir)
    if judge is None:
        if run.state.judge_spec is None:
            raise BatchRunError(f"{run_dir} stores no JudgeSpec (it was submitted with a Judge "
                                "object): pass the judge that submitted it")
        judge = run.state.judge_spec
    live = judge.build() if isinstance(judge, JudgeSpec) else judge
    provider = provider_for(live.backend, batch_prices)
    _check_same(run.state, live, provider, run.state.samples)
    return BatchHandle(run, live, provider, [it.key for it in run.items])


async def acollect_batch(run_dir: str | os.PathLike[str], judge: Judge | JudgeSpec | None = None,
                         **kwargs: Any) -> list[Verdict]:
    """The Verdicts of every item of the run in `run_dir` (polling until its jobs end)."""
    return await open_batch(run_dir, judge).acollect(**kwargs)


def collect_batch(run_dir: str | os.PathLike[str], judge: Judge | JudgeSpec | None = None,
                  **kwargs: Any) -> list[Verdict]:
    """Sync twin of `acollect_batch`."""
    return run_sync(acollect_batch(run_dir, judge, **kwargs))



class BatchScorer:
    """The runner's judge for `bench run --batch`: `ascore_many` submits the items (or resumes
    the run in `run_dir`), waits for the provider, and collects, so the bench runner writes and
    resumes results.jsonl exactly as online. `resubmit_failed` first sends again the requests
    that failed in finished jobs."""

    def __init__(self, judge: Judge, run_dir: str | os.PathLike[str], *,
                 poll_interval: float = 30.0, wait: bool = True,
                 resubmit_failed: bool = False) -> None:
        self.judge = judge
        self.run_dir = Path(run_dir)
        self.poll_interval = poll_interval
        self.wait = wait
        self.resubmit_failed = resubmit_failed

    @property
    def model(self) -> str:
        return self.judge.model

    def settings(self) -> JudgeSettings:
        """The judge's settings, run through a batch API."""
        return self.judge.pipeline.settings(execution="batch")

    async def ascore_many(self, items: Sequence[JudgeItem | dict[str, Any]], samples: int = 1,
                          *, meta: MetaArg = NOT_GIVEN, k_meta: int | None = None,
                          concurrency: int | None = None, progress: bool = False,
                          on_result: Callable[[int, Verdict], Any] | None = None
                          ) -> list[Verdict]:
        handle = await asubmit_batch(self.judge, items, samples, run_dir=self.run_dir,
                                     meta=meta, k_meta=k_meta)
        if self.resubmit_failed:
            await handle.aresubmit_failed()
        return await handle.acollect(wait=self.wait, poll_interval=self.poll_interval,
                                     concurrency=concurrency, progress=progress,
                                     on_result=on_result)

    async def aclose(self) -> None:
        await self.judge.aclose()
