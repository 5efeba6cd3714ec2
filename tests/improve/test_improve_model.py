"""One round of the improve loop end to end on the real embedded model (SmolLM2-135M on CPU):
two judges of one model (different seeds) with fixes under the output grammar, a debate under
the review grammar, the same model as reviser, and the pairwise check. A 135M model judges and
revises near chance; this proves the machinery on tiny budgets, not the quality."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from judgekit import Judge, SampleStatus
from judgekit.backends.base import Backend
from judgekit.improve import ImproveLoop, ImproveTrace, apairwise

pytestmark = [pytest.mark.model]

QUERY = "What is the capital of France?"
RESPONSE = "paris"


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    torch = pytest.importorskip("torch")
    from judgekit.backends.registry import resolve_backend

    try:
        from judgekit.embedded import embedded_model_dir

        embedded_model_dir()
    except Exception as exc:  # the embedded model package is an optional extra
        pytest.skip(f"embedded model unavailable: {exc}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core CPU: spinning threads make generation slower
    yield resolve_backend(None)
    torch.set_num_threads(threads)


async def test_one_round_on_the_embedded_model(backend: Backend) -> None:
    judges = [Judge(backend, fixes=True, examples=False, max_criteria=2, max_tokens=160,
                    temperature=0.7, seed=seed) for seed in (2, 3)]
    assert all(j.structured for j in judges)  # the output grammar, fix lines included
    loop = ImproveLoop(judges=judges, rounds=1, samples=2, reviser_max_tokens=64)
    assert loop.reviser is backend  # one model in memory plays every part
    trace = await loop.arun(QUERY, RESPONSE)

    assert trace.error is None and len(trace.rounds) == 1
    (rnd,) = trace.rounds
    debate = rnd.debate
    for verdict in debate.openings:
        (sample,) = verdict.samples
        assert sample.status in (SampleStatus.OK, SampleStatus.FORCED)
        assert len(sample.critiques) == 1
    # Every valid opening under the grammar suggested its fixes; ids are unique and in order.
    assert [f.id for f in debate.fixes] == [f"F{i}" for i in range(1, len(debate.fixes) + 1)]
    assert debate.fixes, "the fixes grammar guarantees at least one Fix line per opening"
    (turns,) = debate.rounds  # two valid positions: one review round
    for turn in turns:
        assert turn.sample.status in (SampleStatus.OK, SampleStatus.FORCED)
        if turn.scores_after is not None:  # a readable review answered every fix put to it
            assert [a.fix for a in turn.answers] == turn.reviewed
        assert all(f.judge != turn.judge for f in debate.fixes if f.id in turn.reviewed)
    for f in debate.fixes:
        assert set(f.accepted_by) | set(f.rejected_by) <= {1 - f.judge}
        assert f.accepted == (len(f.accepted_by) > len(f.rejected_by))
    assert len(debate.final) == 2 and debate.scores[0] is not None
    assert rnd.score == pytest.approx(debate.scores[0] / 2)

    # What followed is consistent with the stop reason.
    if not rnd.accepted_fixes:
        assert trace.stop_reason == "no_fixes" and rnd.revision is None
    else:
        assert rnd.revision is not None and rnd.revision.usage.calls == 1
        if rnd.revision.status != "ok":
            assert trace.stop_reason in ("reviser_failed", "unchanged")
            assert rnd.pairwise is None
    check = rnd.pairwise
    if check is None:  # the loop stopped earlier: check the pairwise step on its own
        check = await apairwise(judges, QUERY, RESPONSE, "The capital of France is Paris.", 2)
    else:
        assert rnd.kept == check.won and trace.stop_reason == ("rounds" if check.won
                                                               else "revision_lost")
        assert trace.final == (rnd.revision.text if check.won else RESPONSE)  # type: ignore[union-attr]
    assert [[s.permutation for s in v.samples] for v in check.verdicts] == [[[0, 1], [1, 0]]] * 2
    assert check.valid_samples == sum(v.valid_samples for v in check.verdicts)
    assert check.won == (check.best == 1)

    assert trace.usage.calls == sum(r.usage.calls for r in trace.rounds)
    assert trace.usage.completion_tokens > 0
    assert ImproveTrace.model_validate_json(trace.to_json()) == trace
