"""Inference-time scaling cost on a fixed LLMBar Natural subset: wall time and tokens for
k = 1, 4, 8 samples, with and without the meta judge, on a local model (the embedded one by
default).

It also checks the batching promise of the local backend: the k samples of one item come from
ONE batched generate call (the backend's generate_many / generate / complete_under_grammar entry points are
wrapped and counted; meta-judge calls are counted separately).

With the embedded 135M model the accuracy column is near chance: this measures cost, not quality.

    python benchmarks/bench_scaling_k.py --limit 2 --max-tokens 160
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judgekit.backends.local import TransformersBackend
from judgekit.config import GenerationConfig
from judgekit.judge import Judge

REPO = Path(__file__).resolve().parent.parent
DATA_CANDIDATES = [
    REPO / "data" / "llmbar" / "LLMBar" / "Natural" / "dataset.json",
    Path("/work/shared/data/llmbar/LLMBar/Natural/dataset.json"),
]


def load_subset(path: Path | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """The first `limit` items from `offset` of LLMBar Natural (a JSON list of
    {input, output_1, output_2, label}; label 1 or 2 names the better output)."""
    candidates = [path] if path else DATA_CANDIDATES
    for p in candidates:
        if p is not None and p.is_file():
            data = json.loads(p.read_text(encoding="utf-8"))
            return [dict(item, source=str(p), index=offset + i)
                    for i, item in enumerate(data[offset: offset + limit])]
    raise SystemExit(f"LLMBar Natural not found; tried: {', '.join(map(str, candidates))}")


@dataclass
class CallLog:
    """Every call into the backend, by entry point: (entry, [samples per prompt])."""

    calls: list[tuple[str, list[int]]] = field(default_factory=list)

    def since(self, mark: int) -> list[tuple[str, list[int]]]:
        return self.calls[mark:]


def instrument(backend: TransformersBackend) -> CallLog:
    """Wrap the backend's async entry points (instance attributes) to log each call."""
    log = CallLog()
    many, gen, force = backend.generate_many, backend.generate, backend.complete_under_grammar

    async def generate_many(requests: list[tuple[Any, int]], config: GenerationConfig) -> Any:
        log.calls.append(("generate_many", [n for _, n in requests]))
        return await many(requests, config)

    async def generate(messages: Any, config: GenerationConfig, n: int = 1) -> Any:
        log.calls.append(("generate", [n]))
        return await gen(messages, config, n)

    async def complete_under_grammar(messages: Any, prefixes: list[str], grammar: str,
                                     config: GenerationConfig) -> Any:
        log.calls.append(("force_scores", [len(prefixes)]))
        return await force(messages, prefixes, grammar, config)

    backend.generate_many = generate_many  # type: ignore[method-assign]
    backend.generate = generate  # type: ignore[method-assign]
    backend.complete_under_grammar = complete_under_grammar  # type: ignore[method-assign]
    return log


@dataclass
class Cell:
    k: int
    meta: bool
    items: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    judge_calls: int = 0
    meta_calls: int = 0
    force_calls: int = 0
    valid: int = 0
    samples: int = 0
    forced: int = 0
    correct: int = 0
    ties: int = 0


async def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    items = load_subset(args.data, args.limit, args.offset)
    backend = TransformersBackend.from_spec(args.model)
    judge = Judge(backend, max_tokens=args.max_tokens, seed=args.seed)
    log = instrument(backend)

    t0 = time.perf_counter()
    backend.generate_sync([{"role": "user", "content": "Hi"}], GenerationConfig(max_tokens=2))
    load_s = time.perf_counter() - t0

    cells: list[Cell] = []
    problems: list[str] = []
    for k in args.ks:
        for use_meta in (False, True):
            cell = Cell(k=k, meta=use_meta)
            for item in items:
                mark = len(log.calls)
                start = time.perf_counter()
                verdict = await judge.ascore(item["input"], [item["output_1"], item["output_2"]],
                                             samples=k, meta=use_meta)
                cell.seconds += time.perf_counter() - start
                calls = log.since(mark)
                judge_calls = [c for c in calls if c[0] == "generate_many"]
                # The judge's k samples: exactly one batched call whose prompts ask for k in all.
                if len(judge_calls) != 1 or sum(judge_calls[0][1]) != k:
                    problems.append(f"item {item['index']} k={k} meta={use_meta}: judge calls "
                                    f"{judge_calls} (expected one call with {k} samples)")
                cell.items += 1
                cell.judge_calls += len(judge_calls)
                cell.meta_calls += sum(1 for c in calls if c[0] == "generate")
                cell.force_calls += sum(1 for c in calls if c[0] == "force_scores")
                cell.prompt_tokens += verdict.usage.prompt_tokens
                cell.completion_tokens += verdict.usage.completion_tokens
                cell.samples += len(verdict.samples)
                cell.valid += verdict.valid_samples
                cell.forced += sum(1 for s in verdict.samples if s.status.value == "forced")
                cell.ties += verdict.tie
                cell.correct += verdict.best is not None and verdict.best == int(item["label"]) - 1
                if use_meta and verdict.k_meta is None:
                    problems.append(f"item {item['index']} k={k}: meta requested, k_meta unset")
                if not use_meta and verdict.k_meta is not None:
                    problems.append(f"item {item['index']} k={k}: meta not requested but used")
            cells.append(cell)
            print(f"  done k={k} meta={use_meta}: {cell.seconds:.1f}s", file=sys.stderr, flush=True)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"model: {backend.spec}  torch threads: {torch.get_num_threads()}  CPU count: "
          f"{os.cpu_count()}  load average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"data: {items[0]['source']} items {args.offset}..{args.offset + len(items) - 1} "
          f"({len(items)} pairs); max_tokens={args.max_tokens}; structured={judge.structured}; "
          f"model load + warm-up {load_s:.1f}s")
    print()
    header = (f"{'k':>2} {'meta':>5} {'items':>5} {'wall s':>8} {'s/item':>7} {'prompt tok':>10} "
              f"{'compl tok':>9} {'judge calls':>11} {'meta calls':>10} {'forced':>6} "
              f"{'valid':>7} {'acc':>5} {'ties':>4}")
    print(header)
    print("-" * len(header))
    for c in cells:
        print(f"{c.k:>2} {('yes' if c.meta else 'no'):>5} {c.items:>5} {c.seconds:>8.1f} "
              f"{c.seconds / max(c.items, 1):>7.1f} {c.prompt_tokens:>10} {c.completion_tokens:>9} "
              f"{c.judge_calls:>11} {c.meta_calls:>10} {c.forced:>6} "
              f"{f'{c.valid}/{c.samples}':>7} {c.correct / max(c.items, 1):>5.2f} {c.ties:>4}")
    print()
    print("judge calls = batched generate calls for the GRM samples (one per item expected); "
          "meta calls = meta-judge generate calls (one per valid sample); forced = samples whose "
          "scores line was completed under the grammar.")
    if problems:
        print("BATCHING CHECK FAILED:")
        for p in problems:
            print("  " + p)
    else:
        print(f"batching check: every item's k samples came from ONE batched generate call "
              f"({sum(c.items for c in cells)} item runs).")
    print(f"reproduce: python {shlex.join([sys.argv[0], *args.argv])}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded",
                        help="local model spec: embedded, hf:<dir> or gguf:<file>")
    parser.add_argument("--limit", type=int, default=4, help="number of items (default 4)")
    parser.add_argument("--offset", type=int, default=0, help="first item index (default 0)")
    parser.add_argument("--max-tokens", type=int, default=256, help="max new tokens per sample")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8],
                        help="sample counts (default 1 4 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--data", type=Path, default=None,
                        help="LLMBar Natural dataset.json (default: the copy shipped in data/)")
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
