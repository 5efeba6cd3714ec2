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

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        with self._lock:
            obj = self._by_loop.get(loop)
            if obj is None:
                obj = self._factory()
                self._by_loop[loop] = obj
            return obj

    def pop_current(self) -> T | None:
        """Remove and return the running loop's instance (None when there is none)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            return self._by_loop.pop(loop, None)

    def clear(self) -> None:
        """Forget every instance (those of other, possibly closed, loops are left to the GC)."""
        with self._lock:
            self._by_loop.clear()
