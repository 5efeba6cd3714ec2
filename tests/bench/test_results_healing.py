"""Results files heal: a torn or corrupt results line is reported once, in one line, and
repaired or moved aside, so later reports are clean and the item is judged again; a report may
heal the file of a run still writing to it without losing a line. A resume with other settings
is refused naming the setting, not a dict. Against the loopback fault server and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from pydantic import BaseModel
from support.fault_server import FaultServer
from support.items_file import write_items

from judgekit.cli import main
from judgekit.runstore import RunStore


def run_args(server: FaultServer, data: Path, out: Path, *extra: str) -> list[str]:
    return ["bench", "run", str(data), "--model", "openai:judge-test", "--base-url",
            server.openai_url, "--no-examples", "--no-cache", "--no-progress", "--out",
            str(out), *extra]



def test_a_damaged_results_file_is_reported_once_and_healed(
        fault_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = write_items(tmp_path / "items.jsonl", 6, "q"), tmp_path / "run"
    assert main(run_args(fault_server, data, out)) == 0
    results = out / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    broken = lines[2][: len(lines[2]) // 2] + "\n"  # q2's line, cut in the middle
    results.write_text("".join([*lines[:2], broken, *lines[3:]]) + '{"item_id": "q9", "ver')
    capsys.readouterr()

    # a user's process: no logging set up, so the one line goes to stderr as it is
    report = subprocess.run(
        [sys.executable, "-c", "from judgekit.cli import main; raise SystemExit(main())",
         "bench", "report", str(out)], capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL)
    assert report.returncode == 0, report.stderr
    err = report.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("judgekit: warning: ") and "removed a truncated last line" in err
    assert "moved 1 unreadable line(s) (line 3)" in err
    assert (out / "results.jsonl.corrupt").read_text() == broken  # kept for a look
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["bench", "report", str(out)]) == 0
    assert capsys.readouterr().err == ""  # later reports are clean

    served = len(fault_server.records)
    assert main(run_args(fault_server, data, out)) == 0  # the resume judges q2 again, only it
    assert "5 already done, 1 judged now" in capsys.readouterr().out
    assert len(fault_server.records) == served + 1
    final = [json.loads(x) for x in results.read_text().splitlines()]
    assert sorted(x["item_id"] for x in final) == [f"q{i}" for i in range(6)]


class Row(BaseModel):
    n: int
    text: str


def test_healing_a_file_that_is_being_appended_loses_no_line(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "rows.jsonl", Row)
    store.append([Row(n=-1, text="x")])
    with store.path.open("a") as fh:  # a damaged line for every heal to find at first
        fh.write("not json\n")
    stop = threading.Event()

    def heal_again_and_again() -> None:
        while not stop.is_set():
            store.heal()

    healer = threading.Thread(target=heal_again_and_again)
    healer.start()
    try:
        with store.appending() as out:
            for n in range(400):
                out.write(Row(n=n, text="y" * (n % 50)))
    finally:
        stop.set()
        healer.join()
    store.heal()
    loaded = store.load()
    assert loaded.corrupt == []
    assert [r.n for r in loaded.records] == [-1, *range(400)]


def test_a_resume_with_other_settings_names_the_setting(
        fault_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = write_items(tmp_path / "items.jsonl", 2, "q"), tmp_path / "run"
    assert main(run_args(fault_server, data, out, "--max-tokens", "64")) == 0
    capsys.readouterr()
    assert main(run_args(fault_server, data, out, "--max-tokens", "32")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "max_tokens: 64 -> 32" in err
    assert "{" not in err, err  # the setting, not the settings dict
