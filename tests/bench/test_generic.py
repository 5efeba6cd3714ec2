"""The generic loader: a user's own JSONL, CSV or DataFrame, with ties."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from judgekit.bench.datasets import DatasetError
from judgekit.bench.generic import (
    FieldMap,
    load_csv,
    load_dataframe,
    load_file,
    load_jsonl,
    parse_label,
)
from judgekit.bench.items import LabelKind


def test_jsonl_list_column_with_preferences_and_ties(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "query": "q1", "responses": ["x", "y"], "label": "A>B", "cat": "c1"},
        {"id": "b", "query": "q2", "responses": ["x", "y"], "label": "B>A", "cat": "c1"},
        {"id": "c", "query": "q3", "responses": ["x", "y"], "label": "tie", "cat": "c2"},
        {"id": "d", "query": "q4", "responses": ["x", "y"], "label": "A=B", "cat": "c2"},
        {"id": "e", "query": [{"role": "user", "content": "hi"}], "responses": ["x", "y", "z"],
         "label": "C", "cat": "c2"},
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = load_jsonl(path, FieldMap(subset="cat", metadata=["cat"]))
    assert [str(it.label) for it in items] == ["best=0", "best=1", "tie", "tie", "best=2"]
    assert items[2].label.kind is LabelKind.TIE and items[0].subset == "c1"
    assert items[4].query == [{"role": "user", "content": "hi"}]
    assert items[0].metadata["cat"] == "c1"
    assert load_file(path)[1].label.best == 1


def test_csv_several_response_columns_one_based_auto(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    pd.DataFrame({
        "prompt": ["p1", "p2", "p3"],
        "out1": ["a", "b", "c"],
        "out2": ["A", "B", "C"],
        "out3": ["", "bb", ""],          # an empty cell: that item has two responses
        "winner": [1, 3, 2],
    }).to_csv(path, index=False)
    fm = FieldMap(query="prompt", responses=["out1", "out2", "out3"], label="winner", id=None)
    items = load_csv(path, fm)
    assert [len(it.responses) for it in items] == [2, 3, 2]
    assert [it.label.best for it in items] == [0, 2, 1]  # no 0 in the file: 1-based
    assert [it.id for it in items] == ["0", "1", "2"]


def test_csv_json_list_column_and_zero_based(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    pd.DataFrame({"id": [1, 2], "query": ["a", "b"],
                  "responses": [json.dumps(["r1", "r2"]), json.dumps(["s1", "s2"])],
                  "label": [0, 1]}).to_csv(path, index=False)
    items = load_csv(path)
    assert [it.label.best for it in items] == [0, 1] and items[0].responses == ["r1", "r2"]


def test_dataframe_ranks_best_text_and_binary() -> None:
    df = pd.DataFrame({"query": ["q1", "q2"], "responses": [["a", "b", "c"], ["d", "e", "f"]],
                       "label": [[2, 1, 3], [1, 1, 1]]})
    items = load_dataframe(df)
    assert items[0].label.kind is LabelKind.RANKING and items[0].label.best_index == 1
    assert items[1].label.kind is LabelKind.TIE
    df2 = pd.DataFrame({"query": ["q"], "responses": [["a", "b"]], "label": ["b"]})
    assert load_dataframe(df2, FieldMap(label_format="best_text"))[0].label.best == 1
    df3 = pd.DataFrame({"q": ["x", "y"], "r": ["ans1", "ans2"], "has_error": [True, False]})
    fm = FieldMap(query="q", responses=["r"], label="has_error", label_format="binary_error")
    items = load_dataframe(df3, fm)
    assert [it.label.error for it in items] == [True, False]
    fm_ok = FieldMap(query="q", responses=["r"], label="has_error", label_format="binary_ok")
    assert [it.label.error for it in load_dataframe(df3, fm_ok)] == [False, True]


def test_bad_records_name_the_row() -> None:
    df = pd.DataFrame({"query": ["q", "q"], "responses": [["a", "b"], ["a", "b"]],
                       "label": ["A>B", "sideways"]})
    with pytest.raises(DatasetError, match="row 1"):
        load_dataframe(df)
    with pytest.raises(DatasetError, match="no column 'answer'"):
        load_dataframe(df, FieldMap(responses=["answer"]))
    df_dup = pd.DataFrame({"id": [1, 1], "query": ["q", "q"], "responses": [["a", "b"]] * 2,
                           "label": [0, 1]})
    with pytest.raises(DatasetError, match="duplicate"):
        load_dataframe(df_dup)
    with pytest.raises(DatasetError, match="unsupported"):
        load_file("x.txt")


def test_parse_label_formats() -> None:
    r = ["a", "b"]
    assert parse_label("2", r, "index1").best == 1
    assert parse_label(1, r, "index0").best == 1
    assert parse_label("A>>B", r, "preference").best == 0
    assert parse_label("Response B", r, "letter").best == 1
    assert parse_label("draw", r, "auto").kind is LabelKind.TIE
    assert parse_label("no", ["a"], "binary_error").error is False
