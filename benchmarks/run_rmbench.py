"""RM-Bench (chat, code, safety; math is not in the offline copy): every prompt gives 3x3 pairs of
a chosen and a rejected response in three styles; the report shows easy / normal / hard accuracy
(hard = the chosen response is plainer than the rejected one).

    python benchmarks/run_rmbench.py --model hf:/models/qwen --domain chat --limit 90
"""

from _common import parser, run_benchmark

DOMAINS = {"chat": "chat", "code": "code", "safety": "safety-refuse,safety-response"}


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--domain", choices=sorted(DOMAINS))
    args = p.parse_args()
    run_benchmark(args, "rm-bench", subset=DOMAINS.get(args.domain or ""),
                  tag=args.domain or "")


if __name__ == "__main__":
    main()
