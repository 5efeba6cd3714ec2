"""ReaLMistake: 900 single responses with human error labels; the metric is ROC-AUC of the 1-10
score (high score = no error), plus precision / recall / F1 of error detection at 5.5.
The data stays in its password-protected zip and is decrypted in memory.

    python benchmarks/run_realmistake.py --model openai:gpt-4o --samples 8
"""

from _common import parser, run_benchmark


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--task", choices=("math_word_problem_generation",
                                      "finegrained_fact_verification",
                                      "answerability_classification"))
    args = p.parse_args()
    if args.compare_baseline:
        p.error("the pairwise baseline needs two or more responses; ReaLMistake has one")
    run_benchmark(args, "realmistake", subset=args.task, tag=args.task or "")


if __name__ == "__main__":
    main()
