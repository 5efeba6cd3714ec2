"""Load your own benchmark: a JSONL, JSON, CSV or Parquet file, or a pandas DataFrame.

A `FieldMap` says which column holds what. Responses are one list column (a JSON list string in
CSV) or several columns, one per response. Every row becomes an item and every response is kept:
an empty response is a response, and it is judged. For files whose items have different numbers
of responses (the unused columns left empty), set `drop_empty_responses=True`.

Labels are read in a label format (`judgekit.bench.labels`: indices, letters, preferences,
ranks, the best response's text, yes/no flags, and tie values).

Several annotators: `label` may name several columns, one per annotator. Each is read in the
label format, missing cells are skipped, and the item's label is the majority; a majority tie
(as many votes for A as for B) is a tie. The per-annotator labels are kept in
`metadata["annotator_labels"]`.

Reference answers and rubrics: `FieldMap.reference` names a column holding a reference answer
(the judge sees it in a fenced block). Every loader takes `rubric=` (a JSON/YAML file, a list of
criteria or a `Rubric`, see `judgekit.rubric`) and `rubric_mode=`; the rubric is applied to every
item of the dataset.

The query is a column (text or a conversation), or `query_template` fills `{column}` fields
from the row (an instruction and an input). A .json file is a list of objects or an object of
lists, one list per subset; `records_path` points into nested JSON.

Cells are taken as they are: a response, query or reference that is not text (JSON `true`, a
number) is refused rather than judged as its Python repr. Errors name the row (counted from 0,
as `metadata["source_row"]`) and the column; `skip_bad_rows` leaves bad rows out and lists them
(`LoadResult.skipped`). The user guide is docs/own-data.md.
"""

from __future__ import annotations

import json
import os
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from judgekit.bench.datasets import DatasetError
from judgekit.bench.items import BenchItem, Label
from judgekit.bench.labels import (
    LabelFormat,
    as_list,
    int_like,
    is_missing,
    is_tie_value,
    majority_label,
    parse_label,
)
from judgekit.bench.messages import as_query
from judgekit.rubric import PrinciplesMode, RubricSpec, resolve_rubric
from judgekit.schema import Message


class FieldMap(BaseModel):
    """Which column holds what. Defaults fit `{"id", "query", "responses", "label"}` records."""

    query: str = "query"
    query_template: str | None = Field(default=None, description="build the query from several "
                                       "columns: a template such as '{instruction}\\n\\n{input}' "
                                       "(replaces `query`)")
    records_path: str | None = Field(default=None, description="in a .json file, the dotted "
                                     "path to the records (e.g. 'data.items')")
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

    @field_validator("query_template")
    @classmethod
    def _check_template(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value


def template_fields(template: str) -> list[str]:
    """The columns a query template reads. Raises ValueError on a template that is not a plain
    `{column}` template (a format spec, an attribute or index lookup, an unclosed brace), since
    those would fail or mean something else on every row."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad query template {template!r}: {exc}") from exc
    fields: list[str] = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name or any(c in name for c in ".[]") or spec or conversion:
            raise ValueError(f"bad query template {template!r}: write each field as {{column}} "
                             f"(got {{{name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}}); {{{{ and }}}} are literal braces")
        fields.append(name)
    if not fields:
        raise ValueError(f"the query template {template!r} names no {{column}}")
    return fields


class _FieldError(ValueError):
    """A problem with one column of one row (the loader adds the row number)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _text(value: Any, field: str, what: str) -> str:
    """A text cell as it is. Anything else is refused rather than turned into its Python repr
    (JSON `true` would become "True", a number "42.0"): the judge would score a made-up text."""
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        value = value.item()
    if not isinstance(value, str):
        shown = json.dumps(value) if isinstance(value, bool | int | float) else type(value).__name__
        raise _FieldError(field, f"{what} is {shown}, not text (write it as a JSON string)")
    return value


def _responses(row: Mapping[str, Any], spec: str | list[str], drop_empty: bool) -> list[str]:
    def keep(value: Any, field: str, what: str) -> str | None:
        if is_missing(value):
            return None if drop_empty else ("" if value is None or not isinstance(value, str)
                                            else value)
        return _text(value, field, what)

    if isinstance(spec, str):
        if spec not in row:
            raise KeyError(spec)
        value = as_list(row[spec])
        if not isinstance(value, list):
            raise _FieldError(spec, "does not hold a list of responses")
        kept = [keep(v, spec, f"response {i}") for i, v in enumerate(value)]
    else:
        kept = []
        for col in spec:
            if col not in row:
                raise KeyError(col)
            kept.append(keep(row[col], col, "the response"))
    out = [v for v in kept if v is not None]
    if not out:
        raise _FieldError(spec if isinstance(spec, str) else ",".join(spec), "no responses")
    return out


def _query(row: Mapping[str, Any], fm: FieldMap) -> str | list[Message]:
    """The row's query: its query column (a string or a conversation), or the template filled
    in with the row's columns (an empty or missing cell counts as empty text; the result is
    stripped, so an empty `{input}` leaves no trailing blank lines)."""
    if fm.query_template is None:
        if fm.query not in row:
            raise KeyError(fm.query)
        if is_missing(row[fm.query]):
            raise _FieldError(fm.query, "the query is empty")
        value = as_list(row[fm.query])
        if not isinstance(value, list):
            return _text(value, fm.query, "the query")
        try:
            return as_query(value)
        except ValueError as exc:
            raise _FieldError(fm.query, str(exc)) from exc
    values: dict[str, str] = {}
    for name in template_fields(fm.query_template):
        if name not in row:
            raise KeyError(name)
        values[name] = "" if is_missing(row[name]) else _text(row[name], name, "the value")
    query = fm.query_template.format_map(values).strip()
    if not query:
        raise _FieldError(",".join(values), "the query template gives an empty query")
    return query


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
            raise _FieldError(col, str(exc) + _tie_hint(row[col], fm)) from exc
    votes: list[Label] = []
    for col in columns:
        if is_missing(row[col]):
            continue
        try:
            votes.append(parse_label(row[col], responses, fm.label_format, int_base=int_base,
                                     tie_labels=fm.tie_labels))
        except ValueError as exc:
            raise _FieldError(col, str(exc) + _tie_hint(row[col], fm)) from exc
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
    if is_missing(value):
        return None
    return value if isinstance(value, str | int | float | bool | list | dict) else str(value)


def _int_base(rows: Sequence[Mapping[str, Any]], fm: FieldMap) -> int:
    """For `auto` integer labels: 1-based unless some label (tie values aside) is 0."""
    if fm.label_format != "auto":
        return 0
    present = [i for r in rows for c in fm.label_columns
               if not is_tie_value(r.get(c), fm.tie_labels)
               and (i := int_like(r.get(c))) is not None]
    return 1 if present and 0 not in present else 0


RubricArg = RubricSpec | str | os.PathLike[str] | None
"""A dataset's rubric: a JSON/YAML file, a list of criteria, a Rubric, or None."""


class SkippedRow(BaseModel):
    """A row left out by `skip_bad_rows`, and why (the message a strict load would raise)."""

    row: int
    reason: str


class LoadResult(BaseModel):
    """The items of a file, and the rows skipped as bad (empty unless `skip_bad_rows`)."""

    items: list[BenchItem]
    skipped: list[SkippedRow] = Field(default_factory=list)
    rows: int = Field(0, description="rows read, skipped ones included")

    def skipped_summary(self, first: int = 3) -> str:
        """One line: how many rows were skipped and the first reasons."""
        if not self.skipped:
            return f"all {self.rows} rows read"
        reasons = "; ".join(s.reason for s in self.skipped[:first])
        more = f"; ... {len(self.skipped) - first} more" if len(self.skipped) > first else ""
        return f"skipped {len(self.skipped)} bad rows of {self.rows}: {reasons}{more}"


class _BadRow:
    """A record that could not even be parsed (a JSONL line that is not JSON): it fails as its
    row, so `skip_bad_rows` can skip it like any other bad row."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tie_hint(value: Any, fm: FieldMap) -> str:
    """The hint added to a label error: a value that is no index or letter may be the file's
    own tie label, which only `--tie-label` (`FieldMap.tie_labels`) can declare."""
    if is_missing(value) or isinstance(as_list(value), list) or fm.label_format in (
            "ranks", "best_text", "binary_error", "binary_ok"):
        return ""
    shown = str(_jsonable(value))
    return f"; if {shown} means a tie, pass --tie-label {shown}"


def _item(n: int, row: Any, fm: FieldMap, int_base: int, item_rubric: Any,
          group: str | None) -> BenchItem:
    """One row as a BenchItem; raises DatasetError naming the row and the column."""
    try:
        if isinstance(row, _BadRow):
            raise _FieldError("", row.reason)
        if not isinstance(row, Mapping):
            raise _FieldError("", f"expected an object, got {type(row).__name__}")
        responses = _responses(row, fm.responses, fm.drop_empty_responses)
        query = _query(row, fm)
        label, votes = _label(row, fm, responses, int_base)
        if fm.id and fm.id in row and not is_missing(row[fm.id]):
            item_id = fm.id_prefix + str(_jsonable(row[fm.id]))
        else:
            item_id = f"{fm.id_prefix}{n}"
        subset = group if group is not None else fm.default_subset
        if fm.subset and fm.subset in row and not is_missing(row[fm.subset]):
            subset = str(row[fm.subset])
        meta = {c: _jsonable(row.get(c)) for c in fm.metadata}
        meta["source_row"] = n
        if group is not None:
            meta["source_key"] = group
        if votes is not None:
            meta["annotator_labels"] = votes
        reference = None
        if fm.reference and not is_missing(row.get(fm.reference)):
            reference = _text(row[fm.reference], fm.reference, "the reference")
        try:
            return BenchItem(id=item_id, query=query, responses=responses, label=label,
                             subset=subset, metadata=meta, reference=reference,
                             rubric=item_rubric)
        except ValidationError as exc:  # the label does not fit the responses
            errors = exc.errors()
            loc = tuple(errors[0]["loc"]) if errors else ()
            field = {"query": fm.query, "responses": str(fm.responses)}.get(
                str(loc[0]) if loc else "", ",".join(fm.label_columns))
            msg = (errors[0]["msg"] if errors else "invalid").removeprefix("Value error, ")
            if field == ",".join(fm.label_columns):
                msg += "".join(dict.fromkeys(_tie_hint(row.get(c), fm)
                                             for c in fm.label_columns))
            raise _FieldError(field, msg) from exc
    except KeyError as exc:
        raise DatasetError(f"row {n}: no column {exc.args[0]!r}") from exc
    except _FieldError as exc:
        where = f"row {n}, field {exc.field!r}" if exc.field else f"row {n}"
        raise DatasetError(f"{where}: {exc}") from exc
    except ValueError as exc:
        raise DatasetError(f"row {n}: {exc}") from exc


def read_records(records: Iterable[Any], mapping: FieldMap | None = None, *,
                 rubric: RubricArg = None, rubric_mode: PrinciplesMode | str | None = None,
                 skip_bad_rows: bool = False,
                 groups: Sequence[str | None] | None = None) -> LoadResult:
    """BenchItems from dict-like rows, each with `rubric` when given. A bad row raises
    DatasetError naming the row (from 0) and the column, or with `skip_bad_rows` is left out
    and listed in `LoadResult.skipped` (a later row repeating an item id is a bad row too).
    `groups` gives each row's subset (the key of a JSON object of lists); a subset column
    still wins. A bad rubric raises RubricError."""
    fm = mapping or FieldMap()
    item_rubric = resolve_rubric(rubric, rubric_mode)
    rows = list(records)
    good = [r for r in rows if isinstance(r, Mapping)]
    int_base = _int_base(good, fm)
    if fm.reference and good and not any(fm.reference in r for r in good):
        raise DatasetError(f"no column {fm.reference!r} (the reference field) in any row")
    items: list[BenchItem] = []
    skipped: list[SkippedRow] = []
    first_row: dict[str, int] = {}
    for n, row in enumerate(rows):
        try:
            item = _item(n, row, fm, int_base, item_rubric, groups[n] if groups else None)
            if item.id in first_row:
                raise DatasetError(f"duplicate item id {item.id!r} (rows {first_row[item.id]}, "
                                   f"{n})")
        except DatasetError as exc:
            if not skip_bad_rows:
                raise
            skipped.append(SkippedRow(row=n, reason=str(exc)))
            continue
        first_row[item.id] = n
        items.append(item)
    if rows and not items:
        result = LoadResult(items=[], skipped=skipped, rows=len(rows))
        raise DatasetError(f"no usable rows: {result.skipped_summary()}")
    return LoadResult(items=items, skipped=skipped, rows=len(rows))


def load_records(records: Iterable[Mapping[str, Any]], mapping: FieldMap | None = None, *,
                 rubric: RubricArg = None,
                 rubric_mode: PrinciplesMode | str | None = None) -> list[BenchItem]:
    """BenchItems from dict-like rows (see `read_records`); any bad row raises DatasetError."""
    return read_records(records, mapping, rubric=rubric, rubric_mode=rubric_mode).items


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") \
            from exc
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _jsonl_rows(text: str) -> list[Any]:
    """The records of a JSONL text (blank lines skipped); a line that is not a JSON object
    becomes a `_BadRow` naming its line (from 1), so it fails, or is skipped, as its row."""
    rows: list[Any] = []
    for n, line in enumerate(text.split("\n"), 1):  # "\n" only: U+2028 inside a string stays
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            rows.append(_BadRow(f"line {n} is not JSON: {exc}"))
            continue
        rows.append(row if isinstance(row, dict)
                    else _BadRow(f"line {n}: expected an object, got {type(row).__name__}"))
    return rows


def json_records(data: Any, records_path: str | None = None,
                 where: str = "the file") -> tuple[list[Any], list[str | None] | None]:
    """The records of a parsed JSON document, and each record's group when the records are a
    JSON object of lists (one list per category: the key becomes the subset).

    `records_path` is a dotted path to the records inside the document ("data.items"; a number
    indexes a list). Accepted at the end of the path: a list of objects, or an object whose
    values are all lists of objects."""
    node = data
    walked: list[str] = []
    for key in records_path.split(".") if records_path else []:
        walked.append(key)
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.lstrip("-").isdigit() \
                and -len(node) <= int(key) < len(node):
            node = node[int(key)]
        else:
            have = (f"keys: {', '.join(map(repr, list(node)[:10]))}" if isinstance(node, dict)
                    else f"a {type(node).__name__}")
            raise DatasetError(f"{where}: --records-path {records_path!r}: no "
                               f"{'.'.join(walked)!r} ({have})")
    if isinstance(node, list):
        return node, None
    if isinstance(node, dict) and node and all(isinstance(v, list) for v in node.values()):
        rows: list[Any] = []
        groups: list[str | None] = []
        for key, members in node.items():
            rows.extend(members)
            groups.extend([str(key)] * len(members))
        return rows, groups
    at = f" at {records_path!r}" if records_path else ""
    keys = (f"; its keys: {', '.join(map(repr, list(node)[:10]))}; point --records-path at "
            "the list" if isinstance(node, dict) and node else "")
    raise DatasetError(f"{where}: expected a list of objects or an object of lists{at}, got "
                       f"a {type(node).__name__}{keys}")


def _frame_rows(df: Any) -> list[Any]:
    return list(df.to_dict(orient="records"))


def _csv_rows(path: Path) -> list[Any]:
    """Every cell as text (no NaN for an empty cell, no number parsing)."""
    import pandas as pd

    try:
        return _frame_rows(pd.read_csv(path, keep_default_na=False, dtype=str))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") \
            from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def read_file(path: str | os.PathLike[str], mapping: FieldMap | None = None, *,
              rubric: RubricArg = None, rubric_mode: PrinciplesMode | str | None = None,
              skip_bad_rows: bool = False) -> LoadResult:
    """Read a .jsonl, .json, .csv or .parquet file (dispatch on the suffix) as `read_records`
    does. A .json file is a list of objects, or an object of lists (the key is the subset);
    `FieldMap.records_path` points into nested JSON. `rubric` applies to every item."""
    import pandas as pd

    fm = mapping or FieldMap()
    p = Path(path)
    suffix = p.suffix.lower()
    if fm.records_path and suffix != ".json":
        raise DatasetError(f"{p}: --records-path applies to .json files only")
    groups: list[str | None] | None = None
    if suffix == ".jsonl":
        rows = _jsonl_rows(_read_text(p))
    elif suffix == ".json":
        try:
            data = json.loads(_read_text(p))
        except ValueError as exc:
            raise DatasetError(f"cannot read {p}: {exc}") from exc
        rows, groups = json_records(data, fm.records_path, str(p))
    elif suffix == ".csv":
        rows = _csv_rows(p)
    elif suffix == ".parquet":
        try:
            rows = _frame_rows(pd.read_parquet(p))
        except (OSError, ValueError, ImportError) as exc:
            raise DatasetError(f"cannot read {p}: {exc}") from exc
    else:
        raise DatasetError(f"{p}: unsupported file type {suffix!r} "
                           "(use .jsonl, .json, .csv, .parquet)")
    return read_records(rows, fm, rubric=rubric, rubric_mode=rubric_mode,
                        skip_bad_rows=skip_bad_rows, groups=groups)


def load_jsonl(path: str | os.PathLike[str], mapping: FieldMap | None = None, *,
               rubric: RubricArg = None,
               rubric_mode: PrinciplesMode | str | None = None) -> list[BenchItem]:
    return read_records(_jsonl_rows(_read_text(Path(path))), mapping, rubric=rubric,
                        rubric_mode=rubric_mode).items


def load_dataframe(df: Any, mapping: FieldMap | None = None, *, rubric: RubricArg = None,
                   rubric_mode: PrinciplesMode | str | None = None) -> list[BenchItem]:
    """BenchItems from a pandas DataFrame (one row per item)."""
    return load_records(_frame_rows(df), mapping, rubric=rubric, rubric_mode=rubric_mode)


def load_csv(path: str | os.PathLike[str], mapping: FieldMap | None = None, *,
             rubric: RubricArg = None,
             rubric_mode: PrinciplesMode | str | None = None) -> list[BenchItem]:
    return load_records(_csv_rows(Path(path)), mapping, rubric=rubric, rubric_mode=rubric_mode)


def load_file(path: str | os.PathLike[str], mapping: FieldMap | None = None, *,
              rubric: RubricArg = None,
              rubric_mode: PrinciplesMode | str | None = None) -> list[BenchItem]:
    """The items of a .jsonl, .json, .csv or .parquet file (see `read_file`); any bad row
    raises DatasetError."""
    return read_file(path, mapping, rubric=rubric, rubric_mode=rubric_mode).items


def _short(text: str, width: int = 70) -> str:
    """One line: newlines shown as \\n (so a template's layout shows), cut at `width`."""
    flat = text.replace("\r", "").replace("\n", "\\n")
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def describe_items(items: Sequence[BenchItem]) -> str:
    """What a run would judge, for `--dry-run`: counts per subset and label, and every field of
    the first item, so a wrong column mapping shows before a model is paid for."""
    if not items:
        return "0 items"
    subsets = Counter(it.subset for it in items)
    kinds = Counter(it.label.kind.value for it in items)
    sizes = Counter(len(it.responses) for it in items)
    lines = [
        f"{_count(len(items), 'item')} in {_count(len(subsets), 'subset')}: "
        + ", ".join(f"{name} ({n})" for name, n in subsets.items()),
        "labels: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
        "responses per item: " + ", ".join(f"{k} ({_count(n, 'item')})"
                                           for k, n in sorted(sizes.items())),
    ]
    first = items[0]
    query = first.query if isinstance(first.query, str) else first.query[-1]["content"]
    votes = first.metadata.get("annotator_labels")
    lines.append(f"first item: id {first.id}, subset {first.subset}, label {first.label}"
                 + (f" (annotators: {', '.join(votes)})" if votes else ""))
    lines.append(f"  query: {_short(query)}")
    lines.extend(f"  response {i}: {_short(r)}" for i, r in enumerate(first.responses))
    if first.reference is not None:
        lines.append(f"  reference: {_short(first.reference)}")
    return "\n".join(lines)
