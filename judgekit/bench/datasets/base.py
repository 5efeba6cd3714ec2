"""What every benchmark loader shares: the error type, the registry entry and safe file readers.

A loader turns the files under one data root into `BenchItem`s. Whatever goes wrong with a file
or a row becomes a `DatasetError` that names the file, the row (counted from 0 over the file's
records) and the field, never a bare `KeyError` or a pydantic dump.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from judgekit.bench.items import BenchItem
from judgekit.errors import JudgekitError

DatasetKind = Literal["pairwise", "pairwise+bon", "binary"]
"""pairwise: one best response among two (or more); pairwise+bon: pairs and best-of-N sets;
binary: one response with an error flag."""

Loader = Callable[[Path], list[BenchItem]]


class DatasetError(JudgekitError, ValueError):
    """An unknown dataset or subset, or dataset files that are missing or malformed."""


@dataclass(frozen=True)
class DatasetInfo:
    """One registered benchmark. `marker` is the file or folder (relative to a data root) whose
    presence says the dataset is there; `expected` is the item count SOURCES.md gives."""

    name: str
    description: str
    marker: str
    loader: Loader
    expected: int
    license: str
    shipped: bool
    kind: DatasetKind


# --------------------------------------------------------------------------------------------
# Rows and their errors
# --------------------------------------------------------------------------------------------
def describe_validation(exc: ValidationError) -> str:
    """The first problem of a pydantic error as one line: `field 'x': message`."""
    errors = exc.errors()
    if not errors:
        return "invalid"
    err = errors[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"field {loc!r}: {msg}" if loc else msg) + more


@contextmanager
def row_context(where: str) -> Iterator[None]:
    """Turn any error raised while reading one row into a DatasetError prefixed with `where`
    (e.g. "llmbar/LLMBar/Natural/dataset.json row 7")."""
    try:
        yield
    except DatasetError:
        raise
    except KeyError as exc:
        raise DatasetError(f"{where}: missing field {exc.args[0]!r}") from exc
    except ValidationError as exc:
        raise DatasetError(f"{where}: {describe_validation(exc)}") from exc
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DatasetError(f"{where}: {exc}") from exc


def records(data: Any, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) for a list of JSON objects; a DatasetError names any row that is not
    an object, or the file when it is not a list."""
    if not isinstance(data, list):
        raise DatasetError(f"{where}: expected a list of objects, got {type(data).__name__}")
    for n, row in enumerate(data):
        if not isinstance(row, dict):
            raise DatasetError(f"{where} row {n}: expected an object, got {type(row).__name__}")
        yield n, row


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def parse_jsonl(text: str, where: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL text (blank lines skipped); a bad line is named (from 1).
    Lines end at "\n" only: a raw U+2028 inside a JSON string does not split a record."""
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{where} line {n} is not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"{where} line {n}: expected an object, got {type(row).__name__}")
        rows.append(row)
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    return parse_jsonl(text, str(path))


def read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
