"""Runs made by the real `judgekit bench run` (a fake judge on a loopback server) for the viewer
tests, once per session: a forward run and its `--reverse` twin of the hostile dataset."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.fault_server import FaultServer
from support.view_runs import FAILING_KEY, first_wins_text, hostile_judge_text, hostile_rows

from judgekit.cli import main


def _bench_run(data: Path, out: Path, text: Callable[[list[str] | None], str],
               extra: list[str], k: int = 2) -> None:
    server = FaultServer(text=text, schedule={FAILING_KEY: ["400"] * 20}).start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("OPENAI_API_KEY", "sk-test-x")
            code = main(["bench", "run", str(data), "--model", "openai:judge-test",
                         "--base-url", server.openai_url, "--label-format", "index0",
                         "--subset-field", "subset", "-k", str(k), "--out", str(out),
                         "--no-progress", "--no-cache", *extra])
            # Item `f` fails (no valid sample), so the run exits 1, its results kept.
            assert code == 1, f"bench run {out.name} exited {code}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def hostile_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """(dataset file, forward run, reversed run), k=2; item `f` fails on the server (HTTP 400)."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "hostile.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in hostile_rows()) + "\n", encoding="utf-8")
    _bench_run(data, root / "forward", hostile_judge_text, [])
    _bench_run(data, root / "reverse", hostile_judge_text, ["--reverse"])
    yield data, root / "forward", root / "reverse"


@pytest.fixture(scope="session")
def biased_run(hostile_runs: tuple[Path, Path, Path]) -> Path:
    """The same items judged once each (k=1: no balancing permutation), in reverse order, by a
    judge that always prefers what it sees first: it prefers the last response, and disagrees
    with the forward run wherever that one did not."""
    data = hostile_runs[0]
    out = data.parent / "biased"
    _bench_run(data, out, first_wins_text, ["--reverse"], k=1)
    return out
