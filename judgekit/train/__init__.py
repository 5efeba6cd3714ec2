"""SPCT training for judgekit GRMs: rejective fine-tuning data, SFT, rule-based GRPO, a meta RM
trained on stored samples, and the judge as a reward function for RL on other models.

Heavy dependencies (torch, transformers, trl, peft, datasets) are imported inside the functions
that need them, so `import judgekit.train` stays cheap and works without the `train` extra.
"""

from __future__ import annotations

from judgekit.train.config import (
    GRPOStageConfig,
    MetaStageConfig,
    RFTConfig,
    SFTStageConfig,
    load_config,
)
from judgekit.train.data import TrainItem, load_train_items, to_train_item
from judgekit.train.grpo import build_grpo_dataset, run_grpo
from judgekit.train.meta_rm import run_meta
from judgekit.train.modelspec import resolve_model_dir
from judgekit.train.reward_adapter import JudgeReward
from judgekit.train.rewards import (
    BinaryRule,
    grm_rule_reward,
    judgement_correct,
    rule_reward,
    unique_best,
)
from judgekit.train.rft import RFTStats, agenerate_rft, generate_rft, run_rft
from judgekit.train.sft import load_rft_dataset, run_sft

__all__ = [
    "BinaryRule",
    "GRPOStageConfig",
    "JudgeReward",
    "MetaStageConfig",
    "RFTConfig",
    "RFTStats",
    "SFTStageConfig",
    "TrainItem",
    "agenerate_rft",
    "build_grpo_dataset",
    "generate_rft",
    "grm_rule_reward",
    "judgement_correct",
    "load_config",
    "load_rft_dataset",
    "load_train_items",
    "resolve_model_dir",
    "rule_reward",
    "run_grpo",
    "run_meta",
    "run_rft",
    "run_sft",
    "to_train_item",
    "unique_best",
]
