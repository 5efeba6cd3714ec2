"""One resumable JSONL file of pydantic records: the bench runner's results, a batch run's items,
the improve runner's traces.

The rules, here and nowhere else:

* **Append.** Records are written whole, one line each, flushed and fsynced before `append`
  returns, so a killed process loses at most the line it was writing.
* **Repair.** A last line without its newline is a torn write: `repair` cuts it off before the
  file is appended to again (its item is done again).
* **Corrupt lines** (a line that does not decode as a record) are skipped and counted: `load`
  returns their line numbers and warns once with the count; their items are done again unless
  another line holds them.
* **Heal.** `heal` repairs a torn last line and moves corrupt lines aside (to `<file>.corrupt`,
  kept for a look), rewriting the file in place, and says so in one line: a damaged line is
  reported once, and later reads are clean. It holds the file's lock, which every append takes
  too, so a report may heal the file of a run that is still writing: no line is lost.
* **The latest record per item** wins, except that a done record is never replaced by a later
  failed one (`latest`); `done` is the set of items not to run again.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Generic, TypeVar

from pydantic import BaseModel, ValidationError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

RecordT = TypeVar("RecordT", bound=BaseModel)


@dataclass
class Loaded(Generic[RecordT]):
    """What a store holds: its readable records in file order, and the line numbers of the
    lines that could not be read (skipped)."""

    records: list[RecordT] = field(default_factory=list)
    corrupt: list[int] = field(default_factory=list)


@contextmanager
def _locked(fh: IO[str] | IO[bytes]) -> Iterator[None]:
    """The file's exclusive lock (POSIX `flock`; elsewhere none): appends and `heal` take it."""
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class Appender(Generic[RecordT]):
    """An open store: each `write` is one line, flushed and fsynced."""

    def __init__(self, fh: IO[str]) -> None:
        self._fh = fh

    def write(self, record: RecordT) -> None:
        with _locked(self._fh):
            self._fh.write(record.model_dump_json() + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())


class RunStore(Generic[RecordT]):
    """A JSONL file of `record` lines (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], record: type[RecordT]) -> None:
        self.path = Path(path)
        self.record = record

    def repair(self) -> int:
        """Cut a torn last line (no trailing newline) off the file; the bytes removed."""
        if not self.path.exists():
            return 0
        with self.path.open("rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return 0
            keep = data.rfind(b"\n") + 1
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
            return len(data) - keep

    def load(self, *, warn: bool = True) -> Loaded[RecordT]:
        """Every readable record in file order. A torn last line is left out (not counted: it
        is a write the process never finished); a corrupt line is skipped and counted, with
        one warning naming how many when `warn`."""
        out: Loaded[RecordT] = Loaded()
        if not self.path.exists():
            return out
        with self.path.open("rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.endswith(b"\n"):
                    break  # torn: never finished
                if not line.strip():
                    continue
                try:
                    out.records.append(self.record.model_validate_json(line))
                except (ValidationError, ValueError):  # incl. bytes that are not UTF-8
                    out.corrupt.append(n)
        if out.corrupt and warn:
            warnings.warn(f"{self.path}: skipped {len(out.corrupt)} unreadable line(s) (line "
                          f"{_line_list(out.corrupt)}); their items run again unless another "
                          "line holds them", stacklevel=2)
        return out

    def heal(self) -> str | None:
        """Cut a torn last line and move every corrupt line to `<file>.corrupt`, in place and
        under the file's lock; one line saying what was done, or None for a sound file."""
        if not self.path.exists():
            return None
        with self.path.open("rb+") as fh, _locked(fh):
            data = fh.read()
            lines = data.splitlines(keepends=True)
            torn = len(lines[-1]) if lines and not lines[-1].endswith(b"\n") else 0
            keep: list[bytes] = []
            corrupt: list[int] = []
            for n, line in enumerate(lines[:-1] if torn else lines, 1):
                if line.strip() and not self._readable(line):
                    corrupt.append(n)
                else:
                    keep.append(line)
            if not torn and not corrupt:
                return None
            aside = self.path.with_name(self.path.name + ".corrupt")
            if corrupt:
                with aside.open("ab") as out:
                    out.writelines(lines[n - 1] for n in corrupt)
                    out.flush()
                    os.fsync(out.fileno())
            # In place, not a new file: an appender holding the file open keeps writing to it.
            # A crash mid-rewrite leaves every good line (the old tail follows what was
            # written) and at most one broken line, which the next heal moves aside.
            fh.seek(0)
            fh.write(b"".join(keep))
            fh.truncate()
            fh.flush()
            os.fsync(fh.fileno())
        done = [f"removed a truncated last line ({torn} bytes)"] if torn else []
        if corrupt:
            done.append(f"moved {len(corrupt)} unreadable line(s) (line {_line_list(corrupt)}) "
                        f"to {aside.name}")
        return f"{self.path}: {' and '.join(done)}; their items run again"

    def _readable(self, line: bytes) -> bool:
        try:
            self.record.model_validate_json(line)
        except (ValidationError, ValueError):
            return False
        return True

    def append(self, records: Iterable[RecordT]) -> None:
        """Append records in one write, flushed and fsynced."""
        text = "".join(r.model_dump_json() + "\n" for r in records)
        if not text:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh, _locked(fh):
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    @contextmanager
    def appending(self) -> Iterator[Appender[RecordT]]:
        """The store open for appending record by record (a run's results as they finish)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            yield Appender(fh)


def _line_list(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:5])) + (", ..." if len(numbers) > 5 else "")


def latest(records: Iterable[RecordT], key: Callable[[RecordT], str],
           failed: Callable[[RecordT], bool]) -> dict[str, RecordT]:
    """The last record per key, in first-seen order; a record that did not fail is never
    replaced by a later one that did."""
    out: dict[str, RecordT] = {}
    for rec in records:
        k = key(rec)
        prev = out.get(k)
        if prev is not None and not failed(prev) and failed(rec):
            continue
        out[k] = rec
    return out


__all__ = ["Appender", "Loaded", "RunStore", "latest"]
