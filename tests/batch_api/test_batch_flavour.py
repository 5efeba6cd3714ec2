"""Batch and online send the same constraint for the same settings (issue 22, item 10).

The batch protocol fake says nothing about itself (GET /v1/models, /openapi.json and /api/version
all 404), so a judge with a custom base URL and the default `auto` flavour resolves it to
`generic` in both modes: no JSON schema on the wire, free text read as text, each sample
recording why. A declared flavour sends that flavour's schema in both modes. Either way the
batch Verdicts equal the online ones field for field (wall time aside).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.batch_fake import BatchFake

from judgekit import Judge, Verdict
from judgekit.batch_api import submit_batch
from judgekit.config import GenerationConfig
from judgekit.structured import StructuredMode

ITEMS = [{"id": k, "query": f"jk-item-{k} Which answer is right?",
          "responses": ["GOOD: four", "five"]} for k in ("a", "b", "c")]


def make(fake: BatchFake, flavour: str | None) -> Judge:
    extra: dict[str, Any] = {} if flavour is None else {"server_flavour": flavour}
    return Judge("openai:judge-test", base_url=fake.openai_url, api_key="sk-test",
                 examples=False, config=GenerationConfig(max_tokens=128, timeout=5.0), **extra)


def comparable(v: Verdict) -> dict[str, Any]:
    return v.model_dump(mode="json", exclude={"wall_time_s"})


def wire(body: dict[str, Any]) -> str:
    """The constraint a request body carries, whole ("null": free text)."""
    return json.dumps(body.get("response_format"), sort_keys=True)


@pytest.mark.parametrize(("flavour", "structured"), [
    (None, False),       # auto: the server says nothing -> generic -> free text
    ("vllm", True),      # declared: the OpenAI-style json_schema
    ("openai", True),    # declared: OpenAI's strict json_schema
])
def test_batch_and_online_send_the_same_constraint_and_give_the_same_verdicts(
        batch_fake: BatchFake, tmp_path: Path, flavour: str | None, structured: bool) -> None:
    online_judge = make(batch_fake, flavour)
    assert online_judge.sampler.mode is StructuredMode.SCHEMA  # both modes ask for a schema
    online = online_judge.score_many(ITEMS, samples=2, progress=False)
    # a fresh judge, as in another process: the batch run resolves the flavour on its own
    batched = submit_batch(make(batch_fake, flavour), ITEMS, samples=2,
                           run_dir=tmp_path).collect(poll_interval=0.0)
    assert [comparable(v) for v in batched] == [comparable(v) for v in online]
    assert all(v.ok and v.best == 0 for v in batched)

    sent_online = {wire(b) for b in batch_fake.online_bodies}
    sent_batch = {wire(r["body"]) for job in batch_fake.jobs.values() for r in job.requests}
    assert sent_online == sent_batch and len(sent_batch) == 1
    samples = [s for v in batched for s in v.samples]
    if structured:
        assert sent_batch != {"null"} and all(s.structured for s in samples)
        assert all(s.structured_fallback is None for s in samples)
    else:
        assert sent_batch == {"null"}
        assert all(not s.structured and s.structured_fallback for s in samples)
        assert all("did not say it takes a JSON schema" in (s.structured_fallback or "")
                   for s in samples)
