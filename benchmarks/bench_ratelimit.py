"""Rate limits do not burst: the most requests that reach a server in any window of t seconds,
against the bound `limit * t / 60 + burst`, with one backend shared by several threads, each
its own event loop with many requests at once (how `Judge.score()`, notebooks and threads use
one judge).

Two measurements, each printing for every window t the most events seen in t seconds, the
bound, and their ratio (at most 1: nothing beyond the bound):

* the bucket: `TokenBucket` shared by the threads, each acquiring its share at once; the event
  is the moment an acquire returns (what the limiter grants);
* at the server: a backend with `--rpm` requests per minute and the default burst (one second's
  worth) or `--burst`, against a loopback OpenAI-compatible server (`loopback_server.py`, its
  own process) that records when each request arrives. Every thread first sends one warm-up
  request (its SDK client and first connection made; its arrival is not counted, its budget
  is), then all of them send their share at once. Arrival times also carry each request's own
  send overhead after its grant (the SDK building it, threads waiting for the GIL).

    python benchmarks/bench_ratelimit.py                 # 600 rpm, 4 threads x 15 requests
    python benchmarks/bench_ratelimit.py --rpm 60        # the issue's 60 rpm (about 1 minute)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import urllib.request

from bench_concurrency import start_server


def most_in_a_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    return max(sum(1 for t in stamps[i:] if t - s <= window) for i, s in enumerate(stamps))


def table(title: str, stamps: list[float], rate: float, burst: float) -> float:
    print(title)
    print(f"{'window t':>9} {'most in t':>10} {'bound':>7} {'ratio':>6}")
    worst = 0.0
    for window in (0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0):
        most = most_in_a_window(stamps, window)
        bound = rate * window + burst
        worst = max(worst, most / bound)
        print(f"{window:>8g}s {most:>10d} {bound:>7.1f} {most / bound:>6.2f}")
    print(f"worst ratio {worst:.2f}")
    return worst


def bucket_grants(rpm: float, burst: int | None, threads: int, per_thread: int) -> list[float]:
    """When each acquire of one shared TokenBucket returns, from `threads` event loops."""
    from judgekit.ratelimit import TokenBucket

    bucket = TokenBucket(rpm, 60.0, burst=burst)
    grants: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(threads)

    def worker() -> None:
        async def one() -> None:
            await bucket.acquire(1)
            with lock:
                grants.append(time.monotonic())

        async def go() -> None:
            await asyncio.gather(*(one() for _ in range(per_thread)))

        ready.wait()
        asyncio.run(go())

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return grants


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rpm", type=float, default=600.0, help="requests per minute (default 600)")
    p.add_argument("--burst", type=int, help="requests at once (default: one second's worth)")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--per-thread", type=int, default=15, help="requests each thread sends")
    p.add_argument("--latency", type=float, default=0.05, help="the server's answer latency")
    args = p.parse_args()

    from judgekit.backends.openai_backend import OpenAIBackend
    from judgekit.config import GenerationConfig

    proc, url = start_server(args.latency)
    try:
        backend = OpenAIBackend("m", base_url=url, requests_per_minute=args.rpm,
                                burst=args.burst, server_flavour="generic")
        cfg = GenerationConfig(max_tokens=16, timeout=30)
        stats = url.removesuffix("/v1") + "/stats"

        def forget_warm_ups() -> None:
            urllib.request.urlopen(stats).read()

        ready = threading.Barrier(args.threads, action=forget_warm_ups)

        def worker(t: int) -> None:
            async def go() -> None:
                await backend.generate([{"role": "user", "content": f"warm {t}"}], cfg)
                await asyncio.to_thread(ready.wait)
                await asyncio.gather(*(backend.generate(
                    [{"role": "user", "content": f"q {t} {i}"}], cfg)
                    for i in range(args.per_thread)))
            asyncio.run(go())

        start = time.monotonic()
        pool = [threading.Thread(target=worker, args=(t,)) for t in range(args.threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        elapsed = time.monotonic() - start
        with urllib.request.urlopen(stats) as response:
            stamps = json.loads(response.read())["arrivals"]
    finally:
        proc.kill()
    rate = args.rpm / 60
    burst = args.burst if args.burst is not None else max(1.0, rate)
    n = args.threads * args.per_thread
    print(f"{args.rpm:g} requests per minute, burst {burst:g}, {args.threads} threads x "
          f"{args.per_thread} at once; the bound is limit * t / 60 + burst")
    table(f"\nthe bucket: {n} grants", bucket_grants(args.rpm, args.burst, args.threads,
                                                     args.per_thread), rate, burst)
    table(f"\nat the server: {len(stamps)} requests in {elapsed:.1f} s", stamps, rate, burst)


if __name__ == "__main__":
    main()
