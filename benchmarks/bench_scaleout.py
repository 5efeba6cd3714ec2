"""Scale-out on the loopback server: online vs Ray (items/s), and batch vs online (HTTP requests
and cost), for the same items.

The server is `tests/support/batch_fake.py`, a protocol fake of OpenAI's chat completions, files
and batches endpoints on 127.0.0.1 that answers with a fixed, parseable judgement (optionally
after `--delay` seconds, a model's latency). So the figures measure judgekit's own work
(prompting, HTTP, parsing, voting) and the shape of each mode, never a model:

  * online:  `Judge.ascore_many`, `--concurrency` items in flight, in this process;
  * ray:     `judgekit.ray.RayScorer` with `--workers` actors (each its own Judge and
             `--concurrency` items in flight) on a local Ray instance of 2 CPUs; Ray's start-up
             is timed apart;
  * batch:   `batch_api.submit_batch` + `acollect` (one job: upload, create, polls, download).

Cost: the loopback server is free, so tokens are priced as `--price-model` (default gpt-4o-mini)
at list prices: online at the standard price, batch at the batch price (judgekit.cost).

    python benchmarks/bench_scaleout.py --items 1000 --samples 2
    python benchmarks/bench_scaleout.py --items 1000 --samples 2 --delay 0.05 --skip-batch
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the loopback server lives with the tests

from support.batch_fake import BatchFake  # noqa: E402

from judgekit import Judge, Usage, Verdict  # noqa: E402
from judgekit.batch_api import submit_batch  # noqa: E402
from judgekit.cost import call_cost  # noqa: E402
from judgekit.judge_spec import JudgeSpec  # noqa: E402


def make_items(n: int) -> list[dict[str, Any]]:
    return [{"id": f"it{i}", "query": f"jk-item-it{i} Question number {i}: which answer is right?",
             "responses": [f"GOOD: answer {i}, with reasons.", f"answer {i + 1}, without."]}
            for i in range(n)]


def options(fake: BatchFake, args: argparse.Namespace) -> dict[str, Any]:
    # The fake speaks OpenAI's own protocol, strict JSON schemas included.
    return {"base_url": fake.openai_url, "api_key": "sk-bench", "examples": False,
            "max_tokens": 256, "concurrency": args.concurrency, "seed": 0,
            "server_flavour": "openai"}


def priced(judge: Judge) -> Judge:
    """Price the loopback model's tokens as the hosted `--price-model` (it is free otherwise)."""
    judge.backend.local = False  # type: ignore[attr-defined]
    return judge


def summary(verdicts: list[Verdict]) -> tuple[Usage, int]:
    return Usage.total(v.usage for v in verdicts), sum(v.best == 0 for v in verdicts)


def run_online(fake: BatchFake, items: list[dict[str, Any]], args: argparse.Namespace
               ) -> dict[str, Any]:
    judge = priced(Judge(f"openai:{args.price_model}", **options(fake, args)))
    before = sum(fake.http.values())
    start = time.perf_counter()
    verdicts = judge.score_many(items, args.samples, progress=False)
    seconds = time.perf_counter() - start
    usage, right = summary(verdicts)
    return {"mode": "online", "seconds": seconds, "http": sum(fake.http.values()) - before,
            "usage": usage, "right": right}


def run_ray(fake: BatchFake, items: list[dict[str, Any]], args: argparse.Namespace
            ) -> dict[str, Any]:
    import ray

    from judgekit.ray import RayScorer

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    init = time.perf_counter() - start
    # the actors' backends see a loopback URL, so their cost is 0.0: priced here from tokens
    spec = JudgeSpec(model=f"openai:{args.price_model}", options=options(fake, args))
    scorer = RayScorer(spec, workers=args.workers, batch_size=args.batch_size, num_cpus=0.5)
    before = sum(fake.http.values())
    start = time.perf_counter()
    verdicts = asyncio.run(scorer.ascore_many(items, args.samples))
    seconds = time.perf_counter() - start
    ray.shutdown()
    usage, right = summary(verdicts)
    usage = usage.model_copy(update={"cost_usd": call_cost(
        args.price_model, usage.prompt_tokens, usage.completion_tokens)})
    return {"mode": f"ray, {args.workers} workers", "seconds": seconds, "init": init,
            "http": sum(fake.http.values()) - before, "usage": usage, "right": right}


def run_batch(fake: BatchFake, items: list[dict[str, Any]], args: argparse.Namespace
              ) -> dict[str, Any]:
    judge = priced(Judge(f"openai:{args.price_model}", **options(fake, args)))
    before = sum(fake.http.values())
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        handle = submit_batch(judge, items, args.samples, run_dir=run_dir)
        verdicts = handle.collect(poll_interval=0.0)
    seconds = time.perf_counter() - start
    usage, right = summary(verdicts)
    return {"mode": "batch", "seconds": seconds, "http": sum(fake.http.values()) - before,
            "usage": usage, "right": right}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--samples", "-k", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8, help="items in flight per judge")
    p.add_argument("--workers", type=int, default=2, help="Ray actors")
    p.add_argument("--batch-size", type=int, default=50, help="items per Ray batch")
    p.add_argument("--delay", type=float, default=0.0, help="seconds per online answer")
    p.add_argument("--price-model", default="gpt-4o-mini")
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--skip-batch", action="store_true")
    args = p.parse_args()
    items = make_items(args.items)
    rows = []
    with BatchFake(delay=args.delay) as fake:
        rows.append(run_online(fake, items, args))
        if not args.skip_ray:
            rows.append(run_ray(fake, items, args))
        if not args.skip_batch:
            rows.append(run_batch(fake, items, args))
    print(f"$ python {shlex.join(['benchmarks/bench_scaleout.py', *sys.argv[1:]])}")
    print(f"{args.items} items x {args.samples} samples, 2 responses each, concurrency "
          f"{args.concurrency}, answer delay {args.delay:g}s; cost as {args.price_model}")
    print(f"{'mode':<18} {'seconds':>8} {'items/s':>8} {'HTTP requests':>14} {'cost USD':>9}"
          f" {'best right':>10}")
    for r in rows:
        cost = r["usage"].cost_usd if r["usage"] is not None else None
        extra = f"  (+ {r['init']:.1f} s Ray start-up)" if "init" in r else ""
        print(f"{r['mode']:<18} {r['seconds']:8.1f} {args.items / r['seconds']:8.1f} "
              f"{r['http']:14d} {cost if cost is not None else float('nan'):9.4f} "
              f"{r['right']:10d}{extra}")


if __name__ == "__main__":
    main()
