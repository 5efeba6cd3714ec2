"""Load your own benchmark: a JSONL, JSON, CSV or Parquet file, or a pandas DataFrame.

A `FieldMap` says which column holds what. Responses are one list column (a JSON list string in
CSV) or several columns, one per response (empty cells are dropped, so items may have different
numbers of responses). The label column is read according to `label_format`:

==============  ================================================================================
index0          0-based index of the best response
index1          1-based index of the best response (LLMBar style)
letter          "A", "B", "C" ... (the best response's letter)
preference      "A>B", "B>A", "A>>B", "A=B"; tie words ("tie", "draw", "equal", "=") are ties
ranks           a list of ranks per response, 1 = best (equal ranks are ties)
best_text       the text of the best response (must equal one of the responses)
binary_error    truthy = the single response has an error
binary_ok       truthy = the single response is good (no error)
auto            strings as `preference`/`letter`/tie words, lists as `ranks`, integers as
                0-based if any label in the file is 0, else 1-based
==============  ================================================================================
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from judgekit.bench.datasets import DatasetError
from judgekit.bench.items import BenchItem, Label

LabelFormat = Literal["auto", "index0", "index1", "letter", "preference", "ranks", "best_text",
                      "binary_error", "binary_ok"]

TIE_WORDS = ("tie", "draw", "equal", "same", "=", "a=b", "b=a", "both", "none")
_TRUE = {"1", "true", "yes", "y", "t", "error"}
_FALSE = {"0", "false", "no", "n", "f", "no_error", "ok", "correct"}


class FieldMap(BaseModel):
    """Which column holds what. Defaults fit `{"id", "query", "responses", "label"}` records."""

    query: str = "query"
    responses: str | list[str] = "responses"
    label: str = "label"
    label_format: LabelFormat = "auto"
    id: str | None = Field(default="id", description="None, or a missing column: row number")
    subset: str | None = Field(default=None, description="column holding the subset name")
    default_subset: str = "custom"
    metadata: list[str] = Field(default_factory=list, description="columns copied to metadata")
    id_prefix: str = ""


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _as_list(value: Any) -> Any:
    """A list from a list, a tuple, a numpy array or a JSON list string; else unchanged."""
    if isinstance(value, list | tuple):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, str):
        out = value.tolist()
        return out if isinstance(out, list) else value
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, list) else value
    return value


def _int_like(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return _int_like(value.item())
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"cannot read {value!r} as a yes/no flag")


def _letter_index(text: str) -> int | None:
    t = text.strip().upper()
    for prefix in ("RESPONSE ", "OUTPUT ", "ASSISTANT "):
        t = t.removeprefix(prefix)
    if len(t) == 1 and "A" <= t <= "Z":
        return ord(t) - ord("A")
    return None


def parse_label(value: Any, responses: list[str], fmt: LabelFormat, *,
                int_base: int = 0) -> Label:
    """One label value -> Label. `int_base` is used by `auto` for integer labels."""
    n = len(responses)
    if _missing(value):
        raise ValueError("the label is missing")
    if fmt in ("binary_error", "binary_ok"):
        flag = _truthy(value)
        return Label.binary(error=flag if fmt == "binary_error" else not flag)
    if fmt == "best_text":
        text = str(value)
        if text not in responses:
            raise ValueError("the best_text label equals none of the responses")
        return Label.best_of(responses.index(text))
    if fmt == "ranks" or (fmt == "auto" and isinstance(_as_list(value), list)):
        ranks = _as_list(value)
        if not isinstance(ranks, list):
            raise ValueError(f"ranks must be a list, got {value!r}")
        ints = [_int_like(r) for r in ranks]
        if any(r is None for r in ints):
            raise ValueError(f"ranks must be integers, got {value!r}")
        clean = [r for r in ints if r is not None]
        if len(set(clean)) == 1 and n > 1:
            return Label.tie()
        return Label.ranking(clean)
    if fmt in ("index0", "index1"):
        idx = _int_like(value)
        if idx is None:
            raise ValueError(f"label {value!r} is not an integer index")
        return Label.best_of(idx - (1 if fmt == "index1" else 0))
    text = str(value).strip()
    low = text.lower()
    if fmt in ("preference", "auto"):
        if low in TIE_WORDS:
            return Label.tie()
        if ">" in text:
            left = _letter_index(text.split(">")[0])
            if left is not None:
                return Label.best_of(left)
        if "=" in text:
            return Label.tie()
    if fmt in ("letter", "auto"):
        li = _letter_index(text)
        if li is not None:
            return Label.best_of(li)
    if fmt == "auto":
        idx = _int_like(value)
        if idx is not None:
            return Label.best_of(idx - int_base)
    raise ValueError(f"cannot read label {value!r} as {fmt}")


def _responses(row: Mapping[str, Any], spec: str | list[str]) -> list[str]:
    if isinstance(spec, str):
        if spec not in row:
            raise KeyError(spec)
        value = _as_list(row[spec])
        if not isinstance(value, list):
            raise ValueError(f"column {spec!r} does not hold a list of responses")
        return [str(v) for v in value if not _missing(v)]
    out: list[str] = []
    for col in spec:
        if col not in row:
            raise KeyError(col)
        if not _missing(row[col]):
            out.append(str(row[col]))
    return out


def _query(value: Any) -> str | list[dict[str, str]]:
    value = _as_list(value)
    if isinstance(value, list):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    return str(value)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    if _missing(value):
        return None
    return value if isinstance(value, str | int | float | bool | list | dict) else str(value)


def load_records(records: Iterable[Mapping[str, Any]],
                 mapping: FieldMap | None = None) -> list[BenchItem]:
    """BenchItems from dict-like rows. Raises DatasetError naming the row on any bad record."""
    fm = mapping or FieldMap()
    rows = list(records)
    int_base = 0
    if fm.label_format == "auto":
        ints = [_int_like(r.get(fm.label)) for r in rows]
        present = [i for i in ints if i is not None]
        if present and 0 not in present:
            int_base = 1
    items: list[BenchItem] = []
    for n, row in enumerate(rows):
        try:
            responses = _responses(row, fm.responses)
            if fm.query not in row:
                raise KeyError(fm.query)
            if fm.label not in row:
                raise KeyError(fm.label)
            label = parse_label(row[fm.label], responses, fm.label_format, int_base=int_base)
            if fm.id and fm.id in row and not _missing(row[fm.id]):
                item_id = fm.id_prefix + str(_jsonable(row[fm.id]))
            else:
                item_id = f"{fm.id_prefix}{n}"
            subset = fm.default_subset
            if fm.subset and fm.subset in row and not _missing(row[fm.subset]):
                subset = str(row[fm.subset])
            meta = {c: _jsonable(row.get(c)) for c in fm.metadata}
            meta["source_row"] = n
            items.append(BenchItem(id=item_id, query=_query(row[fm.query]), responses=responses,
                                   label=label, subset=subset, metadata=meta))
        except KeyError as exc:
            raise DatasetError(f"row {n}: no column {exc.args[0]!r}") from exc
        except ValueError as exc:
            raise DatasetError(f"row {n}: {exc}") from exc
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DatasetError(f"duplicate item id {dup!r}")
    return items


def load_jsonl(path: str | os.PathLike[str], mapping: FieldMap | None = None) -> list[BenchItem]:
    rows: list[dict[str, Any]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as exc:
            raise DatasetError(f"{path}: line {n} is not JSON: {exc}") from exc
    return load_records(rows, mapping)


def load_dataframe(df: Any, mapping: FieldMap | None = None) -> list[BenchItem]:
    """BenchItems from a pandas DataFrame (one row per item)."""
    return load_records(df.to_dict(orient="records"), mapping)


def load_csv(path: str | os.PathLike[str], mapping: FieldMap | None = None) -> list[BenchItem]:
    import pandas as pd

    try:
        df = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    return load_dataframe(df, mapping)


def load_file(path: str | os.PathLike[str], mapping: FieldMap | None = None) -> list[BenchItem]:
    """Dispatch on the suffix: .jsonl, .json (a list of objects), .csv, .parquet."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return load_jsonl(p, mapping)
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read {p}: {exc}") from exc
        if not isinstance(data, list):
            raise DatasetError(f"{p}: expected a JSON list of objects")
        return load_records(data, mapping)
    if suffix == ".csv":
        return load_csv(p, mapping)
    if suffix == ".parquet":
        import pandas as pd

        return load_dataframe(pd.read_parquet(p), mapping)
    raise DatasetError(f"{p}: unsupported file type {suffix!r} (use .jsonl, .json, .csv, .parquet)")
