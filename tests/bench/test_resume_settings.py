"""A run's fingerprint is every setting that changes results, and only those (issue 22).

`judgekit bench run` on an own file against real loopback servers (the fault server online, the
batch protocol fake): a resume with another label field, another data file, another voting rule,
or another batch setting is refused with exit 2 and one line naming the setting; a resume
against the same model served on another port goes on, and run.json records the new endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.batch_fake import BatchFake
from support.fault_server import FaultServer

from judgekit.bench.cli import main
from judgekit.bench.runner import read_run_info

ROWS = [{"id": f"r{i}", "query": f"jk-item-r{i} Which is right?",
         "responses": ["GOOD: four", "five"], "label": 0, "verdict": 1} for i in range(3)]


def data(tmp_path: Path, rows: list[dict[str, Any]] = ROWS) -> Path:
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def bench(url: str, file: Path, out: Path, *extra: str) -> int:
    return main(["run", str(file), "--model", "openai:judge-test", "--base-url", url,
                 "--no-examples", "--no-cache", "--no-progress", "--max-tokens", "128",
                 "--out", str(out), *extra])


def lines(out: Path) -> int:
    return len((out / "results.jsonl").read_text().splitlines())


@pytest.mark.parametrize(("change", "named"), [
    (["--label-field", "verdict"], "data.mapping.label: 'label' -> 'verdict'"),
    (["--tie-label", "9"], "data.mapping.tie_labels: [] -> ['9']"),
    (["--query-template", "Q: {query}"], "data.mapping.query_template: None -> 'Q: {query}'"),
    (["--voting", "mean"], "voting: 'sum' -> 'mean'"),
    (["--temperature", "0.9"], "temperature: None -> 0.9"),
])
def test_a_resume_with_another_setting_is_refused_naming_it(
        fault_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        change: list[str], named: str) -> None:
    file, out = data(tmp_path), tmp_path / "run"
    assert bench(fault_server.openai_url, file, out, "--limit", "2") == 0
    capsys.readouterr()
    assert bench(fault_server.openai_url, file, out, *change) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert lines(out) == 2  # nothing appended
    assert bench(fault_server.openai_url, file, out) == 0  # the same settings resume
    assert lines(out) == 3


def test_a_changed_data_file_is_refused(fault_server: FaultServer, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    file, out = data(tmp_path), tmp_path / "run"
    assert bench(fault_server.openai_url, file, out, "--limit", "2") == 0
    before = read_run_info(out).settings
    assert before is not None and before["data"]["file_sha256"]
    data(tmp_path, [{**r, "label": 1} for r in ROWS])  # the same ids, other gold labels
    capsys.readouterr()
    assert bench(fault_server.openai_url, file, out) == 2
    assert "data.file_sha256" in capsys.readouterr().err


def test_a_resume_on_another_port_goes_on(fault_server: FaultServer, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    file, out = data(tmp_path), tmp_path / "run"
    assert bench(fault_server.openai_url, file, out, "--limit", "2") == 0
    first = read_run_info(out)
    with FaultServer() as moved:  # the same model, restarted on another port
        assert moved.openai_url != fault_server.openai_url
        assert bench(moved.openai_url, file, out) == 0
        assert "2 already done, 1 judged now" in capsys.readouterr().out
        assert moved.counts["r2"] > 0 and "r0" not in moved.counts
    again = read_run_info(out)
    assert first.endpoint == fault_server.openai_url and again.endpoint == moved.openai_url
    assert first.fingerprint == again.fingerprint and len(again.resumed_at) == 1
    assert again.settings is not None and again.settings["model"] == "openai:judge-test"


def batch(fake: BatchFake, file: Path, out: Path, *extra: str) -> int:
    return bench(fake.openai_url, file, out, "--samples", "2", "--batch", "--poll-interval", "0",
                 *extra)


@pytest.mark.parametrize(("change", "named"), [
    (["--voting", "majority"], "voting: 'sum' -> 'majority'"),
    (["--k-meta", "1", "--meta"], "meta: False -> True"),
    (["--label-field", "verdict"], "data.mapping.label"),
])
def test_a_batch_run_refuses_another_setting_naming_it(
        batch_fake: BatchFake, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        change: list[str], named: str) -> None:
    file, out = data(tmp_path), tmp_path / "run"
    assert batch(batch_fake, file, out, "--limit", "2") == 0
    capsys.readouterr()
    assert batch(batch_fake, file, out, *change) == 2
    assert named in capsys.readouterr().err
    assert batch_fake.http["openai batch create"] == 1  # nothing was submitted for it
    settings = read_run_info(out).settings
    assert settings is not None and settings["execution"] == "batch"
    assert settings["voting"] == "sum" and settings["generation"]["max_tokens"] == 128


def test_switching_an_online_run_to_batch_is_refused(
        batch_fake: BatchFake, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file, out = data(tmp_path), tmp_path / "run"
    assert bench(batch_fake.openai_url, file, out, "--samples", "2", "--limit", "2") == 0
    capsys.readouterr()
    assert batch(batch_fake, file, out) == 2
    assert "execution: 'online' -> 'batch'" in capsys.readouterr().err


def test_a_batch_run_resumes_through_the_same_provider_on_another_port(
        batch_fake: BatchFake, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A proxy of the provider restarted on another port: the jobs are the provider's, so the
    run directory's jobs are polled there and only the new item is submitted."""
    file, out = data(tmp_path), tmp_path / "run"
    assert batch(batch_fake, file, out, "--limit", "2") == 0
    with BatchFake() as moved:
        moved.jobs, moved.files = batch_fake.jobs, batch_fake.files  # the provider's state
        assert batch(moved, file, out) == 0
        assert "2 already done, 1 judged now" in capsys.readouterr().out
        assert moved.http["openai batch create"] == 1
    assert read_run_info(out).endpoint == moved.openai_url
    assert lines(out) == 3
