"""The sqlite response cache and CachedBackend: keys, sample indices, billing, concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from support.fault_server import FaultServer

from judgekit.backends.base import Backend, BackendCapabilities, Completion, GenerationResult
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.cache import (
    CachedBackend,
    ResponseCache,
    cache_key,
    default_cache_path,
    generate_samples,
    wrap_with_cache,
)
from judgekit.config import GenerationConfig
from judgekit.errors import CacheError
from judgekit.retry import RetryPolicy
from judgekit.schema import Message, Usage

CFG = GenerationConfig(temperature=0.7, max_tokens=32, timeout=5.0)
MSGS: list[Message] = [{"role": "user", "content": "jk-item-c Which is better?"}]


class CountingBackend(Backend):
    CAPABILITIES = BackendCapabilities(complete_under_grammar=True)
    """Returns numbered completions and records every call's n."""

    spec = "fake:counter"

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.made = 0

    async def generate(self, messages: list[Message], config: GenerationConfig,
                       n: int = 1) -> GenerationResult:
        self.calls.append(n)
        out = []
        for _ in range(n):
            out.append(Completion(text=f"sample-{self.made}"))
            self.made += 1
        return GenerationResult(completions=out,
                                usage=Usage(prompt_tokens=10, completion_tokens=5 * n, calls=1))

    async def complete_under_grammar(self, messages: list[Message], prefixes: list[str],
                                     grammar: str, config: GenerationConfig) -> GenerationResult:
        return GenerationResult(completions=[Completion(text="Scores: \\boxed{5}")])

    async def aclose(self) -> None:
        return None


def test_key_covers_what_changes_outputs_and_not_timeout() -> None:
    base = cache_key("openai:m", MSGS, CFG, 0)
    assert base == cache_key("openai:m", MSGS, CFG.with_(timeout=1.0), 0)
    assert len(base) == 64
    assert base != cache_key("openai:m", MSGS, CFG, 1)
    assert base != cache_key("openai:other", MSGS, CFG, 0)
    assert base != cache_key("openai:m", MSGS, CFG.with_(temperature=0.2), 0)
    assert base != cache_key("openai:m", MSGS, CFG.with_(seed=1), 0)
    assert base != cache_key("openai:m", [{"role": "user", "content": "other"}], CFG, 0)


def test_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JUDGEKIT_HOME", str(tmp_path))
    monkeypatch.delenv("JUDGEKIT_CACHE_FILE", raising=False)
    assert default_cache_path() == tmp_path / "cache.sqlite"
    cache = ResponseCache()
    assert cache.path == tmp_path / "cache.sqlite" and cache.path.exists()
    with sqlite3.connect(cache.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_second_run_bills_nothing(tmp_path: Path) -> None:
    inner = CountingBackend()
    cached = CachedBackend(inner, tmp_path / "c.sqlite")
    first = await cached.generate(MSGS, CFG, n=4)
    assert inner.calls == [4]
    assert first.usage.calls == 1 and first.usage.cached_calls == 0
    second = await cached.generate(MSGS, CFG, n=4)
    assert inner.calls == [4]
    assert [c.text for c in second.completions] == [c.text for c in first.completions]
    assert second.usage == Usage(cached_calls=4)
    assert second.usage.total_tokens == 0 and second.usage.cost_usd is None


async def test_partial_hits_compute_only_missing_indices(tmp_path: Path) -> None:
    inner = CountingBackend()
    cached = CachedBackend(inner, tmp_path / "c.sqlite")
    await cached.generate(MSGS, CFG, n=2)  # indices 0, 1
    more = await cached.generate(MSGS, CFG, n=5)  # 0, 1 cached; 2, 3, 4 new
    assert inner.calls == [2, 3]
    assert [c.text for c in more.completions] == [f"sample-{i}" for i in range(5)]
    assert more.usage.cached_calls == 2 and more.usage.calls == 1


async def test_sample_offset_gives_distinct_samples_across_calls(tmp_path: Path) -> None:
    inner = CountingBackend()
    cached = CachedBackend(inner, tmp_path / "c.sqlite")
    # k=3 samples drawn one call at a time: sample j lives at index j.
    texts = [(await cached.generate(MSGS, CFG, 1, sample_offset=j)).completions[0].text
             for j in range(3)]
    assert texts == ["sample-0", "sample-1", "sample-2"]
    # The same indices asked as one call of n=3 are all hits, in index order.
    again = await cached.generate(MSGS, CFG, n=3)
    assert [c.text for c in again.completions] == texts and again.usage.cached_calls == 3
    # Without the offset, a separate call re-reads index 0 (the collapse the offset prevents).
    same = await cached.generate(MSGS, CFG, 1)
    assert same.completions[0].text == "sample-0"
    # generate_samples passes the offset through for cached backends and drops it otherwise.
    r = await generate_samples(cached, MSGS, CFG, 1, sample_offset=5)
    assert r.completions[0].text == "sample-3"
    plain = await generate_samples(inner, MSGS, CFG, 2, sample_offset=5)
    assert len(plain.completions) == 2


async def test_forwards_optional_methods_and_protocols(tmp_path: Path) -> None:
    inner = CountingBackend()
    cached = CachedBackend(inner, tmp_path / "c.sqlite")
    assert isinstance(cached, Backend)
    assert cached.capabilities == inner.capabilities
    forced = await cached.complete_under_grammar(MSGS, ["x"], "root ::= \"x\"", CFG)
    assert forced.completions[0].text.startswith("Scores:")
    assert cached.spec == "fake:counter" and inner.made == 0
    with pytest.raises(AttributeError):
        _ = cached.no_such_thing  # type: ignore[attr-defined]
    assert "CachedBackend(" in repr(cached)


class BatchedBackend(CountingBackend):
    """Like a local backend: `generate_many` does every prompt in one batched call."""

    spec = "fake:batched"
    CAPABILITIES = BackendCapabilities(batched=True)

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []

    async def generate_many(self, requests: list[tuple[list[Message], int]],
                            config: GenerationConfig) -> list[GenerationResult]:
        self.batches.append([n for _, n in requests])
        out = []
        for messages, n in requests:
            texts = [f"{messages[0]['content']}#{self.made + i}" for i in range(n)]
            self.made += n
            out.append(GenerationResult(completions=[Completion(text=t) for t in texts],
                                        usage=Usage(prompt_tokens=10, calls=1)))
        return out


async def test_generate_many_is_cached_and_stays_batched(tmp_path: Path) -> None:
    inner = BatchedBackend()
    cached = CachedBackend(inner, tmp_path / "c.sqlite")
    a: list[Message] = [{"role": "user", "content": "A"}]
    b: list[Message] = [{"role": "user", "content": "B"}]
    first = await cached.generate_many([(a, 2), (b, 1)], CFG)
    assert inner.batches == [[2, 1]]
    assert [c.text for c in first[0].completions] == ["A#0", "A#1"]
    second = await cached.generate_many([(a, 3), (b, 1)], CFG)  # A: 1 missing, B: all cached
    assert inner.batches == [[2, 1], [1]]
    assert [c.text for c in second[0].completions] == ["A#0", "A#1", "A#3"]
    assert second[1].usage == Usage(cached_calls=1)
    third = await cached.generate_many([(a, 3), (b, 1)], CFG)
    assert inner.batches == [[2, 1], [1]] and sum(r.usage.calls for r in third) == 0
    # A backend that does not batch gets one call per prompt, still cached.
    plain = CountingBackend()
    plain_cached = CachedBackend(plain, tmp_path / "d.sqlite")
    await plain_cached.generate_many([(a, 2), (b, 1)], CFG)
    await plain_cached.generate_many([(a, 2), (b, 1)], CFG)
    assert sorted(plain.calls) == [1, 2]


def test_wrap_with_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGEKIT_HOME", str(tmp_path))
    monkeypatch.delenv("JUDGEKIT_CACHE_FILE", raising=False)
    inner = CountingBackend()
    assert wrap_with_cache(inner, None) is inner and wrap_with_cache(inner, False) is inner
    default = wrap_with_cache(inner, True)
    assert isinstance(default, CachedBackend)
    assert default.cache.path == tmp_path / "cache.sqlite"
    assert wrap_with_cache(default, True) is default
    by_path = wrap_with_cache(inner, tmp_path / "x.sqlite")
    assert isinstance(by_path, CachedBackend) and by_path.cache.path == tmp_path / "x.sqlite"
    shared = ResponseCache(tmp_path / "y.sqlite")
    assert isinstance(w := wrap_with_cache(inner, shared), CachedBackend) and w.cache is shared


async def test_errors_are_not_cached(tmp_path: Path) -> None:
    class Failing(CountingBackend):
        async def generate(self, messages: list[Message], config: GenerationConfig,
                           n: int = 1) -> GenerationResult:
            raise RuntimeError("down")

    cached = CachedBackend(Failing(), tmp_path / "c.sqlite")
    with pytest.raises(RuntimeError):
        await cached.generate(MSGS, CFG)
    assert len(cached.cache) == 0


async def no_sleep(_: float) -> None:
    return None


async def test_real_backend_resume_costs_zero_calls(fault_server: FaultServer,
                                                    tmp_path: Path) -> None:
    """Against the fault server through the real SDK: a second run is served from the file."""
    fault_server.max_choices = 1  # with top-ups, so several requests feed one cached call
    fault_server.schedule = {"c": ["500"]}
    path = tmp_path / "run.sqlite"

    async def run() -> GenerationResult:
        b = CachedBackend(OpenAIBackend("gpt-4o", base_url=fault_server.openai_url,
                                        api_key="sk-test-key",
                                        retry=RetryPolicy(sleep=no_sleep)), path)
        try:
            return await b.generate(MSGS, CFG, n=3)
        finally:
            await b.aclose()

    first = await run()
    assert first.usage.calls == 3 and first.usage.retries == 1
    assert fault_server.counts["c"] == 4
    second = await run()
    assert second.usage.calls == 0 and second.usage.cached_calls == 3
    assert second.usage.prompt_tokens == second.usage.completion_tokens == 0
    assert fault_server.counts["c"] == 4  # the server saw nothing new
    assert [c.text for c in second.completions] == [c.text for c in first.completions]


def test_concurrent_thread_writers_lose_nothing(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "t.sqlite")
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(60):
                key = cache_key("fake:t", MSGS, CFG, t * 1000 + i)
                cache.put_many("fake:t", [(key, i, Completion(text=f"{t}-{i}"))])
                # Overlapping keys: every thread also writes the shared ones.
                shared = cache_key("fake:t", MSGS, CFG, 10**6 + i % 10)
                cache.put_many("fake:t", [(shared, i, Completion(text=f"shared-{t}"))])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(cache) == 8 * 60 + 10
    keys = [cache_key("fake:t", MSGS, CFG, t * 1000 + i) for t in range(8) for i in range(60)]
    got = cache.get_many(keys)
    assert len(got) == 480 and got[keys[61]].text == "1-1"


async def test_concurrent_async_tasks_share_one_cache(tmp_path: Path) -> None:
    inner = CountingBackend()
    cached = CachedBackend(inner, tmp_path / "a.sqlite")
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(40)]
    await asyncio.gather(*(cached.generate(p, CFG, n=2) for p in prompts))
    assert len(cached.cache) == 80
    again = await asyncio.gather(*(cached.generate(p, CFG, n=2) for p in prompts))
    assert sum(r.usage.cached_calls for r in again) == 80 and len(inner.calls) == 40


_PROCESS_WRITER = textwrap.dedent("""
    import sys, time
    from judgekit.backends.base import Completion
    from judgekit.cache import ResponseCache, cache_key
    from judgekit.config import GenerationConfig
    path, tag, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cache = ResponseCache(path)
    cfg = GenerationConfig()
    msgs = [{"role": "user", "content": "p"}]
    while time.time() < go:
        time.sleep(0.005)
    for i in range(300):
        key = cache_key("fake:p", msgs, cfg, (0 if tag == "a" else 10**6) + i)
        cache.put_many("fake:p", [(key, i, Completion(text=f"{tag}-{i}"))])
        if i % 50 == 0:
            cache.get_many([key])
    print("done", tag)
""")


def test_two_processes_writing_lose_nothing(tmp_path: Path) -> None:
    import time

    path = tmp_path / "p.sqlite"
    go = time.time() + 2.0  # both start writing at the same moment
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS_WRITER, str(path), tag, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in ("a", "b")]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.startswith("done")
    cache = ResponseCache(path)
    assert len(cache) == 600
    with sqlite3.connect(path) as con:
        texts = {row[0] for row in con.execute("SELECT completion FROM completions")}
    assert len(texts) == 600


def test_threads_opening_a_new_cache_together_all_get_it(tmp_path: Path) -> None:
    """Switching a new file to WAL: sqlite answers "locked" at once to one of two connections
    switching together (it would deadlock), without waiting out the busy timeout; that failed
    2-3 in 60 rounds of 4 threads before the switch was retried."""
    import threading

    failures: list[BaseException] = []
    for round_ in range(80):
        path = tmp_path / f"new-{round_}.sqlite"
        start = threading.Barrier(4)

        def open_cache(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                ResponseCache(path, busy_timeout=10)
            except Exception as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_cache) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    with sqlite3.connect(tmp_path / "new-0.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_corrupt_cache_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a sqlite file, " * 200)
    with pytest.raises(CacheError) as info:
        ResponseCache(path)
    text = str(info.value)
    assert str(path) in text and "delete" in text and "--no-cache" in text
    assert info.value.__cause__ is None and "\n" not in text
    with pytest.raises(CacheError):
        wrap_with_cache(CountingBackend(), path)


async def test_a_corrupt_row_is_a_miss_that_gets_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    inner = CountingBackend()
    cached = CachedBackend(inner, path)
    first = await cached.generate(MSGS, CFG, n=2)
    key = cache_key(inner.spec, MSGS, CFG, 1)
    with sqlite3.connect(path) as con:
        con.execute("UPDATE completions SET completion = ? WHERE key = ?", ('{"text": 7', key))
    again = await cached.generate(MSGS, CFG, n=2)
    assert inner.calls == [2, 1]  # sample 1 was a miss and was generated again
    assert again.completions[0] == first.completions[0]
    assert again.usage.cached_calls == 1
    third = await cached.generate(MSGS, CFG, n=2)  # the fresh row replaced the corrupt one
    assert inner.calls == [2, 1] and third.usage.cached_calls == 2
    assert third.completions[1] == again.completions[1]
