"""What SFT and GRPO share: loading the base model, trainer arguments, LoRA, and saving a
directory that `Judge(model="hf:<dir>")` and the benchmark runner load unchanged."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from judgekit.quiet import quiet_model_loading
from judgekit.train.modelspec import Placement, pick_placement, resolve_model_dir

CHECKPOINT_DIR = "checkpoints"
SUMMARY_FILE = "summary.json"


def seed_everything(seed: int) -> None:
    """Python, numpy and torch RNGs (transformers' set_seed)."""
    from transformers import set_seed

    set_seed(seed)


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU threads. On a CPU shared with other jobs, several spinning
    OpenMP threads can make generation an order of magnitude slower than one thread."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def load_base(spec: str, placement: Placement) -> tuple[Path, Any, Any]:
    """(model dir, model, tokenizer) from local files only; a pad token is set if missing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = resolve_model_dir(spec)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        from judgekit.train.data import TrainDataError

        raise TrainDataError(f"{model_dir}: the tokenizer has no chat template; the GRM prompt "
                             "is a chat conversation (use an instruct model)")
    with quiet_model_loading():  # the trainer's own bars stay; the weight-loading one goes
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=placement.torch_dtype(), local_files_only=True)
    if placement.device != "cpu":
        model.to(placement.device)
    return model_dir, model, tokenizer


def training_args(cfg: Any, placement: Placement) -> dict[str, Any]:
    """TrainingArguments fields common to SFTConfig and GRPOConfig."""
    return {
        "output_dir": str(Path(cfg.out_dir) / CHECKPOINT_DIR),
        "learning_rate": cfg.learning_rate,
        "max_steps": cfg.max_steps,
        "num_train_epochs": cfg.num_train_epochs,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "warmup_steps": cfg.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
        "weight_decay": cfg.weight_decay,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps" if cfg.save_checkpoints else "no",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        _checkpointing_field(): cfg.gradient_checkpointing,
        "report_to": cfg.report_to,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "dataloader_num_workers": 0,
        **placement.trainer_args(),
    }


def _checkpointing_field() -> str:
    """transformers 5.x renamed gradient_checkpointing to activation_checkpointing (the old name
    warns); TRL defaults it to True, judgekit's configs default it to False (small models)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def lora_config(cfg: Any, task_type: str = "CAUSAL_LM") -> Any:
    """A peft LoraConfig when `cfg.lora`, else None (full fine-tuning). `task_type="SEQ_CLS"`
    (the meta RM) makes peft train the new classification head in full beside the adapters."""
    if not cfg.lora:
        return None
    from peft import LoraConfig

    targets: str | list[str] = cfg.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in str(targets).split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type=task_type)


def save_for_judge(trainer: Any, tokenizer: Any, base_dir: Path, out_dir: Path) -> Path:
    """Save the trained model (LoRA adapters merged into the base weights) with its tokenizer
    and chat template into `out_dir`, loadable as `Judge(model="hf:<out_dir>")`.

    Merging costs one extra copy of the weights in memory at save time, but the result loads
    anywhere transformers does, with no peft at inference. The base model's generation config
    is restored, so settings the trainer changed for rollouts do not leak into judging.
    """
    from transformers import GenerationConfig

    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with contextlib.suppress(OSError):
        model.generation_config = GenerationConfig.from_pretrained(str(base_dir),
                                                                   local_files_only=True)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    with quiet_model_loading():  # transformers' "Writing model shards" bar
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
    return out_dir


def train_summary(stage: str, cfg: Any, trainer: Any, placement: Placement, base_dir: Path,
                  started: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json contents: config, where things are, loss/step times from the trainer log."""
    from judgekit.train.config import dump_config

    state = trainer.state
    history = list(state.log_history)
    final: dict[str, Any] = next((h for h in reversed(history) if "train_runtime" in h), {})
    steps = int(state.global_step)
    runtime = final.get("train_runtime")
    return {
        "stage": stage,
        "config": dump_config(cfg),
        "base_model_dir": str(base_dir),
        "model_dir": str(Path(cfg.out_dir)),
        "judge_spec": f"hf:{Path(cfg.out_dir)}",
        "device": placement.device,
        "dtype": placement.dtype,
        "global_steps": steps,
        "train_runtime_s": runtime,
        "seconds_per_step": round(runtime / steps, 3) if runtime and steps else None,
        "train_loss": final.get("train_loss"),
        "wall_time_s": round(time.perf_counter() - started, 3),
        "log_history": history,
        **(extra or {}),
    }


def write_summary(out_dir: Path, summary: dict[str, Any]) -> Path:
    path = out_dir / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def default_placement(cfg: Any) -> Placement:
    return pick_placement(cfg.device, cfg.dtype)
