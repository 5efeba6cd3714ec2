"""Load your own benchmark: a JSONL, JSON, CSV or Parquet file, or a pandas DataFrame.

A `FieldMap` says which column holds what. Responses are one list column (a JSON list string in
CSV) or several columns, one per response. Every row becomes an item and every response is kept:
an empty response is a response, and it is judged. For files whose items have different numbers
of responses (the unused columns left empty), set `drop_empty_responses=True`.

The label column is read according to `label_format`:

==============  ================================================================================
index0          0-based index of the best response
index1          1-based index of the best response (LLMBar style)
letter          "A", "B", "C" ... (the best response's letter)
preference      "A>B", "B>A", "A>>B", "A=B"
ranks           a list of ranks per response, 1 = best (equal ranks are ties)
best_text       the text of the best response (must equal one of the responses)
binary_error    truthy = the single response has an error
binary_ok       truthy = the single response is good (no error)
auto            strings as `preference`/`letter`/tie words, lists as `ranks`, integers as
                0-based if any label in the file is 0, else 1-based
==============  ================================================================================

Ties: in every format but the binary ones, `ranks` and `best_text`, a tie word (`TIE_WORDS`:
"tie", "draw", "equal", "A=B", ...) is a tie label, and so is any value listed in
`FieldMap.tie_labels` (for index formats whose tie is a number: PandaLM's 0 in 1-based labels,
Auto-J's 2 in 0-based ones).

Several annotators: `label` may name several columns, one per annotator. Each is read in the
label format, missing cells are skipped, and the item's label is the majority; a majority tie
(as many votes for A as for B) is a tie. The per-annotator labels are kept in
`metadata["annotator_labels"]`.

Reference answers and rubrics: `FieldMap.reference` names a column holding a reference answer
(the judge sees it in a fenced block). Every loader takes `rubric=` (a JSON/YAML file, a list of
criteria or a `Rubric`, see `judgekit.rubric`) and `rubric_mode=`; the rubric is applied to every
item of the dataset.

Errors name the row (counted from 0, as `metadata["source_row"]`) and the column.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from judgekit.bench.datasets import DatasetError
from judgekit.bench.datasets.base import parse_jsonl
from judgekit.bench.items import BenchItem, Label, LabelKind
from judgekit.bench.messages import as_query
from judgekit.rubric import PrinciplesMode, RubricSpec, resolve_rubric

LabelFormat = Literal["auto", "index0", "index1", "letter", "preference", "ranks", "best_text",
                      "binary_error", "binary_ok"]

TIE_WORDS = ("tie", "draw", "equal", "same", "=", "a=b", "b=a", "both", "none")
_TRUE = {"1", "true", "yes", "y", "t", "error"}
_FALSE = {"0", "false", "no", "n", "f", "no_error", "ok", "correct"}


class FieldMap(BaseModel):
    """Which column holds what. Defaults fit `{"id", "query", "responses", "label"}` records."""

    query: str = "query"
    responses: str | list[str] = "responses"
    label: str | list[str] = Field(default="label", description="the label column, or several "
                                   "annotator columns whose majority is the label")
    label_format: LabelFormat = "auto"
    tie_labels: list[str] = Field(default_factory=list, description="label values that mean a "
                                  "tie, besides the tie words (e.g. ['0'] for PandaLM)")
    id: str | None = Field(default="id", description="None, or a missing column: row number")
    subset: str | None = Field(default=None, description="column holding the subset name")
    default_subset: str = "custom"
    metadata: list[str] = Field(default_factory=list, description="columns copied to metadata")
    id_prefix: str = ""
    reference: str | None = Field(default=None, description="column holding a reference "
                                  "answer (empty or absent cells: None)")
    drop_empty_responses: bool = Field(default=False, description="an empty cell means no "
                                       "response (items with different numbers of responses); "
                                       "by default an empty response is kept and judged")

    @property
    def label_columns(self) -> list[str]:
        return [self.label] if isinstance(self.label, str) else list(self.label)


class _FieldError(ValueError):
    """A problem with one column of one row (the loader adds the row number)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


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


def _norm(value: Any) -> str:
    """A label value as compared with tie values: integers as digits, text lower-cased."""
    as_int = _int_like(value)
    return str(as_int) if as_int is not None else str(value).strip().lower()


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


def is_tie_value(value: Any, tie_labels: Iterable[Any] = ()) -> bool:
    """Whether a label value says "tie": a tie word, or one of `tie_labels`."""
    norm = _norm(value)
    return norm in TIE_WORDS or norm in {_norm(t) for t in tie_labels}


def parse_label(value: Any, responses: list[str], fmt: LabelFormat, *,
                int_base: int = 0, tie_labels: Sequence[Any] = ()) -> Label:
    """One label value -> Label. `int_base` is used by `auto` for integer labels; `tie_labels`
    are extra values that mean a tie (every format but ranks, best_text and the binary ones)."""
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
    if is_tie_value(value, tie_labels):
        return Label.tie()
    if fmt in ("index0", "index1"):
        idx = _int_like(value)
        if idx is None:
            raise ValueError(f"label {value!r} is not an integer index")
        return Label.best_of(idx - (1 if fmt == "index1" else 0))
    text = str(value).strip()
    if fmt in ("preference", "auto"):
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


def _vote_key(label: Label) -> Hashable:
    if label.kind is LabelKind.BEST:
        return ("best", label.best)
    if label.kind is LabelKind.TIE:
        return ("tie",)
    if label.kind is LabelKind.BINARY:
        return ("binary", label.error)
    raise ValueError("a majority over annotators needs best, tie or binary labels, not rankings")


def majority_label(labels: Sequence[Label]) -> Label:
    """The majority of several annotators' labels. A majority tie (the top count shared by two
    or more answers) is a tie; for binary labels an even split is an error."""
    if not labels:
        raise ValueError("no annotator gave a label")
    counts = Counter(_vote_key(lb) for lb in labels)
    top = max(counts.values())
    winners = [k for k, c in counts.items() if c == top]
    if len(winners) == 1:
        return next(lb for lb in labels if _vote_key(lb) == winners[0])
    if any(lb.kind is LabelKind.BINARY for lb in labels):
        raise ValueError("the annotators split evenly on the error flag")
    return Label.tie()


def _responses(row: Mapping[str, Any], spec: str | list[str], drop_empty: bool) -> list[str]:
    def keep(value: Any) -> str | None:
        if _missing(value):
            return None if drop_empty else ("" if value is None or not isinstance(value, str)
                                            else value)
        return str(value)

    if isinstance(spec, str):
        if spec not in row:
            raise KeyError(spec)
        value = _as_list(row[spec])
        if not isinstance(value, list):
            raise _FieldError(spec, "does not hold a list of responses")
        kept = [keep(v) for v in value]
    else:
        kept = []
        for col in spec:
            if col not in row:
                raise KeyError(col)
            kept.append(keep(row[col]))
    out = [v for v in kept if v is not None]
    if not out:
        raise _FieldError(spec if isinstance(spec, str) else ",".join(spec), "no responses")
    return out


def _label(row: Mapping[str, Any], fm: FieldMap, responses: list[str],
           int_base: int) -> tuple[Label, list[str] | None]:
    """The row's label, and the per-annotator labels when there are several columns."""
    columns = fm.label_columns
    for col in columns:
        if col not in row:
            raise KeyError(col)
    if len(columns) == 1:
        col = columns[0]
        try:
            return parse_label(row[col], responses, fm.label_format, int_base=int_base,
                               tie_labels=fm.tie_labels), None
        except ValueError as exc:
            raise _FieldError(col, str(exc)) from exc
    votes: list[Label] = []
    for col in columns:
        if _missing(row[col]):
            continue
        try:
            votes.append(parse_label(row[col], responses, fm.label_format, int_base=int_base,
                                     tie_labels=fm.tie_labels))
        except ValueError as exc:
            raise _FieldError(col, str(exc)) from exc
    try:
        return majority_label(votes), [str(v) for v in votes]
    except ValueError as exc:
        raise _FieldError(",".join(columns), str(exc)) from exc


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    if _missing(value):
        return None
    return value if isinstance(value, str | int | float | bool | list | dict) else str(value)


def _int_base(rows: Sequence[Mapping[str, Any]], fm: FieldMap) -> int:
    """For `auto` integer labels: 1-based unless some label (tie values aside) is 0."""
    if fm.label_format != "auto":
        return 0
    present = [i for r in rows for c in fm.label_columns
               if not is_tie_value(r.get(c), fm.tie_labels)
               and (i := _int_like(r.get(c))) is not None]
    return 1 if present and 0 not in present else 0


RubricArg = RubricSpec | str | os.PathLike[str] | None
"""A dataset's rubric: a JSON/YAML file, a list of criteria, a Rubric, or None."""


def load_records(records: Iterable[Mapping[str, Any]], mapping: FieldMap | None = None, *,
                 rubric: RubricArg = None,
                 rubric_mode: PrinciplesMode | str | None = None) -> list[BenchItem]:
    """BenchItems from dict-like rows, each with `rubric` when given. Raises DatasetError
    naming the row (from 0) and the column on any bad record, RubricError on a bad rubric."""
    fm = mapping or FieldMap()
    item_rubric = resolve_rubric(rubric, rubric_mode)
    rows = list(records)
    int_base = _int_base(rows, fm)
    if fm.reference and rows and not any(fm.reference in r for r in rows):
        raise DatasetError(f"no column {fm.reference!r} (the reference field) in any row")
    items: list[BenchItem] = []
    for n, row in enumerate(rows):
        try:
            if not isinstance(row, Mapping):
                raise _FieldError("", f"expected an object, got {type(row).__name__}")
            responses = _responses(row, fm.responses, fm.drop_empty_responses)
            if fm.query not in row:
                raise KeyError(fm.query)
            if _missing(row[fm.query]):
                raise _FieldError(fm.query, "the query is empty")
            try:
                query = as_query(_as_list(row[fm.query]))
            except ValueError as exc:
                raise _FieldError(fm.query, str(exc)) from exc
            label, votes = _label(row, fm, responses, int_base)
            if fm.id and fm.id in row and not _missing(row[fm.id]):
                item_id = fm.id_prefix + str(_jsonable(row[fm.id]))
            else:
                item_id = f"{fm.id_prefix}{n}"
            subset = fm.default_subset
            if fm.subset and fm.subset in row and not _missing(row[fm.subset]):
                subset = str(row[fm.subset])
            meta = {c: _jsonable(row.get(c)) for c in fm.metadata}
            meta["source_row"] = n
            if votes is not None:
                meta["annotator_labels"] = votes
            reference = None
            if fm.reference and not _missing(row.get(fm.reference)):
                reference = str(row[fm.reference])
            try:
                items.append(BenchItem(id=item_id, query=query, responses=responses,
                                       label=label, subset=subset, metadata=meta,
                                       reference=reference, rubric=item_rubric))
            except ValidationError as exc:  # the label does not fit the responses
                errors = exc.errors()
                loc = tuple(errors[0]["loc"]) if errors else ()
                field = {"query": fm.query, "responses": str(fm.responses)}.get(
                    str(loc[0]) if loc else "", ",".join(fm.label_columns))
                msg = (errors[0]["msg"] if errors else "invalid").removeprefix("Value error, ")
                raise _FieldError(field, msg) from exc
        except KeyError as exc:
            raise DatasetError(f"row {n}: no column {exc.args[0]!r}") from exc
        except _FieldError as exc:
            where = f"row {n}, field {exc.field!r}" if exc.field else f"row {n}"
            raise DatasetError(f"{where}: {exc}") from exc
        except ValueError as exc:
            raise DatasetError(f"row {n}: {exc}") from exc
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        rows_of = [n for n, i in enumerate(ids) if i == dup]
        raise DatasetError(f"duplicate item id {dup!r} (rows {', '.join(map(str, rows_of))})")
    return items


def load_jsonl(path: str | os.PathLike[str], mapping: FieldMap | None = None, *,
               rubric: RubricArg = None,
               rubric_mode: PrinciplesMode | str | None = None) -> list[BenchItem]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return load_records(parse_jsonl(text, str(path)), mapping, rubric=rubric,
                        rubric_mode=rubric_mode)


def load_dataframe(df: Any, mapping: FieldMap | None = None, *, rubric: RubricArg = None,
                   rubric_mode: PrinciplesMode | str | None = None) -> list[BenchItem]:
    """BenchItems from a pandas DataFrame (one row per item)."""
    return load_records(df.to_dict(orient="records"), mapping, rubric=rubric,
                        rubric_mode=rubric_mode)


def load_csv(path: str | os.PathLike[str], mapping: FieldMap | None = None, *,
             rubric: RubricArg = None,
             rubric_mode: PrinciplesMode | str | None = None) -> list[BenchItem]:
    import pandas as pd

    try:
        df = pd.read_csv(path, keep_default_na=False, dtype=str)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    return load_dataframe(df, mapping, rubric=rubric, rubric_mode=rubric_mode)


def load_file(path: str | os.PathLike[str], mapping: FieldMap | None = None, *,
              rubric: RubricArg = None,
              rubric_mode: PrinciplesMode | str | None = None) -> list[BenchItem]:
    """Dispatch on the suffix: .jsonl, .json (a list of objects), .csv, .parquet. `rubric`
    (a JSON/YAML file, a list of criteria or a Rubric) is applied to every item."""
    p = Path(path)
    suffix = p.suffix.lower()
    extra: dict[str, Any] = {"rubric": rubric, "rubric_mode": rubric_mode}
    if suffix == ".jsonl":
        return load_jsonl(p, mapping, **extra)
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{p} is not UTF-8 text: {exc.reason} at byte {exc.start}") \
                from exc
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read {p}: {exc}") from exc
        if not isinstance(data, list):
            raise DatasetError(f"{p}: expected a JSON list of objects")
        return load_records(data, mapping, **extra)
    if suffix == ".csv":
        return load_csv(p, mapping, **extra)
    if suffix == ".parquet":
        import pandas as pd

        try:
            df = pd.read_parquet(p)
        except (OSError, ValueError, ImportError) as exc:
            raise DatasetError(f"cannot read {p}: {exc}") from exc
        return load_dataframe(df, mapping, **extra)
    raise DatasetError(f"{p}: unsupported file type {suffix!r} (use .jsonl, .json, .csv, .parquet)")
