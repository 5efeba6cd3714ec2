"""The on-disk records of a batch run directory, and the names they give items and requests.

Files in the run directory:

* ``batch.json``          the run (provider, model, samples, meta) and every provider job: its
                          tag, id, custom ids, round, last state, whether its results are local.
                          Rewritten atomically after every change.
* ``batch_items.jsonl``   one line per item: its id, query, responses (reference answer and
                          rubric, where it has them), seed, a digest of the prompts sent, and
                          its requests (custom id, prompt, samples served).
                          Appended before any of the item's requests is submitted.
* ``batch_results/<tag>.jsonl``  the raw result lines of a finished job, downloaded once.

A custom id names the item (its index in the run), the permutation and the samples:
``i12-p10-s0n2`` is item 12, order (1, 0), samples from 0, two of them.

What the records mean, and how a run resumes from them, is `judgekit.batch_api.run`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from judgekit.batch import JudgeItem
from judgekit.judge_spec import JudgeSpec
from judgekit.rubric import PrinciplesMode
from judgekit.schema import Message, Principle

STATE_FILE = "batch.json"
ITEMS_FILE = "batch_items.jsonl"
RESULTS_DIR = "batch_results"
_STATE_VERSION = 1
_MAX_CUSTOM_ID = 64  # Anthropic's limit (^[a-zA-Z0-9_-]{1,64}$); OpenAI takes any unique string


class RequestRecord(BaseModel):
    custom_id: str
    prompt: int = Field(description="index of the prompt in the item's sampler.prompts()")
    samples: list[int] = Field(description="the sample indices this request serves")


class ItemRecord(BaseModel):
    index: int
    key: str = Field(description="the item's id, or a hash of its content when it has none")
    id: str | None = None
    query: str | list[Message]
    responses: list[str]
    reference: str | None = None
    principles: list[Principle] | None = Field(None, description="the item's own rubric")
    principles_mode: PrinciplesMode | None = None
    seed: int
    digest: str = Field(description="sha256 over the prompts and configs submitted")
    requests: list[RequestRecord]


class JobRecord(BaseModel):
    tag: str
    job_id: str | None = Field(None, description="None while the provider's create call is in "
                               "flight (or was, when the process died)")
    custom_ids: list[str]
    round: int = 0
    state: str = "submitting"
    terminal: bool = False
    downloaded: bool = False
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    submitted_at: str = ""


class BatchState(BaseModel):
    version: int = _STATE_VERSION
    run_id: str
    provider: str
    model: str
    identity: str | None = Field(None, description="the model without its endpoint (what a "
                                 "resume compares; None in runs made before it was recorded)")
    format: str
    samples: int
    meta: bool | str | None = Field(None, description="the meta judge asked at submission: None "
                                     "when not given (the judge's own), False for none")
    k_meta: int | None = None
    judge_spec: JudgeSpec | None = None
    created_at: str = ""
    jobs: list[JobRecord] = Field(default_factory=list)


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and rename it, so a killed process leaves the old file or
    the new one, never half of one (batch.json is the only record of the jobs)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def item_content(item: JudgeItem | ItemRecord) -> list[Any]:
    """What makes an item the same item: query and responses, and its reference answer and
    rubric where it has them (absent ones leave the content, and so old keys, as they were)."""
    out: list[Any] = [item.query, item.responses]
    if item.reference is not None or item.principles is not None:
        out += [item.reference, None if item.principles is None else
                [p.model_dump() for p in item.principles], item.principles_mode]
    return out


def item_key(item: JudgeItem) -> str:
    """The key a resume finds an item by: its id, else a hash of its content."""
    if item.id is not None:
        return item.id
    blob = json.dumps(item_content(item), ensure_ascii=False, sort_keys=True)
    return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def custom_id(index: int, permutation: Sequence[int], samples: Sequence[int]) -> str:
    """`i<item>-p<order>-s<first sample>[n<count>]`; an order too long for the id is hashed."""
    sep = "" if len(permutation) <= 10 else "_"
    order = sep.join(str(i) for i in permutation)
    tail = f"-s{samples[0]}" + (f"n{len(samples)}" if len(samples) > 1 else "")
    cid = f"i{index}-p{order}{tail}"
    if len(cid) > _MAX_CUSTOM_ID:
        crc = hashlib.sha256(order.encode()).hexdigest()[:12]
        cid = f"i{index}-ph{crc}{tail}"
    return cid
