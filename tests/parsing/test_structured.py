"""Structured output: the one rule for `structured=`, the formats' JSON schemas, reading answers
written under them (by field, into the same Judgement), the fallback to free text, and where the
static prefix of a prompt ends (prompt caching)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from judgekit.backends.anthropic_backend import AnthropicBackend
from judgekit.backends.base import Completion
from judgekit.backends.flavours import strict_schema, structured_fields
from judgekit.backends.local import TransformersBackend
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.config import GenerationConfig
from judgekit.errors import CapabilityError, ParseError
from judgekit.formats import ITEM_MARKER, GRMFormat, PairwiseFormat, fence_tag
from judgekit.judge import Judge
from judgekit.prompts import load_examples
from judgekit.sampler import Sampler
from judgekit.schema import SampleStatus, Usage
from judgekit.structured import (
    StructuredMode,
    choice_schema,
    grm_output_schema,
    rating_schema,
    read_choice_json,
    read_grm_json,
    read_rating_json,
    read_yes_no_json,
    resolve_structured,
    yes_no_schema,
)

URL = "http://127.0.0.1:9/v1"  # nothing listens: constructing a backend sends nothing
QUERY = "Name the capital of France."
RESPONSES = ["Paris.", "Lyon, obviously."]


def _grm_answer(scores: list[int], criterion_scores: list[list[int]] | None = None) -> str:
    analysis: list[dict[str, Any]] = []
    for i, _ in enumerate(scores):
        item: dict[str, Any] = {"analysis": f"Response {i + 1} is judged here. Scores: 10, 1"}
        if criterion_scores is not None:
            item["criterion_scores"] = criterion_scores[i]
        analysis.append(item)
    return json.dumps({"criteria": [{"name": "Accuracy", "weight": 75, "description": "right"},
                                    {"name": "Brevity", "weight": 25, "description": "short"}],
                       "analysis": analysis, "scores": scores})


# -- the one rule for structured= -----------------------------------------------------------------
@pytest.mark.parametrize(("backend", "none", "true"), [
    (lambda p: OpenAIBackend("gpt-4o-mini", api_key="k"), "schema", "schema"),
    (lambda p: OpenAIBackend("m", base_url=URL, server_flavour="llamacpp"), "schema", "schema"),
    (lambda p: OpenAIBackend("m", base_url=URL, server_flavour="vllm"), "schema", "schema"),
    (lambda p: OpenAIBackend("m", base_url=URL), "schema", "schema"),  # auto: asks the server
    (lambda p: OpenAIBackend("m", base_url=URL, server_flavour="generic"), "off", None),
    (lambda p: AnthropicBackend("claude-sonnet-4-5", api_key="k"), "schema", "schema"),
    (lambda p: TransformersBackend(p, spec="embedded"), "grammar", "grammar"),
    (lambda p: TransformersBackend(p, spec=f"hf:{p}"), "off", "grammar"),
])
def test_structured_means_one_thing_everywhere(tmp_path: Path, backend: Any, none: str,
                                               true: str | None) -> None:
    b = backend(tmp_path)
    fmt = GRMFormat()
    assert resolve_structured(b, fmt, None) is StructuredMode(none)
    assert resolve_structured(b, fmt, False) is StructuredMode.OFF
    if true is None:
        with pytest.raises(CapabilityError, match="neither a JSON schema nor a grammar"):
            resolve_structured(b, fmt, True)
    else:
        assert resolve_structured(b, fmt, True) is StructuredMode(true)
    # The Judge and its sampler read it from the same place.
    judge = Judge(b, examples=False, structured=None)
    assert judge.sampler.mode is StructuredMode(none)
    assert judge.structured == (none != "off")
    assert not Judge(b, examples=False, structured=False).structured


def test_pairwise_format_has_a_schema_but_no_grammar(tmp_path: Path) -> None:
    fmt = PairwiseFormat()
    assert resolve_structured(OpenAIBackend("gpt-4o", api_key="k"), fmt, None) is \
        StructuredMode.SCHEMA
    hf = TransformersBackend(tmp_path, spec=f"hf:{tmp_path}")
    with pytest.raises(CapabilityError):
        resolve_structured(hf, fmt, True)


# -- the schemas ----------------------------------------------------------------------------------
def _objects(schema: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found += _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _objects(value)
    return found


@pytest.mark.parametrize("schema", [
    grm_output_schema(2), grm_output_schema(3, 5, criterion_scores=True), choice_schema(4),
    rating_schema(), yes_no_schema()])
def test_schemas_keep_to_openai_strict_mode(schema: dict[str, Any]) -> None:
    """Every object lists all its properties as required and allows no others; strict mode gets
    no string lengths; llama.cpp gets them (it enforces them)."""
    for obj in _objects(schema):
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    strict = structured_fields("openai", GenerationConfig(json_schema=schema))
    wire = strict["response_format"]
    assert wire["type"] == "json_schema" and wire["json_schema"]["strict"] is True
    assert "maxLength" not in json.dumps(wire) and wire["json_schema"]["schema"] == \
        strict_schema(schema)
    llama = structured_fields("llamacpp", GenerationConfig(json_schema=schema))
    assert llama == {"response_format": {"type": "json_object", "schema": schema}}


def test_grm_schema_asks_criteria_then_analyses_then_scores() -> None:
    schema = grm_output_schema(3, max_criteria=4)
    assert list(schema["properties"]) == ["criteria", "analysis", "scores"]
    props = schema["properties"]
    assert (props["criteria"]["minItems"], props["criteria"]["maxItems"]) == (2, 4)
    assert props["analysis"]["minItems"] == props["analysis"]["maxItems"] == 3
    assert props["scores"]["items"]["enum"] == list(range(1, 11))
    assert "criterion_scores" not in json.dumps(schema)
    weighted = GRMFormat(aggregate="weighted").output_schema(3)
    assert weighted is not None and "criterion_scores" in json.dumps(weighted)


# -- reading by field -----------------------------------------------------------------------------
def test_grm_answer_reads_into_principles_critiques_and_scores() -> None:
    principles, critiques, scores = read_grm_json(_grm_answer([8, 3], [[9, 6], [2, 5]]), 2)
    assert [(p.name, p.weight) for p in principles] == [("Accuracy", 0.75), ("Brevity", 0.25)]
    assert scores == [8.0, 3.0]
    assert [c.overall for c in critiques] == [8.0, 3.0]
    assert critiques[0].principle_scores == {"Accuracy": 9.0, "Brevity": 6.0}
    assert critiques[0].weighted == pytest.approx(8.25)
    # Numbers in an analysis string are never scores.
    assert "Scores: 10, 1" in critiques[0].analysis


def test_aggregate_rule_applies_to_structured_answers() -> None:
    text = _grm_answer([8, 3], [[9, 6], [2, 5]])
    assert GRMFormat().parse_structured(text, 2).scores == [8.0, 3.0]
    weighted = GRMFormat(aggregate="weighted").parse_structured(text, 2)
    assert weighted.scores == [pytest.approx(8.25), pytest.approx(2.75)]
    # A criterion score missing: that response falls back to its overall score, and says so.
    partial = GRMFormat(aggregate="weighted").parse_structured(
        _grm_answer([8, 3], [[9, 6], [2]]), 2)
    assert partial.scores == [pytest.approx(8.25), 3.0]
    assert [c.weighted_fallback for c in partial.critiques] == [False, True]


def test_a_fixed_rubric_is_scored_by_field_and_its_criteria_are_not_asked_for() -> None:
    rubric = [{"name": "Accuracy", "weight": 3}, {"name": "Tone", "weight": 1}]
    fmt = GRMFormat(aggregate="weighted", principles=rubric)
    schema = fmt.output_schema(2)
    assert schema is not None and "criteria" not in schema["properties"]
    per = schema["properties"]["analysis"]["items"]["properties"]["criterion_scores"]
    assert per["minItems"] == per["maxItems"] == 2  # one score per rubric criterion
    # Criteria the answer lists anyway are ignored: the rubric's are the ones scored.
    parsed = fmt.parse_structured(_grm_answer([8, 3], [[10, 2], [2, 6]]), 2)
    assert [(p.name, p.weight) for p in parsed.principles] == [("Accuracy", 0.75), ("Tone", 0.25)]
    assert parsed.scores == [pytest.approx(8.0), pytest.approx(3.0)]
    assert parsed.critiques[0].principle_scores == {"Accuracy": 10.0, "Tone": 2.0}


def test_a_seeded_rubric_leaves_room_for_the_judges_own_criteria() -> None:
    seeds = [{"name": n, "weight": 1} for n in ("Aa", "Bb", "Cc", "Dd")]
    schema = GRMFormat(principles=seeds, principles_mode="seed").output_schema(2)
    assert schema is not None and schema["properties"]["criteria"]["maxItems"] == 5


def test_suggested_fixes_are_read_from_their_field_only_when_asked_for() -> None:
    fmt = GRMFormat(fixes=True, max_fixes=2)
    schema = fmt.output_schema(2)
    assert schema is not None
    fixes = schema["properties"]["analysis"]["items"]["properties"]["fixes"]
    assert fixes["maxItems"] == 2
    answer = json.loads(_grm_answer([8, 3]))
    answer["analysis"][1]["fixes"] = ["Say Paris.", "  "]
    parsed = fmt.parse_structured(json.dumps(answer), 2)
    assert [c.fixes for c in parsed.critiques] == [[], ["Say Paris."]]
    assert GRMFormat().parse_structured(json.dumps(answer), 2).critiques[1].fixes == []
    assert "fixes" not in GRMFormat().output_schema(2)["properties"]["analysis"]["items"][
        "properties"]


@pytest.mark.parametrize(("text", "message"), [
    ("", "not a JSON answer"),
    ("Scores: \\boxed{8, 3}", "not a JSON answer"),
    ('{"scores": [8]}', "holds 1 score"),
    ('{"scores": [8, 11]}', "out of range"),
    ('{"scores": [true, 3]}', "valid number"),
    ('{"scores": ["8", 3]}', "valid number"),
    ('{"analysis": [], "criteria": []}', "scores"),
    ("[8, 3]", "valid dictionary"),
])
def test_unreadable_structured_answers_are_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        read_grm_json(text, 2)
    assert info.value.raw == text


def test_choice_rating_and_yes_no_answers() -> None:
    assert read_choice_json('{"reasoning": "shorter", "best": 2}', 3) == 1
    with pytest.raises(ParseError, match="not a response number"):
        read_choice_json('{"reasoning": "", "best": 4}', 3)
    assert PairwiseFormat().parse_structured('{"reasoning": "", "best": 1}', 2).scores == \
        [10.0, 1.0]
    assert read_rating_json('{"reason": "fine", "rating": 7}') == 7.0
    assert read_yes_no_json('{"answer": "Yes"}') is True
    assert read_yes_no_json('{"answer": "No"}') is False
    with pytest.raises(ParseError):
        read_yes_no_json('{"answer": "Maybe"}')


def test_raw_control_characters_in_strings_are_read() -> None:
    """Some servers' grammars let a raw newline into a JSON string: the meaning is plain."""
    text = _grm_answer([6, 4]).replace("right", "right\nand complete")
    assert read_grm_json(text, 2)[0][0].description == "right\nand complete"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["criteria", "analysis", "scores", "best", "rating", "answer", "name",
                         "weight", "criterion_scores", "reason"]), inner, max_size=4),
    max_leaves=20).map(json.dumps))
def test_readers_return_a_value_or_raise_parse_error(text: str) -> None:
    for read in (lambda t: read_grm_json(t, 2), lambda t: read_choice_json(t, 2),
                 read_rating_json, read_yes_no_json):
        with contextlib.suppress(ParseError):  # anything else escaping fails the test
            read(text)


# -- the sampler reads structured samples into the same Judgement ----------------------------------
def _sampler() -> Sampler:
    return Sampler(OpenAIBackend("gpt-4o-mini", api_key="k"), GRMFormat())


def test_a_structured_sample_is_read_by_field_in_the_callers_order() -> None:
    sampler = _sampler()
    jd = sampler.read(Completion(text=_grm_answer([8, 3]), finish_reason="stop"), 2, [1, 0], 0,
                      Usage(), 512, schema=True)
    assert jd.status is SampleStatus.OK and jd.structured and jd.structured_fallback is None
    assert jd.scores == [3.0, 8.0]  # shown order [1, 0] mapped back
    assert [c.overall for c in jd.critiques] == [3.0, 8.0]
    assert len(jd.principles) == 2


def test_a_sample_written_without_its_schema_is_read_as_text_and_says_why() -> None:
    sampler = _sampler()
    text = "Specific Criteria:\n1. Accuracy (Weight: 100%): right.\nAnalysis:\nResponse 1: ok\n" \
        "Response 2: no\nScores: \\boxed{7, 2}"
    jd = sampler.read(Completion(text=text, finish_reason="stop",
                                 structured_fallback="written as free text: refused"),
                      2, [0, 1], 0, Usage(), 512, schema=True)
    assert jd.status is SampleStatus.OK and jd.scores == [7.0, 2.0]
    assert not jd.structured and jd.structured_fallback == "written as free text: refused"


def test_a_truncated_structured_sample_is_never_read() -> None:
    sampler = _sampler()
    jd = sampler.read(Completion(text=_grm_answer([8, 3]), finish_reason="length"), 2, [0, 1],
                      0, Usage(), 64, schema=True)
    assert jd.status is SampleStatus.PARSE_FAILURE and jd.truncated and jd.scores is None


def test_request_config_carries_the_schema_and_the_static_prefix() -> None:
    sampler = _sampler()
    prompts = sampler.prompts(QUERY, RESPONSES, k=2, seed=0)
    config = sampler.request_config(GenerationConfig(), 2, prompts[0].messages)
    assert config.json_schema == GRMFormat().output_schema(2) and config.grammar is None
    text = prompts[0].messages[-1]["content"]
    assert config.cache_prefix_chars == text.index(ITEM_MARKER)


# -- the static prefix (prompt caching) -----------------------------------------------------------
@pytest.mark.parametrize("fmt", [GRMFormat(examples=load_examples()), GRMFormat(system="Terse."),
                                 GRMFormat(aggregate="weighted"), PairwiseFormat()])
def test_two_items_share_the_static_prefix_up_to_where_the_format_cuts(fmt: Any) -> None:
    items = [(QUERY, RESPONSES), ("Write a haiku about rain.", ["a", "b", "c"])]
    prompts = [fmt.messages(q, r, tag=fence_tag(q, r)) for q, r in items]
    cuts = [fmt.static_prefix_chars(p) for p in prompts]
    assert cuts[0] is not None and cuts[0] == cuts[1]
    firsts = [next(m["content"] for m in p if m["role"] == "user") for p in prompts]
    assert firsts[0][:cuts[0]] == firsts[1][:cuts[1]]  # byte-identical
    assert firsts[0][cuts[0]:].startswith(ITEM_MARKER)
    for (q, r), first in zip(items, firsts, strict=True):
        assert fence_tag(q, r) not in first[:cuts[0]] and q not in first[:cuts[0]]


def test_a_custom_template_without_the_marker_has_no_static_prefix(tmp_path: Path) -> None:
    (tmp_path / "plain.jinja").write_text("Score: {{ responses }}")
    fmt = GRMFormat(template="plain.jinja", template_dir=tmp_path)
    assert fmt.static_prefix_chars(fmt.messages(QUERY, RESPONSES, tag="t")) is None


def test_response_cache_keys_count_the_schema_but_not_the_prefix_marker() -> None:
    from judgekit.cache import cache_key

    msgs = [{"role": "user", "content": "q"}]
    plain = GenerationConfig()
    key = cache_key("openai:m", msgs, plain, 0)
    assert cache_key("openai:m", msgs, plain.with_(cache_prefix_chars=5), 0) == key
    assert cache_key("openai:m", msgs, plain.with_(json_schema=yes_no_schema()), 0) != key
    # A key made before the schema field existed: the same parameters without it.
    import hashlib

    params = plain.model_dump(mode="json", exclude={"timeout", "json_schema",
                                                    "cache_prefix_chars"})
    blob = json.dumps({"v": 1, "spec": "openai:m", "messages": msgs, "params": params,
                       "sample": 0}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert hashlib.sha256(blob.encode("utf-8")).hexdigest() == key
