"""The inference-time scaling curve: accuracy vs k for plain voting (and meta-guided voting with
--meta).

Default (`--mode prefix`): ONE run with the largest k; Voting@j for j = 1..k is recomputed from the
stored per-sample scores (the sum over the first j samples), so the whole curve costs one run.
`--mode runs`: a separate run per k (k = 1 then decodes greedily, as the paper's greedy rows).

    python benchmarks/sweep_k.py llmbar --model openai:gpt-4o-mini --ks 1 2 4 8 --limit 100 \\
        --plots plots/
"""

from pathlib import Path

from _common import parser, run_folder

from judgekit.bench import make_judge, render_report, run
from judgekit.bench.plots import write_plots


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("dataset", help="a registered dataset (judgekit bench list)")
    p.add_argument("--subset")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--mode", choices=("prefix", "runs"), default="prefix")
    args = p.parse_args()
    ks = sorted(set(args.ks)) if args.mode == "runs" else [max(args.ks)]
    dirs: list[Path] = []
    for k in ks:
        args.samples = k
        judge = make_judge(args.model, seed=args.seed, max_tokens=args.max_tokens,
                           concurrency=args.concurrency)
        out = run_folder(args, args.dataset, args.subset or "", baseline=False)
        print(run(args.dataset, judge, out_dir=out, subset=args.subset, samples=k,
                  meta=args.meta, limit=args.limit, stratify=True,
                  concurrency=args.concurrency, seed=args.seed, data_dir=args.data_dir,
                  progress=True, model=args.model))
        dirs.append(out)
    print(render_report(dirs))
    for path in write_plots(dirs, args.plots or "plots"):
        print("wrote", path)


if __name__ == "__main__":
    main()
