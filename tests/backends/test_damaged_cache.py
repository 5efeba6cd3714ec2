"""A damaged response cache stops a run the first time it is used, with one line naming the file
and the way out, and exit 1; nothing judged is lost. Against a real sqlite file with a valid
header and broken pages, and the real SDK talking to a loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.fault_server import FaultServer
from support.items_file import write_items

from judgekit.backends.base import Completion
from judgekit.bench.cli import main as bench_main
from judgekit.cache import ResponseCache
from judgekit.errors import CacheError, RunAbortedError
from judgekit.judge import Judge


def damaged_cache(path: Path) -> Path:
    """A real cache of many pages whose first page (the header and the schema) is intact and
    whose other pages are overwritten: sqlite opens it, and fails on the first lookup."""
    cache = ResponseCache(path)
    cache.put_many("spec", [(f"k{i:04d}", 0, Completion(text="x" * 500)) for i in range(400)])
    data = bytearray(path.read_bytes())
    assert len(data) > 20 * 4096 and not Path(f"{path}-wal").exists()
    page = int.from_bytes(data[16:18], "big")
    for at in range(page, len(data)):
        data[at] = (at * 7 + 3) % 256
    path.write_bytes(bytes(data))
    return path



def test_bench_run_stops_at_a_damaged_cache_with_one_line(
        fault_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = damaged_cache(tmp_path / "cache.sqlite")
    data, out = write_items(tmp_path / "items.jsonl", 50), tmp_path / "run"
    argv = ["run", str(data), "--model", "openai:judge-test", "--base-url",
            fault_server.openai_url, "--no-examples", "--no-progress", "--out", str(out)]
    assert bench_main([*argv, "--cache", str(cache)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(cache) in err and "--no-cache" in err and "delete that file" in err
    assert "Traceback" not in err
    assert fault_server.records == []  # stopped at the first lookup, before any request
    results = out / "results.jsonl"
    assert not results.exists() or results.read_text() == ""  # no item recorded as failed
    # The way out works: the same run without the cache judges every item.
    assert bench_main([*argv, "--no-cache"]) == 0
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert len(lines) == 50 and all(x["verdict"]["valid_samples"] == 1 for x in lines)


class BreaksOnWrite(ResponseCache):
    """A cache whose disk fails when answers are stored (a full disk, a damaged page found only
    by a write): lookups work, the first store raises."""

    def put_many(self, spec: str, entries: list[tuple[str, int, Completion]]) -> None:  # type: ignore[override]
        raise self._unusable(OSError(28, "No space left on device"))


def test_what_was_paid_for_is_recorded_before_the_stop(fault_server: FaultServer,
                                                      tmp_path: Path) -> None:
    cache = BreaksOnWrite(tmp_path / "cache.sqlite")
    judge = Judge("openai:m", base_url=fault_server.openai_url, examples=False, cache=cache,
                  concurrency=1)
    recorded: dict[int, object] = {}
    batch = [{"id": f"q{i}", "query": f"jk-item-{i} q", "responses": ["GOOD", "bad"]}
             for i in range(6)]
    with pytest.raises(RunAbortedError) as info:
        judge.score_many(batch, progress=False, on_result=recorded.__setitem__)
    text = str(info.value)
    assert f"the response cache {cache.path} cannot be used" in text and "--no-cache" in text
    assert "\n" not in text
    # The first item's answer came back and its store failed: it is recorded, judged.
    assert list(recorded) == [0]
    first = recorded[0]
    assert getattr(first, "valid_samples", 0) == 1 and getattr(first, "error", "x") is None
    assert len(fault_server.records) == 1  # the second item was never sent
    with pytest.raises(CacheError):  # and the judge keeps refusing, before sending anything
        judge.score("jk-item-late q", ["GOOD", "bad"])
    assert len(fault_server.records) == 1
