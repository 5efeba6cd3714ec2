"""The typed results: JSON round trips, score validation, usage accounting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from judgekit import Critique, Judgement, Principle, SampleStatus, Usage, Verdict
from judgekit.schema import AggregateRule


def _sample(i: int, scores: list[float] | None, status: SampleStatus = SampleStatus.OK) -> Judgement:
    return Judgement(
        sample_index=i, status=status, permutation=[1, 0],
        principles=[Principle(name="Accuracy", description="facts right", weight=0.6),
                    Principle(name="Brevity", weight=0.4)],
        critiques=[Critique(analysis="good", principle_scores={"Accuracy": 8, "Brevity": 6},
                            overall=7, weighted=7.2), Critique(analysis="bad", overall=3)],
        scores=scores, raw_text="Scores: \\boxed{3, 7.2}", usage=Usage(prompt_tokens=10,
                                                                     completion_tokens=5, calls=1))


def test_verdict_json_round_trip_keeps_every_field() -> None:
    v = Verdict(item_id="x", n_responses=2, scores=[7.2, 3.0], best=0, k=2, valid_samples=1,
                invalid_samples=1,
                samples=[_sample(0, [7.2, 3.0]),
                         _sample(1, None, SampleStatus.PARSE_FAILURE)],
                usage=Usage(prompt_tokens=20, completion_tokens=9, calls=2, cost_usd=0.01))
    again = Verdict.model_validate_json(v.model_dump_json())
    assert again == v
    assert again.samples[1].status is SampleStatus.PARSE_FAILURE
    # Both values survive the round trip; the rule picks which one is the score.
    good, bad = again.samples[0].critiques
    assert (good.overall, good.weighted) == (7, 7.2)
    assert good.score() == good.score("overall") == 7  # the paper's rule: the written score
    assert good.score("weighted") == 7.2
    assert bad.score("weighted") == bad.score() == 3  # no criterion scores: the overall score
    assert v.to_dict()["samples"][0]["status"] == "ok"
    row = v.to_row()
    assert row["score_0"] == 7.2 and row["score_1"] == 3.0 and row["best"] == 0
    frame = v.samples_frame()
    assert list(frame["status"]) == ["ok", "parse_failure"]


def test_scores_outside_one_to_ten_are_rejected() -> None:
    with pytest.raises(ValidationError):
        _sample(0, [0.0, 5.0])
    with pytest.raises(ValidationError):
        _sample(0, [11.0, 5.0])


def test_critique_score_rule() -> None:
    c = Critique(overall=6, weighted=7.5)
    assert c.score() == 6 and c.score(AggregateRule.WEIGHTED) == 7.5
    assert Critique(overall=6).score("weighted") == 6
    assert Critique().score() is None
    with pytest.raises(ValueError):
        c.score("median")


def test_a_failed_sample_is_not_valid_and_carries_no_score() -> None:
    s = _sample(0, None, SampleStatus.API_ERROR)
    assert not s.valid
    assert not SampleStatus.API_ERROR.valid and not SampleStatus.PARSE_FAILURE.valid
    assert SampleStatus.FORCED.valid and SampleStatus.OK.valid


def test_usage_adds_up_and_keeps_unknown_cost_unknown() -> None:
    a = Usage(prompt_tokens=3, completion_tokens=4, calls=1, retries=2)
    b = Usage(prompt_tokens=1, completion_tokens=1, calls=1, cached_calls=1, cost_usd=0.5)
    assert (a + a).cost_usd is None
    total = Usage.total([a, b])
    assert (total.prompt_tokens, total.completion_tokens, total.calls, total.cached_calls,
            total.retries, total.cost_usd) == (4, 5, 2, 1, 2, 0.5)
    assert total.total_tokens == 9


def test_usage_is_frozen_so_one_object_may_be_shared() -> None:
    """A single call's usage is its sample's and its Verdict's (no sum to make): that is safe
    only because no Usage changes in place."""
    a = Usage(prompt_tokens=3, completion_tokens=4, calls=1)
    with pytest.raises(ValidationError):
        a.calls = 2  # type: ignore[misc]
    assert Usage.total([a]) == a and Usage.total(iter([a])) == a
    assert Usage.total([]) == Usage()
