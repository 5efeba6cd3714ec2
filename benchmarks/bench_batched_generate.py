"""Throughput of ONE batched k-sample generate call versus k sequential single-sample calls.

On the local transformers backend the Judge draws an item's k samples in one batched `generate`
(`num_return_sequences`-style rows of one prompt). This measures what that buys: completion
tokens per second (from `Usage.completion_tokens`) for

  * batched:    TransformersBackend.generate_sync(messages, config, n=k)
  * sequential: k calls of generate_sync(messages, config, n=1)

with the same GRM prompt, temperature and max_tokens. The target is batched >= 3x sequential.

    python benchmarks/bench_batched_generate.py --k 8 --max-tokens 64
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass

from judgekit.backends.local import TransformersBackend
from judgekit.config import GenerationConfig
from judgekit.formats import grm_messages
from judgekit.prompts import load_examples
from judgekit.schema import Message, Usage

QUERY = "Give me two tips for staying focused while working from home."
RESPONSES = [
    "1. Keep a fixed start time and a separate workspace.\n"
    "2. Block distracting sites during focus hours with a timer-based routine.",
    "Working from home can be hard. Try your best to focus.",
]


@dataclass
class Row:
    mode: str
    calls: int
    completion_tokens: int
    prompt_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else float("nan")


def run_batched(backend: TransformersBackend, messages: list[Message], config: GenerationConfig,
                k: int) -> Row:
    start = time.perf_counter()
    result = backend.generate_sync(messages, config, n=k)
    seconds = time.perf_counter() - start
    assert len(result.completions) == k
    return Row(f"batched (1 call, n={k})", result.usage.calls, result.usage.completion_tokens,
               result.usage.prompt_tokens, seconds)


def run_sequential(backend: TransformersBackend, messages: list[Message],
                   config: GenerationConfig, k: int) -> Row:
    usage = Usage()
    start = time.perf_counter()
    for i in range(k):
        # A different seed per call, so the k samples differ as the batched rows do.
        seed = None if config.seed is None else config.seed + i
        result = backend.generate_sync(messages, config.with_(seed=seed), n=1)
        usage = usage + result.usage
    seconds = time.perf_counter() - start
    return Row(f"sequential ({k} calls, n=1)", usage.calls, usage.completion_tokens,
               usage.prompt_tokens, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded",
                        help="local model spec: embedded, hf:<dir> or gguf:<file> (default: embedded)")
    parser.add_argument("--k", type=int, default=8, help="samples per prompt (default 8)")
    parser.add_argument("--max-tokens", type=int, default=64, help="max new tokens (default 64)")
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-examples", action="store_true",
                        help="leave the few-shot example out of the prompt (shorter prompt)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice); on a shared, "
                        "oversubscribed CPU 1 thread can be several times faster than 2")
    parser.add_argument("--split-prefill", action="store_true",
                        help="also time each mode with max_tokens=1 (prompt prefill only) and "
                        "report decode-only throughput: the batch repeats the prompt k times, so "
                        "prefill costs the same in both modes and only decoding gains from batching")
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure each mode this many times, alternating, and keep the best")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = TransformersBackend.from_spec(args.model)
    examples = [] if args.no_examples else load_examples()
    messages = grm_messages(QUERY, RESPONSES, examples=examples)
    config = GenerationConfig(temperature=args.temperature, max_tokens=args.max_tokens,
                              seed=args.seed)

    t0 = time.perf_counter()
    backend.generate_sync(messages, config.with_(max_tokens=4), n=2)  # warm-up: load + first call
    load_s = time.perf_counter() - t0

    best: dict[str, Row] = {}
    for _ in range(max(1, args.repeats)):
        for row in (run_sequential(backend, messages, config, args.k),
                    run_batched(backend, messages, config, args.k)):
            key = row.mode.split()[0]
            if key not in best or row.tokens_per_s > best[key].tokens_per_s:
                best[key] = row

    prefill: dict[str, Row] = {}
    if args.split_prefill:
        one = config.with_(max_tokens=1)
        prefill = {"sequential": run_sequential(backend, messages, one, args.k),
                   "batched": run_batched(backend, messages, one, args.k)}

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"model: {backend.spec}  torch threads: {torch.get_num_threads()}  "
          f"CPU count: {os.cpu_count()}  load average (1/5/15 min): "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"prompt: {best['batched'].prompt_tokens} tokens; k={args.k}, "
          f"temperature={args.temperature}, max_tokens={args.max_tokens}; "
          f"warm-up (incl. model load) {load_s:.1f}s; best of {max(1, args.repeats)}")
    print()
    header = f"{'mode':<28} {'calls':>5} {'compl. tokens':>13} {'wall s':>8} {'tokens/s':>9}"
    print(header)
    print("-" * len(header))
    for key in ("sequential", "batched"):
        r = best[key]
        print(f"{r.mode:<28} {r.calls:>5} {r.completion_tokens:>13} {r.seconds:>8.2f} "
              f"{r.tokens_per_s:>9.1f}")
    ratio = best["batched"].tokens_per_s / best["sequential"].tokens_per_s
    if prefill:
        print()
        print("prefill only (max_tokens=1) and decode-only throughput (tokens after the first, "
              "wall time minus prefill):")
        decode: dict[str, float] = {}
        for key in ("sequential", "batched"):
            r, p = best[key], prefill[key]
            tokens = r.completion_tokens - p.completion_tokens
            decode[key] = tokens / max(r.seconds - p.seconds, 1e-9)
            print(f"  {key:<10} prefill {p.seconds:>7.2f}s   decode {tokens:>4} tokens in "
                  f"{r.seconds - p.seconds:>7.2f}s = {decode[key]:>6.1f} tokens/s")
        print(f"  decode-only batched / sequential: {decode['batched'] / decode['sequential']:.2f}x")
    print()
    print(f"batched / sequential throughput: {ratio:.2f}x (target >= 3x: "
          f"{'met' if ratio >= 3 else 'NOT met'})")
    print(f"reproduce: python {shlex.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
