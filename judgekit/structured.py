"""Structured output: what `structured=` means, the JSON schemas of the answers, and how an answer
written under one is read.

**What `structured` means** is decided here, once (`resolve_structured`), for the Judge, the
sampler and the meta judge alike:

* ``None`` (the default): a JSON schema wherever the backend declares `json_schema` (OpenAI
  strict schemas, Anthropic forced tool calls, llama.cpp / vLLM / SGLang / Ollama guided
  decoding); the whole-output grammar for the embedded model (issue 9: bigger local models write
  free text, their final line forced when needed); free text otherwise.
* ``True``: the strongest constraint the backend declares (a schema, else the output grammar);
  a backend with neither is refused with `CapabilityError`.
* ``False``: free text everywhere.

**Which field counts.** An answer written under a schema is read by field, never by searching
its text: the scores come only from its `scores` field (the JSON counterpart of the final scores
line), a pairwise choice only from `best`, per-principle scores only from each analysis's
`criterion_scores` (and only when there is one 1-10 score per criterion). The analysis strings
are never searched for numbers. Every reader returns a value or raises `ParseError`, on any input.

The schemas keep to what every enforcing server accepts: objects with every property required and
no others (OpenAI strict mode), `enum` for the 1-10 scores (llama.cpp's converter ignores
`minimum`/`maximum`), `minItems`/`maxItems` for counts. String lengths are bounded with
`maxLength` like the output grammar's lines (servers that do not enforce it drop it: the OpenAI
wire format strips it, see `judgekit.backends.flavours`). Properties are listed in the order the
model should write them: criteria, then the analyses, then the scores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from judgekit.errors import CapabilityError, ParseError
from judgekit.parsing import check_scores, combine
from judgekit.schema import Critique, Principle

if TYPE_CHECKING:  # pragma: no cover
    from judgekit.backends.base import Backend
    from judgekit.formats import JudgingFormat

SCORE_VALUES = list(range(1, 11))
NAME_CHARS, DESC_CHARS, ANALYSIS_CHARS, REASON_CHARS, RATING_REASON_CHARS = 60, 300, 800, 600, 300
FIX_CHARS = 200
"""Length bounds of the schemas' strings (the output grammar's line lengths; a meta rating's
reason fits its 160-token budget)."""


class StructuredMode(StrEnum):
    """How a request is constrained."""

    SCHEMA = "schema"  # the format's JSON schema (GenerationConfig.json_schema)
    GRAMMAR = "grammar"  # the format's EBNF output grammar (GenerationConfig.grammar)
    OFF = "off"  # free text, read by the format's text parser


def resolve_structured(backend: Backend, fmt: JudgingFormat, structured: bool | None
                       ) -> StructuredMode:
    """The one rule for `structured=` (see the module docstring)."""
    from judgekit.backends.registry import EMBEDDED_SPEC

    if structured is False:
        return StructuredMode.OFF
    caps = backend.capabilities
    if caps.json_schema and fmt.output_schema(2) is not None:
        return StructuredMode.SCHEMA
    has_grammar = caps.grammar and fmt.output_grammar(2) is not None
    if structured is None:
        return (StructuredMode.GRAMMAR if has_grammar and backend.spec == EMBEDDED_SPEC
                else StructuredMode.OFF)
    if has_grammar:
        return StructuredMode.GRAMMAR
    raise CapabilityError(f"{backend.spec} can constrain its output to neither a JSON schema nor "
                          f"a grammar (the {fmt.name} format needs one for structured=True)")


# -- schemas -------------------------------------------------------------------------------------
def _object(properties: dict[str, Any], title: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "required": list(properties), "additionalProperties": False}
    if title:
        out = {"title": title, **out}
    return out


def _text(max_chars: int, description: str) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_chars, "description": description}


def _score(description: str) -> dict[str, Any]:
    return {"type": "integer", "enum": SCORE_VALUES, "description": description}


def grm_output_schema(n_responses: int, max_criteria: int = 4, *,
                      criterion_scores: bool = False, fixed_names: Sequence[str] | None = None,
                      max_fixes: int = 0) -> dict[str, Any]:
    """The GRM answer as JSON: 2..max_criteria weighted criteria, one analysis per response (with
    one 1-10 score per criterion when `criterion_scores`, and up to `max_fixes` suggested fixes),
    then the n final 1-10 scores.

    `fixed_names` is a user's fixed rubric: the answer then lists no criteria of its own (the
    rubric's are read back in its order) and scores each of them where `criterion_scores`."""
    if max_criteria < 2 and fixed_names is None:
        raise ValueError("max_criteria must be at least 2")
    criterion = _object({
        "name": _text(NAME_CHARS, "a short name for the criterion"),
        "weight": {"type": "integer", "minimum": 1, "maximum": 100,
                   "description": "its weight in percent; the weights add up to 100"},
        "description": _text(DESC_CHARS, "what it checks for this query"),
    })
    analysis: dict[str, Any] = {"analysis": _text(ANALYSIS_CHARS, "the response judged against "
                                                  "each criterion")}
    if criterion_scores:
        low, high = ((len(fixed_names), len(fixed_names)) if fixed_names is not None
                     else (2, max_criteria))
        analysis["criterion_scores"] = {
            "type": "array", "items": _score("a 1-10 score"), "minItems": low, "maxItems": high,
            "description": "one 1-10 score per criterion, in the order the criteria are listed"}
    if max_fixes > 0:
        analysis["fixes"] = {
            "type": "array", "items": _text(FIX_CHARS, "one concrete change to the response"),
            "minItems": 0, "maxItems": max_fixes,
            "description": "the most useful fixes to this response, most useful first"}
    properties: dict[str, Any] = {}
    if fixed_names is None:
        properties["criteria"] = {
            "type": "array", "items": criterion, "minItems": 2, "maxItems": max_criteria,
            "description": "the specific criteria for this query"}
    properties["analysis"] = {
        "type": "array", "items": _object(analysis), "minItems": n_responses,
        "maxItems": n_responses, "description": "one analysis per response, in the order the "
        "responses are shown"}
    properties["scores"] = {
        "type": "array", "items": _score("a 1-10 overall score"), "minItems": n_responses,
        "maxItems": n_responses, "description": "the overall 1-10 score of each response, in order"}
    return _object(properties, title="grm_judgement")


def choice_schema(n_responses: int) -> dict[str, Any]:
    """The pairwise answer as JSON: a short reason, then the number of the best response."""
    return _object({
        "reasoning": _text(REASON_CHARS, "why that response is best"),
        "best": {"type": "integer", "enum": list(range(1, n_responses + 1)),
                 "description": "the number of the best response"},
    }, title="best_response")


def yes_no_schema() -> dict[str, Any]:
    """The meta judge's constrained yes/no."""
    return _object({"answer": {"type": "string", "enum": ["Yes", "No"]}}, title="verdict")


def rating_schema() -> dict[str, Any]:
    """The meta judge's rating: a short reason, then a 1-10 rating."""
    return _object({"reason": _text(RATING_REASON_CHARS, "a short reason"),
                    "rating": _score("1 (wrong) to 10 (fully sound)")}, title="rating")


YES_NO_GRAMMAR = 'root ::= "Yes" | "No"\n'
"""The meta judge's yes/no as a grammar (xgrammar EBNF and llama.cpp GBNF alike)."""


# -- reading -------------------------------------------------------------------------------------
_STRICT = ConfigDict(strict=True)  # a score is a number: never a boolean or a numeric string
class _Criterion(BaseModel):
    model_config = _STRICT
    name: str
    weight: float
    description: str = ""


class _Analysis(BaseModel):
    model_config = _STRICT
    analysis: str = ""
    criterion_scores: list[float] | None = None
    fixes: list[str] = []


class _GRMAnswer(BaseModel):
    model_config = _STRICT
    criteria: list[_Criterion] = []
    analysis: list[_Analysis] = []
    scores: list[float]


class _ChoiceAnswer(BaseModel):
    model_config = _STRICT
    reasoning: str = ""
    best: int


class _RatingAnswer(BaseModel):
    model_config = _STRICT
    reason: str = ""
    rating: float


class _YesNoAnswer(BaseModel):
    model_config = _STRICT
    answer: str


def _load(model: type[BaseModel], text: str, n: int | None) -> Any:
    """`text` as JSON validated by `model`. Control characters inside strings are accepted
    (`strict=False`): some servers' grammars let a raw newline into a string, and the meaning is
    unambiguous."""
    try:
        data = json.loads(text, strict=False)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"not a JSON answer ({type(exc).__name__}: {exc})", raw=text,
                         n_responses=n) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"msg": str(exc)}
        where = ".".join(str(p) for p in first.get("loc", ()))
        what = f"{where}: {first['msg']}" if where else str(first["msg"])
        raise ParseError(f"not a JSON answer under the schema ({what})", raw=text,
                         n_responses=n) from None


def _principles(criteria: list[_Criterion]) -> list[Principle]:
    """Weights normalised to sum to 1 (equal weights when none is positive); a repeated name is
    numbered so that per-principle scores stay apart."""
    seen: dict[str, int] = {}
    named: list[tuple[str, str, float]] = []
    for c in criteria:
        name = c.name.strip() or "Criterion"
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
        if seen[name.lower()] > 1:
            name = f"{name} ({seen[name.lower()]})"
        weight = c.weight if math.isfinite(c.weight) and c.weight > 0 else 0.0
        named.append((name, c.description.strip(), weight))
    total = sum(w for _, _, w in named)
    return [Principle(name=n, description=d,
                      weight=(w / total if total > 0 else 1.0 / len(named)))
            for n, d, w in named]


def read_grm_json(text: str, n_responses: int, fixed: Sequence[Principle] | None = None, *,
                  fixes: bool = False) -> tuple[list[Principle], list[Critique], list[float]]:
    """(principles, critiques, overall scores) of a GRM answer under `grm_output_schema`, in the
    shown order. Each critique carries its criterion scores and their weighted sum where every
    criterion has a 1-10 score. `fixed` is a user's fixed rubric: its principles are the ones
    scored (criteria the answer lists anyway are ignored). `fixes` keeps each analysis's
    suggested fixes. Raises ParseError."""
    answer: _GRMAnswer = _load(_GRMAnswer, text, n_responses)
    overall = check_scores(list(answer.scores), n_responses, text, "`scores` field")
    principles = ([p.model_copy() for p in fixed] if fixed is not None
                  else _principles(answer.criteria))
    critiques = []
    for i, score in enumerate(overall):
        item = answer.analysis[i] if i < len(answer.analysis) else _Analysis()
        given = item.criterion_scores or []
        ps: dict[str, float] = {}
        if principles and len(given) == len(principles) and all(
                math.isfinite(v) and 1.0 <= v <= 10.0 for v in given):
            ps = {p.name: v for p, v in zip(principles, given, strict=True)}
        suggested = [f.strip() for f in item.fixes if f.strip()] if fixes else []
        critiques.append(Critique(analysis=item.analysis.strip(), principle_scores=ps,
                                  overall=score, weighted=combine(principles, ps),
                                  fixes=suggested))
    return principles, critiques, overall


def read_choice_json(text: str, n_responses: int) -> int:
    """0-based index of the chosen response of a pairwise answer under `choice_schema`."""
    answer: _ChoiceAnswer = _load(_ChoiceAnswer, text, n_responses)
    if not 1 <= answer.best <= n_responses:
        raise ParseError(f"`best` is {answer.best}, not a response number 1-{n_responses}",
                         raw=text, n_responses=n_responses)
    return answer.best - 1


def read_rating_json(text: str) -> float:
    """The 1-10 rating of a meta answer under `rating_schema`."""
    answer: _RatingAnswer = _load(_RatingAnswer, text, 1)
    return check_scores([answer.rating], 1, text, "`rating` field")[0]


def read_yes_no_json(text: str) -> bool:
    """True for Yes, False for No, from an answer under `yes_no_schema`."""
    answer: _YesNoAnswer = _load(_YesNoAnswer, text, None)
    word = answer.answer.strip().lower()
    if word not in ("yes", "no"):
        raise ParseError(f"`answer` is {answer.answer!r}, not Yes or No", raw=text)
    return word == "yes"


__all__ = [
    "YES_NO_GRAMMAR",
    "StructuredMode",
    "choice_schema",
    "grm_output_schema",
    "rating_schema",
    "read_choice_json",
    "read_grm_json",
    "read_rating_json",
    "read_yes_no_json",
    "resolve_structured",
    "yes_no_schema",
]
