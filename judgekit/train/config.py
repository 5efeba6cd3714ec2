"""One pydantic config per SPCT stage, loadable from YAML/JSON and overridable by CLI flags.

Defaults follow the paper where it gives a number (N_RFT = 3, one hinted sample, SFT lr 5e-6,
GRPO lr 4e-7, beta = 0.08, group size 4) and are otherwise sized for one GPU; the CPU smoke
settings live in `docs/training.md` and the tests. Every config is flat (no nesting), so each
field is exactly one `--flag`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from judgekit.errors import JudgekitError


class ConfigError(JudgekitError, ValueError):
    """A config file or flag value that does not validate."""


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = Field("embedded", description="embedded, hf:<dir>, gguf:<file> or a directory")
    out_dir: Path = Field(..., description="where outputs, checkpoints and the summary go")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's "
                                "default; 1 can be much faster on a busy shared CPU)")


class _ItemSource(BaseModel):
    """Where the labelled items come from (exactly one of dataset and items_file)."""

    dataset: str | None = Field(None, description="registered benchmark name, e.g. llmbar")
    subset: str | None = Field(None, description="subset pattern, e.g. llmbar-natural")
    items_file: Path | None = Field(None, description="JSONL of {id, query, responses, best|good}")
    data_dir: Path | None = None
    offset: int = Field(0, ge=0, description="skip this many usable items (held-out splits)")
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> _ItemSource:
        if (self.dataset is None) == (self.items_file is None):
            raise ValueError("give exactly one of `dataset` and `items_file`")
        return self

    def source_kwargs(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "subset": self.subset, "limit": self.limit,
                "offset": self.offset, "data_dir": self.data_dir, "items_file": self.items_file}


class _Trainer(BaseModel):
    """Knobs shared by SFT and GRPO."""

    learning_rate: float = Field(..., gt=0)
    max_steps: int = Field(-1, description="-1: train num_train_epochs epochs")
    num_train_epochs: float = Field(1.0, gt=0)
    per_device_train_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler_type: str = "linear"
    logging_steps: int = Field(1, ge=1)
    save_checkpoints: bool = Field(True, description="write trainer checkpoints (weights and "
                                   "optimizer) to out_dir/checkpoints; the final model is "
                                   "always saved")
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    gradient_checkpointing: bool = Field(True, description="recompute activations in the "
                                         "backward pass: much less memory, ~20% slower (TRL's default)")
    device: str = Field("auto", description="auto, cpu or cuda")
    dtype: str = Field("auto", description="auto (bf16 on CUDA, fp32 on CPU), bfloat16, float16, "
                       "float32")
    lora: bool = Field(False, description="train LoRA adapters (merged into the saved model)")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: str = Field("all-linear", description="comma list or all-linear")
    report_to: str = Field("none", description="none, tensorboard, wandb, ...")


class RFTConfig(_Stage, _ItemSource):
    """Rejective fine-tuning data: sample N judgements per item, keep the correct ones."""

    samples: int = Field(3, ge=1, description="N_RFT non-hinted samples per item (paper: 3)")
    hint: bool = Field(True, description="re-sample items with no correct sample with a hint")
    hint_samples: int = Field(1, ge=1, description="hinted samples per item (paper: 1)")
    drop_too_easy: bool = Field(True, description="drop items whose N samples were all correct")
    keep_forced: bool = Field(True, description="forced samples (scores line completed under "
                              "a grammar) are eligible; their status is recorded")
    prompt_with_hint: bool = Field(False, description="keep the hint in the training prompt "
                                   "(default: train the hinted trajectory on the plain prompt)")
    max_tokens: int = Field(512, ge=8)
    temperature: float | None = Field(None, ge=0, le=2, description="None: the Judge's 0.5")
    structured: bool | None = Field(None, description="None: the Judge default (whole-output "
                                    "grammar for the embedded model only), except that a "
                                    "teacher whose default is a JSON schema writes free text "
                                    "(the samples are SFT targets in the prompt's text format)")
    examples: bool = Field(True, description="few-shot examples in the prompt (Judge default)")
    max_criteria: int = Field(4, ge=2)
    binary_threshold: float = Field(5.5, ge=1, le=10)
    concurrency: int = Field(1, ge=1, description="items judged at once (remote teachers)")


class SFTStageConfig(_Stage, _Trainer):
    """Supervised fine-tuning on the RFT JSONL (completion-only loss)."""

    dataset_path: Path = Field(..., description="rft.jsonl (or the RFT output directory)")
    learning_rate: float = Field(5e-6, gt=0, description="paper: 5e-6")
    max_length: int | None = Field(4096, ge=16, description="prompt + judgement tokens")
    include_hinted: bool = Field(True, description="train on hinted trajectories too")


class GRPOStageConfig(_Stage, _ItemSource, _Trainer):
    """Rule-based online RL with GRPO: +1 when the scores pick the labelled best, else -1."""

    learning_rate: float = Field(4e-7, gt=0, description="paper: 4e-7")
    beta: float = Field(0.08, ge=0, description="KL coefficient; paper: 0.08 for 27B (0.002 "
                        "for 16B); TRL's own default is 0")
    num_generations: int = Field(4, ge=2, description="group size G (paper: 4)")
    max_completion_length: int = Field(512, ge=8)
    max_prompt_length: int | None = Field(None, ge=16, description="drop longer prompts")
    exclude_too_easy_from: Path | None = Field(
        None, description="an RFT output dir (or its samples.jsonl): leave out items whose plain "
        "samples were all correct there, as the paper does for its RL data")
    temperature: float = Field(1.0, gt=0, le=2)
    loss_type: str = Field("grpo", description="grpo (the paper's original setting), dapo, "
                           "dr_grpo, bnpo, ...")
    scale_rewards: Literal["group", "batch", "none"] = "group"
    num_iterations: int = Field(1, ge=1)
    epsilon: float = Field(0.2, gt=0)
    per_device_train_batch_size: int = Field(4, ge=1, description="completions per forward pass")
    steps_per_generation: int | None = Field(
        None, ge=1, description="micro-batches per generation round (None: "
        "gradient_accumulation_steps); more than that reuses one round for several updates")
    examples: bool = Field(True, description="few-shot examples in the prompt (Judge default)")
    shuffle_responses: bool = Field(True, description="show each item's responses in a seeded "
                                    "random order (the label follows)")
    structured_rollouts: bool = Field(False, description="generate rollouts under the GRM "
                                      "output grammar, as the local Judge does at inference")
    max_criteria: int = Field(4, ge=2)
    rollout_line_chars: int = Field(60, ge=4, description="longest criterion/analysis line "
                                    "the rollout grammar allows")
    binary_threshold: float = Field(5.5, ge=1, le=10)

    @model_validator(mode="after")
    def _batch_fits_group(self) -> GRPOStageConfig:
        steps = self.steps_per_generation or self.gradient_accumulation_steps
        total = self.per_device_train_batch_size * steps
        if total % self.num_generations:
            raise ValueError(f"per_device_train_batch_size x steps_per_generation ({total}; "
                             "steps_per_generation defaults to gradient_accumulation_steps) must be "
                             f"a multiple of num_generations ({self.num_generations})")
        return self


class MetaStageConfig(_Stage, _Trainer):
    """Meta RM: a sequence classifier trained with binary cross-entropy on whether each stored
    judgement's scores pick the labelled best response (a tie is wrong)."""

    samples_from: list[Path] = Field(..., min_length=1, description="bench run directories "
                                     "(results.jsonl) and/or RFT output directories "
                                     "(samples.jsonl) whose samples are the training data")
    eval_from: list[Path] | None = Field(None, description="held-out runs, scored after "
                                         "training (None: hold out eval_fraction of the "
                                         "samples_from items)")
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="share of items (not samples: "
                                 "an item's samples stay on one side) held out when eval_from "
                                 "is not given")
    dataset: str | None = Field(None, description="where the queries and responses come from "
                                "(None: the dataset the run or RFT config names)")
    subset: str | None = None
    items_file: Path | None = Field(None, description="JSONL of {id, query, responses} for the "
                                    "sampled items (runs over your own files need it)")
    data_dir: Path | None = None
    include_hinted: bool = Field(False, description="train on hinted RFT samples too (the "
                                 "paper uses the non-hinted ones: a hint is absent at inference)")
    learning_rate: float = Field(1e-5, gt=0, description="paper: 1e-5")
    max_length: int = Field(4096, ge=16, description="tokens per input; a longer input loses "
                            "its start and keeps the judgement at its end, as the classifier "
                            "scorer truncates (its default limit is 4096 too)")
    k_meta: int | None = Field(None, ge=1, description="samples kept in the held-out "
                               "meta-guided vote (None: half of each item's k, the paper's)")
    binary_threshold: float = Field(5.5, ge=1, le=10, description="single-response items: "
                                    "a correct score lands on the label's side of it")


C = TypeVar("C", bound=BaseModel)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON mapping (by suffix; YAML otherwise, which also reads JSON)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"config {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {p} must be a mapping of field: value")
    return data


def load_config(cls: type[C], path: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> C:
    """File values, then `overrides` (None values ignored), validated as `cls`."""
    data = read_config_file(path) if path is not None else {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation(exc)) from exc


def describe_validation(exc: ValidationError) -> str:
    """One line per problem, flag-style (`--max-steps: ...`), for the CLI's one-line errors."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        if loc:
            parts.append(f"--{loc.replace('_', '-')}: {msg}")
        else:
            parts.append(msg.removeprefix("Value error, "))
    return "; ".join(parts)


def dump_config(cfg: BaseModel) -> dict[str, Any]:
    """A JSON-able dict of a config (paths as strings), for summaries."""
    out: dict[str, Any] = cfg.model_dump(mode="json")
    return out
