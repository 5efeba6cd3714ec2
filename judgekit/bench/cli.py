"""`judgekit bench ...`: list datasets, run a judge over one, probe its biases, report on stored
runs.

The main CLI registers these with `add_bench_parser(subparsers)` and dispatches with
`args.func(args)` (each handler returns the exit code). `python -m judgekit.bench ...` runs them
standalone. Bad arguments print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judgekit.bench.datasets import DatasetError, dataset_names, list_datasets, load_dataset
from judgekit.cli_args import (
    EXIT_USAGE,
    OneLineErrorParser,
    add_common_args,
    backend_options,
    check_common,
    data_dir,
    positive_int,
    rubric_options,
)
from judgekit.errors import JudgekitError, RunAbortedError

EXIT_FAILURE = 1
OWN_FILE_FLAGS = ("query_template", "records_path", "tie_label", "subset_field",
                  "reference_field", "drop_empty_responses", "skip_bad_rows")
"""Own-file flags without a default: given with a registered dataset, they are a mistake."""
EXIT_NOT_READY = 75  # sysexits EX_TEMPFAIL: `--batch --no-wait` and the provider is not done yet


def _usage_error(prog: str, message: str) -> int:
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


def _print_frame(frame: Any, fmt: str) -> None:
    from judgekit.bench.report import format_markdown, format_table

    if fmt == "csv":
        print(frame.to_csv(), end="")
    elif fmt == "markdown":
        print(format_markdown(frame))
    else:
        print(format_table(frame))


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    import pandas as pd

    try:
        rows = list_datasets(args.data_dir, count=not args.no_count)
    except DatasetError as exc:
        return _usage_error("judgekit bench list", str(exc))
    frame = pd.DataFrame(rows).set_index("name")
    cols = ["items", "subsets", "kind", "license", "shipped", "location"]
    if args.verbose:
        cols.append("description")
    if args.verbose and args.format == "csv":
        frame["subset_names"] = [";".join(r["subset_items"]) for r in rows]
        cols.append("subset_names")
    _print_frame(frame[cols], args.format)
    if args.verbose and args.format != "csv":
        for r in rows:
            if r["subset_items"]:  # one per line: names are whole, however long
                print(f"\n{r['name']} subsets ({len(r['subset_items'])}):")
                for name, n in r["subset_items"].items():
                    print(f"  {name} ({n})")
    return 0


def _default_out(args: argparse.Namespace, dataset: str) -> Path:
    judge = f"baseline-{args.baseline}" if args.baseline else "grm"
    model = (args.model or "embedded").replace("/", "_").replace(":", "-")
    name = f"{Path(dataset).stem if Path(dataset).suffix else dataset}-{judge}-{model}" \
           f"-k{args.samples}{'-meta' if args.meta else ''}"
    if args.subset:
        name += "-" + args.subset.replace("/", "_").replace("*", "x").replace(",", "+")
    return Path("runs") / name


def _columns(text: str) -> str | list[str]:
    """One column, or several separated by commas."""
    if "," not in text:
        return text
    return [c.strip() for c in text.split(",") if c.strip()]


def _unescape(text: str) -> str:
    r"""A shell-typed template's \n, \t and \\ as a newline, a tab and a backslash."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _field_map(args: argparse.Namespace) -> Any:
    """The FieldMap the own-file flags describe; DatasetError (one line) on a bad one."""
    from pydantic import ValidationError

    from judgekit.bench.datasets.base import describe_validation
    from judgekit.bench.generic import FieldMap

    tie_labels = [t.strip() for v in args.tie_label or [] for t in v.split(",") if t.strip()]
    template = _unescape(args.query_template) if args.query_template is not None else None
    try:
        return FieldMap(query=args.query_field, query_template=template,
                        records_path=args.records_path,
                        responses=_columns(args.responses_field),
                        label=_columns(args.label_field), label_format=args.label_format,
                        tie_labels=tie_labels, id=args.id_field, subset=args.subset_field,
                        reference=args.reference_field,
                        drop_empty_responses=args.drop_empty_responses)
    except ValidationError as exc:
        raise DatasetError(describe_validation(exc).replace("field 'query_template': ", ""))\
            from exc


def _check_run_args(args: argparse.Namespace) -> str | None:
    """The argument combinations `run` and `bias` refuse (None when fine)."""
    problem = check_common(args)
    if problem:
        return problem
    if getattr(args, "meta", False) and args.baseline:
        return "--meta does not apply to --baseline pairwise"
    if args.baseline and args.no_examples:
        return "--no-examples applies to the GRM prompt only"
    if args.baseline and args.aggregate is not None:
        return "--aggregate applies to the GRM prompt only"
    if args.baseline and args.voting != "sum":
        return "--voting applies to the GRM judge only"
    if args.baseline and getattr(args, "rubric", None) is not None:
        return "--rubric applies to the GRM judge only"
    return None


def _dataset(args: argparse.Namespace) -> dict[str, Any]:
    """The RunSpec fields of the dataset: a registered name (its data is found and read
    before a judge is built; loads are cached), or the items of an own file with its data
    mapping. Raises DatasetError or ValueError with a one-line message."""
    from judgekit.bench.generic import read_file
    from judgekit.bench.runner import data_mapping

    is_file = Path(args.dataset).suffix.lower() in (".jsonl", ".json", ".csv", ".parquet")
    if is_file:
        if not Path(args.dataset).is_file():
            raise DatasetError(f"no such file: {args.dataset}")
        mapping = _field_map(args)
        loaded = read_file(args.dataset, mapping, skip_bad_rows=args.skip_bad_rows)
        if loaded.skipped:
            print(f"{args.dataset}: {loaded.skipped_summary()}", file=sys.stderr)
        return {"dataset": Path(args.dataset).stem, "items": loaded.items,
                "data": data_mapping(args.dataset, mapping)}
    own = [f"--{a.replace('_', '-')}" for a in OWN_FILE_FLAGS if getattr(args, a, None)]
    if own:
        raise DatasetError(f"{', '.join(own)} appl{'ies' if len(own) == 1 else 'y'} to own "
                           f"files only, not to the registered dataset {args.dataset!r}")
    if args.dataset not in dataset_names():
        raise DatasetError(f"unknown dataset {args.dataset!r} "
                           f"(known: {', '.join(dataset_names())}; or a .jsonl/.csv file)")
    load_dataset(args.dataset, subset=args.subset, data_dir=args.data_dir)
    return {"dataset": args.dataset}


def _judge(args: argparse.Namespace, prog: str, out: Path | None = None) -> Any:
    """The judge the arguments describe, or an exit code (after printing one line)."""
    from judgekit.bench.runner import make_judge

    backend_kwargs: dict[str, Any] = backend_options(args)
    if args.timeout is not None:  # a Judge keyword, for the GRM and the baseline judge alike
        backend_kwargs["timeout"] = args.timeout
    if not args.baseline:  # GRM-only Judge keywords (aggregate only when given)
        backend_kwargs["voting"] = args.voting
        if args.aggregate is not None:
            backend_kwargs["aggregate"] = args.aggregate
        backend_kwargs.update(rubric_options(args))  # the rubric applies to every item
    cache: Any = False if args.no_cache else (args.cache or True)
    try:
        judge: Any
        if getattr(args, "ray", None) is not None:  # the actors build the judge; no model here
            judge = _ray_scorer(args, cache, backend_kwargs)
        else:
            judge = make_judge(args.model, baseline=args.baseline, seed=args.seed,
                               max_tokens=args.max_tokens, temperature=args.temperature,
                               concurrency=args.concurrency, meta_model=args.meta_model,
                               examples=not args.no_examples, cache=cache, **backend_kwargs)
        if getattr(args, "batch", False) and out is not None:
            from judgekit.batch_api import BatchScorer

            judge = BatchScorer(judge, out / "batch", poll_interval=args.poll_interval,
                                wait=not args.no_wait, resubmit_failed=args.resubmit_failed)
        return judge
    except (JudgekitError, ValueError, OSError, ImportError) as exc:
        print(f"{prog}: error: cannot build the judge: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILURE


def _run_spec(args: argparse.Namespace, dataset: dict[str, Any], out: Path, **fields: Any
              ) -> Any:
    """The RunSpec of `run` and `bias`."""
    from judgekit.bench.runner import RunSpec

    return RunSpec(**dataset, out_dir=out, subset=args.subset, samples=args.samples,
                   meta=getattr(args, "meta", False), k_meta=args.k_meta, limit=args.limit,
                   stratify=args.stratify, concurrency=args.concurrency, seed=args.seed,
                   data_dir=args.data_dir, progress=not args.no_progress,
                   baseline=args.baseline, extra=_run_extra(args), **fields)


def _run_extra(args: argparse.Namespace) -> dict[str, Any]:
    """What run.json records of the command beyond its settings (for humans)."""
    return {"max_tokens": args.max_tokens, "temperature": args.temperature,
            "meta_model": args.meta_model, "k_meta": args.k_meta,
            "examples": not args.no_examples, "voting": args.voting,
            "aggregate": args.aggregate or "overall",
            "mode": ("batch" if getattr(args, "batch", False) else "ray"
                     if getattr(args, "ray", None) is not None else "online"),
            **_rubric_extra(args)}


def cmd_run(args: argparse.Namespace) -> int:
    from judgekit.bench.runner import BenchRunError, arun

    prog = "judgekit bench run"
    problem = _check_run_args(args) or _scaleout_problem(args)
    if problem:
        return _usage_error(prog, problem)
    try:
        dataset = _dataset(args)
    except (DatasetError, ValueError) as exc:
        return _usage_error(prog, str(exc))
    if args.dry_run:
        return _dry_run(args, _dataset_items(args, dataset))
    out = Path(args.out) if args.out else _default_out(args, args.dataset)
    judge = _judge(args, prog, out)
    if isinstance(judge, int):
        return judge
    spec = _run_spec(args, dataset, out, reverse=args.reverse, overwrite=args.overwrite)

    async def go() -> Any:
        try:
            return await arun(spec, judge)
        finally:
            await judge.aclose()

    try:
        result = asyncio.run(go())
    except RunAbortedError as exc:  # the backend failed for everyone: stop, resumable
        print(f"{prog}: stopped: {exc} Results so far are in {out}; fix the cause and re-run "
              "the same command to resume.", file=sys.stderr)
        return EXIT_FAILURE
    except (DatasetError, BenchRunError) as exc:
        return _usage_error(prog, str(exc))
    except JudgekitError as exc:  # the batch run's own outcomes, one line each
        from judgekit.batch_api import BatchNotReady, BatchRunError
        from judgekit.errors import BackendError

        if isinstance(exc, BatchNotReady):
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_NOT_READY
        if isinstance(exc, BatchRunError):
            return _usage_error(prog, str(exc))
        if isinstance(exc, BackendError):
            print(f"{prog}: error: the batch API failed: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        raise
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; re-run the same command to resume ({out})", file=sys.stderr)
        return 130
    print(result)
    print(f"report: judgekit bench report {out}")
    return EXIT_FAILURE if result.failed else 0  # kept and resumable, but not a success


def _dataset_items(args: argparse.Namespace, dataset: dict[str, Any]) -> Any:
    """The items of `_dataset`'s fields (a registered dataset loaded, with --subset)."""
    if "items" in dataset:
        return dataset["items"]
    return load_dataset(args.dataset, subset=args.subset, data_dir=args.data_dir)


def _dry_run(args: argparse.Namespace, items: Any) -> int:
    """`--dry-run`: what would be judged (after --subset, --limit), and no model."""
    from judgekit.bench.datasets import select
    from judgekit.bench.generic import describe_items

    try:
        chosen = select(items, args.subset, args.limit, args.stratify)
    except DatasetError as exc:
        return _usage_error(f"judgekit bench {args.bench_command}", str(exc))
    print(describe_items(chosen))
    return 0


def _scaleout_problem(args: argparse.Namespace) -> str | None:
    """A usage problem of --batch / --ray and their options, or None."""
    if args.batch and args.ray is not None:
        return "--batch and --ray exclude each other"
    if (args.batch or args.ray is not None) and args.baseline:
        return "--batch and --ray run the GRM judge only"
    if not args.batch and (args.resubmit_failed or args.no_wait):
        return "--resubmit-failed and --no-wait need --batch"
    if args.ray is None and args.ray_workers is not None:
        return "--ray-workers needs --ray"
    if args.ray is None and args.ray_logs:
        return "--ray-logs needs --ray"
    return None


def _ray_scorer(args: argparse.Namespace, cache: Any, backend_kwargs: dict[str, Any]) -> Any:
    """The Ray runner judge: each actor builds `Judge(**options)` as `make_judge` would."""
    from judgekit.judge_spec import JudgeSpec
    from judgekit.ray import RayScorer

    options: dict[str, Any] = {"seed": args.seed, "max_tokens": args.max_tokens,
                               "temperature": args.temperature,
                               "concurrency": args.concurrency,
                               "examples": not args.no_examples, "cache": cache,
                               **backend_kwargs}
    if args.meta_model is not None:
        options["meta"] = args.meta_model
    remote = (args.model or "").startswith(("openai:", "anthropic:"))
    return RayScorer(JudgeSpec(model=args.model or None, options=options),
                     address=args.ray or None, workers=args.ray_workers or 2,
                     ray_logs=args.ray_logs,
                     num_cpus=0.25 if remote else 1.0)


def _rubric_extra(args: argparse.Namespace) -> dict[str, Any]:
    """What run.json records of a rubric: the criteria and the mode they were used in."""
    if args.rubric is None:
        return {}
    mode = args.rubric_mode or args.rubric.mode.value
    return {"rubric": args.rubric.model_dump(mode="json")["principles"], "rubric_mode": mode}


def cmd_bias(args: argparse.Namespace) -> int:
    """Swap and length probes: the same items judged in the given order (OUT/forward) and in
    reverse (OUT/reverse, the runner's --reverse), then the bias table and plot."""
    from judgekit.bench.bias import arun_bias, bias_dirs
    from judgekit.bench.report import bias_frame, load_runs
    from judgekit.bench.runner import BenchRunError

    prog = "judgekit bench bias"
    problem = _check_run_args(args)
    if problem:
        return _usage_error(prog, problem)
    try:
        dataset = _dataset(args)
    except (DatasetError, ValueError) as exc:
        return _usage_error(prog, str(exc))
    if args.dry_run:
        return _dry_run(args, _dataset_items(args, dataset))
    out = Path(args.out) if args.out else Path(f"{_default_out(args, args.dataset)}-bias")
    judge = _judge(args, prog)
    if isinstance(judge, int):
        return judge
    spec = _run_spec(args, dataset, out)

    async def go() -> list[Any]:
        try:
            return await arun_bias(spec, judge)
        finally:
            await judge.aclose()

    try:
        results = asyncio.run(go())
    except (DatasetError, BenchRunError) as exc:
        return _usage_error(prog, str(exc))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; re-run the same command to resume ({out})", file=sys.stderr)
        return 130
    for result in results:
        print(result)
    runs = load_runs(bias_dirs(out))
    _print_frame(bias_frame(runs), args.format)
    from judgekit.bench.plots import plot_bias

    plots = Path(args.plots) if args.plots else out
    plots.mkdir(parents=True, exist_ok=True)
    path = plot_bias(runs, plots / "bias.png")
    if path is not None:
        print(f"wrote {path}", file=sys.stderr)
    print(f"report: judgekit bench report {out / 'forward'} {out / 'reverse'}")
    return EXIT_FAILURE if any(r.failed for r in results) else 0


def cmd_report(args: argparse.Namespace) -> int:
    from judgekit.bench.report import load_runs, render_report
    from judgekit.bench.runner import BenchRunError

    prog = "judgekit bench report"
    for d in args.dirs:
        if not (Path(d) / "run.json").is_file():
            return _usage_error(prog, f"{d} is not a bench run directory (no run.json)")
    try:
        runs = load_runs(args.dirs, aggregate=args.aggregate)
    except BenchRunError as exc:
        return _usage_error(prog, str(exc))
    text = render_report(runs, args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    if args.plots:
        from judgekit.bench.plots import write_plots

        for path in write_plots(runs, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------
def _add_judging_args(p: argparse.ArgumentParser) -> None:
    """The dataset, judge and run arguments that `run` and `bias` share."""
    p.add_argument("dataset", help="a registered dataset (see `bench list`) or a "
                                   ".jsonl/.json/.csv/.parquet file of your own")
    p.add_argument("--subset", help="subset name, prefix (a/b) or glob; comma-separated")
    add_common_args(p)
    p.add_argument("--limit", type=positive_int, help="only N items (the first N)")
    p.add_argument("--stratify", action="store_true",
                   help="with --limit: spread the N items evenly over subsets")
    p.add_argument("--out", help="output directory (default runs/<dataset>-<judge>-...)")
    p.add_argument("--data-dir", type=data_dir,
                   help="data directory (default $JUDGEKIT_DATA_DIR, else ../shared/data)")
    p.add_argument("--baseline", choices=("pairwise",),
                   help="run the plain LLM-as-a-judge prompt instead of the GRM")
    p.add_argument("--no-examples", action="store_true",
                   help="leave the few-shot examples out of the GRM prompt")
    p.add_argument("--no-cache", action="store_true",
                   help="do not use the on-disk response cache (on by default)")
    p.add_argument("--cache", default=None,
                   help="sqlite cache file (default: ~/.cache/judgekit/cache.sqlite)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group(
        "own files (DATASET is a file; see docs/own-data.md)",
        "Which column holds what. Columns are JSON keys, CSV headers or Parquet columns.")
    g.add_argument("--query-field", default="query", metavar="COLUMN",
                   help="the column holding the query: text, or a conversation (a list of "
                        "{role, content} messages) whose last turn is the query (default query)")
    g.add_argument("--query-template", metavar="TEMPLATE",
                   help="build the query from several columns instead, e.g. "
                        "'{instruction}\\n\\n{input}' (\\n and \\t are read as a newline and "
                        "a tab; {{ and }} are literal braces; an empty cell is empty text)")
    g.add_argument("--responses-field", default="responses", metavar="COLUMN[,COLUMN...]",
                   help="a column holding a list of responses (a JSON list in CSV), or several "
                        "columns separated by commas, one response each (default responses)")
    g.add_argument("--label-field", default="label", metavar="COLUMN[,COLUMN...]",
                   help="the label column, or several annotator columns separated by commas "
                        "(their majority is the label; a majority tie is a tie)")
    g.add_argument("--label-format", default="auto",
                   choices=("auto", "index0", "index1", "letter", "preference", "ranks",
                            "best_text", "binary_error", "binary_ok"),
                   help="how to read a label: index0/index1 (the best response's 0- or "
                        "1-based index), letter (A, B, ...), preference (A>B, B>>A, A=B), ranks "
                        "(a list, 1 = best), best_text (the best response's text), "
                        "binary_error/binary_ok (a yes/no flag on one response), auto (guess "
                        "per value; integers are 1-based unless some label is 0; default)")
    g.add_argument("--tie-label", action="append", metavar="VALUE",
                   help="a label value that means a tie (e.g. 0 for 1-based labels with 0 = tie); "
                        "repeat or separate by commas. Tie words (tie, draw, A=B, ...) always are")
    g.add_argument("--id-field", default="id", metavar="COLUMN",
                   help="the column holding each item's id (default id; where the column is "
                        "missing or empty, the row number)")
    g.add_argument("--subset-field", metavar="COLUMN",
                   help="the column holding each item's subset (category); default: the key of a "
                        "JSON object of lists, else one subset named custom")
    g.add_argument("--reference-field", metavar="COLUMN",
                   help="the column holding a reference answer, shown to the judge")
    g.add_argument("--records-path", metavar="PATH",
                   help="in a .json file, the dotted path to the records, e.g. data.items (a "
                        "number indexes a list); the records are a list of objects or an object "
                        "of lists, one list per subset")
    g.add_argument("--drop-empty-responses", action="store_true",
                   help="an empty response cell means no response (items with different numbers "
                        "of responses); by default an empty response is judged")
    g.add_argument("--skip-bad-rows", action="store_true",
                   help="leave out rows that cannot be read (reported: how many, and the first "
                        "reasons) instead of stopping at the first")
    g.add_argument("--dry-run", action="store_true",
                   help="read and check the data, print what would be judged, and stop (no "
                        "model is loaded)")


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `bench list|run|bias|report` under an argparse subparsers object."""
    bench = subparsers.add_parser(
        "bench", help="run judges over benchmarks and report",
        description="Benchmarks for judges: list datasets, run, report (never a model).")
    # The bench parser is built by the caller's parser class; give it one-line errors too.
    bench.error = types.MethodType(OneLineErrorParser.error, bench)
    bench.set_defaults(func=lambda args: (bench.print_usage(sys.stderr), EXIT_USAGE)[1])
    sub = bench.add_subparsers(dest="bench_command", metavar="{list,run,bias,report}",
                               parser_class=OneLineErrorParser)

    p_list = sub.add_parser("list", help="registered datasets with item counts")
    p_list.add_argument("--data-dir", type=data_dir,
                        help="data directory (default $JUDGEKIT_DATA_DIR, else ../shared/data)")
    p_list.add_argument("--format", choices=("table", "csv", "markdown"), default="table",
                        help="output format (default table)")
    p_list.add_argument("--no-count", action="store_true", help="do not load data to count")
    p_list.add_argument("-v", "--verbose", action="store_true",
                        help="also the description and every subset with its item count")
    p_list.set_defaults(func=cmd_list)

    p_run = sub.add_parser("run", help="judge a dataset; results append to OUT/results.jsonl",
                           description="Judge a benchmark. Re-running the same command resumes.")
    _add_judging_args(p_run)
    p_run.add_argument("--reverse", action="store_true",
                       help="show responses in reverse order (pair with a normal run to measure "
                            "position consistency)")
    p_run.add_argument("--overwrite", action="store_true",
                       help="start the run in --out afresh, discarding its results (a resume "
                       "with other settings is refused without it)")
    s = p_run.add_argument_group("scale-out (GRM judge only)")
    s.add_argument("--batch", action="store_true",
                   help="send the requests through the provider's batch API (openai:, "
                        "anthropic: models; half price, results within 24 h); job state in "
                        "OUT/batch, so re-running the command resumes without resubmitting")
    s.add_argument("--poll-interval", type=float, default=30.0,
                   help="with --batch: seconds between polls (default 30)")
    s.add_argument("--no-wait", action="store_true",
                   help="with --batch: submit (or poll once) and exit with code 75 if the "
                        "provider is not done; re-run to collect")
    s.add_argument("--resubmit-failed", action="store_true",
                   help="with --batch: send again the requests that errored, expired or were "
                        "cancelled")
    s.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="judge on a Ray cluster (ADDRESS, e.g. ray://head:10001 or auto; "
                        "none: a local one), one Judge per actor")
    s.add_argument("--ray-logs", action="store_true",
                   help="with --ray: show Ray's own logs and progress bars (off by default: "
                        "judgekit's bar counts the items)")
    s.add_argument("--ray-workers", type=positive_int,
                   help="with --ray: actors in the pool (default 2)")
    p_run.set_defaults(func=cmd_run)

    p_bias = sub.add_parser(
        "bias", help="swap and length probes: judge a dataset in both orders, report biases",
        description="Judge every item in its order (OUT/forward) and reversed (OUT/reverse), "
                    "then print the bias probes (position consistency, first-position win rate, "
                    "length preference, agreement among the k samples) and plot them. "
                    "Re-running the same command resumes.")
    _add_judging_args(p_bias)
    p_bias.add_argument("--format", choices=("table", "csv", "markdown"), default="table",
                        help="output format of the bias table (default table)")
    p_bias.add_argument("--plots", metavar="OUTDIR", help="where bias.png goes (default: OUT)")
    p_bias.set_defaults(func=cmd_bias)

    p_rep = sub.add_parser("report", help="tables (and plots) from run directories",
                           description="Metrics from stored results; never calls a model.")
    p_rep.add_argument("dirs", nargs="+", metavar="DIR", help="run directories to compare")
    p_rep.add_argument("--format", choices=("table", "csv", "markdown"), default="table",
                       help="output format (default table)")
    p_rep.add_argument("--plots", metavar="OUTDIR", help="write PNG plots into OUTDIR")
    p_rep.add_argument("--output", "-o", help="write the report to a file instead of stdout")
    p_rep.add_argument("--aggregate", choices=("overall", "weighted"), default=None,
                       help="re-vote the stored samples under this scoring rule (default: the "
                       "rule each run used)")
    p_rep.set_defaults(func=cmd_report)
    return bench


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="judgekit")
    subparsers = parser.add_subparsers(dest="command", parser_class=OneLineErrorParser)
    add_bench_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: `python -m judgekit.bench list|run|report ...`."""
    parser = build_parser()
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    func = getattr(args, "func", None)
    if func is None:
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    return int(func(args))
