"""The one run store (`judgekit.runstore`) and its three users: the bench runner's results, a
batch run's items and the improve runner's traces. Each is driven through its own public entry
on real files: a torn last line is cut off before anything is appended (never glued to the next
record), a corrupt line is skipped and counted, and the done set follows the latest-wins rule
(a finished record is never replaced by a later failure)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from pydantic import BaseModel
from support.bench_standin import ScriptedJudgeStandIn

from judgekit.bench.items import BenchItem, Label
from judgekit.bench.runner import RESULTS_FILE, read_results, run
from judgekit.runstore import RunStore, latest


class Rec(BaseModel):
    key: str
    ok: bool = True


def _write(path: Path, raw: bytes) -> None:
    path.write_bytes(raw)


def test_repair_cuts_only_a_torn_last_line(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s.jsonl", Rec)
    assert store.repair() == 0  # no file yet
    store.append([Rec(key="a"), Rec(key="b")])
    whole = store.path.read_bytes()
    assert store.repair() == 0 and store.path.read_bytes() == whole
    torn = b'{"key": "c", "o'
    _write(store.path, whole + torn)
    assert store.load().records == [Rec(key="a"), Rec(key="b")]  # a torn write is not a record
    assert store.repair() == len(torn)
    assert store.path.read_bytes() == whole
    store.append([Rec(key="c")])
    assert [r.key for r in store.load().records] == ["a", "b", "c"]


def test_corrupt_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s.jsonl", Rec)
    good = [Rec(key=k).model_dump_json().encode() + b"\n" for k in "abcd"]
    _write(store.path, good[0] + b"\xff\xfe not json \x80\n" + good[1] + b"{\"key\": 3}\n"
           + b"\n" + good[2] + b"[]\n" + good[3])
    with pytest.warns(UserWarning, match=r"skipped 3 unreadable line\(s\) \(line 2, 4, 7\)"):
        loaded = store.load()
    assert [r.key for r in loaded.records] == ["a", "b", "c", "d"]
    assert loaded.corrupt == [2, 4, 7]  # the blank line 5 is not corrupt
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.load(warn=False).corrupt == [2, 4, 7]


def test_latest_keeps_a_success_over_a_later_failure() -> None:
    records = [Rec(key="a", ok=False), Rec(key="b"), Rec(key="a"), Rec(key="b", ok=False),
               Rec(key="c", ok=False), Rec(key="c", ok=False)]
    got = latest(records, lambda r: r.key, lambda r: not r.ok)
    assert list(got) == ["a", "b", "c"]  # first-seen order
    assert got["a"].ok and got["b"].ok and not got["c"].ok


def _items(n: int) -> list[BenchItem]:
    return [BenchItem(id=f"it{i}", query=f"q{i}", responses=["GOOD", "bad"],
                      label=Label.best_of(0)) for i in range(n)]


def test_the_bench_runner_repairs_counts_and_resumes_through_the_store(tmp_path: Path) -> None:
    run(_items(4), ScriptedJudgeStandIn(), out_dir=tmp_path, dataset_name="toy")
    path = tmp_path / RESULTS_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    # line 2 corrupt, line 4 torn (the run was killed while writing it)
    _write(path, lines[0] + b"garbage\n" + lines[2] + lines[3][:20])
    judge = ScriptedJudgeStandIn()
    with pytest.warns(UserWarning) as seen:
        res = run(_items(4), judge, out_dir=tmp_path, dataset_name="toy")
    texts = [str(w.message) for w in seen]
    assert len(texts) == 1  # one report of both repairs
    assert "removed a truncated last line" in texts[0]
    assert "moved 1 unreadable line(s) (line 2) to results.jsonl.corrupt" in texts[0]
    assert sorted(judge.calls) == ["it1", "it3"] and res.judged == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # healed: later reads are clean
        assert sorted(r.item_id for r in read_results(tmp_path)) == ["it0", "it1", "it2", "it3"]
    # every line decodes (nothing was glued onto the torn line); the corrupt one was moved aside
    raw = path.read_bytes().splitlines()
    assert sum(1 for x in raw if x.startswith(b"{")) == len(raw) == 4
    assert (tmp_path / (RESULTS_FILE + ".corrupt")).read_bytes() == b"garbage\n"


def test_the_improve_runner_reads_its_traces_through_the_store(tmp_path: Path) -> None:
    from judgekit.improve import ImproveSettings, ImproveTrace, read_traces

    settings = ImproveSettings(judges=["openai:j"], reviser="openai:r", rounds=1, samples=2,
                               debate_rounds=1)
    traces = [ImproveTrace(id=k, query="q", original="r", final="r", settings=settings)
              for k in "ab"]
    path = tmp_path / "t.jsonl"
    _write(path, (traces[0].model_dump_json() + "\nnot a trace\n"
                  + traces[1].model_dump_json()[:30]).encode())
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable line\(s\) \(line 2\)"):
        assert [t.id for t in read_traces(path)] == ["a"]
    # old traces (settings without the scorer fields) still read, with the same model label
    old = json.loads(traces[1].model_dump_json())
    for key in ("scorer", "model", "endpoint", "meta_model", "judge_settings"):
        old["settings"].pop(key)
    assert ImproveTrace.model_validate(old).settings.model == "openai:j"
