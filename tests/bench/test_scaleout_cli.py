"""`judgekit bench run --batch` against BatchFake (a protocol fake of the providers' batch
endpoints, tests/support/batch_fake.py): the runner's results.jsonl written as online, a killed
or unfinished run resumed without resubmitting, failures resubmitted on request; and the
usage errors of --batch / --ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.batch_fake import BatchFake

from judgekit.bench.cli import EXIT_NOT_READY, main


def dataset(tmp_path: Path, *keys: str) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"id": k, "query": f"jk-item-{k} Which is right?",
                                        "responses": ["GOOD: four", "five"], "label": 0}) + "\n"
                            for k in keys))
    return path


def run(batch_fake: BatchFake, data: Path, out: Path, *extra: str) -> int:
    return main(["run", str(data), "--model", "openai:judge-test", "--base-url", batch_fake.openai_url,
                 "--samples", "2", "--no-examples", "--no-cache", "--no-progress", "--out",
                 str(out), "--batch", "--poll-interval", "0", *extra])


def records(out: Path) -> dict[str, dict]:
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return {x["item_id"]: x for x in lines}  # the last line of an item wins, as in the runner


def test_batch_run_writes_results_and_resumes_without_resubmitting(
        batch_fake: BatchFake, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = dataset(tmp_path, "a", "b", "c"), tmp_path / "run"
    assert run(batch_fake, data, out, "--no-wait") == EXIT_NOT_READY  # submitted, not done yet
    assert "collect again later" in capsys.readouterr().err
    assert (out / "batch" / "batch.json").is_file()
    assert run(batch_fake, data, out) == 0  # the same command collects
    got = records(out)
    assert sorted(got) == ["a", "b", "c"]
    assert all(r["verdict"]["best"] == 0 and r["verdict"]["valid_samples"] == 2
               for r in got.values())
    assert json.loads((out / "run.json").read_text())["extra"]["mode"] == "batch"
    assert run(batch_fake, data, out) == 0
    assert "3 already done, 0 judged now" in capsys.readouterr().out
    assert batch_fake.http["openai batch create"] == 1 and batch_fake.http["openai online"] == 0


def test_failed_requests_are_resubmitted_on_request(batch_fake: BatchFake, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data, out = dataset(tmp_path, "a", "late"), tmp_path / "run"
    batch_fake.end, batch_fake.unfinished = "expired", {"late"}
    assert run(batch_fake, data, out) == 1  # `late` failed: kept, resumable, exit 1
    first = records(out)
    assert first["a"]["verdict"]["best"] == 0
    assert first["late"]["verdict"]["error"] and "BatchRequestNotRun" in first["late"]["error"]
    assert run(batch_fake, data, out) == 1  # without the flag: collected again, all still failed
    assert batch_fake.http["openai batch create"] == 1
    batch_fake.end = "completed"
    assert run(batch_fake, data, out, "--resubmit-failed") == 0
    assert batch_fake.http["openai batch create"] == 2
    again = records(out)
    assert again["late"]["verdict"]["best"] == 0 and again["late"]["error"] is None
    assert "1 already done, 1 judged now" in capsys.readouterr().out.splitlines()[-2]


@pytest.mark.parametrize("flags,message", [
    (["--batch", "--ray"], "exclude each other"),
    (["--batch", "--baseline", "pairwise"], "GRM judge only"),
    (["--resubmit-failed"], "need --batch"),
    (["--ray-workers", "2"], "needs --ray"),
    (["--ray-logs"], "--ray-logs needs --ray"),
])
def test_scaleout_usage_errors(flags: list[str], message: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    data = dataset(tmp_path, "a")
    assert main(["run", str(data), "--out", str(tmp_path / "o"), *flags]) == 2
    assert message in capsys.readouterr().err


def test_the_scaleout_benchmark_runs_small() -> None:
    """benchmarks/bench_scaleout.py end to end on 20 items (Ray left out: it has its own tests)."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_scaleout.py"),
                          "--items", "20", "--skip-ray"], capture_output=True, text=True,
                         timeout=300, check=True, env={**os.environ, "PYTHONPATH": str(root)})
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()
            if line.startswith(("online ", "batch "))}
    assert rows["online"][3] == "40" and rows["batch"][3] == "8"  # HTTP requests
    # batch price: half the online cost (both printed to 4 decimals)
    assert float(rows["batch"][4]) == pytest.approx(float(rows["online"][4]) / 2, abs=1e-4)
    assert rows["online"][5] == rows["batch"][5] == "20"  # every best response found
