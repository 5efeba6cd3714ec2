"""`judgekit` command line: judge, bench and train. Bad arguments exit with code 2 and one line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from judgekit.errors import JudgekitError, ModelSpecError
from judgekit.schema import Verdict


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CLIError(message)


def _text_arg(value: str) -> str:
    """`@path` reads the text from a file, so long responses need no shell quoting."""
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"file not found: {path}")
        return path.read_text(encoding="utf-8")
    return value


def _add_judge_parser(sub: Any) -> None:
    p = sub.add_parser("judge", help="judge one query's responses")
    p.add_argument("--query", required=True, type=_text_arg, help="the query (or @file)")
    p.add_argument("--response", action="append", type=_text_arg, default=[],
                   help="a response (or @file); repeat for each response")
    p.add_argument("--model", default=None,
                   help="embedded (default), hf:<dir>, gguf:<file>, openai:<model>, "
                   "anthropic:<model>")
    p.add_argument("--base-url", default=None, help="OpenAI/Anthropic-compatible server URL")
    p.add_argument("--samples", type=int, default=1, help="k sampled judgements to vote")
    p.add_argument("--meta", action="store_true", help="meta-guided voting")
    p.add_argument("--meta-model", default=None,
                   help="model spec of the meta judge (default: the judge's model); "
                   "classifier:<dir> for a sequence-classification meta RM")
    p.add_argument("--k-meta", type=int, default=None, help="samples kept by the meta judge")
    p.add_argument("--voting", choices=["sum", "mean", "majority"], default="sum")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-examples", action="store_true", help="leave out the few-shot example")
    p.add_argument("--json", action="store_true", help="print the Verdict as JSON")
    p.set_defaults(func=_cmd_judge)


def _cmd_judge(args: argparse.Namespace) -> int:
    if not args.response:
        raise CLIError("give at least one --response")
    if args.samples < 1:
        raise CLIError("--samples must be at least 1")
    if args.k_meta is not None and not args.meta:
        raise CLIError("--k-meta needs --meta")
    from judgekit.judge import Judge

    backend_kwargs: dict[str, Any] = {}
    if args.base_url:
        backend_kwargs["base_url"] = args.base_url
    meta: Any = None
    if args.meta:
        meta = args.meta_model if args.meta_model else True
    judge = Judge(args.model, max_tokens=args.max_tokens, temperature=args.temperature,
                  seed=args.seed, voting=args.voting, examples=not args.no_examples,
                  meta=meta, k_meta=args.k_meta, **backend_kwargs)
    verdict = judge.score(args.query, args.response, samples=args.samples)
    if args.json:
        print(verdict.model_dump_json(indent=2))
    else:
        print(format_verdict(verdict, args.response))
    return 0 if verdict.error is None else 1


def format_verdict(verdict: Verdict, responses: Sequence[str]) -> str:
    """A readable account: each sample's principles and critiques, then the voted scores."""
    lines: list[str] = []
    for jd in verdict.samples:
        head = f"Sample {jd.sample_index + 1} [{jd.status.value}]"
        if verdict.k > 1:
            head += f" order {[i + 1 for i in jd.permutation]}"
        if jd.meta_score is not None:
            head += f" meta {jd.meta_score:.3f} {'kept' if jd.kept else 'discarded'}"
        lines.append(head)
        if jd.principles:
            lines.append("  Principles:")
            lines += [f"    - {p.name} (weight {p.weight:.2f}): {p.description}"
                      for p in jd.principles]
        for i, c in enumerate(jd.critiques):
            value = c.score(verdict.aggregate)
            score = "-" if value is None else f"{value:g}"
            lines.append(f"  Response {i + 1}: score {score}. {c.analysis.strip()}")
        if jd.error:
            lines.append(f"  Error: {jd.error}")
    lines.append("")
    lines.append(f"Scores ({verdict.voting} over {verdict.valid_samples} valid of "
                 f"{verdict.k} samples):")
    for i, s in enumerate(verdict.scores):
        preview = responses[i].strip().replace("\n", " ")
        preview = preview[:60] + ("..." if len(preview) > 60 else "")
        lines.append(f"  Response {i + 1}: {'-' if s is None else f'{s:g}'}   {preview}")
    if verdict.best is not None:
        lines.append(f"Best: Response {verdict.best + 1}" + (" (tie broken)" if verdict.tie else ""))
    elif verdict.tie:
        lines.append("Best: tie")
    if verdict.error:
        lines.append(f"Failed: {verdict.error}")
    u = verdict.usage
    lines.append(f"Tokens: {u.prompt_tokens} prompt + {u.completion_tokens} completion; "
                 f"{verdict.wall_time_s:.1f} s; model {verdict.model}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="judgekit", description=__doc__)
    from judgekit import __version__

    parser.add_argument("--version", action="version", version=f"judgekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_judge_parser(sub)
    try:
        from judgekit.bench.cli import add_bench_parser
    except ImportError:  # pragma: no cover - optional module
        pass
    else:
        add_bench_parser(sub)
    try:
        from judgekit.train.cli import add_train_parser
    except ImportError:  # pragma: no cover - optional module
        pass
    else:
        add_train_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub at run time
    try:
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except CLIError as exc:
        print(f"judgekit: error: {exc}", file=sys.stderr)
        return 2
    except (ModelSpecError, FileNotFoundError) as exc:
        print(f"judgekit: error: {exc}", file=sys.stderr)
        return 2
    except JudgekitError as exc:
        print(f"judgekit: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("judgekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
