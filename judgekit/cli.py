"""`judgekit` command line: judge, bench, view, train and improve. Bad arguments exit with code 2
and one line."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from judgekit.cli_args import (
    EXIT_USAGE,
    CLIError,
    add_common_args,
    add_reference_arg,
    check_common,
    judge_options,
    text_arg,
)
from judgekit.errors import ConfigurationError, JudgekitError, ModelSpecError
from judgekit.schema import SampleStatus, Verdict


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CLIError(message)


def _add_judge_parser(sub: Any) -> None:
    p = sub.add_parser("judge", help="judge one query's responses")
    p.add_argument("--query", required=True, type=text_arg, help="the query (or @file, UTF-8)")
    p.add_argument("--response", action="append", type=text_arg, default=[],
                   help="a response (or @file, UTF-8); repeat for each response")
    add_common_args(p, max_tokens=512)
    add_reference_arg(p)
    p.add_argument("--no-examples", action="store_true", help="leave out the few-shot example")
    p.add_argument("--json", action="store_true", help="print the Verdict as JSON")
    p.set_defaults(func=_cmd_judge)


def _cmd_judge(args: argparse.Namespace) -> int:
    if not args.response:
        raise CLIError("give at least one --response")
    problem = check_common(args)
    if problem:
        raise CLIError(problem)
    from judgekit.judge import Judge

    judge = Judge(args.model, examples=not args.no_examples, **judge_options(args))
    verdict = judge.score(args.query, args.response, samples=args.samples,
                          reference=args.reference)
    if verdict.error is not None and all(s.status is SampleStatus.API_ERROR
                                         for s in verdict.samples):
        # No call came back (a dead or hanging server, a rejected key): one line, no report.
        if args.json:
            print(verdict.model_dump_json(indent=2))
        print(f"judgekit: error: {_one_line(verdict.error)}", file=sys.stderr)
        return 1
    if args.json:
        print(verdict.model_dump_json(indent=2))
    else:
        print(format_verdict(verdict, args.response))
    return 0 if verdict.error is None else 1


def format_verdict(verdict: Verdict, responses: Sequence[str], width: int | None = None) -> str:
    """A readable account: each sample's principles and critiques (wrapped to `width`, default
    the terminal's, never cut), its meta score and whether the vote kept it, then the voted
    scores."""
    cols = width or max(60, min(120, shutil.get_terminal_size((100, 24)).columns))

    def block(text: str, first: str, rest: str) -> list[str]:
        """`text` wrapped whole: its own line breaks kept, each line wrapped at `cols`."""
        out: list[str] = []
        for n, para in enumerate(text.strip().splitlines() or [""]):
            lead = first if n == 0 else rest
            out += textwrap.wrap(para, cols, initial_indent=lead, subsequent_indent=rest,
                                 break_long_words=True, break_on_hyphens=False) or [lead.rstrip()]
        return out

    meta = verdict.k_meta is not None
    lines: list[str] = []
    for jd in verdict.samples:
        head = f"Sample {jd.sample_index + 1} [{jd.status.value}]"
        if verdict.k > 1:
            head += f"  order {','.join(str(i + 1) for i in jd.permutation)}"
        if meta and jd.valid:
            head += "  meta score " + ("not rated" if jd.meta_score is None
                                       else f"{jd.meta_score:.3f}")
            head += "  KEPT" if jd.kept else "  not kept"
        lines.append(head)
        if jd.principles:
            lines.append("  Principles:")
            for p in jd.principles:
                lines += block(f"{p.name} (weight {p.weight:.2f}): {p.description}",
                               "    - ", "      ")
        for i, c in enumerate(jd.critiques):
            value = c.score(verdict.aggregate)
            score = "-" if value is None else f"{value:g}"
            lines += block(f"score {score}. {c.analysis}", f"  Response {i + 1}: ", "      ")
        if jd.error:
            lines += block(jd.error, "  Error: ", "      ")
    lines.append("")
    if meta:
        kept = sum(1 for s in verdict.samples if s.valid and s.kept)
        unrated = sum(1 for s in verdict.samples if s.valid and s.meta_score is None)
        how = (f"{verdict.voting} over the {kept} KEPT of {verdict.valid_samples} valid samples, "
               f"meta-guided with k_meta={verdict.k_meta}"
               + (f"; {unrated} not rated by the meta judge" if unrated else ""))
    else:
        how = f"{verdict.voting} over {verdict.valid_samples} valid of {verdict.k} samples"
    lines += block(f"Scores ({how}):", "", "  ")
    for i, s in enumerate(verdict.scores):
        lead = f"  Response {i + 1}: {'-' if s is None else f'{s:g}'}   "
        # the caller's own response: a one-line reminder of which one it is
        lines.append(lead + textwrap.shorten(" ".join(responses[i].split()) or "(empty)",
                                             max(20, cols - len(lead)), placeholder=" ..."))
    if verdict.best is not None:
        lines.append(f"Best: Response {verdict.best + 1}" + (" (tie broken)" if verdict.tie else ""))
    elif verdict.tie:
        lines.append("Best: tie")
    if verdict.error:
        lines += block(verdict.error, "Failed: ", "  ")
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
    from judgekit.view.cli import add_view_parser

    add_view_parser(sub)
    try:
        from judgekit.train.cli import add_train_parser
    except ImportError:  # pragma: no cover - optional module
        pass
    else:
        add_train_parser(sub)
    from judgekit.improve_cli import add_improve_parser

    add_improve_parser(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _warning_line(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, line: str | None = None) -> str:
    """A warning as one line: what happened, not where in site-packages it was raised."""
    return f"judgekit: warning: {_one_line(str(message))}\n"


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub at run time
    formatwarning, warnings.formatwarning = warnings.formatwarning, _warning_line
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = formatwarning


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except SystemExit as exc:  # bench and train parsers print their one line and exit
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except CLIError as exc:
        print(f"judgekit: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelSpecError, ConfigurationError, FileNotFoundError) as exc:
        print(f"judgekit: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:  # a setting a config model refused: say which, in one line
        err = exc.errors()[0] if exc.errors() else None
        where = ".".join(str(x) for x in err["loc"]) if err else ""
        msg = err["msg"] if err else "invalid setting"
        print(f"judgekit: error: {where + ': ' if where else ''}{_one_line(msg)}", file=sys.stderr)
        return EXIT_USAGE
    except JudgekitError as exc:
        print(f"judgekit: error: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("judgekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
