"""`judgekit improve`: the self-improving loop from the command line (`judgekit.improve`).

One response (`--query`, `--response`, optionally `--reference`) prints the loop's rounds, or
its trace with `--json`, and writes the trace with `--out` (.json indented, .jsonl one line). A
dataset (`--items`, JSONL or a JSON list of {id?, query, response, reference?}) runs resumably
into `--out` (.jsonl) with a progress bar, and `--pairs` writes the preference pairs for TRL's
DPO and reward trainers. The main CLI registers the subcommand with `add_improve_parser`; bad
arguments print one line and exit 2 (`judgekit.cli_args.CLIError`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from judgekit.cli_args import (
    add_common_args,
    add_reference_arg,
    backend_options,
    check_common,
    non_negative_int,
    positive_int,
    read_text_file,
    rubric_options,
    text_arg,
    utf8_file,
)

EXIT_FAILURE = 1
COMMON = ("model", "base_url", "server_flavour", "structured", "samples", "meta", "meta_model",
          "k_meta", "voting", "aggregate", "rubric", "rubric_mode", "max_tokens", "temperature",
          "seed", "concurrency", "timeout", "max_retries")
"""The shared judging arguments `improve` takes (`judgekit.cli_args`), as `judge` and `bench
run` do."""


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1.0 <= value <= 10.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a score from 1 to 10")
    return value


def add_improve_parser(sub: Any) -> None:
    p = sub.add_parser("improve", help="improve a response: judges debate fixes, a reviser "
                                       "applies them, the judges verify the revision")
    p.add_argument("--query", type=text_arg, help="the query (or @file, UTF-8)")
    p.add_argument("--response", type=text_arg, help="the response to improve (or @file)")
    add_reference_arg(p)
    p.add_argument("--items", type=utf8_file, help="a dataset to improve: JSONL or a JSON list "
                   "of {id?, query, response, reference?}; needs --out FILE.jsonl (resumable)")
    p.add_argument("--judge", action="append", default=[], metavar="SPEC",
                   help="a judge's model spec; repeat for a debate (default: --model). The same "
                        "spec twice gives two judges with different seeds (sampling at 0.5 "
                        "unless --temperature is given)")
    p.add_argument("--reviser", metavar="SPEC", help="the reviser's model spec (default: the "
                                                     "first judge's)")
    p.add_argument("--rounds", type=positive_int, default=3, help="most revisions (default 3)")
    p.add_argument("--debate-rounds", type=non_negative_int, default=1,
                   help="review rounds in each debate (default 1)")
    p.add_argument("--target", type=_score, help="stop at this mean score (1-10)")
    p.add_argument("--reviser-max-tokens", type=positive_int, default=1024,
                   help="the reviser's generation limit (default 1024)")
    p.add_argument("--out", help="write the trace(s): .json (one response) or .jsonl")
    p.add_argument("--pairs", help="write the preference pairs (JSONL) for TRL")
    p.add_argument("--conversational", action="store_true",
                   help="preference pairs as chat messages instead of plain text")
    p.add_argument("--no-examples", action="store_true", help="leave out the few-shot example")
    p.add_argument("--json", action="store_true", help="print the trace as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_args(p, COMMON, samples=2, max_tokens=512)
    p.set_defaults(func=cmd_improve)


def _usage_error(message: str) -> NoReturn:
    from judgekit.cli_args import CLIError  # raised like every `judgekit` usage error: one line, 2

    raise CLIError(message)


def _problem(args: argparse.Namespace) -> str | None:
    if args.items is None and (args.query is None or args.response is None):
        return "give --query and --response, or --items"
    if args.items is not None and (args.query is not None or args.response is not None
                                   or args.reference is not None):
        return "--items runs a dataset: leave out --query, --response and --reference"
    if args.items is not None and (args.out is None or not args.out.endswith(".jsonl")):
        return "--items needs --out FILE.jsonl (the resumable traces file)"
    if args.samples % 2:
        return f"--samples must be even (both orders equally often), got {args.samples}"
    return check_common(args)


def _loop_options(args: argparse.Namespace) -> dict[str, Any]:
    judge_kwargs: dict[str, Any] = {"examples": not args.no_examples,
                                    "max_tokens": args.max_tokens, **rubric_options(args)}
    if args.aggregate is not None:
        judge_kwargs["aggregate"] = args.aggregate
    if args.meta:
        judge_kwargs["meta"] = args.meta_model or True
        judge_kwargs["k_meta"] = args.k_meta
    if args.structured is False:
        judge_kwargs["structured"] = False
    if args.timeout is not None:
        judge_kwargs["timeout"] = args.timeout
    return {"judges": args.judge or [args.model], "reviser": args.reviser,
            "rounds": args.rounds, "samples": args.samples, "debate_rounds": args.debate_rounds,
            "target": args.target, "voting": args.voting, "seed": args.seed,
            "temperature": args.temperature, "reviser_max_tokens": args.reviser_max_tokens,
            "backend_kwargs": backend_options(args), **judge_kwargs}


def _read_items(path: Path) -> list[Any]:
    from judgekit.improve import ImproveItem

    text = read_text_file(path)
    if path.suffix == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of items")
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
    items = []
    for n, row in enumerate(rows, 1):
        try:
            items.append(ImproveItem.model_validate(row))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"{path}: item {n}: {where}: {err['msg']}") from None
    return items


def cmd_improve(args: argparse.Namespace) -> int:
    problem = _problem(args)
    if problem:
        _usage_error(problem)
    from judgekit.improve import ImproveLoop, improve_many, write_trace
    from judgekit.preferences import write_preferences

    try:
        items = _read_items(args.items) if args.items is not None else None
    except ValueError as exc:
        _usage_error(str(exc))
    loop = ImproveLoop(**_loop_options(args))
    if items is None:
        trace = loop.run(args.query, args.response, reference=args.reference)
        if args.out:
            write_trace(trace, args.out)
        print(trace.to_json() if args.json else format_trace(trace))
        traces = [trace]
    else:
        traces = improve_many(items, loop=loop, out=args.out, concurrency=args.concurrency,
                              progress=not args.no_progress)
        failed = sum(t.failed for t in traces)
        improved = sum(t.improved for t in traces)
        print(f"{args.out}: {len(traces)} items, {improved} improved, {failed} failed")
    if args.pairs:
        rows = write_preferences(traces, args.pairs, conversational=args.conversational)
        print(f"{args.pairs}: {rows} preference pairs")
    return EXIT_FAILURE if any(t.failed for t in traces) else 0


def format_trace(trace: Any) -> str:
    """A readable account of one loop: each round's score, fixes, debate, revision and check."""
    lines: list[str] = []
    for rnd in trace.rounds:
        score = "-" if rnd.score is None else f"{rnd.score:.2f}"
        lines.append(f"Round {rnd.index}: mean score {score}")
        for f in rnd.debate.fixes:
            mark = "accepted" if f.accepted else "rejected"
            lines.append(f"  {f.id} by judge {f.judge + 1} ({mark}): {f.text}")
        for turns in rnd.debate.rounds:
            for t in turns:
                for a in t.answers:
                    verdict = "accept" if a.accept else "reject"
                    lines.append(f"    judge {t.judge + 1} {verdict}s {a.fix}: {a.reason}")
                if t.scores_after is None:
                    lines.append(f"    judge {t.judge + 1}: unreadable review "
                                 f"({t.sample.error})")
        for c in rnd.debate.mind_changes:
            lines.append(f"  judge {c.judge + 1} changed its score {c.before} -> {c.after}: "
                         f"{c.reason or '(no reason given)'}")
        if rnd.revision is not None:
            lines.append(f"  revision [{rnd.revision.status}]"
                         + (f": {rnd.revision.error}" if rnd.revision.error else ""))
        if rnd.pairwise is not None:
            prev, new = rnd.pairwise.mean_scores
            lines.append(f"  pairwise: previous {prev}, revised {new} over "
                         f"{rnd.pairwise.valid_samples} samples -> "
                         f"{'kept' if rnd.kept else 'not kept'}")
    lines.append("")
    lines.append(f"Stopped: {trace.stop_reason}" + (f" ({trace.error})" if trace.error else ""))
    lines.append("Final response:")
    lines.append(trace.final)
    u = trace.usage
    lines.append(f"Tokens: {u.prompt_tokens} prompt + {u.completion_tokens} completion; "
                 f"{u.calls} calls; {trace.wall_time_s:.1f} s")
    return "\n".join(lines)
