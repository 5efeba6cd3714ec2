"""Rule-based online RL for a GRM with TRL's GRPOTrainer (SPCT stage 2).

The policy writes principles, critique and scores for a GRM prompt; the reward is +1 when the
scores pick the labelled best response uniquely (binary items: land on the label's side of the
threshold), else -1, and -1 when no scores can be read. There is no format reward: the KL
penalty (`beta`, paper 0.08 for 27B) keeps the format, as in the paper.

`structured_rollouts=True` samples rollouts under the same output grammar the local Judge uses
at inference (xgrammar). Rewards then vary even for a tiny model that cannot yet write the format
unaided, and RL trains the distribution the deployed local judge samples from. The sampled tokens
come from the grammar-masked distribution while the loss uses the unmasked policy, the same
approximation as TRL's `vllm_structured_outputs_regex`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judgekit.formats import grm_messages
from judgekit.prompts import load_examples
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
from judgekit.train.data import TrainDataError, TrainItem, load_train_items
from judgekit.train.rewards import grm_rule_reward


def grpo_rows(items: Sequence[TrainItem], *, examples: bool = True, shuffle_responses: bool = True,
              seed: int = 0, binary_threshold: float = 5.5) -> list[dict[str, Any]]:
    """One row per item: the GRM `prompt` (conversational) and the label columns the reward
    reads. `best` is the best response's *shown* position (-1 for binary items); `good` is
    1/0 for binary items, -1 otherwise; `permutation[p]` is the item's response shown at p."""
    shots = load_examples() if examples else []
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for item in items:
        perm = list(range(item.n_responses))
        if shuffle_responses:
            rng.shuffle(perm)
        shown = [item.responses[i] for i in perm]
        rows.append({
            "prompt": grm_messages(item.query, shown, examples=shots),
            "item_id": item.id,
            "n_responses": item.n_responses,
            "best": perm.index(item.best) if item.best is not None else -1,
            "good": -1 if item.good is None else int(item.good),
            "threshold": float(binary_threshold),
            "permutation": perm,
        })
    return rows


def too_easy_items(rft_output: str | Path) -> set[str]:
    """Ids of items whose plain (non-hinted) RFT samples were all correct."""
    import json

    from judgekit.train.rft import SAMPLES_FILE

    path = Path(rft_output)
    if path.is_dir():
        path = path / SAMPLES_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TrainDataError(f"cannot read RFT samples {path}: {exc.strerror or exc}") from exc
    verdicts: dict[str, list[bool]] = {}
    for line in lines:
        if line.strip():
            rec = json.loads(line)
            if not rec.get("hinted"):
                verdicts.setdefault(str(rec["item_id"]), []).append(bool(rec["correct"]))
    return {item_id for item_id, oks in verdicts.items() if oks and all(oks)}


def build_grpo_dataset(items: Sequence[TrainItem], **kwargs: Any) -> Any:
    """`grpo_rows` as a `datasets.Dataset` (see there for the columns)."""
    from datasets import Dataset

    return Dataset.from_list(grpo_rows(items, **kwargs))


class GrammarRollouts:
    """Wraps `model.generate` so every row is sampled under the GRM output grammar for its
    number of responses (looked up from the prompt's tokens; a fresh xgrammar processor per
    call, as xgrammar requires)."""

    def __init__(self, model: Any, tokenizer: Any, prompts: Sequence[Sequence[dict[str, str]]],
                 n_responses: Sequence[int], *, max_criteria: int = 4, line_chars: int = 64) -> None:
        import xgrammar as xgr

        from judgekit.parsing import grm_output_grammar

        self.model = model
        self._generate = model.generate
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)
        compiler = xgr.GrammarCompiler(info)
        self.grammars = {
            n: compiler.compile_grammar(grm_output_grammar(
                n, max_criteria, desc_chars=line_chars, analysis_chars=line_chars))
            for n in sorted(set(n_responses))}
        self.by_prompt: dict[tuple[int, ...], int] = {}
        if len(self.grammars) > 1:
            for prompt, n in zip(prompts, n_responses, strict=True):
                ids = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True,
                                                    tokenize=True, return_dict=True)["input_ids"]
                self.by_prompt[tuple(int(t) for t in ids)] = n
        self.calls = 0

    def _n_for_rows(self, input_ids: Any, attention_mask: Any) -> list[int]:
        if len(self.grammars) == 1:
            return [next(iter(self.grammars))] * int(input_ids.shape[0])
        out = []
        for row, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            key = tuple(t for t, m in zip(row, mask, strict=True) if m)
            if key not in self.by_prompt:
                raise TrainDataError("structured rollouts: a prompt not in the GRPO dataset")
            out.append(self.by_prompt[key])
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from transformers import LogitsProcessorList
        from xgrammar.contrib.hf import LogitsProcessor

        input_ids: Any = kwargs.get("input_ids", args[0] if args else None)
        mask: Any = kwargs.get("attention_mask")
        if mask is None:
            import torch

            mask = torch.ones_like(input_ids)
        grammars = [self.grammars[n] for n in self._n_for_rows(input_ids, mask)]
        processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
        processors.append(LogitsProcessor(grammars))
        self.calls += 1
        return self._generate(*args, logits_processor=processors, **kwargs)

    def install(self) -> GrammarRollouts:
        self.model.generate = self
        return self

    def remove(self) -> None:
        if self.model.__dict__.get("generate") is self:
            del self.model.generate


def run_grpo(cfg: Any, *, reward_funcs: Sequence[Any] | None = None) -> dict[str, Any]:
    """The `train grpo` stage. Returns the summary (also `<out_dir>/summary.json`); the trained
    model is saved in `out_dir`. `reward_funcs` replaces the rule-based reward (tests, or RL
    of a policy with a judge as reward via `JudgeReward`)."""
    from trl import GRPOConfig, GRPOTrainer

    started = time.perf_counter()
    seed_everything(cfg.seed)
    apply_threads(cfg.threads)
    placement = default_placement(cfg)
    items, skipped = load_train_items(**cfg.source_kwargs())
    excluded = 0
    if cfg.exclude_too_easy_from is not None:
        easy = too_easy_items(cfg.exclude_too_easy_from)
        excluded = sum(it.id in easy for it in items)
        items = [it for it in items if it.id not in easy]
        if not items:
            raise TrainDataError("every item was too easy in the RFT samples")
    rows = grpo_rows(items, examples=cfg.examples, shuffle_responses=cfg.shuffle_responses,
                     seed=cfg.seed, binary_threshold=cfg.binary_threshold)
    base_dir, model, tokenizer = load_base(cfg.model, placement)
    dropped_long = 0
    if cfg.max_prompt_length is not None:
        keep = []
        for row in rows:
            ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True,
                                                tokenize=True, return_dict=True)["input_ids"]
            if len(ids) <= cfg.max_prompt_length:
                keep.append(row)
        dropped_long = len(rows) - len(keep)
        rows = keep
        if not rows:
            raise TrainDataError(f"every prompt is longer than max_prompt_length="
                                 f"{cfg.max_prompt_length}")
    from datasets import Dataset

    dataset = Dataset.from_list(rows)
    args = GRPOConfig(
        **training_args(cfg, placement),
        beta=cfg.beta,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        num_iterations=cfg.num_iterations,
        epsilon=cfg.epsilon,
        steps_per_generation=cfg.steps_per_generation,
    )
    rollouts = None
    if cfg.structured_rollouts:
        rollouts = GrammarRollouts(model, tokenizer, [r["prompt"] for r in rows],
                                   [r["n_responses"] for r in rows],
                                   max_criteria=cfg.max_criteria,
                                   line_chars=cfg.rollout_line_chars).install()
    trainer = GRPOTrainer(model=model, reward_funcs=list(reward_funcs or [grm_rule_reward]),
                          args=args, train_dataset=dataset, processing_class=tokenizer,
                          peft_config=lora_config(cfg))
    try:
        trainer.train()
    finally:
        if rollouts is not None:
            rollouts.remove()
    out = Path(cfg.out_dir)
    save_for_judge(trainer, tokenizer, base_dir, out)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    summary = train_summary("grpo", cfg, trainer, placement, base_dir, started, {
        "train_items": len(rows),
        "items_skipped_unlabelled": skipped,
        "items_excluded_too_easy": excluded,
        "items_dropped_too_long": dropped_long,
        "mean_reward_per_step": rewards,
        "structured_rollout_calls": rollouts.calls if rollouts is not None else None,
    })
    write_summary(out, summary)
    return summary
