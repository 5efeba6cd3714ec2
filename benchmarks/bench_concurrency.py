"""Concurrency: judgekit against a bare AsyncOpenAI loop, as a user writes each.

A loopback OpenAI-compatible server (`loopback_server.py`, its own process) answers every request
with a GRM judgement after `--latency` seconds. Both sides make `--items` judgements with
`--concurrency` in flight:

* bare:     `AsyncOpenAI.chat.completions.create` under an asyncio.Semaphore, sending the same
            messages judgekit sends (rendered before the clock starts);
* judgekit: `Judge("openai:m", base_url=..., concurrency=N).score_many(items, progress=False)`.

It prints the throughput ratio (judgekit / bare; target >= 0.95) and judgekit's own CPU per
judgement on top of the SDK's (the difference of this process's CPU time between the two runs,
per judgement; target <= 0.5 ms) with the part of it spent in Python's garbage collector (the
models a run allocates and keeps cost collections), and the server's peak of requests in flight
for each (judgekit adds no cap of its own). With `--profile`, one more run of each goes under
cProfile (the event loop's idle waits left out): the time in judgekit's own code (its modules
and prompt templates, with the jinja2 and pydantic calls they make) by module, and the functions
where judgekit's run spends more than the bare one (where the rest goes). Profiling slows Python
code down, so those figures are larger than the unprofiled ones; their shares are what count.
Each side runs `--repeats` times after a warm-up, interleaved; the best wall time and the median
CPU time count. On a shared machine, other load turns CPU time into wall time: run it on an idle
one for the throughput ratio.

    python benchmarks/bench_concurrency.py            # 500 judgements, concurrency 50, 0.5 s
    python benchmarks/bench_concurrency.py --profile  # and where judgekit's own CPU goes
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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


OWN_CODE = ("/judgekit/", "/prompts/", "jinja2/", "pydantic/")
"""Where judgekit's own CPU goes: its modules, its templates, and the jinja2 and pydantic code
they call (the SDK's own pydantic use stays the SDK's: see `profile_both`)."""


def _profile(fn: Callable[[], None]) -> dict[Any, Any]:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    return pstats.Stats(profiler).stats  # type: ignore[attr-defined, no-any-return]


def _idle(name: str) -> bool:
    """The event loop's wait for sockets (`select.epoll.poll`): idle time, not CPU."""
    return "of 'select." in name


def _where(fn: str, line: int, name: str) -> str:
    return f"{fn.split('site-packages/')[-1].split('/judgekit/', 1)[-1]}:{line} {name}"


def profile_both(url: str, batch: list[dict[str, Any]], rendered: list[list[dict[str, str]]],
                 concurrency: int, top: int = 12) -> None:
    """One bare and one judgekit run under cProfile, per judgement: judgekit's own code by
    module (a function is judgekit's when its file is, or it is jinja2 / pydantic code called
    from judgekit's), and the functions where judgekit's run spends the most time more than
    the bare one (the SDK, HTTP and asyncio work it causes)."""
    bare = _profile(lambda: bare_loop(url, rendered, concurrency))
    ours = _profile(lambda: judgekit_loop(url, batch, concurrency))

    def own(fn: str, callers: dict[Any, Any]) -> bool:
        if "/judgekit/" in fn or "/prompts/" in fn:
            return True
        return any(p in fn for p in OWN_CODE[2:]) and any(
            "/judgekit/" in c[0] or "/prompts/" in c[0] for c in callers)

    per = 1000 / len(batch)
    total = {name: sum(v[2] for (_, _, fn), v in stats.items() if not _idle(fn))
             for name, stats in (("bare", bare), ("judgekit", ours))}
    by_module: dict[str, float] = {}
    for (fn, _, _), (_, _, tottime, _, callers) in ours.items():
        if own(fn, callers):
            module = _where(fn, 0, "").rsplit(":", 1)[0]
            by_module[module] = by_module.get(module, 0.0) + tottime
    mine = sum(by_module.values())
    print(f"\nprofiles (cProfile, without the loop's idle waits; everything is slower under it): bare "
          f"{per * total['bare']:.2f} ms/judgement, judgekit {per * total['judgekit']:.2f}, of "
          f"which judgekit's own code {per * mine:.2f} ms "
          f"({100 * mine / total['judgekit']:.0f}% of its run)")
    for module, t in sorted(by_module.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {per * t:6.3f} ms  {module}")
    extra: dict[str, float] = {}
    for stats, sign in ((ours, 1.0), (bare, -1.0)):
        for (fn, line, name), v in stats.items():
            if _idle(name):
                continue
            key = _where(fn, line, name)
            extra[key] = extra.get(key, 0.0) + sign * v[2]
    print("  most time beyond the bare loop's, by function:")
    for key, t in sorted(extra.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {per * t:+6.3f} ms  {key}")


def peak_in_flight(url: str) -> int:
    """The server's peak of requests in flight since the last call (and reset it)."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=10) as reply:
        return int(json.load(reply)["peak_in_flight"])


class GCTimer:
    """CPU time spent in Python's cyclic garbage collector while it is installed: a share of
    each side's CPU that grows with the objects a run allocates and keeps (results, models)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.process_time()
        else:
            self.seconds += time.process_time() - self._start

    def __enter__(self) -> GCTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def measure(fn: Callable[[], None], url: str) -> tuple[float, float, int, float]:
    """(wall s, CPU s, peak requests in flight, CPU s in the garbage collector) of one run."""
    peak_in_flight(url)
    with GCTimer() as collector:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, peak_in_flight(url), collector.seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--latency", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true",
                   help="also profile one judgekit run: where its own CPU goes")
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
        runs: dict[str, list[tuple[float, float, int, float]]] = {"bare": [], "judgekit": []}
        for _ in range(args.repeats):  # interleaved, so machine load hits both alike
            runs["bare"].append(measure(lambda: bare_loop(url, rendered, args.concurrency), url))
            runs["judgekit"].append(
                measure(lambda: judgekit_loop(url, batch, args.concurrency), url))
        if args.profile:
            profile_both(url, batch, rendered, args.concurrency)
    finally:
        proc.kill()
        proc.wait()

    ideal = args.items / args.concurrency * args.latency
    print(f"{args.items} judgements, concurrency {args.concurrency}, server latency "
          f"{args.latency}s (ideal wall time {ideal:.2f}s)")
    best = {}
    for name, got in runs.items():
        walls = [w for w, _, _, _ in got]
        cpus = [c for _, c, _, _ in got]
        collected = statistics.median(g for _, _, _, g in got)
        best[name] = (min(walls), statistics.median(cpus), collected)
        print(f"  {name:9s} wall {min(walls):6.2f}s (runs: {', '.join(f'{w:.2f}' for w in walls)})"
              f"  {args.items / min(walls):6.1f} judgements/s  "
              f"CPU {statistics.median(cpus):.2f}s = "
              f"{1000 * statistics.median(cpus) / args.items:.2f} ms/judgement "
              f"(garbage collector {1000 * collected / args.items:.2f})  "
              f"peak in flight {max(p for _, _, p, _ in got)}")
    ratio = best["bare"][0] / best["judgekit"][0]
    own = 1000 * (best["judgekit"][1] - best["bare"][1]) / args.items
    print(f"throughput ratio judgekit/bare: {ratio:.3f} (target >= 0.95)")
    own_gc = 1000 * (best["judgekit"][2] - best["bare"][2]) / args.items
    print(f"judgekit's own CPU on top of the SDK's: {own:.2f} ms/judgement (target <= 0.5 ms), "
          f"of which {own_gc:.2f} in the garbage collector")


if __name__ == "__main__":
    main()
