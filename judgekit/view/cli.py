"""`judgekit view RUN [RUN ...] -o FILE.html`: the runs as one HTML page that opens offline.

Registered by `judgekit.cli` with `add_view_parser(subparsers)`; bad arguments print one line and
exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from judgekit.cli_args import EXIT_USAGE

PROG = "judgekit view"


def _usage_error(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


def cmd_view(args: argparse.Namespace) -> int:
    from judgekit.bench.report import load_runs
    from judgekit.bench.runner import RUN_FILE, BenchRunError
    from judgekit.view.page import write_page

    for d in args.runs:
        if not (Path(d) / RUN_FILE).is_file():
            return _usage_error(f"{d} is not a bench run directory (no {RUN_FILE})")
    out = Path(args.output)
    if out.is_dir():
        return _usage_error(f"--output {out} is a directory; give a file name such as "
                            f"{out / 'view.html'}")
    if not out.parent.is_dir():
        return _usage_error(f"--output {out}: the folder {out.parent} does not exist")
    try:
        runs = load_runs(args.runs, aggregate=args.aggregate)
    except BenchRunError as exc:
        return _usage_error(str(exc))
    path = write_page(runs, out, plots=not args.no_plots)
    items = len({rec.item_id for run in runs for rec in run.records})
    print(f"wrote {path} ({len(runs)} run{'s' if len(runs) != 1 else ''}, {items} items, "
          f"{path.stat().st_size / 2**20:.1f} MB); open it in any browser", file=sys.stderr)
    return 0


def add_view_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "view", help="write runs as one self-contained HTML page to browse",
        description="Write stored bench runs as one HTML file that opens offline in any "
                    "browser: the report's summary and plots, every item with its query, "
                    "responses and each sample's principles and critiques, filters and search, "
                    "and several runs side by side on the same items. Never calls a model.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directories (from `judgekit bench run` or `bench bias`); give "
                        "several to compare them item by item")
    p.add_argument("--output", "-o", required=True, metavar="FILE.html",
                   help="the HTML file to write")
    p.add_argument("--aggregate", choices=("overall", "weighted"), default=None,
                   help="re-vote the stored samples under this scoring rule (default: the rule "
                        "each run used), as `bench report --aggregate`")
    p.add_argument("--no-plots", action="store_true",
                   help="leave the plots out (a smaller file, written faster)")
    p.set_defaults(func=cmd_view)
    return p
