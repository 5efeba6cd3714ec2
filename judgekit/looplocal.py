"""Objects that must belong to one asyncio event loop (semaphores, limiters, HTTP clients).

Sync wrappers (`asyncio.run` per call, notebooks, worker threads) run a backend under several
event loops over its lifetime. An asyncio.Semaphore or an SDK client bound to an old loop fails
or hangs under a new one, so each running loop gets its own instance, made on first use there.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """`get()` returns this loop's instance, building it with `factory` the first time."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        # The instance of the loop asked last, found without the lock: a loop asks many times
        # in a row (twice per request). A weak reference, so a finished loop is not kept alive.
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], T] | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        last = self._last  # one read of a tuple: no lock needed on this path
        if last is not None and last[0]() is loop:
            return last[1]
        with self._lock:
            obj = self._by_loop.get(loop)
            if obj is None:
                obj = self._factory()
                self._by_loop[loop] = obj
            self._last = (weakref.ref(loop), obj)
            return obj

    def pop_current(self) -> T | None:
        """Remove and return the running loop's instance (None when there is none)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            self._last = None
            return self._by_loop.pop(loop, None)

    def clear(self) -> None:
        """Forget every instance (those of other, possibly closed, loops are left to the GC)."""
        with self._lock:
            self._last = None
            self._by_loop.clear()
