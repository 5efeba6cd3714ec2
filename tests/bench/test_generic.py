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
    load_records,
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
        "out3": ["", "bb", ""],          # an empty cell: with drop_empty_responses, no response
        "winner": [1, 3, 2],
    }).to_csv(path, index=False)
    fm = FieldMap(query="prompt", responses=["out1", "out2", "out3"], label="winner", id=None,
                  drop_empty_responses=True)
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


# -- every item kept: empty responses, tie labels, annotator majorities ------------------------
def test_an_empty_response_is_a_response(tmp_path: Path) -> None:
    """Auto-J row 423 style ("" response) and a PandaLM-style null: both items keep two
    responses, the empty one included, so the judge sees and scores it."""
    rows = [
        {"id": "autoj-423", "query": "q", "responses": ["a long answer", ""], "label": 0},
        {"id": "pandalm-7", "query": "q", "response1": None, "response2": "b", "label": 2},
    ]
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    (item,) = load_jsonl(path, FieldMap(label_format="index0"))
    assert item.responses == ["a long answer", ""] and item.label.best == 0
    (item2,) = load_dataframe(pd.DataFrame([rows[1]]),
                              FieldMap(responses=["response1", "response2"],
                                       label_format="index1"))
    assert item2.responses == ["", "b"] and item2.label.best == 1
    csv_path = tmp_path / "e.csv"
    pd.DataFrame({"query": ["q"], "r1": [""], "r2": ["x"], "label": ["B"]}).to_csv(csv_path,
                                                                                  index=False)
    (item3,) = load_csv(csv_path, FieldMap(responses=["r1", "r2"]))
    assert item3.responses == ["", "x"] and item3.label.best == 1


def test_empty_responses_reach_the_judge_in_a_run(tmp_path: Path) -> None:
    from support.bench_standin import ScriptedJudgeStandIn

    from judgekit.bench.runner import read_results, run

    df = pd.DataFrame({"query": ["q1", "q2"], "r1": ["", "x"], "r2": ["y", ""],
                       "label": ["B", "A"]})
    items = load_dataframe(df, FieldMap(responses=["r1", "r2"]))
    seen: list[list[str]] = []

    def spec(item: dict[str, object], k: int) -> list[list[float]]:
        seen.append(list(item["responses"]))  # type: ignore[call-overload]
        return [[2.0, 8.0]] * k

    run(items, ScriptedJudgeStandIn(spec), out_dir=tmp_path / "run", dataset_name="mine")
    assert sorted(seen) == [["", "y"], ["x", ""]]
    assert len(read_results(tmp_path / "run")) == 2


def test_tie_values_for_index_and_letter_formats() -> None:
    r = ["a", "b"]
    # PandaLM: 1-based, 0 = tie; Auto-J: 0-based, 2 = tie
    assert parse_label(0, r, "index1", tie_labels=["0"]).kind is LabelKind.TIE
    assert parse_label("2", r, "index1", tie_labels=["0"]).best == 1
    assert parse_label(2, r, "index0", tie_labels=[2]).kind is LabelKind.TIE
    assert parse_label(2.0, r, "index0", tie_labels=["2"]).kind is LabelKind.TIE
    assert parse_label(1, r, "index0", tie_labels=["2"]).best == 1
    # letters: tie words always, and a configured tie letter
    assert parse_label("tie", r, "letter").kind is LabelKind.TIE
    assert parse_label("Tie", r, "index1").kind is LabelKind.TIE
    assert parse_label("C", r, "letter", tie_labels=["c"]).kind is LabelKind.TIE
    assert parse_label("B", r, "letter", tie_labels=["c"]).best == 1
    with pytest.raises(ValueError):
        parse_label(0, r, "index1")  # no tie value configured: 0 is not a 1-based index
    # auto: a tie value does not make the file look 0-based
    df = pd.DataFrame({"query": ["q"] * 3, "responses": [["a", "b"]] * 3, "label": [1, 2, 0]})
    items = load_dataframe(df, FieldMap(tie_labels=["0"]))
    assert [str(it.label) for it in items] == ["best=0", "best=1", "tie"]


def test_majority_over_annotator_columns() -> None:
    """PandaLM style: three annotators, 1/2 = the better response, 0 = tie. A majority tie
    (one vote each way, or one each for A, B and tie) is a tie."""
    df = pd.DataFrame({
        "query": ["q"] * 6, "responses": [["a", "b"]] * 6,
        "annotator1": [1, 1, 1, 0, 1, 2],
        "annotator2": [1, 2, 2, 0, 2, 2],
        "annotator3": [2, 0, 0, 1, None, 2],
    })
    fm = FieldMap(label=["annotator1", "annotator2", "annotator3"], label_format="index1",
                  tie_labels=["0"])
    items = load_dataframe(df, fm)
    assert [str(it.label) for it in items] == ["best=0", "tie", "tie", "tie", "tie", "best=1"]
    assert items[0].metadata["annotator_labels"] == ["best=0", "best=0", "best=1"]
    assert items[4].metadata["annotator_labels"] == ["best=0", "best=1"]  # a missing cell skipped
    flags = pd.DataFrame({"q": ["x", "y"], "r": ["a1", "a2"], "h1": ["yes", "yes"],
                          "h2": ["no", "yes"], "h3": ["yes", "no"]})
    fm_bin = FieldMap(query="q", responses=["r"], label=["h1", "h2", "h3"],
                      label_format="binary_error")
    assert [it.label.error for it in load_dataframe(flags, fm_bin)] == [True, True]
    split = flags[["q", "r", "h1", "h2"]].iloc[:1]
    with pytest.raises(DatasetError, match=r"row 0, field 'h1,h2': .*split evenly"):
        load_dataframe(split, FieldMap(query="q", responses=["r"], label=["h1", "h2"],
                                       label_format="binary_error"))


def test_reference_field() -> None:
    df = pd.DataFrame({"query": ["q1", "q2"], "responses": [["a", "b"]] * 2, "label": [0, 1],
                       "gold": ["the reference", ""]})
    items = load_dataframe(df, FieldMap(reference="gold"))
    assert items[0].reference == "the reference" and items[1].reference is None
    assert load_dataframe(df)[0].reference is None
    with pytest.raises(DatasetError, match="no column 'ref'"):
        load_dataframe(df, FieldMap(reference="ref"))


@pytest.mark.parametrize(("row", "fm", "message"), [
    ({"query": "q", "responses": ["a", "b"], "label": None}, FieldMap(),
     "row 1, field 'label': the label is missing"),
    ({"query": "q", "responses": ["a", "b"], "winner": 5},
     FieldMap(label="winner", label_format="index1"),
     "row 1, field 'winner': best index 4 out of range for 2 responses; "
     "if 5 means a tie, pass --tie-label 5"),
    ({"query": "q", "responses": "not a list", "label": 0}, FieldMap(),
     "row 1, field 'responses': does not hold a list of responses"),
    ({"query": [{"role": "user"}], "responses": ["a"], "label": 0}, FieldMap(),
     "row 1, field 'query': message 0 has no 'content'"),
    ({"query": "", "responses": ["a", "b"], "label": 0}, FieldMap(),
     "row 1, field 'query': the query is empty"),
    ({"query": "q", "responses": ["a", "b"]}, FieldMap(), "row 1: no column 'label'"),
    ({"query": "q", "responses": ["a", "b"], "label": [1, 2, 3]}, FieldMap(),
     "row 1, field 'label': 3 ranks for 2 responses"),
])
def test_a_malformed_row_names_its_row_and_field(row: dict[str, object], fm: FieldMap,
                                                 message: str) -> None:
    good = {"query": "q", "responses": ["a", "b"], "label": 0, "winner": 1}
    with pytest.raises(DatasetError) as exc:
        load_records([good, row], fm)
    text = str(exc.value)
    assert text == message
    assert "\n" not in text and "validation error" not in text.lower()


def test_unreadable_files_say_why(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"query": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_file(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"query": "q", "responses": ["a"], "label": 0}\n{oops\n')
    with pytest.raises(DatasetError, match="line 2 is not JSON"):
        load_file(broken)
    bad_csv = tmp_path / "latin1.csv"
    bad_csv.write_bytes("query,responses,label\ncaf\u00e9,\"[\"\"a\"\"]\",0\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_file(bad_csv)
