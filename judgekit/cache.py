"""On-disk response cache (sqlite), so a resumed or repeated run bills nothing twice.

One row per completion. The key is sha256 over (backend spec, messages, generation parameters
except `timeout`, sample index), so k-sample voting does not collapse onto one cached answer:

* `CachedBackend.generate(messages, config, n, sample_offset=0)` reads and writes sample indices
  `sample_offset .. sample_offset + n - 1`, and calls the wrapped backend only for the missing ones.
* A caller that draws the k samples of one prompt in ONE call uses n=k (indices 0..k-1). A caller
  that draws them in separate calls must pass the sample number as `sample_offset` (j for sample
  j), or every call would read index 0 back. `generate_samples()` does this for any backend.

* Batched local backends' `generate_many(requests, config)` is cached the same way (indices
  0..n-1 per prompt), keeping one batched call for all the missing samples.

Cache hits are reported as `Usage.cached_calls` (one per completion) with zero tokens and cost.
The spec never holds an API key, so neither does the file. Safe for many threads and processes on
one machine: WAL mode, a busy timeout, one short transaction per lookup/store (WAL does not work
on network file systems; keep the file on local disk).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import tenacity

from judgekit.backends.base import (
    Backend,
    BackendCapabilities,
    Completion,
    GenerationOutcome,
    GenerationRequest,
    GenerationResult,
)
from judgekit.config import GenerationConfig
from judgekit.errors import BackendError, CacheError
from judgekit.schema import Message, Usage

log = logging.getLogger("judgekit.cache")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL
)
"""
_KEY_VERSION = 1


def default_cache_path() -> Path:
    """JUDGEKIT_CACHE_FILE, else `cache_home()/cache.sqlite` (JUDGEKIT_HOME or XDG_CACHE_HOME
    move the directory)."""
    from judgekit.embedded import cache_home

    override = os.environ.get("JUDGEKIT_CACHE_FILE")
    return Path(override) if override else cache_home() / "cache.sqlite"


def cache_key(spec: str, messages: Sequence[Message], config: GenerationConfig,
              sample_index: int) -> str:
    """sha256 hex over the request identity. `timeout` and `cache_prefix_chars` are left out (they
    do not change outputs), and `json_schema` counts only when set, so keys made before it
    existed stay valid."""
    params = config.model_dump(mode="json", exclude={"timeout", "cache_prefix_chars"})
    if params.get("json_schema") is None:
        params.pop("json_schema", None)
    blob = json.dumps(
        {"v": _KEY_VERSION, "spec": spec, "messages": [dict(m) for m in messages],
         "params": params, "sample": sample_index},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A sqlite file of completions by key. Each operation opens its own short-lived connection,
    so one instance can be used from any thread, and several processes can share the file."""

    def __init__(self, path: str | Path | None = None, *, busy_timeout: float = 60.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.busy_timeout = busy_timeout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unusable(exc) from None

        def setup(con: sqlite3.Connection) -> None:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
            con.execute(_SCHEMA)

        # Switching a new file to WAL takes an exclusive lock, and sqlite answers "locked" at
        # once, without waiting out the busy timeout, to a connection that would otherwise
        # deadlock with another one switching: two processes (or threads) opening a new cache
        # together failed so (in CI; 3 in 60 tries with 4 threads). Retried until the other has
        # switched it (the mode then reads "wal") or the busy timeout has passed.
        for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception(_is_locked),
                stop=tenacity.stop_after_delay(self.busy_timeout),
                wait=tenacity.wait_random(0.01, 0.1), reraise=True):
            with attempt:
                self._run(setup)

    def _connect(self) -> _Connection:
        return _Connection(self.path, self.busy_timeout)

    def _unusable(self, exc: BaseException) -> CacheError:
        return CacheError(
            f"the response cache {self.path} cannot be used ({type(exc).__name__}: {exc}); "
            "delete that file (it only holds answers already paid for) or run without the "
            "cache (--no-cache, or cache=False)")

    def _run(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `op` on a fresh connection; a file sqlite cannot read becomes one CacheError."""
        try:
            with self._connect() as con:
                return op(con)
        except sqlite3.DatabaseError as exc:
            if _is_locked(exc):
                raise  # busy past the timeout: not corruption
            raise self._unusable(exc) from None

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The cached completions among `keys`. A row that does not decode is a miss, and it is
        deleted so that the next store of its key overwrites it."""
        if not keys:
            return {}

        def op(con: sqlite3.Connection) -> dict[str, Completion]:
            out: dict[str, Completion] = {}
            corrupt: list[str] = []
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                rows = con.execute(
                    f"SELECT key, completion FROM completions WHERE key IN ({marks})", chunk)
                for key, blob in rows:
                    try:
                        out[key] = Completion.model_validate_json(blob)
                    except ValueError:  # pydantic's ValidationError included
                        corrupt.append(key)
            if corrupt:
                log.warning("%s: %d unreadable cache row(s) treated as misses and dropped",
                            self.path, len(corrupt))
                con.executemany("DELETE FROM completions WHERE key = ?", [(k,) for k in corrupt])
            return out

        return self._run(op)

    def put_many(self, spec: str, entries: Sequence[tuple[str, int, Completion]]) -> None:
        """Store (key, sample_index, completion) rows in one transaction; the first writer of a
        key wins, so concurrent runs agree on what a sample was."""
        if not entries:
            return
        now = time.time()

        def op(con: sqlite3.Connection) -> None:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT OR IGNORE INTO completions (key, spec, sample_index, completion, created) "
                "VALUES (?, ?, ?, ?, ?)",
                [(k, spec, i, c.model_dump_json(), now) for k, i, c in entries])
            con.execute("COMMIT")

        self._run(op)

    def __len__(self) -> int:
        return self._run(
            lambda con: int(con.execute("SELECT COUNT(*) FROM completions").fetchone()[0]))

    def clear(self) -> None:
        self._run(lambda con: con.execute("DELETE FROM completions"))

    def __repr__(self) -> str:
        return f"ResponseCache(path={str(self.path)!r})"


_T = TypeVar("_T")


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


class _Connection:
    """A connection in autocommit mode with a busy timeout, closed on exit."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self._con = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        try:
            self._con.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            # With WAL, NORMAL never corrupts the file; a power cut may drop the last commits,
            # which for a cache only means recomputing them. FULL would fsync on every commit.
            self._con.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            self._con.close()
            raise

    def __enter__(self) -> sqlite3.Connection:
        return self._con

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None and self._con.in_transaction:
            self._con.rollback()
        self._con.close()


class CachedBackend(Backend):
    """Wraps any Backend with a ResponseCache; implements the same protocol plus `sample_offset`.

    It declares the wrapped backend's capabilities. A batched backend's `generate_many` stays
    one batched call (for the missing samples only); `complete_under_grammar` is forwarded
    uncached (it is cheap and runs only after a cached sample failed to parse).
    """

    def __init__(self, backend: Backend, cache: ResponseCache | str | Path | None = None) -> None:
        self.backend = backend
        self.cache = cache if isinstance(cache, ResponseCache) else ResponseCache(cache)
        self.broken: CacheError | None = None
        """Set when storing failed: the completions of that call were still returned (nothing
        paid for is lost), and every later call raises this error before it sends anything."""

    async def _lookup(self, keys: list[str]) -> dict[str, Completion]:
        if self.broken is not None:
            raise self.broken
        return await asyncio.to_thread(self.cache.get_many, keys)

    async def _store(self, entries: list[tuple[str, int, Completion]]) -> None:
        """Store fresh completions; a cache that fails now is remembered (`broken`), and the
        completions are returned all the same, so the caller records what it paid for."""
        try:
            await asyncio.to_thread(self.cache.put_many, self.spec, entries)
        except CacheError as exc:
            self.broken = exc

    @property
    def spec(self) -> str:
        return self.backend.spec

    @property
    def identity(self) -> str:
        return self.backend.identity

    @property
    def endpoint(self) -> str | None:
        return self.backend.endpoint

    def settings(self) -> dict[str, str | None]:
        return self.backend.settings()

    @property
    def capabilities(self) -> BackendCapabilities:
        return self.backend.capabilities

    def should_retry(self, error: BackendError) -> bool:
        return self.backend.should_retry(error)

    def keys(self, messages: list[Message], config: GenerationConfig, n: int,
             sample_offset: int = 0) -> list[str]:
        return [cache_key(self.spec, messages, config, i)
                for i in range(sample_offset, sample_offset + n)]

    async def generate(
        self, messages: list[Message], config: GenerationConfig, n: int = 1, *,
        sample_offset: int = 0,
    ) -> GenerationResult:
        """Completions for sample indices sample_offset..sample_offset+n-1, computing only the
        missing ones (in one call of the wrapped backend with n = number missing)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        if sample_offset < 0:
            raise ValueError("sample_offset must be >= 0")
        keys = self.keys(messages, config, n, sample_offset)
        found = await self._lookup(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        fresh = None
        if missing:
            fresh = await self.backend.generate(messages, config, len(missing))
        return await self._merge(keys, found, missing, fresh, sample_offset)

    async def _merge(self, keys: list[str], found: dict[str, Completion], missing: list[int],
                     fresh: GenerationResult | None, sample_offset: int) -> GenerationResult:
        """Store the fresh completions under their missing indices; all of them in index order."""
        usage = Usage(cached_calls=len(keys) - len(missing))
        made: dict[str, Completion] = {}
        if fresh is not None:
            usage = usage + fresh.usage
            entries = []
            for pos, completion in zip(missing, fresh.completions, strict=False):
                made[keys[pos]] = completion
                entries.append((keys[pos], sample_offset + pos, completion))
            await self._store(entries)
        completions = [found.get(k) or made[k] for k in keys if k in found or k in made]
        return GenerationResult(completions=completions, usage=usage)

    async def generate_many(self, requests: list[GenerationRequest],
                            config: GenerationConfig) -> list[GenerationOutcome]:
        """Cached `generate_many`: a batched backend gets ONE batched call for all prompts'
        missing samples; others get the concurrent default over the cached `generate`."""
        if not self.backend.capabilities.batched:
            return await super().generate_many(requests, config)
        plans = []
        for messages, n in requests:
            keys = self.keys(messages, config, n)
            plans.append((messages, keys))
        all_keys = [k for _, keys in plans for k in keys]
        found = await self._lookup(all_keys)
        todo: list[tuple[list[Message], int]] = []
        todo_index: list[int | None] = []
        missing_per: list[list[int]] = []
        for messages, keys in plans:
            missing = [i for i, k in enumerate(keys) if k not in found]
            missing_per.append(missing)
            todo_index.append(len(todo) if missing else None)
            if missing:
                todo.append((messages, len(missing)))
        fresh: list[GenerationOutcome] = []
        if todo:
            fresh = list(await self.backend.generate_many(todo, config))
        out: list[GenerationOutcome] = []
        for (_, keys), missing, ti in zip(plans, missing_per, todo_index, strict=True):
            outcome = fresh[ti] if ti is not None else None
            if isinstance(outcome, BackendError):
                out.append(outcome)
                continue
            out.append(await self._merge(keys, found, missing, outcome, 0))
        return out

    async def complete_under_grammar(self, messages: list[Message], prefixes: list[str],
                                     grammar: str, config: GenerationConfig) -> GenerationResult:
        return await self.backend.complete_under_grammar(messages, prefixes, grammar, config)

    async def aclose(self) -> None:
        await self.backend.aclose()

    def __repr__(self) -> str:
        return f"CachedBackend({self.backend!r}, {self.cache!r})"


CacheSpec = ResponseCache | str | Path | bool | None
"""`None`/`False`: no cache; `True`: the default file; a path; or a ResponseCache (an empty one
too: emptiness is never read as "no cache")."""


def wrap_with_cache(backend: Backend, cache: CacheSpec = True) -> Backend:
    """`backend` behind a cache: True for the default file, a path, or a ResponseCache; a
    CachedBackend is returned unchanged, and a falsy `cache` means no cache."""
    # Not `not cache`: an empty ResponseCache has len 0 and would read as "no cache".
    if cache is None or cache is False or isinstance(backend, CachedBackend):
        return backend
    if cache is True:
        return CachedBackend(backend, None)
    return CachedBackend(backend, cache)


async def generate_samples(
    backend: Backend, messages: list[Message], config: GenerationConfig, n: int = 1,
    sample_offset: int = 0,
) -> GenerationResult:
    """`backend.generate`, passing `sample_offset` through when the backend is cached (plain
    backends have no sample indices and ignore it)."""
    if isinstance(backend, CachedBackend):
        return await backend.generate(messages, config, n, sample_offset=sample_offset)
    return await backend.generate(messages, config, n)
