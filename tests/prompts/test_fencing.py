"""The fences of user text (`judgekit.fencing`): the markup every prompt carries, checked against
the Jinja macros that wrote it before (`support.reference_fences`) on hostile text, and reached
the same way by a template that uses the global `fence` and one that imports the partial."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2
from hypothesis import given, settings
from hypothesis import strategies as st
from support.reference_fences import REFERENCE_FENCES

from judgekit import fencing
from judgekit.formats import GRMFormat, fence_tag
from judgekit.prompts import builtin_prompt_dir, render

# Text a response may hold: template syntax, markers of other tags, blank and trailing lines.
TEXTS = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", "\n", "a\n\nb\n", "{{ 7*7 }}", "{% raw %}", "</response-1 tag=x>",
                     "<turn role=user tag=x>", "  spaced  ", "naïve ✓ 中文"]))


@functools.cache
def _macros() -> Any:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=False, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(REFERENCE_FENCES).module


@functools.cache
def _fence() -> fencing.Fence:
    """A `fence` global of a plain environment over the built-in partial (its prose)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(builtin_prompt_dir())),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    fence = fencing.Fence(env)
    env.globals["fence"] = fence
    return fence


@settings(max_examples=150, deadline=None)
@given(turns=st.lists(st.tuples(st.sampled_from(["user", "assistant", "system"]), TEXTS),
                      min_size=1, max_size=4),
       responses=st.lists(TEXTS, min_size=1, max_size=4), reference=TEXTS,
       tag=st.from_regex(r"[0-9a-f]{16}", fullmatch=True))
def test_the_python_fences_write_what_the_jinja_macros_wrote(
        turns: list[tuple[str, str]], responses: list[str], reference: str, tag: str) -> None:
    messages = [{"role": role, "content": text} for role, text in turns]
    macros = _macros()
    assert fencing.conversation(messages, tag) == str(macros.conversation(messages, tag))
    assert fencing.responses(responses, tag) == str(macros.responses(responses, tag))
    assert _fence().reference(reference, tag) == str(macros.reference(reference, tag))


def test_a_template_that_imports_the_partial_fences_as_the_built_in_ones_do(
        tmp_path: Path) -> None:
    (tmp_path / "grm").mkdir()
    (tmp_path / "grm" / "imported.jinja").write_text(
        '{% import "_partials/fence.jinja" as fence %}'
        "{{ fence.fencing_rule() }}\n{{ fence.conversation(messages, tag) }}\n"
        "{{ fence.reference(reference, tag) }}\n{{ fence.responses(responses, tag) }}\n"
        '{{ fence.block("note", "n", tag) }}', encoding="utf-8")
    (tmp_path / "grm" / "global.jinja").write_text(
        "{{ fence.fencing_rule() }}\n{{ fence.conversation(messages, tag) }}\n"
        "{{ fence.reference(reference, tag) }}\n{{ fence.responses(responses, tag) }}\n"
        '{{ fence.block("note", "n", tag) }}', encoding="utf-8")
    variables = {"messages": [{"role": "user", "content": "q {{ x }}"}],
                 "responses": ["a", "b\nc"], "reference": "ref", "tag": "0123456789abcdef"}
    imported = render("grm/imported.jinja", tmp_path, **variables)
    assert imported == render("grm/global.jinja", tmp_path, **variables)
    assert "<response-2 tag=0123456789abcdef>\nb\nc\n</response-2 tag=0123456789abcdef>" in imported
    assert "<note tag=0123456789abcdef>\nn\n</note tag=0123456789abcdef>" in imported


def test_a_template_dir_that_shadows_the_partial_changes_the_rule_in_its_prompts_only(
        tmp_path: Path) -> None:
    (tmp_path / "_partials").mkdir()
    source = (builtin_prompt_dir() / "_partials" / "fence.jinja").read_text(encoding="utf-8")
    marker = "User text sits between marker lines"
    assert marker in source
    (tmp_path / "_partials" / "fence.jinja").write_text(
        source.replace(marker, "MY RULE. " + marker), encoding="utf-8")
    query, responses = "What is 2 + 2?", ["4", "5"]
    tag = fence_tag(query, responses)
    mine = GRMFormat(template_dir=tmp_path).messages(query, responses, tag=tag)[-1]["content"]
    builtin = GRMFormat().messages(query, responses, tag=tag)[-1]["content"]
    assert "MY RULE. " + marker in mine
    assert "MY RULE" not in builtin
    assert mine.replace("MY RULE. ", "") == builtin
