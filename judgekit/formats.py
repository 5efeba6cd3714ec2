"""Judging formats: what the judge is asked and how its answer is read.

A format bundles a prompt template, its parser, its output grammar (for backends that decode
under one), the grammar of its final line (for forcing an unreadable sample's verdict) and its
re-ask prompt. There are two: `GRMFormat` (principles, critiques, 1-10 scores: the paper's) and
`PairwiseFormat` (the plain "which is best" LLM-as-a-judge baseline). The sampler, the vote and
the Verdict are the same for both.

Injection defence: every prompt fences user text (the conversation, each response and a
reference answer) between marker lines that carry a per-prompt tag (`fence_tag`), derived from a
hash of the item so the same item renders the same prompt (caches stay valid) while a response
cannot contain the tag of the prompt it appears in. The parser reads scores only from the
judge's final line (`judgekit.parsing`).

Reference answers and user rubrics: `messages(..., reference=...)` adds a fenced "reference
answer" block to the item part of the prompt (after the static prefix, which stays
byte-identical), and `GRMFormat(principles=..., principles_mode=...)` lists a user's rubric in
the static part (`judgekit.rubric`).

Structured output: a format also gives the JSON schema of its answer (`output_schema`) and reads
an answer written under it (`parse_structured`) into the same `ParsedJudgement`
(`judgekit.structured`). Prompt caching: every template writes its static part (instructions,
criteria, examples) first, byte-identical across items, and the item from the line
`ITEM_MARKER` on; `static_prefix_chars` tells backends with explicit caching where to cut.
"""

from __future__ import annotations

import copy
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from judgekit.errors import ParseError
from judgekit.parsing import (
    ParsedGRM,
    best_line_grammar,
    grm_output_grammar,
    parse_best_index,
    parse_grm,
    rubric_output_grammar,
    scores_line_grammar,
)
from judgekit.prompts import (
    GRM_EXAMPLES_PARTIAL,
    GRM_TEMPLATE,
    PAIRWISE_BASELINE_TEMPLATE,
    REASK_TEMPLATE,
    FewShotExample,
    as_messages,
    render,
    render_piece,
    template_source,
)
from judgekit.rubric import PrinciplesMode, Rubric, RubricSpec
from judgekit.schema import AggregateRule, Critique, Message, Principle
from judgekit.structured import (
    choice_schema,
    grm_output_schema,
    read_choice_json,
    read_grm_json,
)

CHOSEN_SCORE = 10.0
OTHER_SCORE = 1.0
ITEM_MARKER = "#### Conversation (tag="
"""Where the item-dependent part of a built-in prompt starts; everything before it is static."""


_TAG_JSON = json.JSONEncoder(ensure_ascii=False)
"""`json.dumps(..., ensure_ascii=False)`, without making an encoder for every item's tag."""


def fence_tag(query: str | Sequence[Message], responses: Sequence[str],
              reference: str | None = None) -> str:
    """A 16-hex-digit tag for one item's fences: the same for every order of its responses (so
    each permutation's prompt is reproducible on its own) and for every run (caches stay valid).

    A response would have to contain a hash of itself to forge a fence, so it cannot; the loop
    still checks, so the tag provably appears in none of the fenced texts (the reference answer
    included). Without a reference the tag is what it always was."""
    turns = [m["content"] for m in as_messages(query)]
    texts = turns + list(responses) + ([reference] if reference is not None else [])
    fields: list[object] = [turns, sorted(responses)]
    if reference is not None:
        fields.append(reference)
    material = _TAG_JSON.encode(fields).encode("utf-8")
    for counter in range(1000):
        tag = hashlib.sha256(material + counter.to_bytes(4, "big")).hexdigest()[:16]
        if not any(tag in t for t in texts):
            return tag
    raise ValueError("could not find a fence tag absent from the texts")  # pragma: no cover


@dataclass
class ParsedJudgement:
    """One sample's reading, in SHOWN order: scores under the format's rule, and what else the
    format extracts (principles, critiques)."""

    scores: list[float]
    principles: list[Principle] = field(default_factory=list)
    critiques: list[Critique] = field(default_factory=list)


class JudgingFormat(ABC):
    """How one judging prompt is written and its answer read. Subclasses are pure: rendering
    and parsing touch no I/O beyond reading templates."""

    name: ClassVar[str]
    rates_with_meta: ClassVar[bool] = True
    """Whether a meta judge can rate this format's judgements (it needs a critique to read)."""
    rubric: Rubric | None = None
    """The user rubric the format judges with (formats without principles have none)."""

    def __init__(self, *, template: str, template_dir: str | Path | None = None,
                 system: str | None = None) -> None:
        self.template = template
        self.template_dir = template_dir
        self.system = system

    @abstractmethod
    def messages(self, query: str | Sequence[Message], shown: Sequence[str], *, tag: str,
                 hint_best: int | None = None, reference: str | None = None) -> list[Message]:
        """The chat prompt for `shown` responses (in the order shown), with a fenced reference
        answer in the item part when `reference` is given (`tag` must then cover it:
        `fence_tag(query, responses, reference)`)."""

    def with_rubric(self, rubric: Rubric | None) -> JudgingFormat:
        """This format judging with a user rubric (None: without one). Formats without
        principles refuse."""
        if rubric is None:
            return self
        raise ValueError(f"the {self.name} format has no principles: a rubric does not apply")

    def for_call(self, principles: RubricSpec | None = None,
                 principles_mode: PrinciplesMode | str | None = None) -> JudgingFormat:
        """This format for one call: itself, or with the call's rubric (or its own rubric in
        another mode)."""
        if principles is None and principles_mode is None:
            return self
        base = principles if principles is not None else self.rubric
        if base is None:
            raise ValueError("principles_mode needs principles")
        return self.with_rubric(Rubric.of(base, principles_mode))

    def verdict_metadata(self, reference: str | None = None) -> dict[str, object]:
        """What a Verdict records of how it was judged: the format, and whether a reference
        answer or a rubric (its mode) was used, so stored results can be told apart."""
        out: dict[str, object] = {"format": self.name}
        if reference is not None:
            out["reference"] = True
        if self.rubric is not None:
            out["principles_mode"] = self.rubric.mode.value
        return out

    @abstractmethod
    def parse(self, text: str, n_responses: int) -> ParsedJudgement:
        """Read one answer (shown order); raises ParseError."""

    def parse_reask(self, answer: str, reply: str, n_responses: int) -> ParsedJudgement:
        """Read a re-ask reply, which was asked for the final line after the unreadable (or cut
        off) `answer`. The reply is read on its own: nothing of `answer` counts, so an empty,
        blank or fence-only reply is a ParseError, never the old text's last line."""
        return self.parse(reply, n_responses)

    def output_grammar(self, n_responses: int, max_tokens: int | None = None) -> str | None:
        """EBNF for the whole answer, for backends that decode under a grammar (None: free).
        `max_tokens` lets the grammar size its free-text lines to the token budget."""
        return None

    def output_schema(self, n_responses: int) -> dict[str, Any] | None:
        """JSON schema of the whole answer, for backends that enforce one (None: none)."""
        return None

    def parse_structured(self, text: str, n_responses: int) -> ParsedJudgement:
        """Read an answer written under `output_schema` (shown order); raises ParseError."""
        raise ParseError(f"the {self.name} format has no structured answer", raw=text,
                         n_responses=n_responses)

    def static_prefix_chars(self, messages: Sequence[Message]) -> int | None:
        """Length of the static prefix of the first user message (the part before
        `ITEM_MARKER`), or None when the prompt has none (a custom template without it)."""
        first = next((m["content"] for m in messages if m.get("role") == "user"), "")
        cut = first.find(ITEM_MARKER)
        return cut if cut > 0 else None

    @abstractmethod
    def final_line_grammar(self, n_responses: int) -> str:
        """EBNF for the final line alone, to force an unreadable sample's verdict."""

    @abstractmethod
    def final_line_example(self, n_responses: int) -> str:
        """The final line in words, for the re-ask prompt."""

    def final_line_tokens(self, n_responses: int) -> int:
        """A token budget that always fits the final line."""
        return 8 + 4 * n_responses

    def reask_messages(self, messages: list[Message], answer: str, error: str,
                       n_responses: int) -> list[Message]:
        """The follow-up after an unreadable answer: the answer, then the re-ask turn."""
        text = render(REASK_TEMPLATE, self.template_dir, error=error, n=n_responses,
                      final_line=self.final_line_example(n_responses))
        return [*messages, {"role": "assistant", "content": answer},
                {"role": "user", "content": text}]

    def fingerprint(self) -> str:
        """A hash of everything in the format that changes results (template text, examples,
        options), recorded by resumable runs."""
        return hashlib.sha256(self._fingerprint_material().encode("utf-8")).hexdigest()[:16]

    def _fingerprint_material(self) -> str:
        return json.dumps([self.name, self.template, template_source(self.template,
                                                                     self.template_dir),
                           self.system])

    def _wrap(self, text: str) -> list[Message]:
        out: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        out.append({"role": "user", "content": text})
        return out


class GRMFormat(JudgingFormat):
    """The generative reward model format: self-written weighted principles, a critique of
    each response, and a final line of 1-10 scores.

    `aggregate` picks the score that votes: the final scores line (`overall`, the paper's rule)
    or the weighted sum of the fixed-form criterion scores (`weighted`; the prompt then asks for
    a 'Criterion scores' line per response, and a response without every criterion score falls
    back to its overall score, recorded on its critique).

    `principles` is a user rubric (`judgekit.rubric`): `principles_mode="fixed"` (the default)
    judges with exactly these criteria and weights (the prompt asks for every criterion's score
    in the fixed form whatever the aggregate, the parser reads them in the rubric's order, and
    the few-shot examples, which teach self-written criteria, are left out);
    `principles_mode="seed"` lists them as the criteria the judge starts from.

    `fixes=True` asks each response's analysis to end with 1 to `max_fixes` concrete suggested
    fixes, one per 'Fix:' line, read into `Critique.fixes` (the debate and improve loop use
    them); the final line stays the scores line.
    """

    name = "grm"

    def __init__(self, *, aggregate: AggregateRule | str = AggregateRule.OVERALL,
                 examples: Sequence[FewShotExample] = (), template: str = GRM_TEMPLATE,
                 template_dir: str | Path | None = None, system: str | None = None,
                 max_criteria: int = 4, principles: RubricSpec | None = None,
                 principles_mode: PrinciplesMode | str | None = None, fixes: bool = False,
                 max_fixes: int = 3) -> None:
        super().__init__(template=template, template_dir=template_dir, system=system)
        self.aggregate = AggregateRule(aggregate)
        self.examples = examples
        self.max_criteria = max_criteria
        if max_fixes < 1:
            raise ValueError(f"max_fixes must be at least 1, got {max_fixes}")
        self.fixes = fixes
        self.max_fixes = max_fixes
        if principles is None and principles_mode is not None:
            raise ValueError("principles_mode needs principles")
        self.rubric = Rubric.of(principles, principles_mode) if principles is not None else None

    @property
    def examples(self) -> list[FewShotExample]:
        return list(self._examples)

    @examples.setter
    def examples(self, examples: Sequence[FewShotExample]) -> None:
        self._examples = tuple(examples)
        self._example_text: tuple[str | Path | None, list[dict[str, Any]], str] | None = None

    def _examples_for_template(self) -> tuple[list[dict[str, Any]], str]:
        """The examples as template data, and their block as text (`examples_block`): the same
        in every prompt of this format, so rendered once (`_partials/grm_examples.jinja`, which
        a template_dir may shadow) and again only if the examples or the folder change."""
        cached = self._example_text
        if cached is None or cached[0] != self.template_dir:
            data = [e.model_dump() for e in self._examples]
            cached = (self.template_dir, data, render_piece(
                GRM_EXAMPLES_PARTIAL, self.template_dir, examples=data))
            self._example_text = cached
        return list(cached[1]), cached[2]

    @property
    def fixed_rubric(self) -> list[Principle] | None:
        """The fixed rubric's principles (normalised weights), or None."""
        return list(self.rubric.principles) if self.rubric and self.rubric.fixed else None

    def with_rubric(self, rubric: Rubric | None) -> GRMFormat:
        clone = copy.copy(self)
        clone.rubric = rubric
        return clone

    def messages(self, query: str | Sequence[Message], shown: Sequence[str], *, tag: str,
                 hint_best: int | None = None, reference: str | None = None) -> list[Message]:
        fixed = self.fixed_rubric is not None
        examples, examples_block = ([], "") if fixed else self._examples_for_template()
        text = render(self.template, self.template_dir, messages=as_messages(query),
                      responses=list(shown), examples=examples, examples_block=examples_block,
                      tag=tag, weighted=self.aggregate is AggregateRule.WEIGHTED,
                      hint_best=hint_best, reference=reference,
                      principles=self.rubric.template_rows() if self.rubric else [],
                      principles_mode=self.rubric.mode.value if self.rubric else None,
                      seed_extra=self._seed_extra(), fixes=self.fixes, max_fixes=self.max_fixes)
        return self._wrap(text)

    def _seed_extra(self) -> int:
        """How many criteria of its own the judge may add after a seeded rubric's."""
        if self.rubric is None or self.rubric.fixed:
            return 0
        seeds = len(self.rubric.principles)
        return max(self.max_criteria, seeds + 1) - seeds

    def parse(self, text: str, n_responses: int) -> ParsedJudgement:
        return self._scored(parse_grm(text, n_responses, self.fixed_rubric, fixes=self.fixes))

    def _scored(self, parsed: ParsedGRM) -> ParsedJudgement:
        """The scores under the aggregate rule, whichever way the answer was read."""
        critiques = parsed.critiques
        if self.aggregate is AggregateRule.WEIGHTED:
            scores, fallback = parsed.weighted_scores()
            critiques = [c.model_copy(update={"weighted_fallback": f})
                         for c, f in zip(critiques, fallback, strict=True)]
        else:
            scores = list(parsed.overall_scores)
        return ParsedJudgement(scores=scores, principles=parsed.principles, critiques=critiques)

    def output_grammar(self, n_responses: int, max_tokens: int | None = None) -> str | None:
        desc, analysis = line_budget(n_responses, self.max_criteria, max_tokens)
        fixes = self.max_fixes if self.fixes else 0
        fix_chars = 200
        if fixes:
            analysis, fix_chars = fix_budget(analysis, fixes, max_tokens)
        if self.rubric is not None and self.rubric.fixed:
            # One analysis line per criterion: the response's budget is shared among them.
            names = self.rubric.names()
            return rubric_output_grammar(n_responses, names,
                                         analysis_chars=max(40, analysis // len(names)),
                                         fixes=fixes, fix_chars=fix_chars)
        return grm_output_grammar(n_responses, self.max_criteria,
                                  criterion_scores=self.aggregate is AggregateRule.WEIGHTED,
                                  name_chars=40, desc_chars=desc, analysis_chars=analysis,
                                  seed_names=self.rubric.names() if self.rubric else (),
                                  fixes=fixes, fix_chars=fix_chars)

    def output_schema(self, n_responses: int) -> dict[str, Any] | None:
        fixed = self.fixed_rubric
        seeds = len(self.rubric.principles) if self.rubric and not self.rubric.fixed else 0
        return grm_output_schema(
            n_responses, seeds + self._seed_extra() if seeds else self.max_criteria,
            criterion_scores=self.aggregate is AggregateRule.WEIGHTED,
            fixed_names=[p.name for p in fixed] if fixed is not None else None,
            max_fixes=self.max_fixes if self.fixes else 0)

    def parse_structured(self, text: str, n_responses: int) -> ParsedJudgement:
        principles, critiques, overall = read_grm_json(text, n_responses, self.fixed_rubric,
                                                       fixes=self.fixes)
        return self._scored(ParsedGRM(principles=principles, critiques=critiques,
                                      overall_scores=overall))

    def final_line_grammar(self, n_responses: int) -> str:
        return scores_line_grammar(n_responses)

    def final_line_example(self, n_responses: int) -> str:
        return "Scores: \\boxed{" + ", ".join(["x"] * n_responses) + "}"

    def _fingerprint_material(self) -> str:
        material: list[Any] = [super()._fingerprint_material(), self.aggregate.value,
                               self.max_criteria, [e.model_dump() for e in self.examples]]
        if self.rubric is not None:  # absent without a rubric: old fingerprints stay valid
            material.append(self.rubric.model_dump(mode="json"))
        if self.fixes:  # appended only when on, so existing fingerprints stay valid
            material.append(["fixes", self.max_fixes])
        return json.dumps(material)


class PairwiseFormat(JudgingFormat):
    """The plain LLM-as-a-judge baseline: "which response is best", no principles or 1-10
    scores. A sample's choice is stored as scores, 10 for the chosen response and 1 for every
    other, so the usual sum vote is exactly a majority vote over the samples' choices."""

    name = "pairwise"
    rates_with_meta = False

    def __init__(self, *, template: str = PAIRWISE_BASELINE_TEMPLATE,
                 template_dir: str | Path | None = None, system: str | None = None) -> None:
        super().__init__(template=template, template_dir=template_dir, system=system)

    def messages(self, query: str | Sequence[Message], shown: Sequence[str], *, tag: str,
                 hint_best: int | None = None, reference: str | None = None) -> list[Message]:
        if hint_best is not None:
            raise ValueError("hinted sampling is for GRM training data only")
        text = render(self.template, self.template_dir, messages=as_messages(query),
                      responses=list(shown), tag=tag, reference=reference)
        return self._wrap(text)

    def parse(self, text: str, n_responses: int) -> ParsedJudgement:
        chosen = parse_best_index(text, n_responses)
        return ParsedJudgement(scores=choice_scores(chosen, n_responses))

    def output_schema(self, n_responses: int) -> dict[str, Any] | None:
        return choice_schema(n_responses)

    def parse_structured(self, text: str, n_responses: int) -> ParsedJudgement:
        return ParsedJudgement(scores=choice_scores(read_choice_json(text, n_responses),
                                                    n_responses))

    def final_line_grammar(self, n_responses: int) -> str:
        return best_line_grammar(n_responses)

    def final_line_example(self, n_responses: int) -> str:
        return "Best: \\boxed{i}  (i = the number of the best response, 1 to " \
            f"{n_responses})"


# Characters per token to budget with: English prose is about 4 in BPE vocabularies, but a
# small model filling a grammar line writes fragments and punctuation that tokenize worse, and
# a line cap is a worst case that must fit, so the budget assumes 2.5.
CHARS_PER_TOKEN = 2.5


def line_budget(n_responses: int, max_criteria: int, max_tokens: int | None) -> tuple[int, int]:
    """(criterion description, analysis) line caps in characters for the output grammar.

    A grammar line may be long enough to think in (hundreds of characters), but the whole
    answer must fit the token budget, or every answer is cut off before its scores line: almost half
    of the budget goes to the analyses, a fifth to the criteria, the rest is slack (names,
    markup, the scores line)."""
    if max_tokens is None:
        return 300, 800
    chars = max_tokens * CHARS_PER_TOKEN
    analysis = int(min(800, max(80, chars * 0.45 / n_responses)))
    desc = int(min(300, max(40, chars * 0.2 / max_criteria)))
    return desc, analysis


def fix_budget(analysis_chars: int, max_fixes: int, max_tokens: int | None) -> tuple[int, int]:
    """(analysis, fix) line caps when the answer also suggests fixes: under a token budget the
    fixes take a third of the analyses' share (split over `max_fixes` lines), so the scores
    line still fits; without one, the grammar's generous defaults."""
    if max_tokens is None:
        return analysis_chars, 200
    fix = int(min(200, max(24, analysis_chars / 3 / max_fixes)))
    return int(max(48, analysis_chars * 2 / 3)), fix


def grm_messages(query: str | Sequence[Message], shown: Sequence[str], *,
                 examples: Sequence[FewShotExample] = (), template: str = GRM_TEMPLATE,
                 template_dir: str | Path | None = None, system: str | None = None,
                 aggregate: AggregateRule | str = AggregateRule.OVERALL,
                 hint_best: int | None = None, reference: str | None = None,
                 principles: RubricSpec | None = None,
                 principles_mode: PrinciplesMode | str | None = None) -> list[Message]:
    """The GRM prompt for `shown` responses, exactly as the Judge sends it (a convenience for
    training data and tests)."""
    fmt = GRMFormat(aggregate=aggregate, examples=examples, template=template,
                    template_dir=template_dir, system=system, principles=principles,
                    principles_mode=principles_mode)
    return fmt.messages(query, shown, tag=fence_tag(query, shown, reference),
                        hint_best=hint_best, reference=reference)


def choice_scores(chosen: int, n: int) -> list[float]:
    """The stored scores of one pairwise sample: 10 for the chosen response, 1 for the others."""
    return [CHOSEN_SCORE if i == chosen else OTHER_SCORE for i in range(n)]


__all__ = [
    "ITEM_MARKER",
    "GRMFormat",
    "JudgingFormat",
    "PairwiseFormat",
    "ParsedJudgement",
    "choice_scores",
    "fence_tag",
    "grm_messages",
]
