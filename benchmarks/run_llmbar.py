"""LLMBar (= RewardBench's chat-hard llmbar-* subsets, 419 pairs), optionally with the processed
FairEval / LLMEval^2 / MT-Bench human sets.

    python benchmarks/run_llmbar.py --model openai:gpt-4o-mini --samples 4 --compare-baseline
    python benchmarks/run_llmbar.py --limit 10 --max-tokens 256        # embedded model, smoke run
"""

from _common import parser, run_benchmark


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--subset", help="e.g. llmbar-adver-neighbor or 'llmbar-adver*'")
    p.add_argument("--processed", action="store_true",
                   help="also run FairEval, LLMEval^2 and MT-Bench (llmbar-processed)")
    args = p.parse_args()
    run_benchmark(args, "llmbar", subset=args.subset)
    if args.processed:
        run_benchmark(args, "llmbar-processed")


if __name__ == "__main__":
    main()
