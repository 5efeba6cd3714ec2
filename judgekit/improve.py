"""The self-improving loop: judges debate a response's fixes, a reviser applies the accepted
ones, and the judges verify the revision pairwise before it is kept.

One round of `aimprove` on the current version of the response:

1. **Debate** (`judgekit.debate.adebate`): every judge judges the version with suggested fixes,
   reviews the others' fixes and may revise its scores. The version's score is the mean of the
   judges' last scores (1-10). The loop stops here at a `target` score, or when no fix was
   accepted.
2. **Revision.** The reviser (any model: a plain chat call through a Backend) rewrites the
   version applying the accepted fixes (`prompts/improve/revise.jinja`). A failed call, a
   reply cut off at the token limit, an empty reply or an unchanged text stops the loop; a
   truncated revision is never used.
3. **Pairwise check.** Every judge scores [previous, revised] with k samples (`Judge.ascore`;
   k even, so the balanced permutations show each order k/2 times). All samples are pooled and
   voted through `judgekit.aggregate.aggregate` under the strict tie rule: the revision is kept
   only when it is the single best. Otherwise the loop stops and the previous version stands.

The loop also ends after `rounds` rounds. The result is an `ImproveTrace` (Pydantic, JSON
round-trippable): every round's debate (critiques, fixes, reviews, mind changes), revision,
pairwise verdicts and usage. `aimprove_many` runs the loop over a dataset with the bench
runner's guarantees (resumable JSONL, a progress bar, an item's failure recorded, not raised),
and `judgekit.preferences.preference_pairs` turns traces into a preference dataset for TRL's
DPO and reward trainers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from judgekit.aggregate import aggregate
from judgekit.backends.base import Backend
from judgekit.backends.registry import resolve_backend
from judgekit.config import GenerationConfig
from judgekit.debate import DebateResult, Fix, adebate, check_judges
from judgekit.errors import (
    ITEM_FAILURES,
    BackendError,
    JudgekitError,
    describe_error,
    is_recorded_failure,
)
from judgekit.formats import fence_tag
from judgekit.judge import Judge
from judgekit.meta import NOT_GIVEN, MetaArg, NotGiven
from judgekit.prompts import as_messages, render
from judgekit.runstore import RunStore, latest
from judgekit.runtime import run_sync
from judgekit.sampler import DEFAULT_SAMPLING_TEMPERATURE
from judgekit.schema import Judgement, Message, SampleStatus, Usage, Verdict
from judgekit.scorer import ScorerSettings, differences
from judgekit.voting import TieRule, VotingMethod

REVISE_TEMPLATE = "improve/revise.jinja"

StopReason = Literal[
    "rounds",          # every round kept its revision
    "target_reached",  # the current version's score reached the target
    "no_fixes",        # the debate accepted no fix
    "no_judgement",    # no judge produced a valid judgement of the current version
    "reviser_failed",  # the reviser's call failed, or its reply was truncated or empty
    "unchanged",       # the reviser returned the version unchanged
    "revision_lost",   # the revision did not win the pairwise check (a tie loses)
    "no_verdict",      # no valid pairwise sample: the revision could not be verified
]
RevisionStatus = Literal["ok", "api_error", "truncated", "empty", "unchanged"]


class Revision(BaseModel):
    """The reviser's rewrite of one version. `text` is set only when it can be used."""

    model: str
    fixes: list[str] = Field(default_factory=list, description="ids of the fixes it applied")
    status: RevisionStatus
    text: str | None = None
    raw_text: str = ""
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)


class PairwiseCheck(BaseModel):
    """The previous version (response 0) against the revision (response 1): every judge's
    Verdict with k samples in balanced orders, and one vote over the samples each judge's own
    vote used (all its valid samples, or those its meta judge kept)."""

    verdicts: list[Verdict]
    scores: list[float | None] = Field(description="the pooled vote (a sum by default)")
    mean_scores: list[float | None] = Field(description="mean score per used sample, on the "
                                            "1-10 scale")
    best: int | None = None
    tie: bool = False
    valid_samples: int = 0
    used_samples: int = 0
    won: bool = Field(False, description="the revision is the single best")
    usage: Usage = Field(default_factory=Usage)


class ImproveRound(BaseModel):
    index: int = Field(description="1-based")
    response: str = Field(description="the version judged and revised in this round")
    debate: DebateResult
    score: float | None = Field(None, description="the version's mean score over the judges' "
                                "last samples (1-10)")
    accepted_fixes: list[Fix] = Field(default_factory=list)
    revision: Revision | None = None
    pairwise: PairwiseCheck | None = None
    kept: bool = False
    stop: StopReason | None = Field(None, description="why the loop ended in this round")
    usage: Usage = Field(default_factory=Usage)


class ImproveSettings(ScorerSettings):
    """What the loop ran with (`ImproveLoop.settings()`); a resumed dataset run must match it.
    `judge_settings` holds each judge's own settings (absent from traces written before they
    were recorded; only the settings a trace records are compared)."""

    scorer: str = "ImproveLoop"
    model: str = Field("", description="the judges' models, joined by '+'")
    judges: list[str]
    judge_seeds: list[int] = Field(default_factory=list)
    reviser: str
    rounds: int
    samples: int
    debate_rounds: int
    target: float | None = None
    voting: str = "sum"
    judge_settings: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _model_label(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("model") and data.get("judges"):
            data = {**data, "model": "+".join(re.sub(r"@.*", "", j) for j in data["judges"])}
        return data

    def changes_from(self, old: ImproveSettings) -> list[str]:
        """What differs from `old`, over the settings `old` recorded."""
        recorded = old.model_fields_set | {"model"}
        return differences({k: v for k, v in old.record().items() if k in recorded},
                           {k: v for k, v in self.record().items() if k in recorded})


class ImproveTrace(BaseModel):
    """The typed trace of one loop. `final` is the last version that was kept (the original
    when no revision won). `error` is set when the loop itself failed (a batch records it)."""

    id: str | None = None
    query: str | list[Message]
    reference: str | None = None
    original: str
    final: str
    rounds: list[ImproveRound] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    settings: ImproveSettings
    usage: Usage = Field(default_factory=Usage)
    wall_time_s: float = 0.0
    error: str | None = None

    @property
    def improved(self) -> bool:
        return any(r.kept for r in self.rounds)

    @property
    def failed(self) -> bool:
        """To be run again on resume: the loop raised, no judge reached its model, or the
        reviser's call failed (the bench runner's rule: retry what never got an answer)."""
        if self.error is not None:
            return True
        last = self.rounds[-1] if self.rounds else None
        return last is not None and last.revision is not None and \
            last.revision.status == "api_error"

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)


# --------------------------------------------------------------------------------------------
# Judges and the reviser
# --------------------------------------------------------------------------------------------
JudgeLike = Judge | str | None


def build_judges(specs: Sequence[JudgeLike], *, seed: int = 0,
                 temperature: float | None = None,
                 backend_kwargs: dict[str, Any] | None = None,
                 **judge_kwargs: Any) -> list[Judge]:
    """Judges that suggest fixes from model specs (a Judge passes through unchanged).

    Judges of the same spec share one backend (one local model in memory) and get seeds
    seed, seed+1, ...; when a spec repeats and no temperature is given, they sample at the
    paper's 0.5, since greedy decoding would make them say the same thing."""
    specs = list(specs)
    repeated = len({s for s in specs if not isinstance(s, Judge)}) < \
        sum(1 for s in specs if not isinstance(s, Judge))
    if repeated and temperature is None:
        temperature = DEFAULT_SAMPLING_TEMPERATURE
    backends: dict[str | None, Backend] = {}
    out: list[Judge] = []
    for i, spec in enumerate(specs):
        if isinstance(spec, Judge):
            out.append(spec)
            continue
        if spec not in backends:
            backends[spec] = resolve_backend(spec, **(backend_kwargs or {}))
        out.append(Judge(backends[spec], fixes=True, seed=seed + i, temperature=temperature,
                         **judge_kwargs))
    return out


def revise_messages(query: str | Sequence[Message], response: str, fixes: Sequence[str], *,
                    template: str = REVISE_TEMPLATE,
                    template_dir: str | Path | None = None) -> list[Message]:
    """The reviser's prompt: the conversation, the version, and the fixes to apply (all
    fenced with a tag absent from every one of them)."""
    tag = fence_tag(query, [response, *fixes])
    text = render(template, template_dir, messages=as_messages(query), response=response,
                  fixes=list(fixes), tag=tag)
    return [{"role": "user", "content": text}]


async def arevise(reviser: Backend, query: str | Sequence[Message], response: str,
                  fixes: Sequence[Fix], config: GenerationConfig, *,
                  template_dir: str | Path | None = None) -> Revision:
    """One plain chat call to the reviser. Failures are recorded on the Revision, never
    raised; a reply that stopped on the token limit is refused (`truncated`)."""
    ids = [f.id for f in fixes]
    messages = revise_messages(query, response, [f.text for f in fixes],
                               template_dir=template_dir)
    try:
        result = await reviser.generate(messages, config, 1)
    except Exception as exc:
        if not is_recorded_failure(exc):
            raise
        retries = exc.retries if isinstance(exc, BackendError) else 0
        return Revision(model=reviser.spec, fixes=ids, status="api_error",
                        error=describe_error(exc), usage=Usage(calls=1, retries=retries))
    usage = result.usage
    if not result.completions:
        return Revision(model=reviser.spec, fixes=ids, status="empty", usage=usage,
                        error="the reviser returned no completion")
    completion = result.completions[0]
    text = completion.text.strip()
    if reviser.capabilities.cut_off(completion):
        return Revision(model=reviser.spec, fixes=ids, status="truncated", raw_text=text,
                        usage=usage, error=f"the revision was cut off ({completion.finish_reason}: "
                        f"the token limit is max_tokens={config.max_tokens}); a cut-off "
                        "revision is never used")
    if not text:
        return Revision(model=reviser.spec, fixes=ids, status="empty", usage=usage,
                        error="the reviser returned an empty text")
    if text == response.strip():
        return Revision(model=reviser.spec, fixes=ids, status="unchanged", raw_text=text,
                        usage=usage)
    return Revision(model=reviser.spec, fixes=ids, status="ok", text=text, raw_text=text,
                    usage=usage)


async def apairwise(judges: Sequence[Judge], query: str | Sequence[Message], previous: str,
                    revised: str, samples: int, *,
                    voting: VotingMethod | str = VotingMethod.SUM,
                    reference: str | None = None) -> PairwiseCheck:
    """Every judge scores [previous, revised] with `samples` (even) samples in balanced
    orders; one vote over the samples each judge's Verdict used (a judge with a meta judge
    keeps its meta-guided selection) decides, and a tie is not a win."""
    if samples < 2 or samples % 2:
        raise ValueError(f"the pairwise check needs an even number of samples (>= 2) so both "
                         f"orders are shown equally often, got {samples}")
    verdicts = list(await asyncio.gather(*(j.ascore(query, [previous, revised], samples,
                                                   reference=reference) for j in judges)))
    # `kept` is what each judge's own aggregate used (its meta keep rule where it has one);
    # the pooled vote itself is the one voting rule again, over those samples.
    pooled: list[Judgement] = []
    for v in verdicts:
        for s in v.samples:
            if s.kept and s.valid:
                pooled.append(s.model_copy(update={"sample_index": len(pooled)}))
    result = aggregate(pooled, 2, voting=voting, tie_rule=TieRule.STRICT)
    means: list[float | None] = [
        sum(s.scores[i] for s in pooled if s.scores is not None) / len(pooled) if pooled
        else None for i in range(2)]
    return PairwiseCheck(verdicts=verdicts, scores=result.scores, mean_scores=means,
                         best=result.best, tie=result.tie,
                         valid_samples=sum(v.valid_samples for v in verdicts),
                         used_samples=result.used_samples, won=result.best == 1,
                         usage=Usage.total(v.usage for v in verdicts))


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
class ImproveLoop:
    """The loop's judges, reviser and settings, resolved once and run on any number of
    responses (`aimprove` runs one, `aimprove_many` a dataset).

    Args:
      judges: Judges that suggest fixes (`Judge(..., fixes=True)`) or model specs, built with
        `build_judges` (`None` is the embedded model). Two or more debate; one judge's fixes
        stand as it wrote them.
      reviser: the model that rewrites the response (a spec or a Backend); default the first
        judge's model (a spec equal to a judge's shares its backend).
      rounds: most revisions tried (N).
      samples: k, the pairwise check's samples per judge (even: both orders equally often).
      debate_rounds: review rounds in each debate.
      target: stop once the current version's mean score (1-10) reaches it.
      voting: how the debate's and the pairwise check's samples vote.
      reviser_max_tokens, reviser_temperature: the reviser's generation settings.
      template_dir: a folder whose templates shadow the built-in revise prompt.
      seed, temperature, backend_kwargs, judge_kwargs: passed to `build_judges` for specs.
    """

    def __init__(
        self, *, judges: Sequence[JudgeLike] = (None,), reviser: str | Backend | None = None,
        rounds: int = 3, samples: int = 2, debate_rounds: int = 1, target: float | None = None,
        voting: VotingMethod | str = VotingMethod.SUM, reviser_max_tokens: int = 1024,
        reviser_temperature: float = 0.0, template_dir: str | Path | None = None,
        seed: int = 0, temperature: float | None = None,
        backend_kwargs: dict[str, Any] | None = None, **judge_kwargs: Any,
    ) -> None:
        if rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {rounds}")
        if samples < 2 or samples % 2:
            raise ValueError(f"samples must be even and at least 2 (both orders equally "
                             f"often), got {samples}")
        if debate_rounds < 0:
            raise ValueError(f"debate_rounds must be at least 0, got {debate_rounds}")
        if target is not None and not 1.0 <= target <= 10.0:
            raise ValueError(f"target must be a score from 1 to 10, got {target}")
        if not judges:
            raise ValueError("the loop needs at least one judge")
        self.judges = build_judges(list(judges), seed=seed, temperature=temperature,
                                   backend_kwargs=backend_kwargs, **judge_kwargs)
        check_judges(self.judges)
        self.reviser = _reviser_backend(reviser, self.judges, backend_kwargs)
        self.reviser_config = GenerationConfig(max_tokens=reviser_max_tokens,
                                               temperature=reviser_temperature, seed=seed)
        if judge_kwargs.get("timeout") is not None:  # the judges' deadline holds for it too
            self.reviser_config = self.reviser_config.with_(timeout=judge_kwargs["timeout"])
        self.rounds = rounds
        self.samples = samples
        self.debate_rounds = debate_rounds
        self.target = target
        self.voting = VotingMethod(voting)
        self.template_dir = template_dir
        self.seed = seed
        self._settings = ImproveSettings(
            judges=[j.backend.identity for j in self.judges],
            judge_seeds=[j.seed for j in self.judges], reviser=self.reviser.identity,
            rounds=rounds, samples=samples, debate_rounds=debate_rounds, target=target,
            voting=self.voting.value, endpoint=self.judges[0].backend.endpoint,
            judge_settings=[{k: v for k, v in j.settings().record().items() if k != "endpoint"}
                            for j in self.judges])

    # -- the Scorer protocol -----------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self._settings.model

    def settings(self) -> ImproveSettings:
        """Every setting that changes the loop's traces (`judgekit.scorer.Scorer`)."""
        return self._settings

    async def ascore_many(self, items: Sequence[ImproveItem | dict[str, Any]],
                          samples: int | None = None, *, meta: MetaArg = NOT_GIVEN,
                          k_meta: int | None = None, concurrency: int | None = None,
                          progress: bool = True,
                          on_result: Callable[[int, ImproveTrace], Any] | None = None
                          ) -> list[ImproveTrace]:
        """Run the loop over `items`, at most `concurrency` (default 1) at once; traces in
        input order. An item whose loop raises one of `ITEM_FAILURES` becomes a trace with
        `error` set, and the others go on. `samples` is the loop's own (another number is
        refused), and meta-guided voting belongs to each judge (`meta`, `k_meta` refused)."""
        if samples is not None and samples != self.samples:
            raise ValueError(f"this loop checks with {self.samples} samples, not {samples}")
        if not isinstance(meta, NotGiven) or k_meta is not None:
            raise ValueError("the improve loop takes meta judges on its judges, not per call")
        limit = asyncio.Semaphore(concurrency or 1)
        parsed = [i if isinstance(i, ImproveItem) else ImproveItem.model_validate(i)
                  for i in items]
        results: list[ImproveTrace | None] = [None] * len(parsed)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(parsed), disable=not progress, desc="improving", unit="item")

        async def one(index: int) -> None:
            item = parsed[index]
            async with limit:
                start = time.perf_counter()
                try:
                    trace = await self.arun(item.query, item.response, item_id=item.key(),
                                            reference=item.reference)
                except ITEM_FAILURES as exc:
                    trace = ImproveTrace(
                        id=item.key(), query=item.query, reference=item.reference,
                        original=item.response, final=item.response, settings=self._settings,
                        error=describe_error(exc),
                        wall_time_s=round(time.perf_counter() - start, 4))
                results[index] = trace
                bar.update(1)
                if on_result is not None:
                    on_result(index, trace)

        try:
            await asyncio.gather(*(one(i) for i in range(len(parsed))))
        finally:
            bar.close()
        return [r for r in results if r is not None]

    async def aclose(self) -> None:
        """Close every judge's and the reviser's backend (each once)."""
        backends = {id(b): b for b in [*(j.backend for j in self.judges), self.reviser]}
        for backend in backends.values():
            await backend.aclose()

    async def arun(self, query: str | Sequence[Message], response: str, *,
                   item_id: str | None = None, reference: str | None = None) -> ImproveTrace:
        """Improve `response` to `query` (see the module doc); a `reference` answer is shown
        to the judges (debate and pairwise check), not to the reviser."""
        start = time.perf_counter()
        trace = ImproveTrace(id=item_id, query=_query_value(query), original=response,
                             final=response, reference=reference, settings=self._settings)
        current = response
        for index in range(1, self.rounds + 1):
            rnd = await self._round(query, current, index, reference)
            trace.rounds.append(rnd)
            stop = rnd.stop
            if rnd.kept and rnd.revision is not None and rnd.revision.text is not None:
                current = rnd.revision.text
            if stop is not None:
                trace.stop_reason = stop
                break
        else:
            trace.stop_reason = "rounds"
        trace.final = current
        trace.usage = Usage.total(r.usage for r in trace.rounds)
        trace.wall_time_s = round(time.perf_counter() - start, 4)
        if trace.stop_reason == "no_judgement" and _never_reached(trace.rounds[-1]):
            trace.error = "no judge reached its model: " + "; ".join(
                v.error or "?" for v in trace.rounds[-1].debate.openings)
        return trace

    def run(self, query: str | Sequence[Message], response: str, *,
            item_id: str | None = None, reference: str | None = None) -> ImproveTrace:
        """Sync twin of `arun`; safe inside Jupyter."""
        return run_sync(self.arun(query, response, item_id=item_id, reference=reference))

    async def _round(self, query: str | Sequence[Message], current: str, index: int,
                     reference: str | None) -> ImproveRound:
        debate = await adebate(query, [current], self.judges, rounds=self.debate_rounds,
                               voting=self.voting, seed=self.seed, reference=reference)
        accepted = [f for f in debate.accepted_fixes if f.response == 0]
        rnd = ImproveRound(index=index, response=current, debate=debate,
                           score=debate.mean_scores()[0], accepted_fixes=accepted)
        rnd.stop = _stop_before_revision(rnd, self.target)
        if rnd.stop is None:
            rnd.revision = await arevise(self.reviser, query, current, accepted,
                                         self.reviser_config, template_dir=self.template_dir)
            rnd.stop = _stop_after_revision(rnd.revision)
        if rnd.stop is None and rnd.revision is not None and rnd.revision.text is not None:
            rnd.pairwise = await apairwise(self.judges, query, current, rnd.revision.text,
                                           self.samples, voting=self.voting,
                                           reference=reference)
            rnd.kept = rnd.pairwise.won
            if not rnd.kept:
                rnd.stop = "revision_lost" if rnd.pairwise.used_samples else "no_verdict"
        rnd.usage = debate.usage + (rnd.revision.usage if rnd.revision else Usage()) + \
            (rnd.pairwise.usage if rnd.pairwise else Usage())
        return rnd


async def aimprove(query: str | Sequence[Message], response: str, *,
                   item_id: str | None = None, reference: str | None = None,
                   **kwargs: Any) -> ImproveTrace:
    """Improve `response` to `query`: `ImproveLoop(**kwargs).arun(...)` (see its arguments:
    judges, reviser, rounds, samples, debate_rounds, target, ...)."""
    return await ImproveLoop(**kwargs).arun(query, response, item_id=item_id,
                                            reference=reference)


def improve(query: str | Sequence[Message], response: str, **kwargs: Any) -> ImproveTrace:
    """Sync twin of `aimprove`; safe inside Jupyter."""
    return run_sync(aimprove(query, response, **kwargs))


def _reviser_backend(reviser: str | Backend | None, judges: Sequence[Judge],
                     backend_kwargs: dict[str, Any] | None) -> Backend:
    if reviser is None:
        return judges[0].backend  # self-refinement: the first judge's model revises
    if isinstance(reviser, Backend):
        return reviser
    for j in judges:  # the same spec as a judge: share its backend (one model in memory)
        if j.model == reviser:
            return j.backend
    return resolve_backend(reviser, **(backend_kwargs or {}))


def _query_value(query: str | Sequence[Message]) -> str | list[Message]:
    return query if isinstance(query, str) else as_messages(query)


def _stop_before_revision(rnd: ImproveRound, target: float | None) -> StopReason | None:
    if not rnd.debate.final:
        return "no_judgement"
    if target is not None and rnd.score is not None and rnd.score >= target:
        return "target_reached"
    if not rnd.accepted_fixes:
        return "no_fixes"
    return None


def _stop_after_revision(revision: Revision) -> StopReason | None:
    if revision.status == "unchanged":
        return "unchanged"
    if revision.status != "ok":
        return "reviser_failed"
    return None


def _never_reached(rnd: ImproveRound) -> bool:
    """Every judge's opening failed in its call (no text came back at all)."""
    return all(s.status is SampleStatus.API_ERROR
               for v in rnd.debate.openings for s in v.samples)


# --------------------------------------------------------------------------------------------
# Over a dataset: resumable JSONL, progress bar, failures recorded
# --------------------------------------------------------------------------------------------
class ImproveItem(BaseModel):
    """One response to improve. Without an id, one is derived from the content (stable across
    runs, so a resumed run finds it)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    query: str | list[Message]
    response: str
    reference: str | None = None

    def key(self) -> str:
        if self.id is not None:
            return self.id
        material = json.dumps([self.query, self.response], ensure_ascii=False, sort_keys=True)
        return "item-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:12]


class ImproveRunError(JudgekitError, ValueError):
    """A dataset run that cannot start, e.g. resuming a file written with other settings."""


def trace_store(path: str | os.PathLike[str]) -> RunStore[ImproveTrace]:
    return RunStore(path, ImproveTrace)


def read_traces(path: str | os.PathLike[str]) -> list[ImproveTrace]:
    """Every readable trace of a JSONL file, in file order (unreadable lines are skipped with
    a warning counting them)."""
    return trace_store(path).load().records


def latest_traces(traces: Iterable[ImproveTrace]) -> dict[str, ImproveTrace]:
    """The last trace per item id; a success is never replaced by a later failure."""
    return latest(traces, lambda t: t.id or "", lambda t: t.failed)


def write_trace(trace: ImproveTrace, path: str | os.PathLike[str]) -> None:
    """`.jsonl`: append the trace as one line (flushed and synced); otherwise write it as
    indented JSON."""
    p = Path(path)
    if p.suffix == ".jsonl":
        trace_store(p).append([trace])
    else:
        p.write_text(trace.to_json(), encoding="utf-8")


async def aimprove_many(
    items: Sequence[ImproveItem | dict[str, Any]], *, out: str | os.PathLike[str] | None = None,
    concurrency: int = 1, progress: bool = True,
    on_result: Callable[[int, ImproveTrace], Any] | None = None,
    loop: ImproveLoop | None = None, **kwargs: Any,
) -> list[ImproveTrace]:
    """Run the loop (`loop`, or `ImproveLoop(**kwargs)`) over `items`, at most `concurrency`
    at once; traces in input order (`ImproveLoop.ascore_many`).

    With `out` (a .jsonl file) every trace is appended as it finishes, and a re-run resumes:
    items with a finished trace are skipped (failed ones run again; a torn last line is cut
    off); a file written with other settings is refused, naming them.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    runner = loop if loop is not None else ImproveLoop(**kwargs)
    parsed = [i if isinstance(i, ImproveItem) else ImproveItem.model_validate(i) for i in items]
    keys = [it.key() for it in parsed]
    if len(set(keys)) != len(keys):
        raise ImproveRunError("item ids must be unique")
    done: dict[str, ImproveTrace] = {}
    store = trace_store(out) if out is not None else None
    if store is not None:
        if store.path.suffix != ".jsonl":
            raise ImproveRunError(f"{store.path}: a dataset run writes JSONL (name the file "
                                  "*.jsonl)")
        store.path.parent.mkdir(parents=True, exist_ok=True)
        healed = store.heal()
        if healed:  # once: the file is sound from now on
            warnings.warn(healed, stacklevel=2)
        found = latest_traces(store.load().records)
        for trace in found.values():
            changed = runner.settings().changes_from(trace.settings)
            if changed:
                raise ImproveRunError(f"{store.path} holds traces run with other settings "
                                      f"({'; '.join(changed)}): write to another file")
        done = {k: t for k, t in found.items() if not t.failed}
    results: list[ImproveTrace | None] = [done.get(k) for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]

    def finished(index: int, trace: ImproveTrace) -> None:
        if store is not None:
            store.append([trace])
        results[todo[index]] = trace
        if on_result is not None:
            on_result(todo[index], trace)

    await runner.ascore_many([parsed[i] for i in todo], concurrency=concurrency,
                             progress=progress, on_result=finished)
    return [r for r in results if r is not None]


def improve_many(items: Sequence[ImproveItem | dict[str, Any]], **kwargs: Any
                 ) -> list[ImproveTrace]:
    """Sync twin of `aimprove_many`; safe inside Jupyter."""
    return run_sync(aimprove_many(items, **kwargs))


__all__ = [
    "ImproveItem",
    "ImproveLoop",
    "ImproveRound",
    "ImproveRunError",
    "ImproveSettings",
    "ImproveTrace",
    "PairwiseCheck",
    "Revision",
    "aimprove",
    "aimprove_many",
    "apairwise",
    "arevise",
    "build_judges",
    "improve",
    "improve_many",
    "read_traces",
    "revise_messages",
    "write_trace",
]
