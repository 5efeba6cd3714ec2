"""SFT on rejective fine-tuning data with TRL's SFTTrainer (full or LoRA).

The RFT rows are chat conversations (GRM prompt + judgement). They are trained as
prompt/completion pairs, so the loss covers the judgement only: the model should learn to
write principles, critiques and scores, not to reproduce the (long, repetitive) prompt.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from judgekit.train.common import (
    apply_threads,
    default_placement,
    load_base,
    lora_config,
    save_for_judge,
    seed_everything,
    train_summary,
    training_args,
    write_summary,
)
from judgekit.train.data import TrainDataError
from judgekit.train.rft import RFT_FILE


def rft_rows(path: str | Path, *, include_hinted: bool = True) -> list[dict[str, Any]]:
    """RFT rows as {"prompt": [...], "completion": [assistant turn]} dicts."""
    p = Path(path)
    if p.is_dir():
        p = p / RFT_FILE
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TrainDataError(f"cannot read RFT data {p}: {exc.strerror or exc}") from exc
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            messages = row["messages"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainDataError(f"{p}:{n}: not an RFT row ({exc})") from exc
        if not messages or messages[-1].get("role") != "assistant":
            raise TrainDataError(f"{p}:{n}: the last message must be the assistant's judgement")
        if row.get("hinted") and not include_hinted:
            continue
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return rows


def load_rft_dataset(path: str | Path, *, include_hinted: bool = True) -> Any:
    """A `datasets.Dataset` in TRL's conversational prompt-completion format."""
    from datasets import Dataset

    rows = rft_rows(path, include_hinted=include_hinted)
    if not rows:
        raise TrainDataError(f"{path}: no RFT rows to train on (every sample was rejected or "
                             "dropped; try more items, more samples or hints)")
    return Dataset.from_list(rows)


def run_sft(cfg: Any) -> dict[str, Any]:
    """The `train sft` stage. Returns the summary (also written to `<out_dir>/summary.json`);
    the trained model is saved in `out_dir` itself."""
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    seed_everything(cfg.seed)
    apply_threads(cfg.threads)
    placement = default_placement(cfg)
    dataset = load_rft_dataset(cfg.dataset_path, include_hinted=cfg.include_hinted)
    base_dir, model, tokenizer = load_base(cfg.model, placement)
    args = SFTConfig(
        **training_args(cfg, placement),
        max_length=cfg.max_length,
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=lora_config(cfg))
    processed: Any = trainer.train_dataset  # a datasets.Dataset here (no streaming)
    used = len(processed)
    if not used:  # TRL drops rows whose judgement max_length cut off entirely
        raise TrainDataError(f"no RFT row fits max_length={cfg.max_length}: every prompt is "
                             "that long before its judgement starts; raise --max-length")
    trainer.train()
    out = Path(cfg.out_dir)
    save_for_judge(trainer, tokenizer, base_dir, out)
    summary = train_summary("sft", cfg, trainer, placement, base_dir, started,
                            {"train_rows": len(dataset), "train_rows_used": used})
    write_summary(out, summary)
    return summary
