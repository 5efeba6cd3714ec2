"""End to end through `Judge`: 200 items against the fault server with 20% injected faults, a
resume that bills nothing twice, and a Verdict from a real model behind `transformers serve`."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from support.fault_server import FaultServer
from support.transformers_server import ServedModel

from judgekit.config import GenerationConfig
from judgekit.judge import Judge
from judgekit.retry import RetryPolicy
from judgekit.schema import SampleStatus, Usage, Verdict

SECRET = "sk-test-SECRET123"
FAULT_CYCLE = ["429", "500", "503", "drop", "malformed", "hang"]
N_ITEMS = 200
K = 2


async def no_sleep(_: float) -> None:
    return None


def items(n: int = N_ITEMS) -> list[dict[str, object]]:
    """Item i's GOOD response sits at index i % 2, so the right `best` alternates."""
    out = []
    for i in range(n):
        responses = [f"bad answer {i}", f"bad answer {i}"]
        responses[i % 2] = f"GOOD answer {i}"
        out.append({"id": f"q{i}", "query": f"jk-item-{i} What is the answer to question {i}?",
                    "responses": responses})
    return out


def fault_schedule(n: int = N_ITEMS) -> dict[str, list[str]]:
    """Every fifth item's first request fails (20% of items), cycling through the fault kinds."""
    return {str(i): [FAULT_CYCLE[(i // 5) % len(FAULT_CYCLE)]] for i in range(0, n, 5)}


def make_judge(server: FaultServer, cache: Path) -> Judge:
    return Judge(
        "openai:judge-test", base_url=server.openai_url, api_key=SECRET,
        # The timeout is generous for a loaded 2-core machine (an "ok" answer must never time
        # out, or the retry count would be off) and short next to the 10 s hangs.
        config=GenerationConfig(max_tokens=256, timeout=3.0), examples=False,
        cache=cache, max_concurrency=16,
        retry=RetryPolicy(sleep=no_sleep))


def check(verdicts: list[Verdict], expected_ids: list[str]) -> None:
    assert [v.item_id for v in verdicts] == expected_ids
    for v in verdicts:
        i = int(str(v.item_id)[1:])
        assert v.ok, v.error
        assert v.k == K and v.valid_samples == K
        assert v.best == i % 2
        assert v.scores[i % 2] == 9 * K and v.scores[1 - i % 2] == 2 * K
        assert all(s.status is SampleStatus.OK for s in v.samples)


def test_200_items_with_faults_then_resume_bills_nothing_twice(
        fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.schedule = fault_schedule()
    fault_server.retry_after = "0"
    fault_server.hang_seconds = 10.0
    cache = tmp_path / "run.sqlite"
    all_items = items()
    ids = [str(it["id"]) for it in all_items]

    # Run 1 is cut short: only the first 120 items get judged.
    start = time.monotonic()
    judge = make_judge(fault_server, cache)
    first = judge.score_many(all_items[:120], samples=K, concurrency=16, progress=False)
    t_first = time.monotonic() - start
    check(first, ids[:120])
    faults_first = sum(1 for i in range(0, 120, 5))
    u1 = Usage.total(v.usage for v in first)
    assert u1.retries == faults_first == 24
    assert u1.calls == 120 * K  # two permutations per item, one request each
    assert u1.cached_calls == 0

    # Run 2 resumes over all 200 with the same cache: only the 80 new items reach the server.
    before = Counter(fault_server.counts)
    judge2 = make_judge(fault_server, cache)
    second = judge2.score_many(all_items, samples=K, concurrency=16, progress=False)
    check(second, ids)
    new = Counter(fault_server.counts) - before
    assert set(new) == {str(i) for i in range(120, 200)}
    for v in second[:120]:
        assert v.usage.calls == 0 and v.usage.cached_calls == K
        assert v.usage.prompt_tokens == v.usage.completion_tokens == 0
    u2 = Usage.total(v.usage for v in second)
    assert u2.calls == 80 * K and u2.retries == sum(1 for i in range(120, 200, 5)) == 16

    # Every item was billed exactly once over both runs: K successful requests per item.
    ok_per_item = Counter(r.key for r in fault_server.records if r.fault == "ok")
    assert all(ok_per_item[str(i)] == K for i in range(N_ITEMS))
    assert fault_server.faults_injected() == 40  # 20% of the 200 items
    assert sum(fault_server.counts.values()) == N_ITEMS * K + 40

    # Run 3: everything cached, the server sees nothing.
    before = sum(fault_server.counts.values())
    third = make_judge(fault_server, cache).score_many(all_items, samples=K, progress=False)
    check(third, ids)
    assert Usage.total(v.usage for v in third).calls == 0
    assert sum(fault_server.counts.values()) == before
    assert [v.scores for v in third] == [v.scores for v in second]

    # The key is nowhere in the results or the cache file.
    blob = "".join(v.model_dump_json() for v in first + second + third) + repr(judge)
    assert "SECRET123" not in blob
    for f in tmp_path.iterdir():
        assert b"SECRET123" not in f.read_bytes()
    print(f"\nrun 1: 120 items, {u1.calls} calls, {u1.retries} retries, {t_first:.1f}s")


@pytest.mark.parametrize("max_choices", [None, 1])
def test_requests_per_judgement_are_one_per_distinct_permutation(
        fault_server: FaultServer, max_choices: int | None) -> None:
    """What k samples cost: one request per distinct permutation, with n = that permutation's
    samples, and top-up requests where the server returns fewer choices than n."""
    fault_server.max_choices = max_choices
    judge = Judge("openai:judge-test", base_url=fault_server.openai_url, examples=False,
                  config=GenerationConfig(max_tokens=256, timeout=10.0),
                  retry=RetryPolicy(sleep=no_sleep))
    for key, responses, k in (("two", ["GOOD", "bad"], 4), ("three", ["GOOD", "bad", "meh"], 6)):
        fault_server.reset()
        v = judge.score(f"jk-item-{key} q", responses, samples=k)
        assert v.ok and v.valid_samples == k
        per_perm = Counter(tuple(s.permutation) for s in v.samples)
        sizes = sorted(r.n for r in fault_server.records)
        if max_choices is None:
            assert len(fault_server.records) == len(per_perm)
            if len(responses) == 2:  # two orders, two samples each: 2 requests for k=4
                assert len(per_perm) == 2
            assert sizes == sorted(per_perm.values())
        else:  # the first request per permutation asks for all, the top-ups for one each
            assert len(fault_server.records) == k
            assert sizes == sorted([*per_perm.values(), *[1] * (k - len(per_perm))])
        assert v.usage.calls == len(fault_server.records)
        print(f"\nk={k}, {len(responses)} responses, max_choices={max_choices}: "
              f"{len(fault_server.records)} requests, n={sizes}")


# The default GRM prompt is ~650 tokens, whose prefill alone takes 5-30 s per request on a shared
# 2-core CPU; this short template keeps the real-model test to a few seconds of compute while the
# whole path (Judge -> OpenAIBackend -> SDK -> server -> parser -> voting) stays real.
TINY_TEMPLATE = (
    "Score each response from 1 to 10.\n"
    "{% for m in messages %}{{ m.content }}\n{% endfor %}"
    "{% for r in responses %}Response {{ loop.index }}: {{ r }}\n{% endfor %}"
    "End with: Scores: \\boxed{a, b}\n"
)


@pytest.mark.server
@pytest.mark.model
def test_judge_over_transformers_serve(transformers_serve: ServedModel, tmp_path: Path) -> None:
    """`Judge(model="openai:<dir>", base_url=...)` with k=2 against a real model server."""
    (tmp_path / "tiny.jinja").write_text(TINY_TEMPLATE)
    judge = Judge(f"openai:{transformers_serve.model}", base_url=transformers_serve.base_url,
                  config=GenerationConfig(max_tokens=8, timeout=300.0), examples=False,
                  template="tiny.jinja", template_dir=tmp_path, max_reasks=0)
    start = time.monotonic()
    verdict = judge.score("What is the capital of France?",
                          ["Paris is the capital of France.", "Lyon."], samples=K)
    elapsed = time.monotonic() - start
    assert isinstance(verdict, Verdict)
    assert verdict.k == K and len(verdict.samples) == K
    assert verdict.model == f"openai:{transformers_serve.model}@{transformers_serve.base_url}"
    assert all(s.status is not SampleStatus.API_ERROR for s in verdict.samples), verdict.samples
    assert all(s.raw_text.strip() for s in verdict.samples)
    assert verdict.usage.calls == K and verdict.usage.cost_usd == 0.0
    assert 0 < verdict.usage.completion_tokens <= K * 8
    # A judgement rarely fits in 8 tokens: unparsed samples are reported as such, never turned
    # into scores.
    for s in verdict.samples:
        assert (s.scores is None) == (s.status is SampleStatus.PARSE_FAILURE)
    print(f"\nJudge k=2 over transformers serve: {elapsed:.1f}s, "
          f"valid={verdict.valid_samples}, statuses={[s.status.value for s in verdict.samples]}")
