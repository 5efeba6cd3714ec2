"""Concurrency: judgekit against a bare AsyncOpenAI loop, as a user writes each.

A loopback OpenAI-compatible server (`loopback_server.py`, its own process) answers every request
with a GRM judgement after `--latency` seconds. Both sides make `--items` judgements with
`--concurrency` in flight:

* bare:     `AsyncOpenAI.chat.completions.create` under an asyncio.Semaphore, sending the same
            messages judgekit sends (rendered before the clock starts);
* judgekit: `Judge("openai:m", base_url=..., concurrency=N).score_many(items, progress=False)`.

It prints the throughput ratio (judgekit / bare; target >= 0.95) and judgekit's own CPU per
judgement on top of the SDK's (the difference of this process's CPU time between the two runs,
per judgement; target <= 1 ms), and the server's peak of requests in flight for each (judgekit
adds no cap of its own). Each side runs `--repeats` times after a warm-up, interleaved; the best
wall time and the median CPU time count. On a shared machine, other load turns CPU time into
wall time: run it on an idle one for the throughput ratio.

    python benchmarks/bench_concurrency.py            # 500 judgements, concurrency 50, 0.5 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(HERE / "loopback_server.py"),
                             "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": f"q{i}", "query": f"Question {i}: what is {i} + {i}?",
             "responses": [f"{2 * i}.", f"{2 * i + 1}, probably."]} for i in range(n)]


def prompts(batch: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The messages judgekit sends for each item, rendered up front for the bare loop, so both
    sides hand the SDK the same request bodies."""
    from judgekit.formats import GRMFormat, fence_tag
    from judgekit.prompts import resolve_examples

    fmt = GRMFormat(examples=resolve_examples(True, None))  # what Judge() builds by default
    return [[dict(m) for m in fmt.messages(it["query"], it["responses"],
                                           tag=fence_tag(it["query"], it["responses"]))]
            for it in batch]


def bare_loop(url: str, messages: list[list[dict[str, str]]], concurrency: int) -> None:
    import openai

    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=url, api_key="not-needed", max_retries=0)
        limit = asyncio.Semaphore(concurrency)

        async def one(prompt: list[dict[str, str]]) -> str:
            async with limit:
                reply = await client.chat.completions.create(
                    model="m", messages=prompt,  # type: ignore[arg-type]
                    temperature=0.0, max_tokens=512)
                return reply.choices[0].message.content or ""

        await asyncio.gather(*(one(m) for m in messages))
        await client.close()

    asyncio.run(go())


def judgekit_loop(url: str, batch: list[dict[str, Any]], concurrency: int) -> None:
    from judgekit import Judge

    verdicts = Judge("openai:m", base_url=url, concurrency=concurrency).score_many(
        batch, progress=False)
    bad = [v for v in verdicts if v.scores != [8.0, 3.0]]
    assert not bad, bad[0].error


def peak_in_flight(url: str) -> int:
    """The server's peak of requests in flight since the last call (and reset it)."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=10) as reply:
        return int(json.load(reply)["peak_in_flight"])


def measure(fn: Callable[[], None], url: str) -> tuple[float, float, int]:
    peak_in_flight(url)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu, peak_in_flight(url)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--latency", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import openai  # noqa: F401

    import judgekit  # noqa: F401  (imports are not part of the measurement)

    proc, url = start_server(args.latency)
    try:
        batch = items(args.items)
        rendered = prompts(batch)
        warm = batch[: args.concurrency]
        bare_loop(url, rendered[: args.concurrency], args.concurrency)
        judgekit_loop(url, warm, args.concurrency)
        runs: dict[str, list[tuple[float, float, int]]] = {"bare": [], "judgekit": []}
        for _ in range(args.repeats):  # interleaved, so machine load hits both alike
            runs["bare"].append(measure(lambda: bare_loop(url, rendered, args.concurrency), url))
            runs["judgekit"].append(
                measure(lambda: judgekit_loop(url, batch, args.concurrency), url))
    finally:
        proc.kill()
        proc.wait()

    ideal = args.items / args.concurrency * args.latency
    print(f"{args.items} judgements, concurrency {args.concurrency}, server latency "
          f"{args.latency}s (ideal wall time {ideal:.2f}s)")
    best = {}
    for name, got in runs.items():
        walls = [w for w, _, _ in got]
        cpus = [c for _, c, _ in got]
        best[name] = (min(walls), statistics.median(cpus))
        print(f"  {name:9s} wall {min(walls):6.2f}s (runs: {', '.join(f'{w:.2f}' for w in walls)})"
              f"  {args.items / min(walls):6.1f} judgements/s  "
              f"CPU {statistics.median(cpus):.2f}s = "
              f"{1000 * statistics.median(cpus) / args.items:.2f} ms/judgement  "
              f"peak in flight {max(p for _, _, p in got)}")
    ratio = best["bare"][0] / best["judgekit"][0]
    own = 1000 * (best["judgekit"][1] - best["bare"][1]) / args.items
    print(f"throughput ratio judgekit/bare: {ratio:.3f} (target >= 0.95)")
    print(f"judgekit's own CPU on top of the SDK's: {own:.2f} ms/judgement (target <= 1 ms)")


if __name__ == "__main__":
    main()
