"""Suggested fixes (`GRMFormat(fixes=True)`, issue 14): the template asks for them in their own
section, the parser reads them from fixed-form 'Fix:' lines only, the final line stays the
scores line, and the output grammar for the embedded model writes what the parser reads."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.grammar import accepts, grammar_compiler, random_walk
from support.prompt_blocks import shown_responses

from judgekit import Judge
from judgekit.backends.base import Backend, Completion, GenerationResult
from judgekit.config import GenerationConfig
from judgekit.errors import ParseError
from judgekit.formats import GRMFormat, fix_budget
from judgekit.parsing import grm_output_grammar, parse_grm, split_fixes
from judgekit.prompts import load_examples
from judgekit.schema import Message, SampleStatus, Usage

QUERY = "Explain in two sentences why the sky is blue."
RESPONSES = ["Sunlight scatters off air; blue scatters most.", "The sky reflects the ocean."]

ANSWER = """Specific Criteria:
1. Accuracy (Weight: 60%): the physics must be right.
2. Brevity (Weight: 40%): two sentences, as asked.
Analysis:
Response 1: right mechanism, but it never names Rayleigh scattering.
Criterion scores: 8, 9
Fix: Name the effect: Rayleigh scattering.
- Fix 2: Say why shorter wavelengths scatter more.
Response 2: wrong; the ocean does not colour the sky.
Criterion scores: 1, 8
**Fix:** Replace the claim with the scattering explanation.
Scores: \\boxed{8, 2}"""


def _prompt(fmt: GRMFormat, responses: list[str] = RESPONSES) -> str:
    return fmt.messages(QUERY, responses, tag="0123456789abcdef")[-1]["content"]


# -- the template -------------------------------------------------------------------------------
def test_fixes_section_only_when_asked() -> None:
    plain, fixes = _prompt(GRMFormat()), _prompt(GRMFormat(fixes=True, max_fixes=2))
    assert "Fix:" not in plain and "Suggested fixes" not in plain
    assert "Fix: <one concrete change that would make Response 1 better>" in fixes
    assert "Fix: <one concrete change that would make Response 2 better>" in fixes
    assert "1 to 2 lines, each starting with \"Fix:\"" in fixes
    # The fixes block sits before the scores line's description; the scores line is still last.
    out_format = fixes[fixes.index("#### Output Format ####"):]
    assert out_format.index("Fix: <one") < out_format.index("Scores: \\boxed{")
    assert "nothing may follow it" in out_format


def test_fixes_leave_the_static_prefix_and_the_responses_alone() -> None:
    """The part before the item (instructions, criteria, examples) is byte-identical with and
    without fixes, and the responses are fenced as always."""
    ex = load_examples()
    plain, fixes = _prompt(GRMFormat(examples=ex)), _prompt(GRMFormat(examples=ex, fixes=True))
    cut = plain.index("#### Conversation")
    assert fixes[:cut] == plain[:cut]
    assert shown_responses(fixes) == RESPONSES


def test_fixes_change_the_fingerprint_and_defaults_do_not() -> None:
    assert GRMFormat(fixes=True).fingerprint() != GRMFormat().fingerprint()
    assert GRMFormat(fixes=True, max_fixes=2).fingerprint() != GRMFormat(fixes=True).fingerprint()
    assert GRMFormat(fixes=False).fingerprint() == GRMFormat().fingerprint()


def test_max_fixes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_fixes"):
        GRMFormat(fixes=True, max_fixes=0)


# -- the parser ---------------------------------------------------------------------------------
def test_fix_lines_are_read_per_response_and_leave_the_analysis() -> None:
    parsed = parse_grm(ANSWER, 2, fixes=True)
    first, second = parsed.critiques
    assert first.fixes == ["Name the effect: Rayleigh scattering.",
                           "Say why shorter wavelengths scatter more."]
    assert second.fixes == ["Replace the claim with the scattering explanation."]
    assert "Fix" not in first.analysis and "Fix" not in second.analysis
    assert first.analysis.startswith("right mechanism")
    assert first.principle_scores == {"Accuracy": 8.0, "Brevity": 9.0}  # still read
    assert parsed.overall_scores == [8.0, 2.0]


def test_without_fixes_mode_the_lines_stay_in_the_analysis() -> None:
    parsed = parse_grm(ANSWER, 2)
    assert all(c.fixes == [] for c in parsed.critiques)
    assert "Fix: Name the effect" in parsed.critiques[0].analysis


@pytest.mark.parametrize("none", ["none", "None.", "n/a", "No fix needed", "nothing"])
def test_fix_none_means_no_fix(none: str) -> None:
    text = ANSWER.replace("**Fix:** Replace the claim with the scattering explanation.",
                          f"Fix: {none}")
    assert parse_grm(text, 2, fixes=True).critiques[1].fixes == []


def test_repeated_fix_counts_once_and_prose_mentions_do_not_count() -> None:
    analysis, fixes = split_fixes("A fix: would help here.\nFix: Add a date.\nFix: Add a date.\n"
                                  "The fix is obvious.")
    assert fixes == ["Add a date."]
    assert "A fix: would help here." in analysis and "The fix is obvious." in analysis


def test_a_fix_after_the_scores_line_is_not_allowed() -> None:
    """The final-line rule is untouched: a line after the scores line makes the text unreadable
    (nothing may follow it), fixes or not."""
    with pytest.raises(ParseError, match="does not end with a scores line"):
        parse_grm(ANSWER + "\nFix: one more thing.", 2, fixes=True)


def test_fixes_follow_their_response_through_the_sampler() -> None:
    """The judge shows the responses in both orders; each critique's fixes land on the response
    they were written for, in the caller's order."""

    class ByContentFake(Backend):
        """A judge fake answering from the fenced responses it is shown (no model needed)."""

        @property
        def spec(self) -> str:
            return "fake:by-content"

        async def generate(self, messages: list[Message], config: GenerationConfig,
                           n: int = 1) -> GenerationResult:
            shown = shown_responses(messages[-1]["content"])
            lines = ["Specific Criteria:", "1. Accuracy (Weight: 100%): right.", "Analysis:"]
            for i, r in enumerate(shown, 1):
                lines += [f"Response {i}: fine.", f"Fix: improve <{r[:8]}>"]
            lines.append("Scores: \\boxed{" + ", ".join("7" for _ in shown) + "}")
            return GenerationResult(completions=[Completion(text="\n".join(lines),
                                                            finish_reason="stop")] * n,
                                    usage=Usage(calls=1))

    v = Judge(ByContentFake(), fixes=True, examples=False).score(QUERY, RESPONSES, samples=2)
    assert [jd.permutation for jd in v.samples] == [[0, 1], [1, 0]]
    for jd in v.samples:
        assert jd.status is SampleStatus.OK
        assert [c.fixes for c in jd.critiques] == [[f"improve <{r[:8]}>"] for r in RESPONSES]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_split_fixes_never_raises_and_keeps_every_other_line(block: str) -> None:
    analysis, fixes = split_fixes(block)
    assert all(f and "\n" not in f for f in fixes)
    assert len(fixes) <= block.lower().count("fix")
    for line in block.splitlines():
        if "fix" not in line.lower():
            assert line.strip() in analysis


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200), st.integers(min_value=1, max_value=3))
def test_parse_grm_with_fixes_returns_or_raises_parse_error(text: str, n: int) -> None:
    try:
        parsed = parse_grm(text, n, fixes=True)
    except ParseError:
        return
    assert len(parsed.critiques) == n
    assert all(f.strip() for c in parsed.critiques for f in c.fixes)


# -- the output grammar (structured decoding on the embedded model) ----------------------------
@pytest.fixture(scope="module")
def compiler() -> Any:
    return grammar_compiler()


def _structured_answer(n: int) -> str:
    lines = ["Specific Criteria:", "1. Accuracy (Weight: 60%): right physics.",
             "2. Brevity (Weight: 40%): short.", "Analysis:"]
    for i in range(1, n + 1):
        lines += [f"Response {i}: decent.", f"Fix: Add detail {i}.", f"Fix: Trim sentence {i}."]
    lines.append("Scores: \\boxed{" + ", ".join(str(i + 4) for i in range(n)) + "}")
    return "\n".join(lines)


@pytest.mark.parametrize("n", [1, 2])
def test_output_grammar_with_fixes_accepts_what_the_parser_reads(compiler: Any, n: int) -> None:
    text = _structured_answer(n)
    grammar = GRMFormat(fixes=True, max_fixes=2).output_grammar(n)
    assert grammar is not None and accepts(compiler, grammar, text)
    parsed = GRMFormat(fixes=True).parse(text, n)
    assert [c.fixes for c in parsed.critiques] == [[f"Add detail {i}.", f"Trim sentence {i}."]
                                                   for i in range(1, n + 1)]
    # Without fixes the same text is refused; more fixes than max_fixes, none at all, or an
    # empty fix are refused too; the plain grammar is unchanged by the option.
    assert not accepts(compiler, grm_output_grammar(n), text)
    assert not accepts(compiler, grm_output_grammar(n, fixes=1), text)
    no_fix = re.sub(r"(?m)^Fix: .*\n", "", text)
    assert not accepts(compiler, grammar, no_fix)
    assert not accepts(compiler, grammar, text.replace("Fix: Add detail 1.", "Fix: "))
    assert grm_output_grammar(n, fixes=0) == grm_output_grammar(n)


def test_whatever_the_fixes_grammar_emits_parses_with_its_fixes(compiler: Any) -> None:
    grammar = grm_output_grammar(2, 2, desc_chars=12, analysis_chars=12, fixes=2, fix_chars=12)
    for seed in range(3):
        text = random_walk(compiler, grammar, seed)
        parsed = parse_grm(text, 2, fixes=True)
        for c in parsed.critiques:
            assert len(c.fixes) <= 2
            assert all(f in text for f in c.fixes)
            assert not re.search(r"(?m)^Fix:", c.analysis)
        lines = text.splitlines()
        assert lines[-1].startswith("Scores: \\boxed{")
        assert sum(ln.startswith("Fix: ") for ln in lines) >= 2  # at least one per response


def test_the_token_budget_caps_fix_lines_so_the_scores_line_fits(compiler: Any) -> None:
    """Under a small budget the fixes take a share of the analyses' line budget: a long fix
    line is refused, a short one is accepted, and without a budget the caps are generous."""
    fmt = GRMFormat(fixes=True, max_fixes=1)
    grammar = fmt.output_grammar(1, max_tokens=64)
    assert grammar is not None
    short = ("Specific Criteria:\n1. Accuracy (Weight: 60%): right.\n2. Brevity (Weight: 40%): "
             "short.\nAnalysis:\nResponse 1: decent.\nFix: Add a date.\nScores: \\boxed{5}")
    long_fix = short.replace("Add a date.", "Add the date, the place and the names of all " * 2)
    assert accepts(compiler, grammar, short)
    assert not accepts(compiler, grammar, long_fix)
    assert accepts(compiler, fmt.output_grammar(1) or "", long_fix)
    analysis, fix = fix_budget(100, 2, 64)
    assert analysis < 100 and 24 <= fix <= 200
    assert fix_budget(800, 3, None) == (800, 200)


def test_fixes_under_a_fixed_rubric(compiler: Any) -> None:
    """A fixed user rubric has its own grammar; the fix lines follow its 'Criterion scores'
    line there too, and the parser reads them with the rubric's scores."""
    fmt = GRMFormat(fixes=True, max_fixes=1, principles=[("Accuracy", "right", 60),
                                                          ("Brevity", "short", 40)])
    text = ("Analysis:\nResponse 1:\n- Accuracy: right.\n- Brevity: short.\n"
            "Criterion scores: 8, 6\nFix: Name the effect.\nScores: \\boxed{7}")
    grammar = fmt.output_grammar(1)
    assert grammar is not None and accepts(compiler, grammar, text)
    assert not accepts(compiler, grammar, text.replace("Fix: Name the effect.\n", ""))
    (critique,) = fmt.parse(text, 1).critiques
    assert critique.fixes == ["Name the effect."]
    assert critique.principle_scores == {"Accuracy": 8.0, "Brevity": 6.0}
    prompt = fmt.messages(QUERY, ["a"], tag="0123456789abcdef")[-1]["content"]
    assert "Fix: <one concrete change that would make Response 1 better>" in prompt
    assert "The worked example leaves these lines out" not in prompt  # no example with a rubric
