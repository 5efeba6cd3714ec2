"""Rejective fine-tuning (RFT) data: the cold-start stage of SPCT.

For every labelled item, N judgements are sampled with the current judge model (one
`Judge.ascore(samples=N)` call, so a local backend batches the N samples in one generate call,
with balanced response orders). Then, per sample:

* invalid (no readable scores) -> rejected (`rejected_invalid`);
* valid but wrong (`rewards.judgement_correct`: strict unique best; a tie is wrong; binary items
  use the threshold rule) -> rejected (`rejected_wrong`);
* correct -> kept, unless every one of the N samples was correct: the item is "too easy" and
  all its samples are dropped (`dropped_too_easy`), as in the paper;
* items where no sample was correct are re-sampled with a hint naming the best response
  (`hint_samples`, paper: 1); only correct hinted samples are kept, marked `hinted`.

Forced samples (free text unreadable, the scores line completed under a grammar by the local
backend) are eligible by default: the scores are still the model's own greedy choice, and a
tiny model rarely finishes a judgement otherwise. Their status is recorded on every row, so
they can be filtered later (`keep_forced=False` rejects them as `rejected_forced`).

A kept hinted trajectory is stored with the *plain* prompt (no hint) by default: at inference
there is no hint, and the point of hinted sampling is to obtain a correct trajectory for an item
the model gets wrong. The hint's position is kept in the row's metadata.

Output (in `out_dir`): `rft.jsonl` (chat-format rows: `messages` = the GRM prompt for the
sample's response order + the assistant's raw judgement, plus metadata), `samples.jsonl` (every
sample with its decision and raw text: with the `correct` flag, the binary labels the paper's
meta RM is trained on), `rft_stats.json`, `summary.json`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from judgekit.formats import fence_tag
from judgekit.schema import Judgement, Message, SampleStatus, Verdict
from judgekit.train.data import TrainItem
from judgekit.train.rewards import DEFAULT_RULE, BinaryRule, judgement_correct

RFT_FILE = "rft.jsonl"
SAMPLES_FILE = "samples.jsonl"
STATS_FILE = "rft_stats.json"
SUMMARY_FILE = "summary.json"
HINT_SEED_OFFSET = 7919  # hinted calls draw from a different seed than the plain ones


class RFTStats(BaseModel):
    """Counts over one RFT run. Plain (non-hinted) samples satisfy
    `samples == kept_plain + rejected_wrong + rejected_invalid + rejected_forced
    + dropped_too_easy_samples`; hinted ones `hinted_samples == hinted_kept +
    hinted_rejected_wrong + hinted_rejected_invalid + hinted_rejected_forced`."""

    items: int = 0
    items_skipped_unlabelled: int = 0
    samples: int = 0
    valid_samples: int = 0
    forced_samples: int = 0
    correct_samples: int = 0
    api_errors: int = 0
    kept: int = 0
    kept_plain: int = 0
    kept_forced: int = 0
    kept_items: int = 0
    rejected_wrong: int = 0
    rejected_invalid: int = 0
    rejected_forced: int = 0
    dropped_too_easy: int = 0
    dropped_too_easy_samples: int = 0
    items_none_correct: int = 0
    items_hinted: int = 0
    hint_skipped_binary: int = 0
    hinted_samples: int = 0
    hinted_kept: int = 0
    hinted_rejected_wrong: int = 0
    hinted_rejected_invalid: int = 0
    hinted_rejected_forced: int = 0
    wall_time_s: float = 0.0
    seconds_per_item: float | None = None

    def add(self, other: RFTStats) -> None:
        for name in type(self).model_fields:
            if name not in ("wall_time_s", "seconds_per_item"):
                setattr(self, name, getattr(self, name) + getattr(other, name))


def _shown(item: TrainItem, permutation: Sequence[int]) -> list[str]:
    return [item.responses[i] for i in permutation]


def _decide(sample: Judgement, item: TrainItem, rule: BinaryRule) -> tuple[bool, str]:
    """(correct, reason) for one sample; reason is "correct", "wrong" or "invalid"."""
    if not sample.valid:
        return False, "invalid"
    ok = judgement_correct(sample.scores, best=item.best, good=item.good, rule=rule)
    return ok, "correct" if ok else "wrong"


class _ItemResult:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.stats = RFTStats(items=1)


async def process_item(judge: Any, item: TrainItem, *, samples: int = 3, hint: bool = True,
                       hint_samples: int = 1, drop_too_easy: bool = True, keep_forced: bool = True,
                       prompt_with_hint: bool = False, rule: BinaryRule = DEFAULT_RULE,
                       seed: int = 0) -> _ItemResult:
    """Sample, judge against the label, and decide every sample of one item."""
    res = _ItemResult()
    st = res.stats
    verdict = await judge.ascore(item.query, item.responses, samples=samples, seed=seed,
                                 item_id=item.id)
    decided = [(s, *_decide(s, item, rule)) for s in verdict.samples]
    n_correct = sum(ok for _, ok, _ in decided)
    too_easy = drop_too_easy and n_correct == len(decided) and len(decided) > 0
    st.samples += len(decided)
    st.correct_samples += n_correct
    st.dropped_too_easy += int(too_easy)
    for sample, ok, reason in decided:
        _count_status(st, sample)
        if too_easy:
            decision = "dropped_too_easy"
            st.dropped_too_easy_samples += 1
        else:
            decision = _keep_or_reject(st, sample, ok, reason, keep_forced, hinted=False)
        res.records.append(_record(item, sample, ok, decision, verdict))
        if decision == "kept":
            res.rows.append(_row(judge, item, sample, None, prompt_with_hint))

    if n_correct == 0:
        st.items_none_correct += 1
        if hint and item.best is None:
            st.hint_skipped_binary += 1
        elif hint and item.best is not None:
            st.items_hinted += 1
            hinted = await judge.pipeline.judge(item.query, item.responses, hint_samples,
                                                seed=seed + HINT_SEED_OFFSET, item_id=item.id,
                                                hint_best=item.best)
            for sample in hinted.samples:
                sample.hinted = True
                ok, reason = _decide(sample, item, rule)
                st.hinted_samples += 1
                _count_status(st, sample)
                decision = _keep_or_reject(st, sample, ok, reason, keep_forced, hinted=True)
                res.records.append(_record(item, sample, ok, decision, hinted))
                if decision == "kept":
                    res.rows.append(_row(judge, item, sample, item.best, prompt_with_hint))
    st.kept_items = int(bool(res.rows))
    return res


def _count_status(st: RFTStats, sample: Judgement) -> None:
    st.valid_samples += int(sample.valid)
    st.forced_samples += int(sample.status is SampleStatus.FORCED)
    st.api_errors += int(sample.status is SampleStatus.API_ERROR)


def _keep_or_reject(st: RFTStats, sample: Judgement, ok: bool, reason: str, keep_forced: bool,
                    *, hinted: bool) -> str:
    prefix = "hinted_" if hinted else ""
    if reason == "invalid":
        decision = "rejected_invalid"
    elif not ok:
        decision = "rejected_wrong"
    elif sample.status is SampleStatus.FORCED and not keep_forced:
        decision = "rejected_forced"
    else:
        decision = "kept"
    if decision == "kept":
        st.kept += 1
        st.kept_forced += int(sample.status is SampleStatus.FORCED)
        if hinted:
            st.hinted_kept += 1
        else:
            st.kept_plain += 1
    else:
        field = prefix + decision
        setattr(st, field, getattr(st, field) + 1)
    return decision


def _record(item: TrainItem, sample: Judgement, ok: bool, decision: str,
            verdict: Verdict) -> dict[str, Any]:
    return {"item_id": item.id, "sample_index": sample.sample_index, "hinted": sample.hinted,
            "status": sample.status.value, "scores": sample.scores,
            "permutation": sample.permutation, "best": item.best, "good": item.good,
            "correct": ok, "decision": decision, "error": sample.error,
            "completion_tokens": sample.usage.completion_tokens,
            "wall_time_s": verdict.wall_time_s, "raw_text": sample.raw_text}


def _row(judge: Any, item: TrainItem, sample: Judgement, hint_best: int | None,
         prompt_with_hint: bool) -> dict[str, Any]:
    """One chat-format training row: the exact prompt the Judge built for this response order."""
    perm = list(sample.permutation)
    hint_pos = perm.index(hint_best) + 1 if hint_best is not None else None
    prompt = judge.format.messages(item.query, _shown(item, perm),
                                   tag=fence_tag(item.query, item.responses),
                                   hint_best=hint_pos if prompt_with_hint else None)
    messages: list[Message] = [*prompt, {"role": "assistant", "content": sample.raw_text.strip()}]
    return {
        "messages": messages,
        "item_id": item.id,
        "sample_index": sample.sample_index,
        "hinted": sample.hinted,
        "hint_position": hint_pos,
        "permutation": perm,
        "status": sample.status.value,
        "scores": sample.scores,
        "n_responses": item.n_responses,
        "best": item.best,
        "shown_best": perm.index(item.best) if item.best is not None else None,
        "good": item.good,
        "subset": item.subset,
        "model": getattr(judge, "model", None),
    }


def _write_line(fh: IO[str], obj: dict[str, Any]) -> None:
    fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
    fh.flush()


async def agenerate_rft(items: Sequence[TrainItem], judge: Any, out_dir: str | Path, *,
                        samples: int = 3, hint: bool = True, hint_samples: int = 1,
                        drop_too_easy: bool = True, keep_forced: bool = True,
                        prompt_with_hint: bool = False, binary_threshold: float = 5.5,
                        seed: int = 0, concurrency: int = 1, progress: bool = False,
                        skipped: int = 0) -> RFTStats:
    """Write `rft.jsonl` and `samples.jsonl` for `items` judged by `judge`; returns the stats.

    Rows are appended as each item finishes, so a long run's partial output is usable.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rule = BinaryRule(binary_threshold)
    total = RFTStats(items_skipped_unlabelled=skipped)
    limit = asyncio.Semaphore(max(concurrency, 1))
    start = time.perf_counter()
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc="rft", unit="item")
    with (out / RFT_FILE).open("w", encoding="utf-8") as rows_fh, \
            (out / SAMPLES_FILE).open("w", encoding="utf-8") as rec_fh:

        async def one(item: TrainItem) -> None:
            async with limit:
                res = await process_item(
                    judge, item, samples=samples, hint=hint, hint_samples=hint_samples,
                    drop_too_easy=drop_too_easy, keep_forced=keep_forced,
                    prompt_with_hint=prompt_with_hint, rule=rule, seed=seed)
            for row in res.rows:
                _write_line(rows_fh, row)
            for rec in res.records:
                _write_line(rec_fh, rec)
            total.add(res.stats)
            if bar is not None:
                bar.update(1)

        try:
            await asyncio.gather(*(one(it) for it in items))
        finally:
            if bar is not None:
                bar.close()
    total.wall_time_s = round(time.perf_counter() - start, 3)
    total.seconds_per_item = round(total.wall_time_s / len(items), 3) if items else None
    (out / STATS_FILE).write_text(total.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return total


def generate_rft(items: Sequence[TrainItem], judge: Any, out_dir: str | Path,
                 **kwargs: Any) -> RFTStats:
    """Sync twin of `agenerate_rft` (also inside Jupyter)."""
    from judgekit.runtime import run_sync

    return run_sync(agenerate_rft(items, judge, out_dir, **kwargs))


def build_judge(cfg: Any) -> Any:
    """The Judge an RFTConfig describes (any backend: a strong remote teacher works too)."""
    from judgekit.judge import Judge
    from judgekit.structured import StructuredMode
    from judgekit.train.modelspec import judge_spec

    def make(structured: bool | None) -> Any:
        return Judge(judge_spec(cfg.model), max_tokens=cfg.max_tokens,
                     temperature=cfg.temperature, structured=structured, examples=cfg.examples,
                     max_criteria=cfg.max_criteria, seed=cfg.seed)

    judge = make(cfg.structured)
    if cfg.structured is None and judge.sampler.mode is StructuredMode.SCHEMA:
        # The samples become SFT targets for the text format the prompt asks for: a teacher
        # that would answer in JSON by default writes free text instead.
        judge = make(False)
    return judge


def run_rft(cfg: Any, *, judge: Any = None, progress: bool = False) -> RFTStats:
    """The `train rft` stage: load items, sample and filter, write data, stats and summary."""
    from judgekit.train.common import apply_threads
    from judgekit.train.config import dump_config
    from judgekit.train.data import load_train_items

    apply_threads(cfg.threads)
    items, skipped = load_train_items(**cfg.source_kwargs())
    judge = judge or build_judge(cfg)
    stats = generate_rft(items, judge, cfg.out_dir, samples=cfg.samples, hint=cfg.hint,
                         hint_samples=cfg.hint_samples, drop_too_easy=cfg.drop_too_easy,
                         keep_forced=cfg.keep_forced, prompt_with_hint=cfg.prompt_with_hint,
                         binary_threshold=cfg.binary_threshold, seed=cfg.seed,
                         concurrency=cfg.concurrency, progress=progress, skipped=skipped)
    out = Path(cfg.out_dir)
    summary = {"stage": "rft", "config": dump_config(cfg), "stats": stats.model_dump(),
               "judge": {"model": getattr(judge, "model", None),
                         "structured": getattr(judge, "structured", None),
                         "examples": len(getattr(judge, "examples", []) or [])},
               "files": {"data": RFT_FILE, "samples": SAMPLES_FILE, "stats": STATS_FILE}}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return stats
