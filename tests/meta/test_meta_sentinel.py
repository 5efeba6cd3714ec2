"""`meta` has one meaning everywhere (issue 22, item 4): not given (`NOT_GIVEN`, the default of
every per-call `meta=`) is the judge's own meta judge; `None` is no meta judge, whether given to
`Judge(...)`, `ascore`, `score_many`, or a batch run's submit and collect. Judged online through
the fault server and in batch through the batch protocol fake, with a deterministic meta scorer
that counts the judgements it rates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from support.batch_fake import BatchFake
from support.fault_server import FaultServer

from judgekit import NOT_GIVEN, Judge, Verdict
from judgekit.batch_api import open_batch, submit_batch
from judgekit.config import GenerationConfig
from judgekit.meta import MetaResult, MetaScorer
from judgekit.schema import Judgement, Message

ITEM = {"id": "m", "query": "jk-item-m Which is right?", "responses": ["GOOD: four", "five"]}


class Counting(MetaScorer):
    def __init__(self) -> None:
        self.rated = 0

    @property
    def spec(self) -> str:
        return "counting-meta"

    async def ascore_samples(self, query: str | Sequence[Message], responses: Sequence[str],
                             judgements: Sequence[Judgement], *,
                             reference: str | None = None) -> MetaResult:
        self.rated += len(judgements)
        return MetaResult(scores=[float(j.sample_index) for j in judgements])


def make(url: str, meta: MetaScorer | None) -> Judge:
    return Judge("openai:judge-test", base_url=url, api_key="sk-x", examples=False,
                 config=GenerationConfig(max_tokens=128, timeout=5.0), meta=meta)


def used_meta(v: Verdict) -> bool:
    return v.meta_model is not None and v.k_meta is not None


def test_not_given_is_the_judges_own_and_none_is_none_online(fault_server: FaultServer) -> None:
    own = Counting()
    judge = make(fault_server.openai_url, own)
    assert used_meta(judge.score(ITEM["query"], ITEM["responses"], 2))
    assert used_meta(judge.score(ITEM["query"], ITEM["responses"], 2, meta=NOT_GIVEN))
    assert own.rated == 4
    (v,) = judge.score_many([ITEM], samples=2, meta=None, progress=False)
    assert not used_meta(v) and own.rated == 4
    assert not used_meta(judge.score(ITEM["query"], ITEM["responses"], 2, meta=None))
    other = Counting()
    assert judge.score(ITEM["query"], ITEM["responses"], 2, meta=other).meta_model == \
        "counting-meta" and other.rated == 2 and own.rated == 4
    # a judge built with meta=None has none, and a call may still bring one
    plain = make(fault_server.openai_url, None)
    assert not used_meta(plain.score(ITEM["query"], ITEM["responses"], 2))
    assert used_meta(plain.score(ITEM["query"], ITEM["responses"], 2, meta=other))


def test_a_batch_run_keeps_none_apart_from_not_given(batch_fake: BatchFake,
                                                      tmp_path: Path) -> None:
    own = Counting()
    judge = make(batch_fake.openai_url, own)
    (with_own,) = submit_batch(judge, [ITEM], samples=2, run_dir=tmp_path / "a") \
        .collect(poll_interval=0.0)
    assert used_meta(with_own) and own.rated == 2
    (without,) = submit_batch(judge, [ITEM], samples=2, run_dir=tmp_path / "b", meta=None) \
        .collect(poll_interval=0.0)
    assert not used_meta(without) and own.rated == 2
    # another process collecting the run: None was stored, and stays none
    (later,) = open_batch(tmp_path / "b", judge).collect(poll_interval=0.0)
    assert not used_meta(later) and own.rated == 2
    (again,) = open_batch(tmp_path / "a", judge).collect(poll_interval=0.0)
    assert used_meta(again) and own.rated == 4
