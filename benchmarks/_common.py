"""Shared argument handling for the runner scripts in this folder (copy it along with them).

Every script runs the judge through `judgekit.bench.run` (the same code as `judgekit bench run`)
and prints `judgekit.bench.render_report` (the same as `judgekit bench report`). Re-running a
script with the same arguments resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from judgekit.bench import make_judge, render_report, run


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", help="model spec (default: the embedded local model)")
    p.add_argument("--samples", "-k", type=int, default=1, help="judgements voted per item")
    p.add_argument("--meta", action="store_true", help="meta-guided voting")
    p.add_argument("--limit", type=int, help="only N items (spread evenly over subsets)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="benchmark data folder (default $JUDGEKIT_DATA_DIR)")
    p.add_argument("--out", default="runs", help="parent folder of the run folders")
    p.add_argument("--compare-baseline", action="store_true",
                   help="also run the plain LLM-as-a-judge prompt on the same items")
    p.add_argument("--plots", help="write PNG plots into this folder")
    return p


def run_folder(args: argparse.Namespace, dataset: str, tag: str, baseline: bool) -> Path:
    model = (args.model or "embedded").replace("/", "_").replace(":", "-")
    kind = "baseline" if baseline else f"grm-k{args.samples}{'-meta' if args.meta else ''}"
    return Path(args.out) / f"{dataset}{'-' + tag if tag else ''}-{model}-{kind}"


def run_benchmark(args: argparse.Namespace, dataset: str, *, subset: str | None = None,
                  tag: str = "") -> list[Path]:
    """Run the GRM judge (and the baseline with --compare-baseline); print the report."""
    dirs: list[Path] = []
    setups = [False, True] if args.compare_baseline else [False]
    for baseline in setups:
        judge: Any = make_judge(args.model, baseline="pairwise" if baseline else None,
                                seed=args.seed, max_tokens=args.max_tokens,
                                concurrency=args.concurrency)
        out = run_folder(args, dataset, tag, baseline)
        result = run(dataset, judge, out_dir=out, subset=subset,
                     samples=args.samples, meta=args.meta and not baseline, limit=args.limit,
                     stratify=True, concurrency=args.concurrency, seed=args.seed,
                     data_dir=args.data_dir, progress=True, model=args.model,
                     baseline="pairwise" if baseline else None)
        print(result)
        dirs.append(out)
    print(render_report(dirs))
    if args.plots:
        from judgekit.bench.plots import write_plots

        for path in write_plots(dirs, args.plots):
            print("wrote", path)
    return dirs
