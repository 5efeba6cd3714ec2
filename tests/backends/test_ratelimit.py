"""Rate limits and the concurrency cap hold for ONE backend across sync `Judge.score()` calls
(a fresh event loop each), threads and event loops; no cap by default."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from support.fault_server import FaultServer

from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.config import GenerationConfig
from judgekit.judge import Judge
from judgekit.ratelimit import ConcurrencyLimit, Throttle, TokenBucket
from judgekit.retry import RetryPolicy

CFG = GenerationConfig(timeout=10.0, max_tokens=32)
# "2 requests per minute" with the minute shortened to one second: a burst of 2, then one
# request every 0.5 s.
BUDGET = 2
PERIOD = 1.0
GAP = PERIOD / BUDGET


async def no_sleep(_: float) -> None:
    return None


def budget_judge(server: FaultServer, **throttle: float) -> Judge:
    judge = Judge("openai:judge-test", base_url=server.openai_url, examples=False, config=CFG,
                  retry=RetryPolicy(sleep=no_sleep))
    backend = judge.backend
    assert isinstance(backend, OpenAIBackend)
    backend.throttle = Throttle(period=PERIOD, **throttle)  # type: ignore[arg-type]
    return judge


# Arrival times at the server carry each call's connection set-up (a fresh connection per sync
# call), which on a loaded 2-core machine can delay one request by a few tenths of a second
# more than another. The slack stays below the gap, so requests sent without any spacing (all
# at once) still fail the check.
SLACK = 0.3


def assert_spaced(stamps: list[float], burst: int, gap: float) -> None:
    """The i-th request (sorted) reaches the server no earlier than (i - burst + 1) gaps after
    the first, give or take a connection set-up (`SLACK`)."""
    stamps = sorted(stamps)
    for i, t in enumerate(stamps):
        earliest = max(0, i - burst + 1) * gap
        assert t - stamps[0] >= earliest - SLACK, (i, [round(s - stamps[0], 3) for s in stamps])


def test_six_sync_score_calls_share_one_request_budget(fault_server: FaultServer) -> None:
    judge = budget_judge(fault_server, requests_per_minute=BUDGET)
    start = time.monotonic()
    for i in range(6):
        assert judge.score(f"jk-item-s{i} q", ["GOOD", "bad"]).ok  # asyncio.run per call
    elapsed = time.monotonic() - start
    assert_spaced([r.at for r in fault_server.records], BUDGET, GAP)
    assert elapsed >= 4 * GAP - 0.05  # 2 at once, then 4 more at 0.5 s each (not 6 at once)


def test_threads_share_one_request_budget(fault_server: FaultServer) -> None:
    judge = budget_judge(fault_server, requests_per_minute=BUDGET)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(2):
                assert judge.score(f"jk-item-t{t}-{i} q", ["GOOD", "bad"]).ok
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors
    assert len(fault_server.records) == 6
    assert_spaced([r.at for r in fault_server.records], BUDGET, GAP)


def test_token_budget_holds_across_event_loops(fault_server: FaultServer) -> None:
    judge = budget_judge(fault_server, tokens_per_minute=1000)
    backend = judge.backend
    messages = [{"role": "user", "content": "jk-item-tok x"}]
    cfg = CFG.with_(max_tokens=400)  # 408 tokens estimated per request
    for _ in range(4):
        asyncio.run(backend.generate(messages, cfg))
    stamps = sorted(r.at for r in fault_server.records)
    # 4 x 408 tokens against a bucket of 1000 refilled at 1000/s: 632 tokens wait 0.632 s.
    assert stamps[3] - stamps[0] >= 0.6


def test_explicit_concurrency_cap_holds_across_threads(fault_server: FaultServer) -> None:
    fault_server.default_schedule = ["slow"]
    fault_server.slow_seconds = 0.2
    backend = OpenAIBackend("m", base_url=fault_server.openai_url, max_concurrency=2,
                            retry=RetryPolicy(sleep=no_sleep))

    def worker(t: int) -> None:
        async def go() -> None:
            await asyncio.gather(*(backend.generate(
                [{"role": "user", "content": f"jk-item-c{t}-{i} x"}], CFG) for i in range(3)))
        asyncio.run(go())

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert len(fault_server.records) == 9
    assert fault_server.peak_in_flight == 2


async def test_no_hidden_cap_by_default(fault_server: FaultServer) -> None:
    fault_server.default_schedule = ["slow"]
    fault_server.slow_seconds = 0.5
    backend = OpenAIBackend("m", base_url=fault_server.openai_url,
                            retry=RetryPolicy(sleep=no_sleep))
    assert backend.throttle.max_concurrency is None and backend.throttle.unlimited
    await asyncio.gather(*(backend.generate([{"role": "user", "content": f"jk-item-u{i} x"}],
                                            CFG) for i in range(30)))
    await backend.aclose()
    assert fault_server.peak_in_flight == 30


async def test_cancelled_waiters_give_back_their_slot_and_budget() -> None:
    limit = ConcurrencyLimit(1)
    await limit.acquire()
    waiter = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limit.release()
    await asyncio.wait_for(limit.acquire(), 1.0)  # the slot was not lost to the cancelled one
    assert limit.in_use == 1

    bucket = TokenBucket(1, period=10.0)
    await bucket.acquire(1)
    pending = asyncio.ensure_future(bucket.acquire(1))  # would wait ~10 s
    await asyncio.sleep(0.01)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert bucket.reserve(0) < 10.5  # its reservation was refunded


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        Throttle(requests_per_minute=0)
    with pytest.raises(ValueError):
        ConcurrencyLimit(0)


def test_judge_concurrency_is_the_only_cap(fault_server: FaultServer) -> None:
    """`Judge(spec, concurrency=N)` puts N requests in flight (it was capped at 8 before)."""
    fault_server.default_schedule = ["slow"]
    fault_server.slow_seconds = 0.5
    judge = Judge("openai:judge-test", base_url=fault_server.openai_url, examples=False,
                  config=CFG, concurrency=24, retry=RetryPolicy(sleep=no_sleep))
    batch = [{"id": f"x{i}", "query": f"jk-item-x{i} q", "responses": ["GOOD", "bad"]}
             for i in range(48)]
    assert all(v.ok for v in judge.score_many(batch, progress=False))
    assert fault_server.peak_in_flight == 24


def test_a_batch_holds_concurrency_tasks_not_one_per_item(fault_server: FaultServer) -> None:
    """`score_many` runs `concurrency` workers that pull items, so a batch of many items holds
    a handful of tasks, not one per item waiting for its turn (what a semaphore over a gather
    of every item would hold: 40 here); results keep the input order."""
    fault_server.default_schedule = ["slow"]  # each answer takes a while: 4 are in flight
    fault_server.slow_seconds = 0.1
    judge = Judge("openai:judge-test", base_url=fault_server.openai_url, examples=False,
                  config=CFG, concurrency=4, retry=RetryPolicy(sleep=no_sleep))
    batch = [{"id": f"t{i}", "query": f"jk-item-t{i} q", "responses": ["GOOD", "bad"]}
             for i in range(40)]
    tasks: list[int] = []
    verdicts = judge.score_many(batch, progress=False,
                                on_result=lambda i, v: tasks.append(len(asyncio.all_tasks())))
    assert [v.item_id for v in verdicts] == [f"t{i}" for i in range(40)]
    assert all(v.ok for v in verdicts)
    assert len(tasks) == 40
    assert max(tasks) <= 4 + 1  # the workers and the batch's own task
    assert fault_server.peak_in_flight == 4


def most_in_a_window(stamps: list[float], window: float) -> int:
    """The most stamps that fall within any window of `window` seconds."""
    stamps = sorted(stamps)
    return max(sum(1 for t in stamps[i:] if t - s <= window) for i, s in enumerate(stamps))


def send_from_threads(backend: OpenAIBackend, threads: int, per_loop: int) -> None:
    """`threads` threads, each its own event loop: one warm-up request (its SDK client and first
    connection made), then, once every thread is warm, `per_loop` requests at once."""
    ready = threading.Barrier(threads)

    def worker(t: int) -> None:
        async def go() -> None:
            await backend.generate([{"role": "user", "content": f"jk-item-w{t} x"}], CFG)
            await asyncio.to_thread(ready.wait)
            await asyncio.gather(*(backend.generate(
                [{"role": "user", "content": f"jk-item-b{t}-{i} x"}], CFG)
                for i in range(per_loop)))
        asyncio.run(go())

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=60)


@pytest.mark.parametrize(("burst", "allowed"), [(None, 4), (1, 1)])
def test_a_per_minute_budget_never_bursts(fault_server: FaultServer, burst: int | None,
                                          allowed: int) -> None:
    """240 requests per minute (4 a second): in any window of t seconds at most 4 t + burst
    requests reach the server, burst being one second's worth (4) or what the user set, across
    3 threads with 4 requests at once each (after a warm-up request each). The old bucket held
    the whole minute: all 15 went out at once."""
    backend = OpenAIBackend("m", base_url=fault_server.openai_url, requests_per_minute=240,
                            burst=burst, retry=RetryPolicy(sleep=no_sleep))
    send_from_threads(backend, threads=3, per_loop=4)
    stamps = [r.at for r in fault_server.records]
    assert len(stamps) == 15
    for window in (0.05, 0.5, 1.0, 2.0):
        # arrival times carry connection set-up: SLACK more window than the sender had
        bound = 4 * (window + SLACK) + allowed
        assert most_in_a_window(stamps, window) <= bound, (window, sorted(stamps))
    sent_at_once = [r.at for r in fault_server.records if r.key.startswith("b")]
    spread = max(sent_at_once) - min(sent_at_once)
    assert spread >= (12 - allowed) / 4 - SLACK, spread  # spaced out, not sent together


def test_burst_is_validated() -> None:
    with pytest.raises(ValueError, match="burst must be at least 1"):
        Throttle(requests_per_minute=60, burst=0)
    assert TokenBucket(60).capacity == 1.0 and TokenBucket(600).capacity == 10.0
    assert TokenBucket(6).capacity == 1.0  # one request at least, even under 1 a second
