"""Meta RM training (`judgekit train meta`): the paper's trained meta reward model.

Every bench run (results.jsonl: the Verdict with all its samples, and the label) and every RFT
generation (samples.jsonl) already stores labelled judgements. A sample's label is whether its
scores pick the labelled best response, under the SPCT correctness rule (`rewards.
judgement_correct`: a tie for the top is wrong; a single response must land on the label's side
of the threshold). The meta RM learns to predict that label from the paper's plain meta template
(`judgekit.meta.meta_rm_text`, the same function the inference scorer uses), with binary
cross-entropy, and its directory plugs in as `Judge(meta="classifier:<dir>")`.

The trainer is transformers' `Trainer`, not TRL's `RewardTrainer`: RewardTrainer fits a
Bradley-Terry loss over chosen/rejected *pairs*, while the meta RM is pointwise (one judgement,
one 0/1 label). The loss is transformers' own: a one-logit `AutoModelForSequenceClassification`
with `problem_type="multi_label_classification"` is `BCEWithLogitsLoss` on float labels. (With
`"single_label_classification"` a one-logit head gets a softmax over one class, whose loss is
always 0; `"regression"` would fit the logit to 0/1 by squared error, so the logit would not be
a log-odds.) The logit is the meta score, as `SequenceClassifierMetaScorer` reads it.

After training, the held-out items' samples are scored through the saved directory exactly as
meta-guided voting scores them (`SequenceClassifierMetaScorer`), and the run reports the meta
RM's ROC-AUC and the accuracy of plain voting against meta-guided voting, both recomputed from
those samples with `judgekit.aggregate.aggregate`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from judgekit.aggregate import aggregate, k_meta_for
from judgekit.quiet import quiet_model_loading
from judgekit.schema import Judgement, Message, SampleStatus
from judgekit.train.data import TrainDataError, read_items_file
from judgekit.train.rewards import BinaryRule, judgement_correct
from judgekit.voting import TieRule, pick_best

EVAL_FILE = "meta_eval.jsonl"


class MetaItem(BaseModel):
    """One labelled item with its sampled judgements. `responses` are in the order the samples'
    permutations and scores refer to; exactly one of `best` (n >= 2) and `good` (n == 1)."""

    id: str
    query: str | list[Message]
    responses: list[str]
    best: int | None = None
    good: bool | None = None
    samples: list[Judgement] = Field(default_factory=list)
    source: str = ""

    def label(self, sample: Judgement, rule: BinaryRule) -> bool | None:
        """Whether the sample is correct (None for an invalid sample: it is never voted on, and
        the meta scorer does not rate it)."""
        if not sample.valid:
            return None
        return judgement_correct(sample.scores, best=self.best, good=self.good, rule=rule)


class MetaData(BaseModel):
    """Items read from the sources, and what was left out."""

    items: list[MetaItem] = Field(default_factory=list)
    skipped_unlabelled: int = Field(0, description="items whose label names no single best "
                                    "response and no binary flag (ties)")
    skipped_failed: int = Field(0, description="bench records with no judgement")
    skipped_hinted: int = Field(0, description="hinted RFT samples left out")


# --------------------------------------------------------------------------------------------
# Reading stored samples
# --------------------------------------------------------------------------------------------
Texts = dict[str, tuple[Any, list[str]]]
"""Query and responses by item id."""


def _texts_from_file(path: Path) -> Texts:
    out: Texts = {}
    for n, row in enumerate(read_items_file(path)):
        try:
            out[str(row["id"])] = (row["query"], list(row["responses"]))
        except (KeyError, TypeError) as exc:
            raise TrainDataError(f"{path}: item {n} needs id, query and responses") from exc
    return out


def _texts_from_dataset(dataset: str, subset: str | None,
                        data_dir: Path | None) -> Texts:
    from judgekit.bench.datasets import DatasetError, dataset_names, load_dataset

    if dataset not in dataset_names():
        raise TrainDataError(f"{dataset!r} is not a registered dataset: give the sampled items "
                             "with items_file (JSONL of id, query, responses)")
    try:
        items = load_dataset(dataset, subset=subset, data_dir=data_dir)
    except DatasetError as exc:
        raise TrainDataError(str(exc)) from exc
    return {it.id: (it.query, list(it.responses)) for it in items}


class _ItemTexts:
    """Queries and responses by item id, loaded once per (source) key."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._cache: dict[tuple[Any, ...], Texts] = {}

    def get(self, dataset: str | None, subset: str | None, data_dir: Path | None,
            items_file: Path | None) -> Texts:
        """The override from the config wins over what the run recorded."""
        if self.cfg.items_file is not None or self.cfg.dataset is not None:
            dataset, subset, items_file = self.cfg.dataset, self.cfg.subset, self.cfg.items_file
        data_dir = self.cfg.data_dir or data_dir
        key = (dataset, subset, str(data_dir), str(items_file))
        if key not in self._cache:
            if items_file is not None:
                self._cache[key] = _texts_from_file(Path(items_file))
            elif dataset is not None:
                self._cache[key] = _texts_from_dataset(dataset, subset, data_dir)
            else:
                raise TrainDataError("cannot tell where the sampled items come from: give "
                                     "dataset or items_file")
        return self._cache[key]


def _lookup(texts: Texts, item_id: str, where: Path) -> tuple[Any, list[str]]:
    try:
        return texts[item_id]
    except KeyError:
        raise TrainDataError(f"{where}: item {item_id!r} is not in the item source; give the "
                             "dataset or items_file it was sampled from") from None


def read_bench_run(path: Path, texts: _ItemTexts, data: MetaData) -> None:
    """Items of a bench run directory (results.jsonl + run.json) into `data`."""
    from judgekit.bench.items import LabelKind
    from judgekit.bench.runner import BenchRunError, read_results, read_run_info

    try:
        info = read_run_info(path)
    except BenchRunError as exc:
        raise TrainDataError(str(exc)) from exc
    source = texts.get(info.dataset, info.subset, None, None)
    for rec in read_results(path):
        if rec.failed or rec.verdict is None:
            data.skipped_failed += 1
            continue
        best = rec.label.best_index if rec.n_responses >= 2 else None
        good = (not rec.label.error if rec.label.kind is LabelKind.BINARY
                and rec.label.error is not None and rec.n_responses == 1 else None)
        if best is None and good is None:
            data.skipped_unlabelled += 1
            continue
        query, responses = _lookup(source, rec.item_id, path)
        if rec.order is not None:  # a --reverse run: the label and scores follow the shown order
            responses = [responses[i] for i in rec.order]
        if len(responses) != rec.n_responses:
            raise TrainDataError(f"{path}: item {rec.item_id!r} has {len(responses)} responses "
                                 f"in the item source, {rec.n_responses} in the run")
        data.items.append(MetaItem(id=rec.item_id, query=query, responses=responses, best=best,
                                   good=good, samples=list(rec.verdict.samples),
                                   source=str(path)))


def read_rft_samples(path: Path, texts: _ItemTexts, data: MetaData, *,
                     include_hinted: bool = False) -> None:
    """Items of an RFT output directory (samples.jsonl + summary.json) into `data`."""
    from judgekit.train.rft import SAMPLES_FILE, SUMMARY_FILE

    folder = path if path.is_dir() else path.parent
    samples_path = path / SAMPLES_FILE if path.is_dir() else path
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
        rft_cfg = summary.get("config", {})
    except (OSError, ValueError):
        rft_cfg = {}
    source = texts.get(rft_cfg.get("dataset"), rft_cfg.get("subset"),
                       Path(rft_cfg["data_dir"]) if rft_cfg.get("data_dir") else None,
                       Path(rft_cfg["items_file"]) if rft_cfg.get("items_file") else None)
    by_item: dict[str, MetaItem] = {}
    for n, line in enumerate(samples_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            sample = Judgement(sample_index=row["sample_index"], status=SampleStatus(row["status"]),
                               permutation=row["permutation"], scores=row["scores"],
                               raw_text=row["raw_text"], hinted=bool(row.get("hinted")))
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainDataError(f"{samples_path}:{n}: not an RFT sample record ({exc})") from exc
        if sample.hinted and not include_hinted:
            data.skipped_hinted += 1
            continue
        item = by_item.get(row["item_id"])
        if item is None:
            query, responses = _lookup(source, row["item_id"], samples_path)
            item = MetaItem(id=row["item_id"], query=query, responses=responses,
                            best=row.get("best"), good=row.get("good"), source=str(path))
            by_item[item.id] = item
        item.samples.append(sample)
    data.items.extend(by_item.values())


def read_sources(paths: Iterable[Path], cfg: Any) -> MetaData:
    """Items with their samples from bench run and RFT directories (told apart by their files:
    run.json for a bench run, samples.jsonl for RFT)."""
    from judgekit.bench.runner import RUN_FILE
    from judgekit.train.rft import SAMPLES_FILE

    texts = _ItemTexts(cfg)
    data = MetaData()
    for raw in paths:
        path = Path(raw)
        if (path / RUN_FILE).is_file():
            read_bench_run(path, texts, data)
        elif (path / SAMPLES_FILE).is_file() or (path.is_file() and path.suffix == ".jsonl"):
            read_rft_samples(path, texts, data, include_hinted=cfg.include_hinted)
        else:
            raise TrainDataError(f"{path}: neither a bench run (run.json) nor an RFT output "
                                 f"({SAMPLES_FILE})")
    return data


# --------------------------------------------------------------------------------------------
# Splitting and examples
# --------------------------------------------------------------------------------------------
def split_items(items: Sequence[MetaItem], eval_fraction: float,
                seed: int = 0) -> tuple[list[MetaItem], list[MetaItem]]:
    """(train, held-out) by item id, seeded: all samples of an item, from any source, fall on
    one side (samples of one item are alike, so a split by sample would leak)."""
    ids = sorted({it.id for it in items})
    random.Random(seed).shuffle(ids)
    n_eval = round(eval_fraction * len(ids))
    if eval_fraction > 0 and len(ids) >= 2:
        n_eval = min(max(n_eval, 1), len(ids) - 1)
    held = set(ids[:n_eval])
    return ([it for it in items if it.id not in held], [it for it in items if it.id in held])


def labelled_samples(items: Iterable[MetaItem],
                     rule: BinaryRule) -> list[tuple[MetaItem, Judgement, bool]]:
    """Every valid sample with its correctness label."""
    out: list[tuple[MetaItem, Judgement, bool]] = []
    for it in items:
        for s in it.samples:
            label = it.label(s, rule)
            if label is not None:
                out.append((it, s, label))
    return out


# --------------------------------------------------------------------------------------------
# Held-out evaluation (pure)
# --------------------------------------------------------------------------------------------
def _voted_correct(item: MetaItem, samples: Sequence[Judgement], k_meta: int | None,
                   rule: BinaryRule, tie_rule: TieRule, seed: int) -> bool:
    agg = aggregate(samples, len(item.responses), k_meta=k_meta)
    if item.good is not None:  # a single response: its mean score against the threshold
        total = agg.scores[0]
        if total is None or not agg.used_samples:
            return False
        return rule.correct(total / agg.used_samples, item.good)
    return pick_best(agg.scores, tie_rule, f"{seed}:{item.id}") == item.best


def voting_comparison(items: Sequence[MetaItem], *, k_meta: int | None = None,
                      rule: BinaryRule | None = None, seed: int = 0) -> dict[str, Any]:
    """Accuracy of plain voting and of meta-guided voting over items whose samples carry meta
    scores, both through `aggregate` (strict: a tie is wrong; random: the paper's seeded
    tie-break, as bench reports compute it). `k_meta=None` keeps half of each item's samples.
    `items` counts votes: one per item and source (an item judged in a run and in its --reverse
    twin votes twice)."""
    rule = rule or BinaryRule()
    out: dict[str, Any] = {"items": len(items)}
    for tie_rule in (TieRule.STRICT, TieRule.RANDOM):
        plain = meta = 0
        for it in items:
            km = k_meta_for(len(it.samples), k_meta)
            plain += _voted_correct(it, it.samples, None, rule, tie_rule, seed)
            meta += _voted_correct(it, it.samples, km, rule, tie_rule, seed)
        n = len(items)
        out[f"voting_{tie_rule.value}"] = plain / n if n else None
        out[f"meta_{tie_rule.value}"] = meta / n if n else None
        out[f"delta_{tie_rule.value}"] = (meta - plain) / n if n else None
    out["k"] = sorted({len(it.samples) for it in items})
    out["k_meta"] = k_meta if k_meta is not None else "k // 2"
    return out


def heldout_report(items: Sequence[MetaItem], *, k_meta: int | None = None,
                   rule: BinaryRule | None = None, seed: int = 0) -> dict[str, Any]:
    """ROC-AUC of the meta scores against the labels of the held-out samples, and the voting
    comparison (the samples' `meta_score` must be set)."""
    from judgekit.bench.metrics import roc_auc

    rule = rule or BinaryRule()
    rows = [(float(s.meta_score), label) for _, s, label in labelled_samples(items, rule)
            if s.meta_score is not None]
    auc = roc_auc([y for _, y in rows], [x for x, _ in rows])
    positives = sum(y for _, y in rows)
    return {"samples": len(rows), "positive_rate": positives / len(rows) if rows else None,
            "roc_auc": auc, **voting_comparison(items, k_meta=k_meta, rule=rule, seed=seed)}


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def _load_classifier(cfg: Any, placement: Any) -> tuple[Path, Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from judgekit.train.modelspec import resolve_model_dir

    base_dir = resolve_model_dir(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # The judgement (with its scores) ends the input: an over-long input loses its start, as
    # in `SequenceClassifierMetaScorer`.
    tokenizer.truncation_side = "left"
    with quiet_model_loading():
        model = AutoModelForSequenceClassification.from_pretrained(
            str(base_dir), num_labels=1, problem_type="multi_label_classification",
            dtype=placement.torch_dtype(), local_files_only=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    return base_dir, model, tokenizer


def _dataset(examples: Sequence[tuple[MetaItem, Judgement, bool]], tokenizer: Any,
             max_length: int) -> Any:
    from datasets import Dataset

    from judgekit.meta import meta_rm_input

    texts = [meta_rm_input(tokenizer, it.query, it.responses, s) for it, s, _ in examples]
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return Dataset.from_dict({"input_ids": enc["input_ids"],
                              "attention_mask": enc["attention_mask"],
                              "labels": [[1.0 if y else 0.0] for _, _, y in examples]})


def _save(trainer: Any, tokenizer: Any, out_dir: Path) -> None:
    """The classifier with LoRA merged (peft keeps the trained head in `modules_to_save`), so
    the directory loads with plain transformers as `classifier:<dir>`."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    with quiet_model_loading():  # transformers' "Writing model shards" bar
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))


def score_items(items: Sequence[MetaItem], model_dir: Path, *, device: str | None = None,
                max_length: int = 4096) -> None:
    """Set each valid sample's `meta_score` with the saved meta RM, through the scorer that
    `Judge(meta="classifier:<dir>")` uses."""
    from judgekit.meta import SequenceClassifierMetaScorer

    scorer = SequenceClassifierMetaScorer(model_dir, device=device, max_length=max_length)
    for it in items:
        scores = scorer.score_sync(it.query, it.responses, it.samples)
        for s, value in zip(it.samples, scores, strict=True):
            s.meta_score = value


def _write_eval(path: Path, items: Sequence[MetaItem], rule: BinaryRule) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for it in items:
            for s in it.samples:
                fh.write(json.dumps({"item_id": it.id, "source": it.source,
                                     "sample_index": s.sample_index, "status": s.status.value,
                                     "scores": s.scores, "best": it.best, "good": it.good,
                                     "correct": it.label(s, rule),
                                     "meta_score": s.meta_score}) + "\n")


def _positive_rate(examples: Sequence[tuple[Any, Any, bool]]) -> float | None:
    return sum(y for *_, y in examples) / len(examples) if examples else None


class MetaSplit(BaseModel):
    """The training and held-out items of a `train meta` run, and what was left out."""

    train: list[MetaItem]
    heldout: list[MetaItem]
    examples: int = Field(0, description="valid labelled training samples")
    skipped_unlabelled: int = 0
    skipped_failed: int = 0
    skipped_hinted: int = 0
    train_items_also_heldout: int = Field(0, description="samples_from items that eval_from "
                                          "also holds: left out of training")


def meta_split(cfg: Any) -> MetaSplit:
    """Read `cfg.samples_from` (and `cfg.eval_from`) and split them into training and held-out
    items: eval_from when given (its items are never trained on), else a seeded split by item.
    Held-out items never carry hinted samples (they are not what inference votes over)."""
    data = read_sources(cfg.samples_from, cfg)
    overlap = 0
    if cfg.eval_from:
        held = read_sources(cfg.eval_from, cfg.model_copy(update={"include_hinted": False})).items
        held_ids = {it.id for it in held}
        train = [it for it in data.items if it.id not in held_ids]
        overlap = len(data.items) - len(train)
    else:
        train, held = split_items(data.items, cfg.eval_fraction, cfg.seed)
        held = [it.model_copy(update={"samples": [s for s in it.samples if not s.hinted]})
                for it in held]
    n_examples = len(labelled_samples(train, BinaryRule(cfg.binary_threshold)))
    return MetaSplit(train=train, heldout=held, examples=n_examples,
                     skipped_unlabelled=data.skipped_unlabelled,
                     skipped_failed=data.skipped_failed, skipped_hinted=data.skipped_hinted,
                     train_items_also_heldout=overlap)


def run_meta(cfg: Any) -> dict[str, Any]:
    """The `train meta` stage. Returns the summary (also `<out_dir>/summary.json`); the meta RM
    is saved in `out_dir` and loads as `Judge(meta="classifier:<out_dir>")`."""
    started = time.perf_counter()
    rule = BinaryRule(cfg.binary_threshold)
    split = meta_split(cfg)
    train, held = split.train, split.heldout
    examples = labelled_samples(train, rule)
    if not examples:
        raise TrainDataError("no valid labelled sample to train the meta RM on")

    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from judgekit.train.common import (
        apply_threads,
        default_placement,
        lora_config,
        seed_everything,
        train_summary,
        training_args,
        write_summary,
    )

    seed_everything(cfg.seed)
    apply_threads(cfg.threads)
    placement = default_placement(cfg)
    base_dir, model, tokenizer = _load_classifier(cfg, placement)
    dataset = _dataset(examples, tokenizer, cfg.max_length)
    args = TrainingArguments(**training_args(cfg, placement))
    peft = lora_config(cfg, task_type="SEQ_CLS")
    if peft is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft)
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=DataCollatorWithPadding(tokenizer))
    trainer.train()
    out = Path(cfg.out_dir)
    _save(trainer, tokenizer, out)
    summary = train_summary("meta", cfg, trainer, placement, base_dir, started)
    del trainer, model  # the held-out scoring loads the saved directory, as inference does

    report: dict[str, Any] = {"items": 0, "samples": 0, "roc_auc": None}
    if held:
        score_items(held, out, device=placement.device, max_length=cfg.max_length)
        report = heldout_report(held, k_meta=cfg.k_meta, rule=rule, seed=cfg.seed)
        _write_eval(out / EVAL_FILE, held, rule)
    summary.update({
        "judge_spec": None,
        "meta_spec": f"classifier:{out}",
        "data": {"train_items": len({it.id for it in train}), "train_samples": len(examples),
                 "train_positive_rate": _positive_rate(examples),
                 "heldout_items": len({it.id for it in held}),
                 **split.model_dump(exclude={"train", "heldout", "examples"})},
        "heldout": report,
        "wall_time_s": round(time.perf_counter() - started, 3),
    })
    write_summary(out, summary)
    return summary
