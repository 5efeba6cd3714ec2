"""KV caches: the prefix cache (batch-1 snapshots keyed by token ids, `PrefixCache`) and the
transformers caches the engine's forward passes write into (`make_cache`, `make_layer`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from judgekit.backends.local_engine.internals import cache_over, row_buffer

KV = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer (keys, values), each [batch, kv_heads, tokens, head_dim]."""

def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc `malloc_trim`). The batch's KV buffers are
    reallocated at another size whenever a call joins or rows leave; glibc keeps such freed
    blocks in its heaps, and a 20-item run grew its peak RSS by ~500 MB that way (measured with
    one call at a time). Called after each admission and each drop: a few per item, against
    decode steps of ~100 ms. A no-op off glibc."""
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: Any = None


def kv_bytes(kv: KV) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


def kv_slice(kv: KV, length: int) -> KV:
    """The first `length` tokens, as views (the stored tensors are never written to)."""
    return [(k[:, :, :length], v[:, :, :length]) for k, v in kv]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    ta = torch.as_tensor(a[:n])
    tb = torch.as_tensor(b[:n])
    diff = (ta != tb).nonzero()
    return int(diff[0, 0]) if len(diff) else n


@dataclass
class CacheEntry:
    kv: KV
    aligned: int
    """How many leading tokens were computed in whole `PREFILL_CHUNK` chunks (reusable by any
    prompt that shares them); a prompt entry's remaining tokens are reusable by that prompt
    alone."""
    prompt: bool

    @property
    def tokens(self) -> int:
        return int(self.kv[0][0].shape[2]) if self.kv else 0


class PrefixCache:
    """LRU of KV snapshots (batch 1) keyed by token ids, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], CacheEntry] = OrderedDict()
        self._bytes = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def entries(self) -> list[CacheEntry]:
        return list(self._entries.values())

    def longest(self, ids: Sequence[int]) -> tuple[int, CacheEntry | None]:
        """(n, entry) for the entry sharing the longest token prefix with `ids` (n may be 0)."""
        best, best_key = 0, None
        for key in self._entries:
            n = common_prefix(key, ids)
            if n > best:
                best, best_key = n, key
        if best_key is None:
            return 0, None
        self._entries.move_to_end(best_key)
        return best, self._entries[best_key]

    def put(self, ids: Sequence[int], entry: CacheEntry) -> None:
        key = tuple(ids)
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        size = kv_bytes(entry.kv)
        if size > self.max_bytes:
            return
        self._entries[key] = entry
        self._bytes += size
        while self._bytes > self.max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self._bytes -= kv_bytes(old.kv)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


def make_layer(keys: torch.Tensor, values: torch.Tensor, capacity: int,
                filled: int | None = None) -> Any:
    """A cache layer over preallocated buffers: `update` writes in place and returns views.
    The buffers are copies of `keys`/`values` with room for `capacity` positions or, with
    `filled`, `keys`/`values` themselves, of which the first `filled` positions are filled."""
    if filled is None:
        b, h, filled, d = keys.shape
        kbuf = keys.new_empty((b, h, max(capacity, filled), d))
        vbuf = values.new_empty((b, h, max(capacity, filled), d))
        kbuf[:, :, :filled] = keys
        vbuf[:, :, :filled] = values
        keys, values = kbuf, vbuf
    return row_buffer(keys, values, filled)


def make_cache(kv: KV, capacity: int) -> Any:
    """A transformers DynamicCache whose layers start from `kv` (copied, never aliased)."""
    return cache_over([make_layer(k, v, capacity) for k, v in kv])


def cache_kv(cache: Any, length: int | None = None) -> KV:
    """Contiguous copies of a batch-1 cache's first `length` tokens (a snapshot to store)."""
    out: KV = []
    for layer in cache.layers:
        n = layer.get_seq_length() if length is None else length
        out.append((layer.keys[:, :, :n].clone(), layer.values[:, :, :n].clone()))
    return out
