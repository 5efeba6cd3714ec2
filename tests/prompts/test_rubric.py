"""User rubrics (`principles=`, fixed and seed modes) through the rubric model and its files, the
GRM template, the parser, the weighted aggregate, the output grammars (xgrammar, the embedded
model's tokenizer) and the Judge over the real OpenAI SDK talking to the loopback fault server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fault_server import FaultServer
from support.grammar import accepts, grammar_compiler, random_walk

from judgekit import GRMFormat, Judge, PairwiseFormat, ParseError, Principle, RubricError
from judgekit.config import GenerationConfig
from judgekit.formats import fence_tag, grm_messages
from judgekit.parsing import grm_output_grammar, parse_grm, rubric_output_grammar
from judgekit.prompts import load_examples
from judgekit.rubric import PrinciplesMode, Rubric, load_rubric, resolve_rubric
from judgekit.schema import Message

QUERY = "What is the boiling point of water at sea level, in Celsius?"
RESPONSES = ["GOOD: 100 degrees Celsius.", "About 90 degrees, give or take."]
RUBRIC = [("Accuracy", "the number is right", 3), ("Clarity", "easy to follow", 1)]
ITEM_PART = "#### Conversation (tag="


def _prompt(query: Any = QUERY, responses: list[str] | None = None, **kwargs: Any) -> str:
    return grm_messages(query, responses or RESPONSES, **kwargs)[-1]["content"]


def _fixed_output(rows: list[tuple[list[int], int]], names: list[str]) -> str:
    """A fixed-rubric answer: per response, one analysis line per criterion, its criterion
    scores line, then the final scores line."""
    lines = ["Analysis:"]
    for i, (subs, _) in enumerate(rows, 1):
        lines.append(f"Response {i}:")
        lines += [f"- {name}: looked at {name.lower()}." for name in names]
        lines.append("Criterion scores: " + ", ".join(map(str, subs)))
    lines.append("Scores: \\boxed{" + ", ".join(str(o) for _, o in rows) + "}")
    return "\n".join(lines)


# -- the rubric itself ------------------------------------------------------------------------------
def test_every_accepted_form_becomes_the_same_normalised_rubric() -> None:
    forms: list[Any] = [
        RUBRIC,
        [{"name": "Accuracy", "description": "the number is right", "weight": 3},
         ["Clarity", "easy to follow", 1]],
        [Principle(name="Accuracy", description="the number is right", weight=0.75),
         Principle(name="  Clarity ", description="easy   to\nfollow", weight=0.25)],
    ]
    rubrics = [Rubric.of(f) for f in forms]
    for rubric in rubrics:
        assert rubric.mode is PrinciplesMode.FIXED
        assert [(p.name, p.description) for p in rubric.principles] == [
            ("Accuracy", "the number is right"), ("Clarity", "easy to follow")]
        assert [p.weight for p in rubric.principles] == pytest.approx([0.75, 0.25])
    equal = Rubric.of(["Accuracy", "Clarity", "Tone"], "seed")
    assert equal.mode is PrinciplesMode.SEED
    assert [p.weight for p in equal.principles] == pytest.approx([1 / 3] * 3)
    assert [r["percent"] for r in equal.template_rows()] == ["33.3"] * 3
    # A Rubric keeps its mode unless one is given.
    assert Rubric.of(equal).mode is PrinciplesMode.SEED
    assert Rubric.of(equal, "fixed").mode is PrinciplesMode.FIXED


@pytest.mark.parametrize(("criteria", "message"), [
    ([], "at least 1"),
    (["Accuracy", "accuracy"], "listed twice"),
    (["Accuracy: facts"], "may not contain"),
    (["Weight (a)"], "may not contain"),
    (["x"], "2 to 80 characters"),
    (["A" * 81], "2 to 80 characters"),
    ([("Accuracy", "", 0), ("Clarity", "", 0)], "add up to 0"),
    ([("Accuracy", "", -1)], "greater than or equal to 0"),
    ([("Accuracy", "d", 1, "extra")], "a criterion is"),
])
def test_bad_rubrics_are_refused(criteria: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Rubric.of(criteria)


def test_a_string_is_not_a_list_of_criteria() -> None:
    with pytest.raises(ValueError, match="a list of criteria"):
        Rubric.of("Accuracy")


def test_rubric_files_json_yaml_and_object_form(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps(
        [{"name": "Accuracy", "description": "the number is right", "weight": 3},
         {"name": "Clarity", "description": "easy to follow", "weight": 1}]), encoding="utf-8")
    (tmp_path / "r.yaml").write_text(
        "- name: Accuracy\n  description: the number is right\n  weight: 3\n"
        "- [Clarity, easy to follow, 1]\n", encoding="utf-8")
    (tmp_path / "seed.yml").write_text(
        "mode: seed\nprinciples:\n  - Accuracy\n  - Clarity\n", encoding="utf-8")
    expected = Rubric.of(RUBRIC)
    assert load_rubric(tmp_path / "r.json") == expected
    assert load_rubric(tmp_path / "r.yaml") == expected
    seed = load_rubric(tmp_path / "seed.yml")
    assert seed.mode is PrinciplesMode.SEED and seed.names() == ["Accuracy", "Clarity"]
    assert load_rubric(tmp_path / "seed.yml", "fixed").mode is PrinciplesMode.FIXED
    assert resolve_rubric(str(tmp_path / "r.yaml")) == expected
    assert resolve_rubric(RUBRIC, "seed") == Rubric.of(RUBRIC, "seed")
    assert resolve_rubric(None) is None
    with pytest.raises(ValueError, match="needs a rubric"):
        resolve_rubric(None, "seed")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.json", "[{\"name\": \"Accuracy\",", "not valid JSON"),
    ("bad.yaml", "- name: [unclosed", "not valid YAML"),
    ("empty.yaml", "", "non-empty list"),
    ("obj.yaml", "criteria: [a, b]", "needs 'principles'"),
    ("dup.yaml", "- Accuracy\n- Accuracy\n", "listed twice"),
    ("mode.yaml", "mode: loose\nprinciples: [Accuracy]\n", "must be 'fixed' or 'seed'"),
])
def test_bad_rubric_files_name_the_file_and_the_problem(tmp_path: Path, name: str, text: str,
                                                        message: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RubricError, match=re.escape(message)) as info:
        load_rubric(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(RubricError, match="cannot read"):
        load_rubric(tmp_path / "missing.yaml")


# -- the template -------------------------------------------------------------------------------
def test_fixed_rubric_replaces_the_self_written_criteria_in_the_prompt() -> None:
    prompt = _prompt(principles=RUBRIC, examples=load_examples())
    prefix = prompt[: prompt.index(ITEM_PART)]
    assert "#### Evaluation Criteria ####\n1. Accuracy (Weight: 75%): the number is right\n" \
           "2. Clarity (Weight: 25%): easy to follow\n" in prefix
    assert "exactly the evaluation criteria below" in prefix
    # Nothing that asks for self-written criteria: no general criteria, no worked example that
    # teaches them, no criteria section in the output format.
    for absent in ("#### General Criteria ####", "Worked Example", "write 2 to 4",
                   "Specific Criteria:"):
        assert absent not in prompt
    output_format = prompt[prompt.index("#### Output Format ####"):]
    assert output_format.startswith("#### Output Format ####\nWrite exactly two parts:\nAnalysis:\n")
    for i in (1, 2):
        block = (f"Response {i}:\n- Accuracy: <analysis of Response {i} against this criterion>\n"
                 f"- Clarity: <analysis of Response {i} against this criterion>\nCriterion scores:")
        assert block in output_format
    # The criterion scores are asked for whatever the aggregate rule.
    assert output_format.count("Criterion scores:") == 2
    assert _prompt(principles=RUBRIC, aggregate="weighted") == _prompt(principles=RUBRIC)


def test_seed_rubric_keeps_self_written_criteria_and_starts_from_the_given_ones() -> None:
    prompt = _prompt(principles=RUBRIC, principles_mode="seed")
    prefix = prompt[: prompt.index(ITEM_PART)]
    assert "#### General Criteria ####" in prefix
    assert "#### Given Criteria ####\n1. Accuracy (suggested weight: 75%): the number is right\n" \
           "2. Clarity (suggested weight: 25%): easy to follow\n" in prefix
    assert "first the given criteria below, with their names unchanged, then up to 2 of your own" \
        in prefix
    output_format = prompt[prompt.index("#### Output Format ####"):]
    assert ("Specific Criteria:\n1. Accuracy (Weight: <percent>%): <what it checks for this "
            "query>\n2. Clarity (Weight: <percent>%): <what it checks for this query>\n"
            "(the given criteria first, then up to 2 of your own)\nAnalysis:\n") in output_format
    assert "Criterion scores:" not in output_format  # overall rule: as without a rubric
    # The built-in worked example stays: it teaches self-written criteria, which seeding keeps.
    assert "Worked Example" in _prompt(principles=RUBRIC, principles_mode="seed",
                                       examples=load_examples())


@pytest.mark.parametrize("mode", ["fixed", "seed"])
def test_a_rubric_is_in_the_static_prefix_shared_by_every_item(mode: str) -> None:
    convo: list[Message] = [{"role": "user", "content": "Hi."},
                            {"role": "assistant", "content": "Hello."},
                            {"role": "user", "content": "Name a prime."}]
    items: list[tuple[Any, list[str]]] = [(QUERY, RESPONSES), (convo, ["7", "8", "9"]),
                                          ("Accuracy (Weight: 75%)", ["only one"])]
    prompts = [_prompt(q, r, principles=RUBRIC, principles_mode=mode,
                       examples=load_examples(), system="Be strict.") for q, r in items]
    prefixes = {p[: p.index(ITEM_PART)] for p in prompts}
    assert len(prefixes) == 1
    prefix = prefixes.pop()
    assert "Accuracy" in prefix and "easy to follow" in prefix
    for (query, responses), prompt in zip(items, prompts, strict=True):
        assert fence_tag(query, responses) not in prefix
        assert prompt.index(ITEM_PART) > prompt.index("Clarity")


def test_no_rubric_renders_the_prompt_of_no_rubric() -> None:
    base = GRMFormat(examples=load_examples())
    assert base.rubric is None
    assert base.with_rubric(None).messages(QUERY, RESPONSES, tag="0" * 16) == \
        base.messages(QUERY, RESPONSES, tag="0" * 16)
    with pytest.raises(ValueError, match="needs principles"):
        GRMFormat(principles_mode="seed")


def test_pairwise_format_refuses_a_rubric() -> None:
    with pytest.raises(ValueError, match="has no principles"):
        PairwiseFormat().with_rubric(Rubric.of(RUBRIC))


def test_fingerprint_follows_the_rubric() -> None:
    prints = {GRMFormat().fingerprint(), GRMFormat(principles=RUBRIC).fingerprint(),
              GRMFormat(principles=RUBRIC, principles_mode="seed").fingerprint(),
              GRMFormat(principles=RUBRIC[:1]).fingerprint()}
    assert len(prints) == 4


# -- the parser and the weighted aggregate -----------------------------------------------------------
def test_fixed_rubric_is_read_in_its_order_and_weighed_with_its_weights() -> None:
    fmt = GRMFormat(principles=RUBRIC, aggregate="weighted")
    text = _fixed_output([([9, 6], 8), ([2, 4], 3)], ["Accuracy", "Clarity"])
    parsed = fmt.parse(text, 2)
    assert [(p.name, p.weight) for p in parsed.principles] == [("Accuracy", 0.75),
                                                               ("Clarity", 0.25)]
    assert parsed.critiques[0].principle_scores == {"Accuracy": 9.0, "Clarity": 6.0}
    assert parsed.scores == pytest.approx([0.75 * 9 + 0.25 * 6, 0.75 * 2 + 0.25 * 4])
    assert [c.overall for c in parsed.critiques] == [8.0, 3.0]
    assert not any(c.weighted_fallback for c in parsed.critiques)
    # Under the overall rule the written scores vote; the weighted values are still kept.
    overall = GRMFormat(principles=RUBRIC).parse(text, 2)
    assert overall.scores == [8.0, 3.0]
    assert [c.weighted for c in overall.critiques] == pytest.approx([8.25, 2.5])


def test_criteria_the_judge_writes_itself_are_ignored_under_a_fixed_rubric() -> None:
    text = ("Specific Criteria:\n1. Style (Weight: 60%): nice prose.\n2. Wit (Weight: 40%): fun.\n"
            + _fixed_output([([10, 1], 7), ([1, 10], 4)], ["Accuracy", "Clarity"]))
    parsed = GRMFormat(principles=RUBRIC, aggregate="weighted").parse(text, 2)
    assert [p.name for p in parsed.principles] == ["Accuracy", "Clarity"]
    assert parsed.scores == pytest.approx([7.75, 3.25])
    # Without the rubric the same text is read with the judge's own criteria.
    assert [p.name for p in parse_grm(text, 2).principles] == ["Style", "Wit"]


@pytest.mark.parametrize("line", ["Criterion scores: 9", "Criterion scores: 9, 6, 5",
                                  "Criterion scores: 9, 11", "Accuracy 9, Clarity 6"])
def test_a_missing_or_malformed_criterion_line_falls_back_to_the_written_score(line: str) -> None:
    text = _fixed_output([([9, 6], 8), ([2, 4], 3)], ["Accuracy", "Clarity"])
    text = text.replace("Criterion scores: 9, 6", line, 1)
    parsed = GRMFormat(principles=RUBRIC, aggregate="weighted").parse(text, 2)
    assert parsed.scores == pytest.approx([8.0, 2.5])
    assert [c.weighted_fallback for c in parsed.critiques] == [True, False]
    assert parsed.critiques[0].principle_scores == {}


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("Criterion scores:Response 12-Accuracy\n,9 10\\boxed{}")),
               max_size=300), st.integers(1, 3))
def test_a_fixed_rubric_parse_raises_only_parse_error(text: str, n: int) -> None:
    """The parser's contract holds with a rubric: a value, or ParseError, on any string."""
    fmt = GRMFormat(principles=RUBRIC, aggregate="weighted")
    try:
        parsed = fmt.parse(text, n)
    except ParseError:
        return
    assert len(parsed.scores) == n and all(1 <= x <= 10 for x in parsed.scores)
    assert [p.name for p in parsed.principles] == ["Accuracy", "Clarity"]


def test_seed_rubric_parses_what_the_judge_wrote() -> None:
    text = ("Specific Criteria:\n1. Accuracy (Weight: 50%): right number.\n"
            "2. Clarity (Weight: 20%): clear.\n3. Units (Weight: 30%): says Celsius.\nAnalysis:\n"
            "Response 1: right.\nCriterion scores: 10, 8, 10\n"
            "Response 2: wrong.\nCriterion scores: 2, 6, 1\nScores: \\boxed{9, 2}")
    parsed = GRMFormat(principles=RUBRIC, principles_mode="seed", aggregate="weighted").parse(
        text, 2)
    assert [(p.name, p.weight) for p in parsed.principles] == [
        ("Accuracy", 0.5), ("Clarity", 0.2), ("Units", 0.3)]
    assert parsed.scores == pytest.approx([0.5 * 10 + 0.2 * 8 + 0.3 * 10, 0.5 * 2 + 0.2 * 6 + 0.3])


# -- the output grammars --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiler() -> Any:
    return grammar_compiler()


NAMES = ["Accuracy", 'Says "Celsius"', "Clarté"]


@pytest.mark.parametrize("n", [1, 3])
def test_fixed_grammar_accepts_the_asked_format_and_it_parses_back(compiler: Any, n: int) -> None:
    rubric = Rubric.of([(name, "", w) for name, w in zip(NAMES, (2, 1, 1), strict=True)])
    fmt = GRMFormat(principles=rubric, aggregate="weighted")
    rows = [([9, 8, 7], 8), ([2, 3, 4], 3), ([5, 5, 5], 5)][:n]
    text = _fixed_output(rows, NAMES)
    grammar = fmt.output_grammar(n)
    # The response's analysis budget is shared by its criterion lines.
    assert grammar == rubric_output_grammar(n, NAMES, analysis_chars=800 // 3)
    assert "[^\\n]{1,40}" in fmt.output_grammar(n, max_tokens=64)
    assert accepts(compiler, grammar, text)
    parsed = fmt.parse(text, n)
    assert [list(c.principle_scores.values()) for c in parsed.critiques] == \
        [[float(s) for s in subs] for subs, _ in rows]
    assert parsed.scores == pytest.approx([(2 * a + b + c) / 4 for (a, b, c), _ in rows])
    # Another criterion name, a criterion left out, or one score too many: refused.
    assert not accepts(compiler, grammar, text.replace("- Clarté:", "- Clarity:"))
    assert not accepts(compiler, grammar, re.sub(r"(?m)^- Accuracy: .*\n", "", text))
    assert not accepts(compiler, grammar, text.replace("Criterion scores: 9, 8, 7",
                                                       "Criterion scores: 9, 8, 7, 6"))
    # The criteria section of the free format is not part of the fixed one.
    assert not accepts(compiler, grammar, "Specific Criteria:\n1. Accuracy (Weight: 50%): x\n"
                       + text)


@pytest.mark.parametrize("n", [1, 2])
def test_whatever_the_fixed_grammar_emits_parses_with_every_criterion_score(
        compiler: Any, n: int) -> None:
    rubric = Rubric.of(NAMES)
    fmt = GRMFormat(principles=rubric, aggregate="weighted")
    grammar = rubric_output_grammar(n, NAMES, analysis_chars=12)
    for seed in range(3):
        text = random_walk(compiler, grammar, seed)
        parsed = fmt.parse(text, n)
        assert [p.name for p in parsed.principles] == NAMES
        assert all(set(c.principle_scores) == set(NAMES) for c in parsed.critiques), text
        assert not any(c.weighted_fallback for c in parsed.critiques)


def test_seed_grammar_fixes_the_seeded_names_first(compiler: Any) -> None:
    seeds = ["Accuracy", 'Says "Celsius"']
    grammar = grm_output_grammar(2, 4, criterion_scores=True, seed_names=seeds)
    assert GRMFormat(principles=seeds, principles_mode="seed",
                     aggregate="weighted").output_grammar(2) == grammar
    text = ("Specific Criteria:\n1. Accuracy (Weight: 50%): right number.\n"
            '2. Says "Celsius" (Weight: 20%): names the unit.\n'
            "3. Brevity (Weight: 30%): short.\nAnalysis:\n"
            "Response 1: right.\nCriterion scores: 10, 8, 10\n"
            "Response 2: wrong.\nCriterion scores: 2, 6, 1\nScores: \\boxed{9, 2}")
    assert accepts(compiler, grammar, text)
    two_seeds_only = re.sub(r"(?m)^3\. .*\n", "", text).replace("10, 8, 10", "10, 8").replace(
        "2, 6, 1", "2, 6")
    assert accepts(compiler, grammar, two_seeds_only)
    assert not accepts(compiler, grammar, text.replace("1. Accuracy", "1. Correctness"))
    assert not accepts(compiler, grammar, text.replace("2. Says", "2. Brevity (Weight: 1%): x\n"
                                                       "3. Says"))
    for seed in range(3):
        walked = random_walk(compiler, grm_output_grammar(
            1, 4, criterion_scores=True, seed_names=seeds, desc_chars=12, analysis_chars=12), seed)
        names = [p.name for p in parse_grm(walked, 1).principles]
        assert names[:2] == seeds and 2 <= len(names) <= 4, walked


def test_a_seeded_rubric_may_always_add_a_criterion() -> None:
    grammar = grm_output_grammar(1, 4, seed_names=["A1", "B2", "C3", "D4"])
    assert '"5. " crit' in grammar and '"6. "' not in grammar
    assert GRMFormat(principles=["A1", "B2", "C3", "D4"], principles_mode="seed")._seed_extra() == 1


# -- the Judge, over the real OpenAI SDK and the loopback server ------------------------------------
def rubric_text(responses: list[str] | None) -> str:
    """A fixed-rubric judgement whose numbers follow the content: GOOD responses get
    Accuracy 10, Clarity 6, overall 9; others Accuracy 2, Clarity 8, overall 4."""
    rows = [([10, 6], 9) if "GOOD" in r else ([2, 8], 4) for r in responses or ["GOOD", "x"]]
    return _fixed_output(rows, ["Accuracy", "Clarity"])


def _judge(server: FaultServer, **kw: Any) -> Judge:
    return Judge("openai:judge-test", base_url=server.openai_url, api_key="sk-test-x",
                 config=GenerationConfig(max_tokens=256, timeout=5.0), **kw)


def _prompts(server: FaultServer) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in server.records]


def test_judge_votes_with_the_rubric_weights(fault_server: FaultServer) -> None:
    fault_server.text = rubric_text
    judge = _judge(fault_server, principles=RUBRIC, aggregate="weighted")
    v = judge.score("jk-item-w " + QUERY, ["meh", "GOOD: 100"], samples=2)
    assert v.ok and v.best == 1
    assert v.scores == pytest.approx([2 * (0.75 * 2 + 0.25 * 8), 2 * (0.75 * 10 + 0.25 * 6)])
    for jd in v.samples:
        assert [(p.name, p.weight) for p in jd.principles] == [("Accuracy", 0.75),
                                                               ("Clarity", 0.25)]
        assert jd.critiques[1].principle_scores == {"Accuracy": 10.0, "Clarity": 6.0}
    assert v.metadata == {"format": "grm", "principles_mode": "fixed"}
    prompts = _prompts(fault_server)
    assert prompts and all("#### Evaluation Criteria ####" in p for p in prompts)
    # The same judge under the overall rule votes the written scores.
    overall = _judge(fault_server, principles=RUBRIC).score("jk-item-o q", ["meh", "GOOD"])
    assert overall.scores == [4.0, 9.0]


def test_a_call_may_bring_its_own_rubric_or_mode(fault_server: FaultServer) -> None:
    fault_server.text = rubric_text
    judge = _judge(fault_server, examples=False)
    plain = judge.score("jk-item-p q", ["GOOD", "meh"])
    assert plain.metadata == {"format": "grm"}
    assert "Evaluation Criteria" not in _prompts(fault_server)[-1]
    fixed = judge.score("jk-item-f q", ["GOOD", "meh"], principles=RUBRIC)
    assert fixed.metadata["principles_mode"] == "fixed"
    assert "1. Accuracy (Weight: 75%)" in _prompts(fault_server)[-1]
    # The call's rubric did not stick to the judge.
    judge.score("jk-item-p2 q", ["GOOD", "meh"])
    assert "Evaluation Criteria" not in _prompts(fault_server)[-1]
    seeded = _judge(fault_server, principles=RUBRIC, examples=False)
    seeded.score("jk-item-s q", ["GOOD", "meh"], principles_mode="seed")
    assert "#### Given Criteria ####" in _prompts(fault_server)[-1]
    with pytest.raises(ValueError, match="needs principles"):
        judge.score("jk-item-e q", ["GOOD", "meh"], principles_mode="seed")
    with pytest.raises(ValueError, match="has no principles"):
        _judge(fault_server, format=PairwiseFormat(), principles=RUBRIC)


def test_batch_items_carry_their_own_rubric(fault_server: FaultServer) -> None:
    fault_server.text = rubric_text
    judge = _judge(fault_server, aggregate="weighted", examples=False)
    items: list[dict[str, Any]] = [
        {"id": "a", "query": "jk-item-a q", "responses": ["GOOD", "meh"], "principles": RUBRIC},
        {"id": "b", "query": "jk-item-b q", "responses": ["GOOD", "meh"],
         "principles": [{"name": "Accuracy"}, {"name": "Clarity", "weight": 3}]},
        {"id": "c", "query": "jk-item-c q", "responses": ["GOOD", "meh"]}]
    a, b, c = judge.score_many(items, progress=False)
    assert a.scores == pytest.approx([0.75 * 10 + 0.25 * 6, 0.75 * 2 + 0.25 * 8])
    assert b.scores == pytest.approx([0.25 * 10 + 0.75 * 6, 0.25 * 2 + 0.75 * 8])
    assert a.best == b.best == 0
    # Without a rubric the free format's parser finds no criteria in this text: the written
    # scores are used (and the fallback recorded).
    assert c.scores == [9.0, 4.0] and c.samples[0].critiques[0].weighted_fallback
    by_key = {r.key: r.body["messages"][-1]["content"] for r in fault_server.records}
    assert "2. Clarity (Weight: 75%)" in by_key["b"] and "Evaluation Criteria" not in by_key["c"]


@pytest.mark.model
def test_the_embedded_model_writes_the_fixed_rubric_format() -> None:
    """The embedded model decodes under the fixed-rubric grammar: every criterion analysed by
    name, its criterion scores read, weighted with the rubric's weights."""
    judge = Judge(None, principles=RUBRIC, aggregate="weighted", max_tokens=128)
    assert judge.structured
    v = judge.score("What is 2+2?", ["4", "It is 5."])
    jd = v.samples[0]
    assert jd.status.valid, jd.error
    assert [p.name for p in jd.principles] == ["Accuracy", "Clarity"]
    assert jd.raw_text.startswith("Analysis:\nResponse 1:\n- Accuracy: ")
    if jd.status.value == "ok":  # not cut off: every criterion score was written and counts
        assert all(set(c.principle_scores) == {"Accuracy", "Clarity"} for c in jd.critiques)
        assert v.scores == pytest.approx([c.weighted for c in jd.critiques])
