"""What a GRM format reuses between prompts (its worked-examples block, rendered once per format,
and the template, read once per process) never changes a prompt's bytes.

The reference here is the plain render: a jinja Environment of the test's own over the same
folders, which renders the examples partial and then the template afresh for every prompt,
nothing reused. Each variant is rendered twice through the format (the second time from what it reused)
and both must equal the reference; formats are interleaved and their examples and folders
changed between renders, so a reused block that outlives what it was made from fails here.
"""

from __future__ import annotations

import functools
import itertools
import types
from pathlib import Path
from typing import Any

import jinja2
import pytest
from support.reference_fences import REFERENCE_FENCES

from judgekit.formats import GRMFormat, fence_tag
from judgekit.prompts import GRM_TEMPLATE, FewShotExample, as_messages, builtin_prompt_dir, load_examples
from judgekit.schema import AggregateRule, Message

PARTIAL = "_partials/grm_examples.jinja"
TWO_EXAMPLES = [
    FewShotExample(query="Which is larger, {{ 7*7 }} or 50?", responses=["50", "{% raw %}49"],
                   output="Scores: \\boxed{9, 2}\n"),
    FewShotExample(query="Say hi.", responses=["hi"], output="Specific Criteria:\nScores: \\boxed{8}"),
]
RUBRIC = [("Accuracy", "the facts are right", 2.0), ("Clarity", "", 1.0)]
QUERIES: list[str | list[Message]] = [
    "What is 2 + 2?",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi {{ x }}"},
     {"role": "assistant", "content": "hello"}, {"role": "user", "content": "2 + 2?"}],
]


@functools.cache
def _reference_env(template_dir: str | None) -> jinja2.Environment:
    """The test's own Environment: compiled templates are kept, but it checks the files on every
    render and reuses no output; its `fence` global is `REFERENCE_FENCES`, with the fencing rule
    from the partial's own macro."""
    folders = ([template_dir] if template_dir else []) + [str(builtin_prompt_dir())]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folders), auto_reload=True,
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=False, trim_blocks=True, lstrip_blocks=True)
    macros = env.from_string(REFERENCE_FENCES).module
    rule = env.get_template("_partials/fence.jinja").module.fencing_rule  # type: ignore[attr-defined]
    env.globals["fence"] = types.SimpleNamespace(
        conversation=macros.conversation, responses=macros.responses,  # type: ignore[attr-defined]
        reference=macros.reference, fencing_rule=rule)  # type: ignore[attr-defined]
    return env


def reference_render(fmt: GRMFormat, query: Any, shown: list[str], *, tag: str,
                     hint_best: int | None, reference: str | None,
                     template_dir: Path | None = None) -> str:
    """The prompt as one plain render of the whole template, examples block included."""
    env = _reference_env(str(template_dir) if template_dir else None)
    rubric = fmt.rubric
    fixed = rubric is not None and rubric.fixed
    examples = [] if fixed else [e.model_dump() for e in fmt.examples]
    block = env.get_template(PARTIAL).render(examples=examples)  # afresh, for this prompt alone
    seeds = len(rubric.principles) if rubric is not None else 0
    text = env.get_template(GRM_TEMPLATE).render(
        messages=as_messages(query), responses=shown, examples=examples,
        examples_block=block, tag=tag,
        weighted=fmt.aggregate is AggregateRule.WEIGHTED, hint_best=hint_best,
        reference=reference, principles=rubric.template_rows() if rubric else [],
        principles_mode=rubric.mode.value if rubric else None,
        seed_extra=0 if rubric is None or fixed else max(fmt.max_criteria, seeds + 1) - seeds,
        fixes=fmt.fixes, max_fixes=fmt.max_fixes)
    return text.strip() + "\n"


def _check(fmt: GRMFormat, query: Any, shown: list[str], *, hint_best: int | None = None,
           reference: str | None = None, template_dir: Path | None = None) -> str:
    tag = fence_tag(query, shown, reference)
    want = reference_render(fmt, query, shown, tag=tag, hint_best=hint_best,
                            reference=reference, template_dir=template_dir)
    for _ in range(2):  # the first render makes what the second reuses
        got = fmt.messages(query, shown, tag=tag, hint_best=hint_best, reference=reference)
        assert got[-1] == {"role": "user", "content": want}
        assert got[:-1] == ([{"role": "system", "content": fmt.system}] if fmt.system else [])
    return want


@pytest.mark.parametrize("examples", ["builtin", "none", "two"])
def test_prompts_equal_the_plain_render_in_every_mode(examples: str) -> None:
    chosen = {"builtin": load_examples(), "none": [], "two": TWO_EXAMPLES}[examples]
    formats = [
        GRMFormat(examples=chosen, aggregate=aggregate, principles=RUBRIC if mode else None,
                  principles_mode=mode, fixes=fixes, system=system)
        for aggregate, mode, fixes, system in itertools.product(
            ["overall", "weighted"], [None, "fixed", "seed"], [False, True], [None, "SYS"])]
    seen = set()
    # Interleaved: every format renders between two renders of any other.
    for query, n, hint, reference in itertools.product(QUERIES, [1, 2, 3], [None, 1],
                                                        [None, "The answer is 4."]):
        shown = [f"response {i}: {{{{ 7*7 }}}} {'x' * i}" for i in range(n)]
        for fmt in formats:
            seen.add(_check(fmt, query, shown, hint_best=hint, reference=reference))
    # Every variant is a different prompt, but for the system prompt (a message of its own) and
    # the aggregate under a fixed rubric (which asks for criterion scores either way).
    assert len(seen) == (len(formats) // 2 - 2) * 2 * 3 * 2 * 2


def test_a_changed_format_does_not_reuse_what_it_rendered_before(tmp_path: Path) -> None:
    fmt = GRMFormat(examples=load_examples())
    query, shown = "What is 2 + 2?", ["4", "5"]
    before = _check(fmt, query, shown)
    fmt.examples = TWO_EXAMPLES
    after = _check(fmt, query, shown)
    assert "Which is larger" in after and "Which is larger" not in before
    # A clone with a rubric shares the examples; a fixed rubric leaves them out.
    seeded = fmt.for_call(RUBRIC, "seed")
    fixed = fmt.for_call(RUBRIC, "fixed")
    assert isinstance(seeded, GRMFormat) and isinstance(fixed, GRMFormat)
    assert "Which is larger" in _check(seeded, query, shown)
    assert "Worked Example" not in _check(fixed, query, shown)
    assert _check(fmt, query, shown) == after
    # A template folder that shadows the examples partial is used, and so is a folder set later.
    (tmp_path / "_partials").mkdir()
    (tmp_path / PARTIAL).write_text(
        "{% for ex in examples %}\n\nMY EXAMPLE: {{ ex.query }}\n{% endfor %}", encoding="utf-8")
    mine = GRMFormat(examples=TWO_EXAMPLES, template_dir=tmp_path)
    text = _check(mine, query, shown, template_dir=tmp_path)
    assert "MY EXAMPLE: Say hi." in text and "Worked Example" not in text
    fmt.template_dir = tmp_path
    assert "MY EXAMPLE: Which is larger" in _check(fmt, query, shown, template_dir=tmp_path)


def test_a_custom_template_still_gets_the_examples_as_data(tmp_path: Path) -> None:
    (tmp_path / "grm").mkdir()
    (tmp_path / GRM_TEMPLATE).write_text(
        "{% for ex in examples %}EX {{ loop.index }}: {{ ex.query }} / {{ ex.responses | length }}"
        "\n{% endfor %}BLOCK [{{ examples_block | trim }}]\n", encoding="utf-8")
    fmt = GRMFormat(examples=TWO_EXAMPLES, template_dir=tmp_path)
    text = _check(fmt, "q", ["a"], template_dir=tmp_path)
    assert text.startswith("EX 1: Which is larger, {{ 7*7 }} or 50? / 2\nEX 2: Say hi. / 1\n")
    assert "BLOCK [#### Worked Examples ####\n[Example 1 conversation]" in text
