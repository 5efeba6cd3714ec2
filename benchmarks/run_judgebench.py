"""JudgeBench: 350 (GPT-4o responses) + 270 (Claude-3.5 responses) pairs whose labels come from
objective correctness (knowledge, reasoning, math, coding).

    python benchmarks/run_judgebench.py --model anthropic:claude-3-5-haiku-latest --split gpt
"""

from _common import parser, run_benchmark


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--split", choices=("gpt", "claude"), help="one response-model split")
    p.add_argument("--category", choices=("knowledge", "reasoning", "math", "coding"))
    args = p.parse_args()
    subset = None
    if args.split and args.category:
        subset = f"{args.split}/{args.category}"
    elif args.split:
        subset = args.split
    elif args.category:
        subset = f"*/{args.category}"
    run_benchmark(args, "judgebench", subset=subset, tag=(subset or "").replace("/", "-")
                  .replace("*", "all"))


if __name__ == "__main__":
    main()
