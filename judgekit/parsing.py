"""Pure functions that turn judge text into scores, principles and critiques.

**Which text counts** is decided here, once: scores are read only from the judge's *final
scores line*, the last non-empty line of its output, and that line must consist of nothing but
an optional label ("Scores:", "Final scores:", "Best:", "Rating:") and the score box. A box
anywhere else (a draft, a sub-score, or a forged box that a judged response wrote and the
judge quoted) is never read. The accepted final lines:

* ``Scores: \\boxed{8, 3}`` (also ``$\\boxed{8, 3}$``, markdown bold, no label);
* one box per response: ``Scores: \\boxed{8}, \\boxed{3}``;
* ``[[8, 3]]``; a labelled plain list ``Scores: 8, 3`` (``Response 1: 8/10`` labels allowed);
* a JSON object that ends the text: ``{"scores": [8, 3]}`` or ``{"Response 1": 8, ...}``;
* (pairwise choice only) ``Best: Response 2``;
* a final block of n lines ``Response i: x/10`` in order (the per-response style).

Per-principle scores count only in one fixed form, a line ``Criterion scores: s1, s2, ...`` in
each response's analysis (one 1-10 score per criterion, in the order the criteria were listed);
numbers in prose are never read as scores. Exactly one such line per response counts, outside
quotes: lines quoted with ``>`` are not read (nor is a quoted ``Response 2:`` header a header),
and a response with two lines, or none, has no weighted score (`Critique.weighted_missing` says
why; the weighted rule falls back to the written score).

Scores are written in ASCII: a score line whose numbers use other digits (Arabic-Indic,
fullwidth, ...) or another minus sign (U+2212, dashes) is a ParseError, never read leniently.

Contract: every public function either returns a value or raises `ParseError` carrying the raw
text; no other exception escapes on any input string (property-tested with hypothesis).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from judgekit.errors import ParseError
from judgekit.schema import Critique, Principle

SCORE_MIN, SCORE_MAX = 1.0, 10.0
_NUM = r"[-+]?[0-9]+(?:\.[0-9]+)?"

_LABEL_WORDS = r"(?:(?:final|overall)\s+)?(?:scores?|ratings?|best(?:\s+response)?|choice)"
# Decoration allowed around the final line: markdown bullets/quotes/bold, math dollars, a period.
_LEAD = r"^[ \t>*#_\-`$]*"
_TRAIL = r"[ \t*_`$.]*$"
_LABEL = r"(?:(?P<label>" + _LABEL_WORDS + r")\s*\**\s*[:=]\s*\**\s*\$?\s*)?"
_BOX = r"\\{1,2}boxed\s*\{(?P<box>[^{}\n]*)\}"
_LINE_BOX = re.compile(r"(?i)" + _LEAD + _LABEL + r"\$?\s*" + _BOX + r"\s*\$?" + _TRAIL)
_LINE_BOXES = re.compile(r"(?i)" + _LEAD + _LABEL + r"(?P<boxes>(?:\$?\s*\\{1,2}boxed\s*\{[^{}\n]*\}"
                         r"\s*\$?\s*[,;]?\s*){2,})" + _TRAIL)
_LINE_BRACKETS = re.compile(r"(?i)" + _LEAD + _LABEL + r"\[\[(?P<box>[^\[\]\n]*)\]\]" + _TRAIL)
_LABELLED_NUM = r"(?:(?:response|assistant)\s*[0-9]{1,3}\s*[:=]\s*)?" + _NUM + r"(?:\s*/\s*10)?"
_LINE_PLAIN = re.compile(
    r"(?i)" + _LEAD + r"(?P<label>" + _LABEL_WORDS + r")\s*\**\s*[:=]\s*\**\s*"
    r"(?P<box>" + _LABELLED_NUM + r"(?:\s*[,;]\s*" + _LABELLED_NUM + r")*)" + _TRAIL)
_RESPONSE_LINE = re.compile(r"(?i)" + _LEAD + r"(?:response|assistant)\s*(?P<idx>[0-9]{1,3})\s*\**\s*"
                            r"[:=]\s*\**\s*(?P<val>" + _NUM + r")\s*/\s*10" + _TRAIL)
_LINE_BEST_RESPONSE = re.compile(r"(?i)" + _LEAD + r"(?:best(?:\s+response)?|choice)\s*\**\s*[:=]\s*\**"
                                 r"\s*(?:response|assistant)\s*(?P<idx>[0-9]{1,3})" + _TRAIL)
_INNER_LABEL = re.compile(r"(?i)\b(?:response|assistant)\s*[0-9]{1,3}\s*[:=]")
_BOX_ANYWHERE = re.compile(r"\\{1,2}boxed\s*\{([^{}\n]*)\}")
_OUT_OF_TEN = re.compile(r"/\s*10\b")
_NUMBER = re.compile(_NUM)

_PRINCIPLE = re.compile(
    r"(?im)^[ \t]*(?:[-*•]|[0-9]{1,2}[.)])?[ \t]*\**(?P<name>[^\n:()*]{2,80}?)\**[ \t]*"
    r"[(\[]\s*(?:weight|w)\s*[:=]?\s*(?P<w>[0-9]+(?:\.[0-9]+)?)\s*(?P<pct>%)?\s*[)\]]"
    r"\s*\**[ \t]*[:\-–—]?[ \t]*"
    r"(?P<desc>[^\n]*)$"
)
_SECTION_CRITERIA = re.compile(r"(?i)specific\s+criteria\s*\**\s*:?")
# Section and response headers, and the criterion line, count only outside quotes: their leads
# allow markdown bullets and bold but not '>', so a quoted 'Response 2:' moves no line.
_SECTION_ANALYSIS = re.compile(r"(?im)^[ \t*#_-]*analysis\s*\**\s*:?")
_RESPONSE_HEADER = re.compile(r"(?im)^[ \t*#_-]*(?:\[)?response\s*([0-9]{1,3})\b\s*\]?\s*\**\s*[:.\-–—]?")
_BLOCK_END = re.compile(r"(?im)^[ \t*#_-]*(?:final\s+)?scores?\s*\**\s*[:=]")
CRITERION_SCORES_LABEL = "Criterion scores"
_CRITERION_LABEL = re.compile(r"(?i)^[ \t*_-]*criterion\s+scores\s*\**\s*:")
_QUOTED_CRITERION_LABEL = re.compile(r"(?i)^[ \t]*>[ \t>*_-]*criterion\s+scores\s*\**\s*:")
_CRITERION_SCORES = re.compile(
    r"(?i)^[ \t*_-]*criterion\s+scores\s*\**\s*:\s*\**\s*(?P<nums>" + _NUM
    + r"(?:\s*(?:/\s*10)?\s*[,;]\s*" + _NUM + r")*)\s*(?:/\s*10)?" + _TRAIL)


@dataclass
class ParsedGRM:
    """What one GRM output says, in the SHOWN order of the responses.

    `overall_scores` are the scores of the final scores line; each critique also holds the
    weighted sum of its criterion scores where the fixed form gave all of them.
    """

    principles: list[Principle]
    critiques: list[Critique]
    overall_scores: list[float]

    def weighted_scores(self) -> tuple[list[float], list[bool]]:
        """Scores under the weighted rule, and per response whether it fell back to the overall
        score because a criterion score was missing."""
        scores: list[float] = []
        fallback: list[bool] = []
        for c, o in zip(self.critiques, self.overall_scores, strict=True):
            scores.append(c.weighted if c.weighted is not None else o)
            fallback.append(c.weighted is None)
        return scores, fallback


def foreign_number_signs(text: str) -> list[str]:
    """The characters of `text` that write a number but are not ASCII: digits of other scripts
    (Arabic-Indic, fullwidth, ...) and minus signs other than '-' (U+2212, dashes). A score line
    holding one is refused: read leniently, '−3' would become 3 and '٣' a 3."""
    return [ch for ch in text if not ch.isascii()
            and (unicodedata.category(ch) == "Nd" or ch in _MINUS_SIGNS)]


_MINUS_SIGNS = frozenset("\u2212\u2010\u2011\u2012\u2013\u2014\u2015\ufe58\ufe63\uff0d\u2796\u02d7")


def _numbers(text: str, raw: str, n_responses: int | None = None) -> list[float]:
    """The numbers of a score line's value part (response labels and '/10' dropped); ASCII
    digits only, else ParseError."""
    foreign = foreign_number_signs(text)
    if foreign:
        raise ParseError(f"scores must be written with ASCII digits and '-': found "
                         f"{', '.join(f'U+{ord(c):04X}' for c in dict.fromkeys(foreign))}",
                         raw=raw, n_responses=n_responses)
    cleaned = _INNER_LABEL.sub(" ", _OUT_OF_TEN.sub("", text))
    return [float(tok) for tok in _NUMBER.findall(cleaned)]


def _json_scores(blob: str, n: int) -> list[float] | None:
    try:
        obj = json.loads(blob)
    except Exception:  # json raises ValueError and RecursionError on hostile text
        return None
    if not isinstance(obj, dict):
        return None
    for key in ("scores", "Scores", "score", "ratings"):
        val = obj.get(key)
        if isinstance(val, list) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                         for v in val):
            return [float(v) for v in val]
        if isinstance(val, int | float) and not isinstance(val, bool) and n == 1:
            return [float(val)]
    # Keyed per response: {"Response 1": 7, "Response 2": 3} (or "response_1", "1").
    keyed: dict[int, float] = {}
    for k, v in obj.items():
        m = re.fullmatch(r"(?i)\s*(?:response|assistant)?\s*_?([0-9]{1,3})\s*", str(k))
        if m and isinstance(v, int | float) and not isinstance(v, bool):
            keyed[int(m.group(1))] = float(v)
    if keyed and sorted(keyed) == list(range(1, len(keyed) + 1)):
        return [keyed[i] for i in range(1, len(keyed) + 1)]
    return None


def _strip_fences(text: str) -> str:
    """The text without trailing blank lines and a closing ``` fence."""
    body = text.rstrip()
    if body.endswith("```"):
        body = body[:-3].rstrip()
    return body


def _trailing_json(body: str, n: int) -> list[float] | None:
    if not body.endswith("}"):
        return None
    # The object that ends the text: try each '{' from the right (bounded, to stay linear-ish).
    starts = [m.start() for m in re.finditer(r"\{", body)][-50:]
    for start in reversed(starts):
        vals = _json_scores(body[start:], n)
        if vals is not None:
            return vals
    return None


def _final_block(lines: list[str], n: int) -> list[float] | None:
    """n trailing lines 'Response i: x/10', i = 1..n in order."""
    if len(lines) < n:
        return None
    out: list[float] = []
    for i, line in enumerate(lines[-n:], start=1):
        m = _RESPONSE_LINE.match(line)
        if m is None or int(m.group("idx")) != i:
            return None
        out.append(float(m.group("val")))
    return out


def final_line_values(text: str, n_responses: int) -> tuple[list[float], str]:
    """The numbers of the final scores line and the form found; ParseError when the text does
    not end with one. Count and range are not checked here."""
    body = _strip_fences(text)
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if not lines:
        raise ParseError("empty output: no final scores line", raw=text, n_responses=n_responses)
    last = lines[-1]
    if len(last) <= 2000:
        m = _LINE_BOX.match(last)
        if m:
            return _numbers(m.group("box"), text, n_responses), "boxed"
        m = _LINE_BOXES.match(last)
        if m:
            boxes = [_numbers(b, text, n_responses) for b in _BOX_ANYWHERE.findall(m.group("boxes"))]
            if all(len(b) == 1 for b in boxes):
                return [b[0] for b in boxes], "boxes"
        m = _LINE_BRACKETS.match(last)
        if m:
            return _numbers(m.group("box"), text, n_responses), "[[ ]]"
        m = _LINE_PLAIN.match(last)
        if m:
            return _numbers(m.group("box"), text, n_responses), "scores line"
    vals = _trailing_json(body, n_responses)
    if vals is not None:
        return vals, "json"
    block = _final_block(lines, n_responses)
    if block is not None:
        return block, "response lines"
    foreign = foreign_number_signs(last)
    if foreign:
        raise ParseError(f"the final line writes a number with characters other than ASCII "
                         f"digits and '-' ({', '.join(f'U+{ord(c):04X}' for c in foreign)}): "
                         f"{last.strip()[:200]!r}", raw=text, n_responses=n_responses)
    raise ParseError("the output does not end with a scores line (expected a final line like "
                     "'Scores: \\boxed{x, y}')", raw=text, n_responses=n_responses)


def check_scores(values: list[float], n_responses: int, text: str, what: str = "scores line"
                 ) -> list[float]:
    """`values` if there are n of them, each a finite number in 1-10; else ParseError."""
    if len(values) != n_responses:
        raise ParseError(f"final {what} holds {len(values)} score(s), expected {n_responses}",
                         raw=text, n_responses=n_responses)
    bad = [v for v in values if not (math.isfinite(v) and SCORE_MIN <= v <= SCORE_MAX)]
    if bad:
        raise ParseError(f"scores out of range 1-10: {bad}", raw=text, n_responses=n_responses)
    return values


def parse_scores(text: str, n_responses: int) -> list[float]:
    """The n scores of the final scores line; ParseError on a missing line, count or range."""
    if n_responses < 1:
        raise ParseError("n_responses must be at least 1", raw=text, n_responses=n_responses)
    values, kind = final_line_values(text, n_responses)
    return check_scores(values, n_responses, text, kind)


def parse_principles(text: str) -> list[Principle]:
    """Self-written criteria with weights, normalised to sum to 1 (equal weights if none given)."""
    region = text
    start = _SECTION_CRITERIA.search(text)
    if start:
        region = text[start.end():]
        end = _SECTION_ANALYSIS.search(region)
        if end:
            region = region[: end.start()]
    names: list[str] = []
    raw: list[tuple[str, str, float]] = []
    for m in _PRINCIPLE.finditer(region):
        name = m.group("name").strip(" \t*_:-")
        if not name or name.lower() in names:
            continue
        w = float(m.group("w"))
        if not math.isfinite(w):
            continue
        names.append(name.lower())
        raw.append((name, m.group("desc").strip(), w))
    if not raw and start:
        # Criteria listed without weights: take the bullet lines, equal weights.
        for line in region.splitlines():
            m2 = re.match(r"^\s*(?:[-*•]|[0-9]{1,2}[.)])\s*\**([^:\n*]{2,80}?)\**\s*(?::\s*(.*))?$", line)
            if m2:
                raw.append((m2.group(1).strip(), (m2.group(2) or "").strip(), 1.0))
    total = sum(w for _, _, w in raw)
    if not raw:
        return []
    return [
        Principle(name=n, description=d, weight=(w / total if total > 0 else 1.0 / len(raw)))
        for n, d, w in raw
    ]


def _analysis_blocks(text: str, n: int) -> list[str]:
    region = text
    a = _SECTION_ANALYSIS.search(text)
    if a:
        region = text[a.end():]
    headers = [(int(m.group(1)), m.start(), m.end()) for m in _RESPONSE_HEADER.finditer(region)]
    blocks = [""] * n
    for i, (idx, _, body_start) in enumerate(headers):
        body_end = headers[i + 1][1] if i + 1 < len(headers) else len(region)
        if 1 <= idx <= n:
            body = region[body_start:body_end]
            body = _BLOCK_END.split(body)[0]
            blocks[idx - 1] = (blocks[idx - 1] + "\n" + body).strip()
    return blocks


def read_criterion_scores(block: str, principles: list[Principle], raw: str = ""
                          ) -> tuple[dict[str, float], str | None]:
    """The per-criterion scores of one response's analysis, and why there are none.

    They come from exactly one fixed-form line 'Criterion scores: s1, ..., sm' (m = number of
    criteria, each 1-10) outside quotes. A line quoted with '>' never counts (a judged response
    the judge quoted may hold one); two or more lines are not a choice to make (a quoted
    response's line may sit unquoted beside the judge's own), so they give no scores, nor does a
    malformed line; the reason is returned. Numbers in prose never count. A line that writes
    its numbers with digits or minus signs other than ASCII is a ParseError."""
    if not principles:
        return {}, "no criteria to score"
    block_lines = block.splitlines()
    lines = [ln for ln in block_lines if _CRITERION_LABEL.match(ln)]
    for line in lines:
        if foreign_number_signs(line):
            raise ParseError(f"criterion scores must be written with ASCII digits and '-': "
                             f"{line.strip()!r}", raw=raw or block)
    if not lines:
        if any(_QUOTED_CRITERION_LABEL.match(ln) for ln in block_lines):
            return {}, "the only 'Criterion scores' line is quoted"
        return {}, "no 'Criterion scores' line"
    if len(lines) > 1:
        return {}, f"{len(lines)} 'Criterion scores' lines, expected one"
    m = _CRITERION_SCORES.match(lines[0])
    if m is None:
        return {}, "the 'Criterion scores' line is malformed"
    values = _numbers(m.group("nums"), raw or block)
    if len(values) != len(principles):
        return {}, (f"the 'Criterion scores' line holds {len(values)} score(s) for "
                    f"{len(principles)} criteria")
    if any(not (math.isfinite(v) and SCORE_MIN <= v <= SCORE_MAX) for v in values):
        return {}, "a criterion score is out of range 1-10"
    return {p.name: v for p, v in zip(principles, values, strict=True)}, None


def combine(principles: list[Principle], principle_scores: dict[str, float]) -> float | None:
    """sum_i w_i * s_i over principles (weights renormalised), if every principle has a score."""
    if not principles or not principle_scores:  # the common case: no criterion scores line
        return None
    if any(p.name not in principle_scores for p in principles):
        return None
    total_w = sum(p.weight for p in principles)
    if total_w <= 0:
        return None
    value = sum(p.weight * principle_scores[p.name] for p in principles) / total_w
    return min(SCORE_MAX, max(SCORE_MIN, round(value, 4)))


def parse_grm(text: str, n_responses: int,
              principles: list[Principle] | None = None, *, fixes: bool = False) -> ParsedGRM:
    """Principles, critiques and scores from one GRM output, in shown order. Raises ParseError.

    `principles` are a fixed user rubric: the 'Criterion scores' lines are read against them,
    in their order, and any criteria the output lists itself are ignored. `fixes` reads each
    response's 'Fix:' lines into its critique (and out of its analysis)."""
    overall = parse_scores(text, n_responses)
    principles = (parse_principles(text) if principles is None
                  else [p.model_copy() for p in principles])
    blocks = _analysis_blocks(text, n_responses)
    critiques: list[Critique] = []
    for block, score in zip(blocks, overall, strict=True):
        ps, missing = read_criterion_scores(block, principles, text)
        analysis, suggested = split_fixes(block) if fixes else (block, [])
        weighted = combine(principles, ps)
        critiques.append(Critique(analysis=analysis, principle_scores=ps, overall=score,
                                  weighted=weighted, fixes=suggested,
                                  weighted_missing=missing if weighted is None else None))
    return ParsedGRM(principles=principles, critiques=critiques, overall_scores=overall)


def scores_line_grammar(n_responses: int) -> str:
    """EBNF (xgrammar dialect) for exactly `Scores: \\boxed{s1, ..., sn}`, integers 1-10."""
    body = ' ", " '.join(["score"] * n_responses)
    return f'root ::= "Scores: \\\\boxed{{" {body} "}}"\nscore ::= [1-9] | "10"\n'


def best_line_grammar(n_responses: int) -> str:
    """EBNF for exactly `Best: \\boxed{i}` with i a response number."""
    alts = " | ".join(f'"{i}"' for i in range(1, n_responses + 1))
    return f'root ::= "Best: \\\\boxed{{" choice "}}"\nchoice ::= {alts}\n'


def ebnf_literal(text: str) -> str:
    """`text` as an EBNF string literal (quotes, backslashes and control characters escaped;
    other characters, non-ASCII included, as they are)."""
    return json.dumps(text, ensure_ascii=False)


def grm_output_grammar(n_responses: int, max_criteria: int = 4, *, criterion_scores: bool = False,
                       name_chars: int = 40, desc_chars: int = 300,
                       analysis_chars: int = 800, seed_names: Sequence[str] = (),
                       fixes: int = 0, fix_chars: int = 200) -> str:
    """EBNF for the whole GRM output this module parses: 2..max_criteria weighted criteria, an
    analysis per response (ending with its 'Criterion scores' line when `criterion_scores`, then
    1..`fixes` 'Fix:' lines when `fixes` > 0), and the final scores line. Line lengths allow
    realistic criteria and analyses (hundreds of characters); the token budget, not the
    grammar, bounds the length.

    `seed_names` (a seeded rubric) are the first criteria, their names fixed strings; the model
    may add its own after them up to `max_criteria` in all (at least one more is allowed)."""
    if max_criteria < 2:
        raise ValueError("max_criteria must be at least 2")
    if fixes < 0 or fix_chars < 1:
        raise ValueError("fixes must be at least 0 and fix_chars at least 1")
    scores = ' ", " '.join(["score"] * n_responses)
    tail = f'"Scores: \\\\boxed{{" {scores} "}}"'
    seeds = list(seed_names)
    lowest = max(2, len(seeds))
    highest = max(max_criteria, len(seeds) + 1) if seeds else max_criteria
    alternatives = []
    for c in range(lowest, highest + 1):
        crits = " ".join(
            f'"{i}. " {ebnf_literal(seeds[i - 1])} " (Weight: " pct "%): " desc'
            if i <= len(seeds) else f'"{i}. " crit' for i in range(1, c + 1))
        per_response = []
        for i in range(1, n_responses + 1):
            line = f'"Response {i}: " analysis'
            if criterion_scores:
                cs = ' ", " '.join(["score"] * c)
                line += f' "{CRITERION_SCORES_LABEL}: " {cs} "\\n"'
            if fixes:
                line += " fixes"
            per_response.append(line)
        alternatives.append(f'("Specific Criteria:\\n" {crits} "Analysis:\\n" '
                            f'{" ".join(per_response)})')
    return (
        f"root ::= ({' | '.join(alternatives)}) {tail}\n"
        'crit ::= name " (Weight: " pct "%): " desc\n'
        f'name ::= [A-Z] [A-Za-z -]{{1,{name_chars}}}\n'
        'pct ::= [1-9] [0-9]?\n'
        f'desc ::= [^\\n]{{1,{desc_chars}}} "\\n"\n'
        f'analysis ::= [^\\n]{{1,{analysis_chars}}} "\\n"\n'
        'score ::= [1-9] | "10"\n'
        + (_fixes_grammar(fixes, fix_chars) if fixes else "")
    )


def rubric_output_grammar(n_responses: int, names: Sequence[str], *,
                          analysis_chars: int = 800, fixes: int = 0,
                          fix_chars: int = 200) -> str:
    """EBNF for the GRM output under a fixed user rubric: no criteria section (the rubric is
    given), then per response a line of analysis for each criterion, named by its fixed name,
    and the response's 'Criterion scores' line (one score per criterion, rubric order), then
    1..`fixes` 'Fix:' lines when `fixes` > 0, then the final scores line. What it emits is what
    `parse_grm(..., principles=rubric)` reads."""
    if not names:
        raise ValueError("a fixed rubric needs at least one criterion")
    scores = ' ", " '.join(["score"] * n_responses)
    per_criterion = " ".join(f'"- " {ebnf_literal(name)} ": " analysis' for name in names)
    cs = ' ", " '.join(["score"] * len(names))
    suggested = " fixes" if fixes else ""
    responses = " ".join(f'"Response {i}:\\n" {per_criterion} '
                         f'"{CRITERION_SCORES_LABEL}: " {cs} "\\n"{suggested}'
                         for i in range(1, n_responses + 1))
    return (
        f'root ::= "Analysis:\\n" {responses} "Scores: \\\\boxed{{" {scores} "}}"\n'
        f'analysis ::= [^\\n]{{1,{analysis_chars}}} "\\n"\n'
        'score ::= [1-9] | "10"\n'
        + (_fixes_grammar(fixes, fix_chars) if fixes else "")
    )


def parse_best_index(text: str, n_responses: int) -> int:
    """0-based index of the chosen response from a pairwise answer's final line
    ('Best: \\boxed{i}', 'Best: Response i' or '[[i]]'). Raises ParseError."""
    lines = [ln for ln in _strip_fences(text).splitlines() if ln.strip()]
    named = _LINE_BEST_RESPONSE.match(lines[-1]) if lines and len(lines[-1]) <= 2000 else None
    if named:  # 'Best: Response 2'
        values, kind = [float(named.group("idx"))], "choice"
    else:
        values, kind = final_line_values(text, 1)
    if len(values) != 1 or not values[0].is_integer() or not (1 <= values[0] <= n_responses):
        raise ParseError(f"final {kind} {values} is not one response number 1-{n_responses}",
                         raw=text, n_responses=n_responses)
    return int(values[0]) - 1


def parse_rating(text: str) -> float:
    """A single 1-10 rating from the final line (the meta judge's rating mode). Raises
    ParseError."""
    return parse_scores(text, 1)[0]


# -- Suggested fixes (GRMFormat(fixes=True)) and debate reviews (judgekit.debate) ---------------
# Same rule as everywhere above: only fixed-form lines count. A fix is a line 'Fix: <text>' in
# a response's analysis; a review answers each fix on its own line 'F<id>: accept|reject -
# <reason>' and ends, like every judgement, with the final scores line.
FIX_LABEL = "Fix"
_FIX_LINE = re.compile(r"(?i)^[ \t>*_-]*\**fix(?:\s*[0-9]{1,2})?\**\s*:\s*\**[ \t]*(?P<text>[^\n]*?)"
                       r"[ \t*]*$")
_NO_FIX = re.compile(r"(?i)^(?:none|n/?a|no fix(?:es)?(?: needed)?|nothing)[ .!]*$")
_REVIEW_LINE = re.compile(
    r"(?i)^[ \t>*_-]*\**(?P<id>F[0-9]{1,4})\**\s*[:.)=]\s*\**(?P<verdict>accept|reject)(?:ed|s)?\**"
    r"[ \t]*(?:[-–—:,;.][ \t]*(?P<reason>[^\n]*?))?[ \t*]*$")
_SCORE_CHANGE_LINE = re.compile(r"(?i)^[ \t>*_-]*\**score\s+change\**\s*:\s*\**[ \t]*"
                                r"(?P<why>[^\n]*?)[ \t*]*$")
_NO_CHANGE = re.compile(r"(?i)^(?:none|no change|unchanged|n/?a)[ .!]*$")


def split_fixes(block: str) -> tuple[str, list[str]]:
    """One response's analysis without its 'Fix:' lines, and the fixes those lines state, in
    order (exact repeats and 'Fix: none' dropped)."""
    kept: list[str] = []
    fixes: list[str] = []
    for line in block.splitlines():
        m = _FIX_LINE.match(line) if len(line) <= 2000 else None
        if m is None:
            kept.append(line)
            continue
        text = m.group("text").strip()
        if text and not _NO_FIX.match(text) and text not in fixes:
            fixes.append(text)
    return "\n".join(kept).strip(), fixes


def _fixes_grammar(max_fixes: int, fix_chars: int) -> str:
    """Rules for 1..max_fixes 'Fix:' lines (nested options: no repetition operator on rules)."""
    body = "fix"
    for _ in range(max_fixes - 1):
        body = f"fix ({body})?"
    # A fix starts with a visible character, so no fix the grammar allows reads as empty.
    rest = f" [^\\n]{{0,{fix_chars - 1}}}" if fix_chars > 1 else ""
    return (f"fixes ::= {body}\n"
            f'fix ::= "{FIX_LABEL}: " [^\\n \\t]{rest} "\\n"\n')


@dataclass
class ParsedReview:
    """One judge's review in a debate round: accept/reject with a reason per fix id, why its
    scores changed (None for no reason given or 'none'), and its scores (shown order)."""

    answers: dict[str, tuple[bool, str]]
    score_change: str | None
    scores: list[float]


def parse_review(text: str, n_responses: int, fix_ids: list[str]) -> ParsedReview:
    """A debate review, strictly: every fix in `fix_ids` answered (accept or reject, once; the
    same answer repeated is one answer, contradictory answers are refused) and the final scores
    line. Lines about fixes that were not asked are ignored. Raises ParseError."""
    scores = parse_scores(text, n_responses)
    wanted = {f.upper() for f in fix_ids}
    answers: dict[str, tuple[bool, str]] = {}
    why: str | None = None
    for line in text.splitlines():
        if len(line) > 2000:
            continue
        m = _REVIEW_LINE.match(line)
        if m is not None:
            fid = m.group("id").upper()
            if fid not in wanted:
                continue
            accept = m.group("verdict").lower() == "accept"
            if fid in answers and answers[fid][0] != accept:
                raise ParseError(f"fix {fid} is both accepted and rejected", raw=text,
                                 n_responses=n_responses)
            answers.setdefault(fid, (accept, (m.group("reason") or "").strip()))
            continue
        c = _SCORE_CHANGE_LINE.match(line)
        if c is not None:
            stated = c.group("why").strip()
            why = None if not stated or _NO_CHANGE.match(stated) else stated
    missing = [f for f in fix_ids if f.upper() not in answers]
    if missing:
        raise ParseError(f"no accept/reject answer for {', '.join(missing)} (expected one line "
                         "per fix like 'F1: accept - <reason>')", raw=text,
                         n_responses=n_responses)
    return ParsedReview(answers={f: answers[f.upper()] for f in fix_ids}, score_change=why,
                        scores=scores)


def review_grammar(n_responses: int, fix_ids: list[str], reason_chars: int = 300) -> str:
    """EBNF for a whole debate review: one 'F<id>: accept|reject - <reason>' line per fix in
    order, a 'Score change:' line, then the final scores line."""
    answers = " ".join(f'"{f}: " verdict " - " reason' for f in fix_ids)
    scores = ' ", " '.join(["score"] * n_responses)
    return (f'root ::= {answers} "Score change: " reason "Scores: \\\\boxed{{" {scores} "}}"\n'
            'verdict ::= "accept" | "reject"\n'
            f'reason ::= [^\\n]{{1,{reason_chars}}} "\\n"\n'
            'score ::= [1-9] | "10"\n')
