"""`judgekit train rft|sft|grpo|meta`: every config field is a flag, flags override `--config`.

The flags are generated from the pydantic configs, so the CLI, YAML files and the Python API
cannot drift apart. Bad arguments (unknown flags, values that do not validate, a missing dataset
or model) print one line and exit with code 2.

Hook for the main CLI: `add_train_parser(subparsers)` registers `train`; every stage parser sets
`func`, so the caller runs `sys.exit(args.func(args))`.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from judgekit.cli_args import OneLineErrorParser, converter_for, utf8_file
from judgekit.errors import JudgekitError
from judgekit.train.config import (
    ConfigError,
    GRPOStageConfig,
    MetaStageConfig,
    RFTConfig,
    SFTStageConfig,
    load_config,
)

_NONE = "__judgekit_none__"  # `--limit none`: set an optional field to None explicitly


def _describe_rft(cfg: Any) -> str:
    from judgekit.train.rft import run_rft

    st = run_rft(cfg, progress=sys.stderr.isatty())
    return (f"rft: {st.items} items, {st.samples} samples (+{st.hinted_samples} hinted): kept "
            f"{st.kept} ({st.hinted_kept} hinted, {st.kept_forced} forced) from {st.kept_items} "
            f"items; rejected {st.rejected_wrong} wrong, {st.rejected_invalid} invalid, "
            f"{st.rejected_forced} forced; dropped {st.dropped_too_easy} too-easy items; "
            f"{st.wall_time_s:.1f} s -> {Path(cfg.out_dir) / 'rft.jsonl'}")


def _describe_training(stage: str, runner: Callable[[Any], dict[str, Any]]) -> Callable[[Any], str]:
    def describe(cfg: Any) -> str:
        s = runner(cfg)
        per = s.get("seconds_per_step")
        loss = s.get("train_loss")
        return (f"{stage}: {s['global_steps']} steps"
                + (f", {per:.1f} s/step" if per is not None else "")
                + (f", train loss {loss:.4f}" if isinstance(loss, float) else "")
                + f" -> {s['model_dir']} (load with Judge(model={s['judge_spec']!r}))")
    return describe


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _describe_meta(cfg: Any) -> str:
    from judgekit.train.meta_rm import run_meta

    s = run_meta(cfg)
    d, h = s["data"], s["heldout"]
    auc = h.get("roc_auc")
    line = (f"meta: {d['train_samples']} samples from {d['train_items']} items "
            f"({_pct(d['train_positive_rate'])} correct), {s['global_steps']} steps"
            + (f", train loss {s['train_loss']:.4f}" if isinstance(s.get("train_loss"), float)
               else "")
            + f"; held out {h.get('samples', 0)} samples of {d['heldout_items']} items: ROC-AUC "
            + ("n/a" if auc is None else f"{auc:.3f}"))
    if h.get("items"):
        line += (f", accuracy voting {_pct(h['voting_random'])} -> meta-guided "
                 f"{_pct(h['meta_random'])} (random tie-break; strict {_pct(h['voting_strict'])}"
                 f" -> {_pct(h['meta_strict'])})")
    return line + f" -> {s['model_dir']} (use meta={s['meta_spec']!r})"


def _run_sft(cfg: Any) -> dict[str, Any]:
    from judgekit.train.sft import run_sft

    return run_sft(cfg)


def _run_grpo(cfg: Any) -> dict[str, Any]:
    from judgekit.train.grpo import run_grpo

    return run_grpo(cfg)


STAGES: dict[str, tuple[type[BaseModel], Callable[[Any], str], str]] = {
    "rft": (RFTConfig, _describe_rft,
            "rejective fine-tuning data: sample N judgements per item, keep the correct ones"),
    "sft": (SFTStageConfig, _describe_training("sft", _run_sft),
            "fine-tune on RFT data (TRL SFTTrainer, full or LoRA)"),
    "grpo": (GRPOStageConfig, _describe_training("grpo", _run_grpo),
             "rule-based GRPO: reward +1 when the scores pick the labelled best, else -1"),
    "meta": (MetaStageConfig, _describe_meta,
             "meta RM: a classifier of stored judgements (correct or not), for meta-guided "
             "voting as meta='classifier:DIR'"),
}


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, optional) for `X | None` annotations."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _converter(kind: Any, optional: bool, flag: str) -> Callable[[str], Any]:
    """The flag's value converter: the shared one for common arguments (`--temperature`,
    `--samples`, `--max-tokens`, `--concurrency`, `--data-dir`, `--items-file` ...), so a bad
    value is refused the same way in every CLI; else by type."""
    shared = converter_for(flag.removeprefix("--").replace("-", "_"))

    def convert(text: str) -> Any:
        if optional and text.lower() in ("none", "null"):
            return _NONE
        if shared is not None:
            return shared(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is Path:
            return Path(text)
        return text
    convert.__name__ = getattr(shared, "__name__", None) or \
        {int: "int", float: "float", Path: "path"}.get(kind, "str")
    return convert


def _add_fields(parser: argparse.ArgumentParser, cls: type[BaseModel]) -> None:
    for name, field in cls.model_fields.items():
        kind, optional = _unwrap(field.annotation)
        flag = "--" + name.replace("_", "-")
        default = field.default if field.is_required() is False else None
        help_text = (field.description or "").replace("%", "%%")
        shown = "required" if field.is_required() else f"default: {default}"
        help_text = f"{help_text} ({shown})" if help_text else f"({shown})"
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
            continue
        nargs = None
        if typing.get_origin(kind) is list:  # e.g. --samples-from DIR [DIR ...]
            (kind,) = typing.get_args(kind)
            nargs = "+"
        choices = None
        if typing.get_origin(kind) is typing.Literal:
            choices = list(typing.get_args(kind))
            kind = str
        parser.add_argument(flag, dest=name, type=_converter(kind, optional, flag), default=None,
                            choices=choices, metavar=name.upper(), help=help_text, nargs=nargs)


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `train` with its `rft`, `sft`, `grpo` and `meta` subcommands."""
    train: argparse.ArgumentParser = subparsers.add_parser(
        "train", help="SPCT training: RFT data, SFT, rule-based GRPO, meta RM",
        description="SPCT training of a GRM: `rft` builds rejective fine-tuning data, `sft` "
                    "fine-tunes on it, `grpo` runs rule-based online RL, `meta` trains a meta RM "
                    "on stored samples. See docs/training.md.")
    stages = train.add_subparsers(dest="train_stage", metavar="{rft,sft,grpo,meta}",
                                  parser_class=OneLineErrorParser)
    stages.required = True
    for name, (cls, _, help_text) in STAGES.items():
        p = stages.add_parser(name, help=help_text, description=(cls.__doc__ or "").strip())
        p.add_argument("--config", type=utf8_file, default=None,
                       help="YAML or JSON file of field: value (flags override it)")
        p.add_argument("--print-config", action="store_true",
                       help="print the resolved config as JSON and exit")
        _add_fields(p, cls)
        p.set_defaults(func=_handler(name))
    return train


def _handler(stage: str) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        return run_stage(stage, args)
    return handle


def _error(stage: str, message: str) -> int:
    line = " ".join(str(message).split())
    print(f"judgekit train {stage}: error: {line}", file=sys.stderr)
    return 2


def run_stage(stage: str, args: argparse.Namespace) -> int:
    """Build the stage's config from `--config` and the flags, run it, print one summary line."""
    cls, describe, _ = STAGES[stage]
    overrides: dict[str, Any] = {}
    explicit_none: dict[str, Any] = {}
    for name in cls.model_fields:
        value = getattr(args, name, None)
        if value == _NONE or (isinstance(value, list) and _NONE in value):
            explicit_none[name] = None
        elif value is not None:
            overrides[name] = value
    try:
        cfg = load_config(cls, getattr(args, "config", None), overrides)
        if explicit_none:
            cfg = cls.model_validate({**cfg.model_dump(), **explicit_none})
    except ConfigError as exc:
        return _error(stage, str(exc))
    except ValueError as exc:  # pydantic ValidationError for an explicit None
        return _error(stage, str(exc).splitlines()[0])
    if getattr(args, "print_config", False):
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
        return 0
    try:
        line = describe(cfg)
    except JudgekitError as exc:
        return _error(stage, str(exc))
    print(line)
    return 0


def build_parser(prog: str = "judgekit") -> argparse.ArgumentParser:
    """A stand-alone parser with only `train` (for `python -m judgekit.train`)."""
    parser = OneLineErrorParser(prog=prog)
    sub = parser.add_subparsers(dest="command", metavar="{train}", parser_class=OneLineErrorParser)
    sub.required = True
    add_train_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m judgekit.train rft ...` (the `train` word is implied)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "train":
        argv = ["train", *argv]
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
