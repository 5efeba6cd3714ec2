"""The torch thread count, measured while a run goes on (`ThreadTuner`)."""

from __future__ import annotations

import torch


class ThreadTuner:
    """Picks the torch thread count while decoding, by measuring.

    A decode step of a small model is ~400 small kernels. With more threads than free cores
    (this 2-core machine is shared), every kernel waits at an OpenMP barrier for a descheduled
    thread: measured here, 2 threads ran the same step 1.5x faster than 1 thread on an idle
    machine and 2-5x slower than 1 thread under a neighbour's load (one elementwise pass over a
    1536 x 576 matrix: 24 ms on 1 thread, 1,000 ms on 2). The best count changes minute to
    minute, so it is measured: decoding starts on 1 thread (the safe choice); now and then the
    other candidate (torch's default) runs a few steps, and the faster median wins. A probe that
    loses doubles the wait before the next one (up to `MAX_PERIOD` steps), so a much worse
    setting costs little; when the current choice slows down by half, the other is tried at
    once. An int fixes the count instead. The caller's thread count is restored after each call.

    Prefill has a tuner of its own (`DecodeEngine.prefill_threads`, per 128+ token chunk, in
    seconds per token, probing sooner): its ops are large, so two threads gain more there (1.5x on
    an idle machine against ~1.2x for a decode step) but lose as much under load (2.3x slower
    with a neighbour busy on one core; measured), and the two phases need not agree."""

    PROBE = 3
    BASE_PERIOD = 32
    MAX_PERIOD = 256
    WINDOW = 5

    def __init__(self, threads: int | None = None, *, base_period: int | None = None) -> None:
        self.base_period = base_period or self.BASE_PERIOD
        """Steps between probes of the other count, before any losing probe doubles it."""
        self.fixed = threads
        self.best: int | None = threads
        self.other: int | None = None
        self._period = self.base_period
        self._next_probe = self.base_period
        self._step = 0
        self._recent: list[float] = []
        self._probe: list[float] = []
        self._reference: float | None = None
        self._saved = 0
        self._current = 0

    def start(self, candidate: int | None = None) -> None:
        """Once per engine call, in the calling thread (OpenMP settings are per thread). The
        count to try besides one thread is `candidate`, else the caller's."""
        self._saved = torch.get_num_threads()
        if self.best is None:
            other = candidate or self._saved
            self.best = 1
            self.other = other if other > 1 else None
        self._set(self.best)

    def finish(self) -> None:
        torch.set_num_threads(self._saved)

    def _set(self, n: int) -> None:
        if n != self._current or torch.get_num_threads() != n:
            torch.set_num_threads(n)
            self._current = n

    def settle(self) -> int:
        """Run on the current best count, unmeasured (work too small to compare by)."""
        assert self.best is not None
        self._set(self.best)
        return self.best

    def before_step(self) -> int:
        assert self.best is not None
        n = self.other if self.other is not None and self._step >= self._next_probe else self.best
        self._set(n)
        return n

    @staticmethod
    def _median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2] if values else float("inf")

    def after_step(self, threads: int, seconds: float) -> None:
        self._step += 1
        if self.other is None:
            return
        if threads == self.best:
            self._recent = [*self._recent[-(self.WINDOW - 1):], seconds]
            recent = self._median(self._recent)
            if (len(self._recent) == self.WINDOW and self._reference is not None
                    and recent > 1.5 * self._reference and self._next_probe > self._step):
                self._period, self._next_probe = self.base_period, self._step  # conditions changed
            return
        self._probe.append(seconds)
        if len(self._probe) < self.PROBE:
            return
        probe, recent = self._median(self._probe), self._median(self._recent)
        if probe < 0.9 * recent:
            self.best, self.other = self.other, self.best
            self._period, self._reference = self.base_period, probe
            self._recent = list(self._probe)
        else:
            self._period = min(2 * self._period, self.MAX_PERIOD)
            self._reference = recent
        self._probe = []
        self._next_probe = self._step + self._period


PREFILL_PROBE_PERIOD = 4
"""Prefill chunks between probes of the other thread count: a prompt is ~5 chunks, so the first
call (a newcomer's first judgement) already gets to try both."""

PREFILL_TUNE_TOKENS = 128
"""Prefill pieces shorter than this run on the tuned count without being measured: their
seconds per token (a few tokens after a cache hit) say little about a full chunk's."""
