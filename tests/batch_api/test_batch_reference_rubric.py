"""References and per-item rubrics in a provider batch run (the real openai SDK against
BatchFake, tests/support/batch_fake.py): the submitted prompts carry them, they are stored with
the item, and collecting gives the Verdicts an online run gives over the same outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.batch_fake import BatchFake
from support.fault_server import rubric_text

from judgekit import Judge, Verdict
from judgekit.batch_api import BatchRunError, submit_batch
from judgekit.config import GenerationConfig

RUBRIC = [("Accuracy", "the number is right", 3), ("Clarity", "easy to follow", 1)]


def _judge(batch_fake: BatchFake) -> Judge:
    return Judge("openai:judge-test", base_url=batch_fake.openai_url, api_key="sk-test-batch",
                 server_flavour="openai",
                 examples=False, aggregate="weighted",
                 config=GenerationConfig(max_tokens=128, timeout=5.0))


def _items() -> list[dict[str, Any]]:
    return [{"id": "ref", "query": "jk-item-ref 6 * 7?", "responses": ["GOOD: 42", "48"],
             "reference": "6 * 7 = 42"},
            {"id": "rub", "query": "jk-item-rub 6 * 7?", "responses": ["48", "GOOD: 42"],
             "principles": RUBRIC},
            {"id": "plain", "query": "jk-item-plain 6 * 7?", "responses": ["GOOD: 42", "48"]}]


def _comparable(v: Verdict) -> dict[str, Any]:
    return v.model_dump(mode="json", exclude={"wall_time_s"})


def test_batch_carries_references_and_item_rubrics_as_online(batch_fake: BatchFake,
                                                             tmp_path: Path) -> None:
    batch_fake.text = rubric_text
    judge = _judge(batch_fake)
    online = judge.score_many(_items(), samples=2, progress=False)
    batched = submit_batch(judge, _items(), samples=2, run_dir=tmp_path).collect(
        poll_interval=0.0)
    assert [_comparable(v) for v in batched] == [_comparable(v) for v in online]
    ref, rub, plain = batched
    assert ref.metadata == {"format": "grm", "reference": True}
    assert rub.metadata == {"format": "grm", "principles_mode": "fixed"}
    assert rub.scores == pytest.approx([2 * 3.5, 2 * 9.0]) and rub.best == 1
    assert plain.metadata == {"format": "grm"}
    prompts = {r["custom_id"].split("-")[0]: r["body"]["messages"][-1]["content"]
               for job in batch_fake.jobs.values() for r in job.requests}
    assert "6 * 7 = 42\n</reference" in prompts["i0"] and "<reference" not in prompts["i2"]
    assert "1. Accuracy (Weight: 75%)" in prompts["i1"]
    assert "Evaluation Criteria" not in prompts["i0"] + prompts["i2"]
    stored = [json.loads(line) for line in (tmp_path / "batch_items.jsonl").read_text()
              .splitlines()]
    assert stored[0]["reference"] == "6 * 7 = 42" and stored[1]["principles_mode"] == "fixed"
    assert [p["name"] for p in stored[1]["principles"]] == ["Accuracy", "Clarity"]


def test_an_item_with_another_reference_is_another_item(batch_fake: BatchFake, tmp_path: Path) -> None:
    judge = _judge(batch_fake)
    submit_batch(judge, _items()[:1], run_dir=tmp_path)
    changed = [{**_items()[0], "reference": "6 * 7 = 43"}]
    with pytest.raises(BatchRunError, match="other content"):
        submit_batch(judge, changed, run_dir=tmp_path)
