"""judgekit's pipeline alone: CPU per judgement with no HTTP and no SDK.

An in-process backend answers every request at once with the loopback server's judgement
(`loopback_server.JUDGEMENT`), so what is timed is judgekit's own work for one judgement:
the item seed, the prompt (fence tag and template), the request config, reading the answer,
voting and the Verdict, and the batch loop around them. `Judge(backend, concurrency=50)
.score_many(items)` runs `--repeats` times after a warm-up; the median CPU time counts.

This is the pipeline with its code and data hot in the CPU's caches. In a real run the SDK's
work runs between its stages and the same code costs two to three times more
(`bench_concurrency.py --stages` times the stages in place).

    python benchmarks/bench_pipeline.py --items 2000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_concurrency import items
from loopback_server import JUDGEMENT

from judgekit import Backend, Judge
from judgekit.backends.base import Completion, GenerationResult
from judgekit.config import GenerationConfig
from judgekit.schema import Message, Usage


class InstantBackend(Backend):
    """Answers every prompt at once with the same parseable judgement."""

    @property
    def spec(self) -> str:
        return "instant:judge"

    async def generate(self, messages: list[Message], config: GenerationConfig,
                       n: int = 1) -> GenerationResult:
        return GenerationResult(
            completions=[Completion(text=JUDGEMENT, finish_reason="stop") for _ in range(n)],
            usage=Usage(prompt_tokens=100, completion_tokens=30 * n, calls=1))


def run(batch: list[dict[str, object]], concurrency: int) -> None:
    verdicts = Judge(InstantBackend(), concurrency=concurrency).score_many(batch, progress=False)
    assert all(v.scores == [8.0, 3.0] for v in verdicts), verdicts[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    batch = items(args.items)
    run(batch[: args.concurrency], args.concurrency)  # warm-up: imports, templates
    cpus = []
    for _ in range(args.repeats):
        start = time.process_time()
        run(batch, args.concurrency)
        cpus.append(1000 * (time.process_time() - start) / args.items)
    print(f"{args.items} judgements through the pipeline with an in-process backend: "
          f"{statistics.median(cpus):.3f} ms CPU per judgement (median of {args.repeats}; "
          f"runs: {', '.join(f'{c:.3f}' for c in cpus)})")


if __name__ == "__main__":
    main()
