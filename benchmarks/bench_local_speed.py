"""Speed of the local backend: the previous path (`fast=False`: fp32 `generate`, no prefix cache)
against the fast engine, in one run, plus llama.cpp's server on the same GGUF as the reference.

Each README and LLMBar run is its own subprocess (so cold start and peak RSS are that path's
alone), old and new back to back; decode speed is measured in one process that interleaves the
engines call by call, so all of them see the same load on a shared machine:

  * readme:  the README example (`Judge().score` on the language-tip query, 2 responses), cold
             (process start to verdict: imports, model load, first judgement) and warm (the same
             call again; then a different query, which reuses only the shared prompt prefix);
  * decode:  steady-state tokens/s after a short prompt (first to last decode step), 1 row
             greedy and k rows sampled, both paths and llama.cpp in ONE process, call by call;
  * llmbar:  LLMBar Natural, the first --items items at k=--k samples, `Judge().score_many`:
             items per minute, plus the quality figures (valid samples, accuracy, ties);
  * llama.cpp: `python -m llama_cpp.server` on the embedded GGUF, decode tokens/s from streamed
             token times, interleaved with the decode task's calls (skipped with a note when
             llama_cpp is not importable).

    python benchmarks/bench_local_speed.py                 # 20 LLMBar items at k=4
    python benchmarks/bench_local_speed.py --items 5       # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

T_START = time.perf_counter()

QUERY = "Give me one tip for learning a new language."
RESPONSES = ["Practise a little every day: fifteen minutes of daily review beats one long weekly "
             "session.", "Languages are hard."]
OTHER_QUERY = "How do I keep basil alive on a windowsill?"
OTHER_RESPONSES = ["Water it when the top of the soil is dry and pinch off the flower buds.",
                   "Basil is a plant."]
DECODE_PROMPT = "Write a long story about a dragon who learns to bake bread."

PATHS: dict[str, dict[str, Any]] = {"old": {"fast": False}, "new": {},
                                     "serial": {"co_batch": False}}
"""old: `generate`; new: the fast engine; serial: the fast engine with calls one at a time
(`co_batch=False`, the engine before calls shared its decode batch)."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def _emit(**row: Any) -> None:
    row["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    print("RESULT " + json.dumps(row), flush=True)


# -- workers (one task, one path, one process) ---------------------------------------------------
def _local_judge(path: str) -> tuple[Any, Any]:
    """A default `Judge` on this path's embedded backend, and that backend (every path is the
    local TransformersBackend)."""
    from judgekit import Judge
    from judgekit.backends.local import TransformersBackend

    judge = Judge(**PATHS[path])
    assert isinstance(judge.backend, TransformersBackend)
    return judge, judge.backend


def worker_readme(path: str) -> None:
    judge, backend = _local_judge(path)
    t0 = time.perf_counter()
    v = judge.score(QUERY, RESPONSES)
    cold = time.perf_counter() - T_START
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    w = judge.score(QUERY, RESPONSES)
    warm = time.perf_counter() - t1
    other, o = None, None
    if path != "old":  # without a prefix cache another item costs what the first did
        t2 = time.perf_counter()
        o = judge.score(OTHER_QUERY, OTHER_RESPONSES)
        other = round(time.perf_counter() - t2, 2)
    engine = backend.engine
    _emit(task="readme", path=path, cold_s=round(cold, 2), first_call_s=round(first, 2),
          load_s=round(backend.load_seconds or 0.0, 2), warm_s=round(warm, 2),
          warm_other_item_s=other, scores=v.scores, warm_scores=w.scores,
          other_scores=o.scores if o else None, status=v.samples[0].status.value,
          prompt_tokens=v.usage.prompt_tokens, completion_tokens=v.usage.completion_tokens,
          other_completion_tokens=o.usage.completion_tokens if o else None,
          weights=backend.weights_summary,
          decode_step="written-out" if engine is not None and engine.step is not None
          else "generic")


class _Stamper:
    """Per-step timestamps of one decode call, for any engine."""

    def __init__(self) -> None:
        self.stamps: list[float] = []


def _decode_rate(backend: Any, stamper: _Stamper, messages: list[Any], n: int, tokens: int,
                 temperature: float) -> float:
    """Tokens/s between the first and the last decode step of one call (prefill excluded)."""
    from judgekit.config import GenerationConfig

    engine = backend._engine
    stamper.stamps.clear()
    cfg = GenerationConfig(max_tokens=tokens, temperature=temperature, seed=1)
    if engine is not None:
        steps, seconds = engine.stats.decode_steps, engine.stats.decode_s
    backend.generate_sync(messages, cfg, n=n)
    if engine is not None:
        steps, seconds = engine.stats.decode_steps - steps, engine.stats.decode_s - seconds
    else:
        steps = len(stamper.stamps) - 1
        seconds = stamper.stamps[-1] - stamper.stamps[0]
    return n * steps / seconds


def worker_decode(paths: list[str], tokens: int, rows: int, rounds: int) -> None:
    """Steady-state decoding of every engine in ONE process, interleaved call by call, so that
    all see the same load: the old and new backends, 1 row (greedy) and `rows` rows (sampled),
    and llama.cpp's server (1 stream) when llama_cpp is importable. Median over `rounds`."""
    import statistics

    from transformers import StoppingCriteria, StoppingCriteriaList

    from judgekit.backends.local import TransformersBackend
    from judgekit.config import GenerationConfig

    messages = [{"role": "user", "content": DECODE_PROMPT}]
    backends: dict[str, tuple[Any, _Stamper]] = {}
    for path in paths:
        backend = TransformersBackend.from_spec("embedded", **PATHS[path])
        backend.generate_sync(messages, GenerationConfig(max_tokens=4))  # load and warm up
        stamper = _Stamper()
        if backend._engine is None:  # the generate path: a stopping criterion stamps steps

            class Stamp(StoppingCriteria):
                def __init__(self, into: _Stamper) -> None:
                    self.into = into

                def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                    import torch

                    self.into.stamps.append(time.perf_counter())
                    return torch.zeros(input_ids.shape[0], dtype=torch.bool)

            model = backend._model
            model.generate = (lambda gen, st: lambda **kw: gen(
                **kw, stopping_criteria=StoppingCriteriaList([Stamp(st)])))(model.generate,
                                                                            stamper)
        backends[path] = (backend, stamper)
    server = _LlamaServer.start_if_available()
    samples: dict[str, list[float]] = {}
    try:
        if server is not None:
            server.rate(4)
        for _ in range(rounds):
            for path, (backend, stamper) in backends.items():
                samples.setdefault(f"{path} rows1", []).append(
                    _decode_rate(backend, stamper, messages, 1, tokens, 0.0))
            if server is not None:
                samples.setdefault("llama.cpp rows1", []).append(server.rate(tokens))
            for path, (backend, stamper) in backends.items():
                samples.setdefault(f"{path} rows{rows}", []).append(
                    _decode_rate(backend, stamper, messages, rows, tokens, 0.5))
    finally:
        if server is not None:
            server.stop()
    result = {key: round(statistics.median(vals), 1) for key, vals in samples.items()}
    threads = {path: b.engine.threads.best if b.engine is not None else None
               for path, (b, _) in backends.items()}
    _emit(task="decode", path="all", rates=result, rounds=rounds, tokens=tokens,
          threads=threads, llamacpp=server is not None,
          note="llama.cpp with n_batch 1: this llama-cpp-python build segfaults on multi-token "
               "batches; that only slows its prefill, not its decoding")


class _LlamaServer:
    """`python -m llama_cpp.server` on the embedded GGUF, on a free local port."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, prompt: str) -> None:
        self.proc, self.port, self.prompt = proc, port, prompt

    @classmethod
    def start_if_available(cls) -> _LlamaServer | None:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            return None
        from transformers import AutoTokenizer

        from judgekit.embedded import embedded_gguf_path, embedded_model_dir

        tok = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
        prompt = tok.apply_chat_template([{"role": "user", "content": DECODE_PROMPT}],
                                         tokenize=False, add_generation_prompt=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path()),
             "--port", str(port), "--n_ctx", "2048", "--n_batch", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5)
                return cls(proc, port, prompt)
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    proc.terminate()
                    raise RuntimeError("llama_cpp.server did not start") from None
                time.sleep(1)

    def rate(self, tokens: int) -> float:
        """Tokens/s between the first and the last streamed token (prefill excluded)."""
        body = json.dumps({"prompt": self.prompt, "max_tokens": tokens, "temperature": 0.0,
                           "stream": True}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/completions", body,
                                     {"Content-Type": "application/json"})
        stamps: list[float] = []
        with urllib.request.urlopen(req, timeout=600) as resp:
            for line in resp:
                if line.startswith(b"data: {"):
                    stamps.append(time.perf_counter())
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def worker_llmbar(path: str, items: int, k: int) -> None:
    from judgekit.bench.datasets import load_dataset

    data = load_dataset("llmbar", subset="llmbar-natural", limit=items)
    judge, backend = _local_judge(path)
    engine = backend.engine  # loads the model outside the timed part
    t = time.perf_counter()
    verdicts = judge.score_many([{"id": it.id, "query": it.query, "responses": it.responses}
                                 for it in data], samples=k, progress=False)
    seconds = time.perf_counter() - t
    batching: dict[str, Any] = {}
    if engine is not None:
        stats = engine.stats
        batching = {"rows_per_step": round(stats.decode_tokens / max(stats.decode_steps, 1), 1),
                    "peak_rows": stats.peak_rows, "decode_s": round(stats.decode_s, 1),
                    "prefill_s": round(stats.prefill_s, 1)}
    samples = [s for v in verdicts for s in v.samples]
    correct = sum(1 for v, it in zip(verdicts, data, strict=True)
                  if v.best is not None and v.best == it.label.best_index)
    _emit(task="llmbar", path=path, items=len(data), k=k, seconds=round(seconds, 1),
          items_per_min=round(60 * len(data) / seconds, 2),
          valid_samples=sum(1 for s in samples if s.valid), samples=len(samples),
          forced=sum(1 for s in samples if s.status.value == "forced"),
          accuracy=round(correct / len(data), 3), ties=sum(1 for v in verdicts if v.tie),
          errors=sum(1 for v in verdicts if v.error),
          completion_tokens=sum(v.usage.completion_tokens for v in verdicts),
          scores=[v.scores for v in verdicts], **batching)


# -- the orchestrator ---------------------------------------------------------------------------
def run_worker(args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-X", "utf8", __file__, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            row: dict[str, Any] = json.loads(line[len("RESULT "):])
            print("  " + json.dumps(row), flush=True)
            return row
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    print(f"  worker {' '.join(args)} failed: {' | '.join(tail)}", flush=True)
    return {"failed": True, "error": " | ".join(tail)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20, help="LLMBar Natural items (default 20)")
    parser.add_argument("--old-items", type=int, default=None,
                        help="run the old path on only the first N items (it is slow); the new "
                        "path then also runs on those N, for the ratio, besides --items")
    parser.add_argument("--k", type=int, default=4, help="samples per item (default 4)")
    parser.add_argument("--decode-tokens", type=int, default=96)
    parser.add_argument("--decode-rows", type=int, default=4)
    parser.add_argument("--decode-rounds", type=int, default=3)
    parser.add_argument("--paths", default="old,new",
                        help="which paths to run: old, new, serial (the fast engine with calls "
                        "one at a time)")
    parser.add_argument("--tasks", default="readme,decode,llmbar")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in --out and run only the missing ones")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="new", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "readme":
        worker_readme(args.path)
        return 0
    if args.worker == "decode":
        worker_decode(args.path.split(","), args.decode_tokens, args.decode_rows,
                      args.decode_rounds)
        return 0
    if args.worker == "llmbar":
        worker_llmbar(args.path, args.items, args.k)
        return 0
    paths = [p for p in args.paths.split(",") if p]
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(paths) - set(PATHS)) + sorted(set(tasks) - {"readme", "decode", "llmbar"})
    if args.worker is not None or unknown:  # else a worker would run the orchestrator again
        parser.error(f"unknown task, path or worker: {', '.join(unknown) or args.worker}")

    from judgekit.embedded import embedded_model_dir

    embedded_model_dir()  # materialise once, outside every timing
    load = os.getloadavg()
    print(f"CPU count {os.cpu_count()}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}",
          flush=True)
    rows: list[dict[str, Any]] = []
    if args.out:  # runs/ is not in a fresh clone (it is git-ignored)
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    if args.resume and args.out and os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as fh:
            rows = [r for r in json.load(fh) if not r.get("failed")]
        print(f"resuming: {len(rows)} rows from {args.out}", flush=True)
    done = {(r.get("task"), r.get("path")) for r in rows}

    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        if args.out:  # after every row, so an interrupted run can --resume
            with open(args.out, "w", encoding="utf-8") as fh:
                json.dump(rows, fh, indent=1)

    common = ["--items", str(args.items), "--k", str(args.k), "--decode-tokens",
              str(args.decode_tokens), "--decode-rows", str(args.decode_rows),
              "--decode-rounds", str(args.decode_rounds)]
    for task in tasks:
        if task == "decode":  # one process, all engines interleaved (see worker_decode)
            if ("decode", "all") not in done:
                print("decode: " + ", ".join(paths) + " and llama.cpp, interleaved", flush=True)
                keep(run_worker(["--worker", "decode", "--path", ",".join(paths), *common]))
            continue
        # alternate the order per task so neither path always runs first
        order = paths if tasks.index(task) % 2 == 0 else list(reversed(paths))
        reduced = task == "llmbar" and args.old_items and args.old_items < args.items
        for path in order:
            if (task, path) in done:
                continue
            print(f"{task} / {path}", flush=True)
            extra = ["--items", str(args.old_items)] if reduced else []
            keep(run_worker(["--worker", task, "--path", path, *common, *extra]))
        if reduced and "new" in paths and (task, "new-all") not in done:
            print(f"{task} / new, all {args.items} items", flush=True)
            row = run_worker(["--worker", task, "--path", "new", *common])
            row["path"] = "new-all"
            keep(row)
    report(rows)
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"reproduce: python {shlex.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])}")
    return 0


def report(rows: list[dict[str, Any]]) -> None:
    def get(task: str, path: str) -> dict[str, Any]:
        return next((r for r in rows if r.get("task") == task and r.get("path") == path), {})

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.1f}x" if a and b else "n/a"

    print()
    old, new = get("readme", "old"), get("readme", "new")
    if old or new:
        print(f"README example   cold {old.get('cold_s')} s -> {new.get('cold_s')} s "
              f"({ratio(old.get('cold_s'), new.get('cold_s'))}); warm {old.get('warm_s')} s -> "
              f"{new.get('warm_s')} s ({ratio(old.get('warm_s'), new.get('warm_s'))}, target "
              f">= 4x); another item, warm: {new.get('warm_other_item_s')} s "
              f"({ratio(old.get('warm_s'), new.get('warm_other_item_s'))} against the old warm "
              f"call)")
    dec = get("decode", "all")
    if dec:
        rates = dec["rates"]
        o1, n1, r1 = rates.get("old rows1"), rates.get("new rows1"), rates.get("llama.cpp rows1")
        key = next((k.split()[1] for k in rates if not k.endswith("rows1")), "")
        ok, nk = rates.get(f"old {key}"), rates.get(f"new {key}")
        print(f"decode tok/s     1 row {o1} -> {n1} ({ratio(n1, o1)}); {key} {ok} -> {nk} "
              f"({ratio(nk, ok)}); llama.cpp 1 row {r1 or 'skipped: llama_cpp not importable'}"
              f" (new / llama.cpp: 1 row {f'{n1 / r1:.2f}' if n1 and r1 else 'n/a'}, "
              f"{key} {f'{nk / r1:.2f}' if nk and r1 else 'n/a'}; target >= 0.5)")
    full = get("llmbar", "new-all")
    if full:
        print(f"LLMBar, new path, all {full['items']} items at k={full['k']}: "
              f"{full['items_per_min']} items/min, valid {full['valid_samples']}/"
              f"{full['samples']}, accuracy {full['accuracy']}, ties {full['ties']}")
    old, new = get("llmbar", "old"), get("llmbar", "new")
    if old or new:
        print(f"LLMBar items/min {old.get('items_per_min')} -> {new.get('items_per_min')} "
              f"({ratio(new.get('items_per_min'), old.get('items_per_min'))}, target >= 4x) "
              f"on {new.get('items') or old.get('items')} items at k={new.get('k') or old.get('k')}")
    serial = get("llmbar", "serial")
    if serial and new:
        print(f"LLMBar items/min, calls one at a time {serial['items_per_min']} -> sharing the "
              f"decode batch {new['items_per_min']} "
              f"({ratio(new['items_per_min'], serial['items_per_min'])})")
    if old or new or serial:
        for name, r in (("old", old), ("serial", serial), ("new", new)):
            if r:
                print(f"  {name}: valid {r['valid_samples']}/{r['samples']} (forced "
                      f"{r['forced']}), accuracy {r['accuracy']}, ties {r['ties']}, errors "
                      f"{r['errors']}, completion tokens {r['completion_tokens']}"
                      + (f", rows per decode step {r['rows_per_step']} (peak {r['peak_rows']}),"
                         f" decode {r['decode_s']} s, prefill {r['prefill_s']} s"
                         if "rows_per_step" in r else ""))
    peaks = {f"{r.get('task')}/{r.get('path')}": r.get("peak_rss_mb") for r in rows
             if "peak_rss_mb" in r}
    print(f"peak RSS MB      {peaks} (target < 2048 for the embedded model)")


if __name__ == "__main__":
    raise SystemExit(main())
