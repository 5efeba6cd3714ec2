"""Structured output and prompt caching, measured in one run on the embedded GGUF model.

Part 1, the same LLMBar Natural pairs judged three ways (one greedy sample each):
  * in-process transformers, `Judge()`: the embedded model decoding under the output grammar;
  * llama.cpp's own server (`python -m llama_cpp.server`, llama-cpp-python[server]) serving the
    same GGUF file, judged under the GRM format's JSON schema (`server_flavour` detected);
  * the same server in free text (`structured=False`), as a new user got it before.
It reports seconds per judgement, the parse rate (samples read `ok` or `forced` / samples) and
completion tokens per second (completion tokens / wall time, prompt processing included).

Part 2, prompt caching on a 50-item run against the protocol server (tests/support/fault_server.py,
which caches prompts as the providers do, counting 4 characters per token): the prompt tokens
billed, and their cost at claude-sonnet-4-6's list prices, with the static prefix marked for
Anthropic's cache (the default) and without (a format that reports no static prefix), plus
OpenAI's automatic caching of the same prompts.

    python benchmarks/bench_structured.py --items 5 --max-tokens 512 --cache-items 50

`--llama-url` uses a llama.cpp server already running instead of starting one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgekit import Judge
from judgekit.backends.anthropic_backend import AnthropicBackend
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.config import GenerationConfig
from judgekit.cost import call_cost
from judgekit.embedded import embedded_gguf_path
from judgekit.formats import GRMFormat
from judgekit.prompts import load_examples
from judgekit.schema import Message, SampleStatus, Usage, Verdict

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "llmbar" / "LLMBar" / "Natural" / "dataset.json"
sys.path.insert(0, str(REPO / "tests"))  # the llama.cpp launcher and the protocol server


@dataclass
class Row:
    engine: str
    items: int = 0
    samples: int = 0
    ok: int = 0
    forced: int = 0
    seconds: float = 0.0
    completion_tokens: int = 0
    prompt_tokens: int = 0

    def add(self, verdict: Verdict, seconds: float) -> None:
        self.items += 1
        self.samples += len(verdict.samples)
        self.ok += sum(s.status is SampleStatus.OK for s in verdict.samples)
        self.forced += sum(s.status is SampleStatus.FORCED for s in verdict.samples)
        self.seconds += seconds
        self.completion_tokens += verdict.usage.completion_tokens
        self.prompt_tokens += verdict.usage.prompt_tokens

    def cells(self) -> list[str]:
        parsed = self.ok + self.forced
        return [self.engine, f"{self.seconds / max(self.items, 1):.1f}",
                f"{parsed}/{self.samples} ({self.forced} forced)",
                f"{self.completion_tokens / max(self.seconds, 1e-9):.1f}",
                f"{self.prompt_tokens / max(self.items, 1):.0f}",
                f"{self.completion_tokens / max(self.items, 1):.0f}"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def load_items(n: int, offset: int = 0) -> list[dict[str, Any]]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    return data[offset: offset + n]


async def judge_items(judge: Judge, items: list[dict[str, Any]], engine: str) -> Row:
    row = Row(engine)
    for item in items:
        start = time.perf_counter()
        verdict = await judge.ascore(item["input"], [item["output_1"], item["output_2"]])
        row.add(verdict, time.perf_counter() - start)
        print(f"  {engine}: item {row.items}/{len(items)} {row.seconds:.1f}s "
              f"{[s.status.value for s in verdict.samples]}", file=sys.stderr, flush=True)
    return row


async def part_engines(args: argparse.Namespace) -> list[Row]:
    from support.llamacpp_server import start_llamacpp_server

    items = load_items(args.items)
    config = GenerationConfig(max_tokens=args.max_tokens, timeout=1800.0)
    rows = []
    local = Judge(config=config, examples=args.examples)  # the embedded model, in-process
    await local.ascore("warm-up", ["a", "b"])  # load the model outside the timing
    rows.append(await judge_items(local, items, "transformers in-process, output grammar"))
    server = None
    url = args.llama_url
    if url is None:
        server = start_llamacpp_server(embedded_gguf_path())
        url = server.base_url
    try:
        for structured, name in ((None, "llama.cpp server, JSON schema"),
                                 (False, "llama.cpp server, free text")):
            judge = Judge(f"openai:{server.model if server else 'smollm2'}", base_url=url,
                          config=config, examples=args.examples, structured=structured)
            await judge.ascore("warm-up", ["a", "b"])
            rows.append(await judge_items(judge, items, name))
            await judge.aclose()
    finally:
        if server is not None:
            server.stop()
    return rows


class NoStaticPrefix(GRMFormat):
    """The GRM format with no static prefix reported: nothing is marked for the cache."""

    def static_prefix_chars(self, messages: Sequence[Message]) -> int | None:
        return None


async def part_caching(args: argparse.Namespace) -> list[list[str]]:
    from support.fault_server import FaultServer

    items = load_items(args.cache_items)
    out = []
    runs: list[tuple[str, str, GRMFormat]] = [
        ("anthropic", "cache_control on the static prefix", GRMFormat(examples=load_examples())),
        ("anthropic", "no cache_control", NoStaticPrefix(examples=load_examples())),
        ("openai", "automatic (prefix >= 1,024 tokens)", GRMFormat(examples=load_examples()))]
    for api, how, fmt in runs:
        with FaultServer() as server:
            backend: Any
            if api == "anthropic":
                backend = AnthropicBackend("claude-sonnet-4-6", base_url=server.anthropic_url,
                                           api_key="sk-ant-bench")
            else:
                backend = OpenAIBackend("gpt-4o-mini", base_url=server.openai_url,
                                        api_key="sk-bench", server_flavour="openai")
            backend.local = False  # price it as the provider's API
            judge = Judge(backend, format=fmt, config=GenerationConfig(max_tokens=512))
            verdicts = await judge.ascore_many(
                [{"query": it["input"], "responses": [it["output_1"], it["output_2"]]}
                 for it in items], samples=1, concurrency=1, progress=False)
            await judge.aclose()
        u = Usage.total(v.usage for v in verdicts)
        uncached = call_cost(backend.model, u.prompt_tokens, u.completion_tokens)
        plain = u.prompt_tokens - u.cached_prompt_tokens - u.cache_write_tokens
        out.append([f"{api} ({backend.model})", how, str(len(verdicts)), str(u.prompt_tokens),
                    str(u.cached_prompt_tokens), str(u.cache_write_tokens), str(plain),
                    f"{100 * u.cached_prompt_tokens / max(u.prompt_tokens, 1):.1f}%",
                    f"${u.cost_usd:.4f}" if u.cost_usd is not None else "-",
                    f"${uncached:.4f}" if uncached is not None else "-"])
    return out


async def run(args: argparse.Namespace, argv: list[str]) -> None:
    load = os.getloadavg()
    print(f"CPU count {os.cpu_count()}, load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f}; reproduce: python {shlex.join([sys.argv[0], *argv])}")
    if not args.skip_engines:
        rows = await part_engines(args)
        load = os.getloadavg()
        print(f"\nPart 1: {args.items} LLMBar Natural pairs, one greedy sample each, "
              f"max_tokens={args.max_tokens}, examples={'yes' if args.examples else 'no'}; "
              f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
        print(table(["engine", "s/judgement", "parsed", "completion tok/s",
                     "prompt tok/item", "completion tok/item"], [r.cells() for r in rows]))
    rows2 = await part_caching(args)
    print(f"\nPart 2: {args.cache_items} items against the protocol server (4 chars/token; "
          "cost at list prices)\n")
    print(table(["provider", "caching", "items", "prompt tokens", "cache reads", "cache writes",
                 "uncached", "cached share", "cost", "cost if nothing cached"], rows2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5, help="LLMBar Natural pairs (part 1)")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--examples", action="store_true",
                        help="the few-shot examples in the prompt (default: none, shorter)")
    parser.add_argument("--cache-items", type=int, default=50, help="items of part 2")
    parser.add_argument("--llama-url", help="a running llama.cpp server (default: start one)")
    parser.add_argument("--skip-engines", action="store_true", help="part 2 only")
    args = parser.parse_args(argv)
    asyncio.run(run(args, list(argv) if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
