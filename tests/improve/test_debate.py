"""Debate (issue 14): the review's fixed form and its grammar, and debates among scripted judges
that disagree, through the real OpenAI SDK, backend, sampler and parser on a loopback server
(tests/support/scripted_judges.py describes the fakes)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fault_server import FaultServer
from support.grammar import accepts, grammar_compiler, random_walk

from judgekit import Judge, SampleStatus
from judgekit.debate import DebateResult, ReviewFormat, adebate
from judgekit.errors import ParseError
from judgekit.formats import CHARS_PER_TOKEN
from judgekit.parsing import parse_review, review_grammar

QUERY = "Why is the sky blue?"
RESPONSE = "The sky is blue because of Rayleigh scattering."


# -- the review's fixed form ---------------------------------------------------------------------
REVIEW = """Looking at the other judges' work:
F2: accept - it cites the mechanism
**F3**: Rejected: a slogan is not what the user asked for
Score change: Judge B showed I missed the missing example
Scores: \\boxed{6}"""


def test_review_answers_every_fix_with_its_reason() -> None:
    parsed = parse_review(REVIEW, 1, ["F2", "F3"])
    assert parsed.answers == {"F2": (True, "it cites the mechanism"),
                              "F3": (False, "a slogan is not what the user asked for")}
    assert parsed.score_change == "Judge B showed I missed the missing example"
    assert parsed.scores == [6.0]


def test_a_missing_answer_is_unreadable() -> None:
    with pytest.raises(ParseError, match="no accept/reject answer for F4"):
        parse_review(REVIEW, 1, ["F2", "F3", "F4"])


def test_contradictory_answers_are_unreadable_and_repeats_count_once() -> None:
    with pytest.raises(ParseError, match="both accepted and rejected"):
        parse_review("F2: accept - yes\nF2: reject - no\nScores: \\boxed{5}", 1, ["F2"])
    again = parse_review("F2: accept - yes\nF2: accept - still\nScores: \\boxed{5}", 1, ["F2"])
    assert again.answers == {"F2": (True, "yes")}


def test_answers_to_fixes_not_asked_are_ignored() -> None:
    parsed = parse_review("F1: reject - my own\nF2: accept - ok\nScores: \\boxed{5}", 1, ["F2"])
    assert parsed.answers == {"F2": (True, "ok")}


def test_the_scores_line_must_be_last_and_fit() -> None:
    with pytest.raises(ParseError, match="does not end with a scores line"):
        parse_review("F2: accept - ok\nScores: \\boxed{5}\nF3: reject - late", 1, ["F2"])
    with pytest.raises(ParseError, match="holds 1 score"):
        parse_review("F2: accept - ok\nScores: \\boxed{5}", 2, ["F2"])


@pytest.mark.parametrize("stated", ["none", "None.", "no change", "unchanged", ""])
def test_no_score_change_reads_as_none(stated: str) -> None:
    text = f"F2: accept - ok\nScore change: {stated}\nScores: \\boxed{{5}}"
    assert parse_review(text, 1, ["F2"]).score_change is None


def test_no_fix_to_review_needs_only_the_scores_line() -> None:
    assert parse_review("Scores: \\boxed{7, 3}", 2, []).scores == [7.0, 3.0]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.lists(st.sampled_from(["F1", "F2", "F3"]), unique=True))
def test_parse_review_returns_or_raises_parse_error(text: str, ids: list[str]) -> None:
    try:
        parsed = parse_review(text, 1, ids)
    except ParseError:
        return
    assert list(parsed.answers) == ids


@pytest.fixture(scope="module")
def compiler() -> Any:
    return grammar_compiler()


def test_review_grammar_accepts_what_the_parser_reads(compiler: Any) -> None:
    text = ("F2: accept - it cites the mechanism\nF3: reject - off topic\n"
            "Score change: none\nScores: \\boxed{6}")
    grammar = review_grammar(1, ["F2", "F3"])
    assert accepts(compiler, grammar, text)
    assert parse_review(text, 1, ["F2", "F3"]).answers["F3"] == (False, "off topic")
    assert not accepts(compiler, grammar, text.replace("F3: reject", "F3: maybe"))
    assert not accepts(compiler, grammar, text.replace("F3: reject - off topic\n", ""))
    assert not accepts(compiler, review_grammar(2, ["F2", "F3"]), text)


def test_whatever_the_review_grammar_emits_parses(compiler: Any) -> None:
    for seed in range(3):
        text = random_walk(compiler, review_grammar(2, ["F1", "F4"], reason_chars=12), seed)
        parsed = parse_review(text, 2, ["F1", "F4"])
        assert list(parsed.answers) == ["F1", "F4"]
        assert text.splitlines()[-1].startswith("Scores: \\boxed{")


def test_review_grammar_shrinks_its_reasons_to_the_token_budget() -> None:
    from judgekit.debate import _Position

    me = _Position(label="A", principles=[], critiques=[])
    fmt = ReviewFormat(me=me, others=[], review=[{"id": "F1", "by": "B", "response": 1,
                                                  "text": "x"}], replies=[])
    roomy, tight = fmt.output_grammar(1), fmt.output_grammar(1, max_tokens=40)
    assert roomy is not None and tight is not None
    share = int(40 * CHARS_PER_TOKEN * 0.7 / 2)  # 70% of the budget over 2 reason lines
    assert "{1,300}" in roomy and f"{{1,{share}}}" in tight and share < 300


# -- debates among scripted judges ---------------------------------------------------------------
def judges(scripted_server: FaultServer, *models: str) -> list[Judge]:
    return [Judge(f"openai:{m}", fixes=True, examples=False, base_url=scripted_server.openai_url,
                  api_key="test-key") for m in models]


def review_prompts(scripted_server: FaultServer, model: str) -> list[str]:
    out = []
    for r in scripted_server.records:
        first = r.body["messages"][0]["content"]
        if r.body.get("model") == model and "#### Fixes to Review" in first \
                and len(r.body["messages"]) == 1:
            out.append(first)
    return out


async def test_judges_that_disagree_accept_reject_and_change_their_minds(
        scripted_server: FaultServer) -> None:
    d = await adebate(QUERY, [RESPONSE], judges(scripted_server, "judge-a", "judge-b"))
    assert [(f.id, f.judge, f.response) for f in d.fixes] == [("F1", 0, 0), ("F2", 1, 0),
                                                             ("F3", 1, 0)]
    by_id = {f.id: f for f in d.fixes}
    assert by_id["F1"].accepted and by_id["F1"].accepted_by == [1]  # B accepts A's example
    assert by_id["F2"].accepted and by_id["F2"].accepted_by == [0]  # A accepts B's source
    assert not by_id["F3"].accepted and by_id["F3"].rejected_by == [0]  # A rejects the spam
    assert [f.id for f in d.accepted_fixes] == ["F1", "F2"]
    (turns,) = d.rounds
    a, b = turns
    assert [x.fix for x in a.answers] == ["F2", "F3"] and a.reviewed == ["F2", "F3"]
    assert a.answers[1].reason == "a slogan adds nothing the user asked for"
    assert [x.fix for x in b.answers] == ["F1"]
    # B opened 2 below A and moved to A's score, saying why; A held its ground.
    assert (a.scores_before, a.scores_after, a.changed_mind) == ([3.0], [3.0], False)
    assert (b.scores_before, b.scores_after, b.changed_mind) == ([1.0], [3.0], True)
    (change,) = d.mind_changes
    assert (change.judge, change.round, change.before, change.after) == (1, 1, [1.0], [3.0])
    assert change.reason == "Judge A showed the parts I missed are there"
    assert change.accepted == ["F1"]
    # The vote is over each judge's last sample: 3 + 3 (the openings would have given 3 + 1).
    assert [s.sample_index for s in d.final] == [0, 1]
    assert d.scores == [6.0] and d.mean_scores() == [3.0]
    assert d.usage.calls == 4  # two openings, two reviews
    assert DebateResult.model_validate_json(d.model_dump_json()) == d


async def test_the_review_prompt_shows_the_others_and_asks_only_their_fixes(
        scripted_server: FaultServer) -> None:
    await adebate(QUERY, [RESPONSE], judges(scripted_server, "judge-a", "judge-b"))
    (prompt,) = review_prompts(scripted_server, "judge-a")
    tag = re.search(r"#### Responses \(tag=([0-9a-f]{16})\)", prompt)
    assert tag
    t = tag.group(1)
    assert f"<judge-A tag={t}>" in prompt and f"<judge-B tag={t}>" in prompt
    assert f"<fix-F2 tag={t}>\nCite a source for the claim, marked [source].\n</fix-F2 tag={t}>" \
        in prompt
    assert "<fix-F1 " not in prompt  # its own fix is not put to it
    out_format = prompt[prompt.index("#### Output Format"):]
    assert re.findall(r"(?m)^(F\d+): <accept or reject>", out_format) == ["F2", "F3"]
    assert out_format.rstrip().endswith("and nothing may follow it.")
    # The static instructions come first and are identical for every judge and item.
    (other,) = review_prompts(scripted_server, "judge-b")
    cut = prompt.index("#### Conversation")
    assert other[:cut] == prompt[:cut]


async def test_a_quoted_fence_cannot_close_a_debate_block(scripted_server: FaultServer) -> None:
    """A judge may echo the tag of its own judging prompt; the debate prompt fences with a tag
    computed over everything it fences, so the echo stays inside the echoing judge's block."""
    d = await adebate(QUERY, [RESPONSE], judges(scripted_server, "judge-a", "judge-echo"))
    opening = next(r.body["messages"][0]["content"] for r in scripted_server.records
                   if r.body.get("model") == "judge-echo")
    grm_tag = re.search(r"<response-1 tag=([0-9a-f]{16})>", opening)
    assert grm_tag
    (prompt,) = review_prompts(scripted_server, "judge-a")
    tag = re.search(r"#### Responses \(tag=([0-9a-f]{16})\)", prompt)
    assert tag and tag.group(1) != grm_tag.group(1)
    t = tag.group(1)
    block = re.search(rf"(?s)<judge-B tag={t}>\n(.*?)\n</judge-B tag={t}>", prompt)
    assert block and f"</judge-A tag={grm_tag.group(1)}>" in block.group(1)
    assert prompt.count(f"</judge-A tag={t}>") == 1
    assert d.scores == [6.0]


async def test_a_second_round_shows_the_last_reviews(scripted_server: FaultServer) -> None:
    d = await adebate(QUERY, [RESPONSE], judges(scripted_server, "judge-a", "judge-b"), rounds=2)
    assert [len(r) for r in d.rounds] == [2, 2]
    first, second = review_prompts(scripted_server, "judge-b")
    assert "Their Reviews in the Last Round" not in first
    assert "Their Reviews in the Last Round" in second
    assert "F3: reject - a slogan adds nothing the user asked for" in second
    assert "Response 1 (score 3)" in second  # B's own position carries its revised score
    # B changed its mind once; in round 2 it holds (3 -> 3).
    assert [(c.judge, c.round) for c in d.mind_changes] == [(1, 1)]
    assert d.rounds[1][1].scores_before == [3.0]


async def test_an_unreadable_review_keeps_the_old_scores_and_counts_no_answer(
        scripted_server: FaultServer) -> None:
    d = await adebate(QUERY, [RESPONSE], judges(scripted_server, "judge-a", "judge-mute"))
    a, mute = d.rounds[0]
    assert [(x.fix, x.accept) for x in a.answers] == [("F2", True)]
    assert mute.sample.status is SampleStatus.PARSE_FAILURE
    assert "no accept/reject answer for F1" in (mute.sample.error or "")
    assert mute.sample.attempts == 2  # the answer, then one re-ask
    assert mute.scores_after is None and mute.answers == [] and not mute.changed_mind
    f1, f2 = d.fixes  # A's fix went to the mute judge only: unanswered, so not accepted
    assert (f1.judge, f1.accepted, f1.accepted_by, f1.rejected_by) == (0, False, [], [])
    assert (f2.judge, f2.accepted) == (1, True)
    assert d.final[1].status is SampleStatus.OK and d.final[1].raw_text.startswith("Specific")
    assert d.scores == [6.0]


async def test_without_rounds_or_with_one_judge_every_fix_stands(scripted_server: FaultServer) -> None:
    none = await adebate(QUERY, [RESPONSE], judges(scripted_server, "judge-a", "judge-b"), rounds=0)
    assert none.rounds == [] and all(f.accepted for f in none.fixes) and len(none.fixes) == 3
    assert none.scores == [4.0]  # the openings: 3 + 1
    alone = await adebate(QUERY, [RESPONSE], judges(scripted_server, "judge-b"), rounds=3)
    assert alone.rounds == [] and [f.accepted for f in alone.fixes] == [True, True]


async def test_a_judge_that_cannot_answer_sits_out(scripted_server: FaultServer) -> None:
    broken = FaultServer(default_schedule=["400"] * 10).start()
    try:
        dead = Judge("openai:judge-b", fixes=True, examples=False, base_url=broken.openai_url,
                     api_key="test-key")
        d = await adebate(QUERY, [RESPONSE], [*judges(scripted_server, "judge-a"), dead])
    finally:
        broken.stop()
    assert d.openings[1].error is not None and d.openings[1].samples[0].status is \
        SampleStatus.API_ERROR
    assert d.rounds == [] and [f.judge for f in d.fixes] == [0] and d.fixes[0].accepted
    assert [s.sample_index for s in d.final] == [0] and d.scores == [3.0]


async def test_every_judge_must_suggest_fixes(scripted_server: FaultServer) -> None:
    plain = Judge("openai:judge-a", examples=False, base_url=scripted_server.openai_url, api_key="k")
    with pytest.raises(ValueError, match=r"judge B \(openai:judge-a\S*\) does not suggest fixes"):
        await adebate(QUERY, [RESPONSE], [*judges(scripted_server, "judge-a"), plain])
    with pytest.raises(ValueError, match="rounds must be at least 0"):
        await adebate(QUERY, [RESPONSE], judges(scripted_server, "judge-a"), rounds=-1)


async def test_debating_several_responses_keeps_fixes_on_their_response(
        scripted_server: FaultServer) -> None:
    d = await adebate(QUERY, [RESPONSE, RESPONSE + " [example]"],
                      judges(scripted_server, "judge-a", "judge-b"))
    assert [(f.judge, f.response) for f in d.fixes] == [(0, 0), (0, 1), (1, 0), (1, 0), (1, 1),
                                                        (1, 1)]
    assert "[example]" in d.fixes[0].text and "[summary]" in d.fixes[1].text
    assert d.best == 1 and d.scores == [6.0, 10.0]


async def test_a_reference_answer_reaches_the_openings_and_the_reviews(
        scripted_server: FaultServer) -> None:
    reference = "Rayleigh scattering: shorter wavelengths scatter more."
    await adebate(QUERY, [RESPONSE], judges(scripted_server, "judge-a", "judge-b"), reference=reference)
    (prompt,) = review_prompts(scripted_server, "judge-a")
    t = re.search(r"#### Responses \(tag=([0-9a-f]{16})\)", prompt)
    assert t and f"<reference tag={t.group(1)}>\n{reference}\n</reference tag={t.group(1)}>" \
        in prompt
    openings = [r.body["messages"][0]["content"] for r in scripted_server.records
                if "Responses to Score" in r.body["messages"][0]["content"]]
    assert len(openings) == 2 and all(reference in o for o in openings)
