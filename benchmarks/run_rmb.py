"""RMB: helpfulness and harmlessness, pairwise (14,543 pairs) and best-of-N (3,786 sets), scored
as the paper does (mean of Help-BoN, Help-Pair, Harm-BoN, Harm-Pair). The full set is large:
use --limit (spread evenly over the 95 categories) for a first look.

    python benchmarks/run_rmb.py --model openai:gpt-4o-mini --limit 400 --samples 2
    python benchmarks/run_rmb.py --part bon/Harmlessness --limit 50
"""

from _common import parser, run_benchmark


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--part", help="pairwise, bon, pairwise/Helpfulness, bon/Harmlessness, ...")
    args = p.parse_args()
    run_benchmark(args, "rmb", subset=args.part, tag=(args.part or "").replace("/", "-"))


if __name__ == "__main__":
    main()
