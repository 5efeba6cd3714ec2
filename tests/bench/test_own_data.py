"""Own data without a script: query templates, nested JSON, objects of lists, bad rows skipped
and reported, non-text cells refused, and the bench CLI's help, subset and label errors."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from judgekit.bench.cli import build_parser
from judgekit.bench.datasets import DatasetError, load_dataset, select
from judgekit.bench.generic import FieldMap, json_records, load_records, read_file, read_records
from judgekit.bench.items import BenchItem, Label
from judgekit.cli import main

PAIR = {"query": "q", "responses": ["a", "b"], "label": "A"}


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# -- the query template ------------------------------------------------------------------------
def test_a_query_template_joins_columns_and_an_empty_cell_is_empty_text() -> None:
    rows = [{"instruction": "Sum {these}", "input": "1 2", "responses": ["3", "4"], "label": 0},
            {"instruction": "Greet", "input": None, "responses": ["hi", "yo"], "label": 1},
            {"instruction": "Greet", "input": "", "responses": ["hi", "yo"], "label": 1,
             "id": "x"}]
    fm = FieldMap(query_template="{{task}} {instruction}\n\n{input}")
    items = load_records(rows, fm)
    # the row's own braces are text, {{ }} in the template are literal braces
    assert items[0].query == "{task} Sum {these}\n\n1 2"
    assert items[1].query == "{task} Greet"  # stripped: no trailing blank lines
    assert items[2].query == "{task} Greet"


@pytest.mark.parametrize("template", ["{a.b}", "{a[0]}", "{a!r}", "{a:>10}", "{a", "no fields",
                                      "{}"])
def test_a_template_that_is_not_plain_columns_is_refused(template: str) -> None:
    with pytest.raises(ValidationError, match="template"):
        FieldMap(query_template=template)


def test_a_template_names_the_row_and_column_it_cannot_fill() -> None:
    fm = FieldMap(query_template="{instruction}\n{input}")
    with pytest.raises(DatasetError, match=r"^row 1: no column 'input'$"):
        load_records([{"instruction": "i", "input": "x", **PAIR}, {"instruction": "i", **PAIR}],
                     fm)
    with pytest.raises(DatasetError, match=r"^row 0, field 'input': the value is 3, not text"):
        load_records([{"instruction": "i", "input": 3, **PAIR}], fm)
    with pytest.raises(DatasetError, match="the query template gives an empty query"):
        load_records([{"instruction": "", "input": " ", **PAIR}], fm)


# -- JSON shapes -------------------------------------------------------------------------------
def test_a_json_object_of_lists_gives_one_subset_per_key(tmp_path: Path) -> None:
    data = {"math": [dict(PAIR, id="m1"), dict(PAIR, id="m2", label="B")],
            "https://cohere.ai/": [dict(PAIR, id="c1", cat="chat")]}
    path = tmp_path / "cats.json"
    path.write_text(json.dumps(data))
    items = read_file(path).items
    assert [(it.id, it.subset) for it in items] == [
        ("m1", "math"), ("m2", "math"), ("c1", "https://cohere.ai/")]
    assert [it.metadata["source_row"] for it in items] == [0, 1, 2]
    assert items[2].metadata["source_key"] == "https://cohere.ai/"
    # a subset column still wins where a row has one
    by_column = read_file(path, FieldMap(subset="cat")).items
    assert [it.subset for it in by_column] == ["math", "math", "chat"]


def test_records_path_walks_keys_and_list_indices(tmp_path: Path) -> None:
    doc = {"meta": {"v": 1}, "splits": [{"rows": [PAIR]}, {"rows": [PAIR, PAIR]}]}
    assert len(json_records(doc, "splits.1.rows")[0]) == 2
    rows, groups = json_records(doc, "splits.0")
    assert rows == [PAIR] and groups == ["rows"]
    with pytest.raises(DatasetError, match=r"no 'splits\.2' \(a list\)"):
        json_records(doc, "splits.2.rows")
    with pytest.raises(DatasetError, match=r"no 'data' \(keys: 'meta', 'splits'\)"):
        json_records(doc, "data.items")
    with pytest.raises(DatasetError, match="expected a list of objects or an object of lists"):
        json_records(doc)  # "meta" holds no list: the records must be pointed at
    path = tmp_path / "doc.jsonl"
    path.write_text(json.dumps(PAIR) + "\n")
    with pytest.raises(DatasetError, match=r"--records-path applies to \.json files only"):
        read_file(path, FieldMap(records_path="x"))


# -- bad rows ----------------------------------------------------------------------------------
def test_skip_bad_rows_reports_the_count_and_the_first_reasons(tmp_path: Path) -> None:
    lines = [json.dumps(dict(PAIR, id="a")), "{not json", json.dumps([1, 2]),
             json.dumps(dict(PAIR, id="b", label="Z")), json.dumps(dict(PAIR, id="a")),
             json.dumps(dict(PAIR, id="c", label="B"))]
    path = tmp_path / "messy.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"^row 1: line 2 is not JSON"):
        read_file(path)
    loaded = read_file(path, skip_bad_rows=True)
    assert [it.id for it in loaded.items] == ["a", "c"]
    assert [s.row for s in loaded.skipped] == [1, 2, 3, 4] and loaded.rows == 6
    assert loaded.skipped[3].reason == "duplicate item id 'a' (rows 0, 4)"
    summary = loaded.skipped_summary()
    assert summary.startswith("skipped 4 bad rows of 6: row 1: line 2 is not JSON")
    assert "row 2: line 3: expected an object, got list" in summary
    assert summary.endswith("; ... 1 more") and "\n" not in summary
    with pytest.raises(DatasetError, match=r"^no usable rows: skipped 2 bad rows of 2"):
        read_records([{"query": "q"}, {"query": "q"}], skip_bad_rows=True)


@pytest.mark.parametrize(("value", "shown"), [(True, "true"), (42, "42"), (0.5, "0.5"),
                                              ({"text": "a"}, "dict")])
def test_a_response_that_is_not_text_is_refused_naming_row_and_field(value: object,
                                                                     shown: str) -> None:
    with pytest.raises(DatasetError) as exc:
        load_records([PAIR, {"query": "q", "responses": ["a", value], "label": "A"}])
    assert str(exc.value) == (f"row 1, field 'responses': response 1 is {shown}, not text "
                              "(write it as a JSON string)")
    with pytest.raises(DatasetError, match=rf"^row 0, field 'r2': the response is {shown},"):
        load_records([{"query": "q", "r1": "a", "r2": value, "label": "A"}],
                     FieldMap(responses=["r1", "r2"]))


def test_a_boolean_parquet_column_is_refused_not_turned_into_true(tmp_path: Path) -> None:
    path = tmp_path / "flags.parquet"
    pd.DataFrame({"query": ["q"], "r1": ["a"], "r2": [True], "label": ["A"]}).to_parquet(path)
    with pytest.raises(DatasetError, match="field 'r2': the response is true, not text"):
        read_file(path, FieldMap(responses=["r1", "r2"]))


def test_label_errors_point_to_tie_label() -> None:
    for row, fmt in [(dict(PAIR, label="X"), "letter"), (dict(PAIR, label=3), "index1"),
                     (dict(PAIR, label=0), "index1"), (dict(PAIR, label="maybe"), "auto")]:
        with pytest.raises(DatasetError) as exc:
            load_records([row], FieldMap(label_format=fmt))
        value = row["label"]
        assert str(exc.value).endswith(f"; if {value} means a tie, pass --tie-label {value}")
    # no hint where a tie value cannot apply
    with pytest.raises(DatasetError) as exc:
        load_records([dict(PAIR, label=None)])
    assert "--tie-label" not in str(exc.value)


# -- the CLI -----------------------------------------------------------------------------------
def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out.extend(_parsers(sub))
    return out


def test_every_bench_flag_has_help_text() -> None:
    bench = next(p for p in _parsers(build_parser()) if p.prog.endswith("bench"))
    missing = [f"{p.prog} {'/'.join(a.option_strings)}" for p in _parsers(bench)
               for a in p._actions if a.option_strings and a.help != argparse.SUPPRESS
               and not a.help and a.dest != "help"]
    assert missing == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--query-template", "{a.b}"], "bad query template '{a.b}'"),
    (["--records-path", "x"], "--records-path applies to .json files only"),
    (["--label-format", "index1"], "label 0 is not a 1-based index; if 0 means a tie, "
                                   "pass --tie-label 0"),
])
def test_bad_own_file_arguments_exit_2_with_one_line(tmp_path: Path, argv: list[str],
                                                     message: str) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text(json.dumps(dict(PAIR, label=0)) + "\n")
    code, out, err = _cli("bench", "run", str(path), "--dry-run", *argv)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_own_file_flags_with_a_registered_dataset_are_refused() -> None:
    code, _, err = _cli("bench", "run", "llmbar", "--query-template", "{a}", "--dry-run")
    assert code == 2
    assert "--query-template applies to own files only" in err


def test_an_unknown_subset_lists_the_valid_ones() -> None:
    code, _, err = _cli("bench", "run", "llmbar", "--subset", "llmbar-natral", "--dry-run")
    assert code == 2 and len(err.splitlines()) == 1
    names = sorted({it.subset for it in load_dataset("llmbar")})
    assert "did you mean llmbar-natural" in err
    assert all(name in err for name in names)


def test_an_unknown_subset_among_many_lists_the_groups() -> None:
    items = [BenchItem(id=f"{g}{i}", query="q", responses=["a", "b"], label=Label.best_of(0),
                       subset=f"{g}/s{i}") for g in ("pairwise", "bestofn") for i in range(30)]
    items.append(BenchItem(id="u", query="q", responses=["a"], label=Label.binary(error=False),
                           subset="https://cohere.ai/"))
    with pytest.raises(DatasetError) as exc:
        select(items, "pairwise/s99")
    text = str(exc.value)
    assert "61 subsets in groups: pairwise/* (30), bestofn/* (30), https://cohere.ai/" in text \
        or "61 subsets in groups: bestofn/* (30), https://cohere.ai/, pairwise/* (30)" in text
    assert "did you mean pairwise/s9" in text


def test_bench_list_verbose_names_every_subset() -> None:
    code, out, _ = _cli("bench", "list", "-v")
    assert code == 0
    llmbar = {it.subset: 0 for it in load_dataset("llmbar")}
    for it in load_dataset("llmbar"):
        llmbar[it.subset] += 1
    block = out.split("llmbar subsets")[1].split("\n\n")[0]
    for name, n in llmbar.items():
        assert f"\n  {name} ({n})" in block
    code, csv_out, _ = _cli("bench", "list", "-v", "--format", "csv")
    assert "subset_names" in csv_out.splitlines()[0]
