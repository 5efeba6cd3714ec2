"""docs/own-data.md is run as written: every `file=` block is written to a folder, every `$`
command is run through the real CLI there, and its output (stdout and stderr, in that order)
must equal the lines printed under it in the page. A changed error message, a flag renamed or a
loader that reads a file differently fails here until the page is updated with it."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from judgekit.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "own-data.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in FENCE.finditer(DOC.read_text())]


def _commands() -> list[tuple[str, str]]:
    """(command, expected output) for every `$` line of the console blocks."""
    out: list[tuple[str, str]] = []
    for lang, _, body in _blocks():
        if lang != "console":
            continue
        for chunk in re.split(r"^(?=\$ )", body, flags=re.M):
            if chunk.startswith("$ "):
                cmd, _, expected = chunk.partition("\n")
                out.append((cmd[2:], expected))
    return out


@pytest.fixture
def doc_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for _, info, body in _blocks():
        if info.startswith("file="):
            (tmp_path / info.removeprefix("file=")).write_text(body, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_page_covers_the_four_worked_examples() -> None:
    commands = " ".join(cmd for cmd, _ in _commands())
    files = [info for _, info, _ in _blocks() if info.startswith("file=")]
    assert "--tie-label 0" in commands                      # a pairwise file with tie labels
    assert "--label-field ann1,ann2,ann3" in commands       # three annotator columns
    assert "--query-template '{instruction}\\n\\n{input}'" in commands  # two fields
    assert "file=by_category.json" in files                 # a JSON object of lists
    assert len(_commands()) >= 8


@pytest.mark.parametrize(("command", "expected"), _commands(), ids=lambda v: v[:60])
def test_each_command_prints_what_the_page_says(doc_files: Path, command: str,
                                                expected: str) -> None:
    argv = shlex.split(command)
    assert argv[0] == "judgekit"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv[1:])
    got = err.getvalue() + out.getvalue()  # stderr first: it is printed before the run
    assert got.strip() == expected.strip(), f"{command}\n--- page ---\n{expected}--- ran ---\n{got}"
    assert code == (2 if ": error:" in expected else 0)
    if code == 2:
        assert len(got.strip().splitlines()) == 1  # bad input: one line, no traceback


def test_the_python_example_runs(doc_files: Path) -> None:
    (code,) = [body for lang, _, body in _blocks() if lang == "python"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})  # the page's own example
    assert out.getvalue() == "2 Translate to French.\n\nI like cheese.\n"
