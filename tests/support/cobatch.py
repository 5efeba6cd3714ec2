"""Making concurrent calls to the fast local engine meet in one decode batch, on purpose: the
first call holds its first decode step until the others have queued behind it, so they all join
at its next step (without the hold, whether they meet depends on thread timing)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from judgekit.backends.local_engine import DecodeEngine, ThreadTuner


class GatedTuner(ThreadTuner):
    """A one-thread tuner that holds every decode step until `gate` is set."""

    def __init__(self) -> None:
        super().__init__(threads=1)
        self.gate = threading.Event()
        self.gate.set()

    def before_step(self) -> int:
        assert self.gate.wait(timeout=120), "the gate was never opened"
        return super().before_step()


def gate(engine: DecodeEngine) -> GatedTuner:
    """Give `engine` a gated tuner (open) and return it."""
    tuner = GatedTuner()
    engine.threads = tuner
    return tuner


def run_together(engine: DecodeEngine, calls: list[Callable[[], Any]]) -> list[Any]:
    """Run `calls` in threads so that they share the engine's batch; their results, or the
    exceptions they raised, in order. The engine must have a `GatedTuner` (see `gate`)."""
    tuner = engine.threads
    assert isinstance(tuner, GatedTuner)
    tuner.gate.clear()
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while engine.queued < len(calls) - 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.queued == len(calls) - 1, "the calls did not queue behind the first"
    finally:
        tuner.gate.set()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive()
    return results
