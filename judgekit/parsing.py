"""Pure functions that turn judge text into scores, principles and critiques.

Contract: every public function either returns a value or raises `ParseError` carrying the raw
text; no other exception escapes on any input string (property-tested with hypothesis).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from judgekit.errors import ParseError
from judgekit.schema import Critique, Principle

SCORE_MIN, SCORE_MAX = 1.0, 10.0
_NUM = r"[-+]?\d+(?:\.\d+)?"

# Explicit score boxes, any of which may hold all n scores. The LAST one in the text wins:
# models often write sub-scores or drafts before the final line.
_BOXED = re.compile(r"\\{0,2}boxed\s*\{([^{}]*)\}")
_DOUBLE_BRACKET = re.compile(r"\[\[([^\[\]]*)\]\]")
_LABELLED_NUM = r"(?:(?:response|assistant)\s*\d{1,3}\s*[:=]\s*)?" + _NUM + r"(?:\s*/\s*10)?"
_SCORES_LINE = re.compile(
    r"(?im)^[ \t>*#_-]*(?:final\s+|overall\s+)?(?P<kw>scores?)\s*\**\s*[:=]\s*\**\s*"
    r"(?P<nums>" + _LABELLED_NUM + r"(?:\s*[,;]\s*" + _LABELLED_NUM + r")*)"
    r"\s*\**\s*\.?\s*$"
)
# "Response 2: 7" labels inside a box are not scores.
_LABEL = re.compile(r"(?i)\b(?:response|assistant)\s*\d{1,3}\s*[:=]")
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
# Per-response scores written one at a time: "Response 2: ... Score: 7/10" or "Score for Response 2: 7".
_PER_RESPONSE = re.compile(
    r"(?i)(?:response|assistant)\s*(\d{1,3})\b[^\n]{0,200}?\bscore\s*\**\s*[:=]\s*\**\s*(" + _NUM + r")"
    r"|score\s+(?:for|of)\s+(?:response|assistant)\s*(\d{1,3})\s*\**\s*[:=]\s*\**\s*(" + _NUM + r")"
)
_SCORE_OUT_OF_10 = re.compile(r"(?im)^[ \t>*#_-]*score\s*\**\s*[:=]\s*\**\s*(" + _NUM + r")\s*/\s*10")
# "Response 2: 7/10" on a line of its own.
_RESPONSE_OUT_OF_10 = re.compile(r"(?im)^[ \t>*#_-]*(?:response|assistant)\s*(\d{1,3})\s*\**\s*[:=]\s*"
                                 r"\**\s*(" + _NUM + r")\s*/\s*10\s*\**\s*\.?\s*$")

_PRINCIPLE = re.compile(
    r"(?im)^[ \t]*(?:[-*•]|\d{1,2}[.)])?[ \t]*\**(?P<name>[^\n:()*]{2,80}?)\**[ \t]*"
    r"[(\[]\s*(?:weight|w)\s*[:=]?\s*(?P<w>\d+(?:\.\d+)?)\s*(?P<pct>%)?\s*[)\]]\s*\**[ \t]*[:\-–—]?[ \t]*"
    r"(?P<desc>[^\n]*)$"
)
_SECTION_CRITERIA = re.compile(r"(?i)specific\s+criteria\s*\**\s*:?")
_SECTION_ANALYSIS = re.compile(r"(?im)^[ \t>*#_-]*analysis\s*\**\s*:?")
_RESPONSE_HEADER = re.compile(r"(?im)^[ \t>*#_-]*(?:\[)?response\s*(\d{1,3})\b\s*\]?\s*\**\s*[:.\-–—]?")


@dataclass
class ParsedGRM:
    """What one GRM output says, in the SHOWN order of the responses."""

    principles: list[Principle]
    critiques: list[Critique]
    overall_scores: list[float]
    scores: list[float] = field(default_factory=list)  # weighted where possible, else overall


def _numbers(text: str) -> list[float]:
    cleaned = _LABEL.sub(" ", re.sub(r"/\s*10\b", "", text))
    out: list[float] = []
    for tok in re.findall(_NUM, cleaned):
        try:
            out.append(float(tok))
        except ValueError:  # pragma: no cover - the regex only admits floats
            continue
    return out


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
    keyed: dict[int, float] = {}
    for k, v in obj.items():
        m = re.fullmatch(r"(?i)\s*(?:response|assistant)?\s*_?(\d{1,3})\s*", str(k))
        if m and isinstance(v, int | float) and not isinstance(v, bool):
            keyed[int(m.group(1))] = float(v)
    if keyed and sorted(keyed) == list(range(1, len(keyed) + 1)):
        return [keyed[i] for i in range(1, len(keyed) + 1)]
    return None


def _candidates(text: str, n: int) -> list[tuple[int, list[float], str]]:
    """(end offset, numbers, kind) for every explicit score box in the text."""
    found: list[tuple[int, list[float], str]] = []
    for m in _BOXED.finditer(text):
        found.append((m.end(), _numbers(m.group(1)), "boxed"))
    for m in _DOUBLE_BRACKET.finditer(text):
        found.append((m.end(), _numbers(m.group(1)), "[[ ]]"))
    for m in _SCORES_LINE.finditer(text):
        values = _numbers(m.group("nums"))
        # A singular "Score: 7/10" line scores ONE response (the per-response style); it is a box
        # of all scores only when there is one response.
        if m.group("kw").lower() == "score" and len(values) == 1 and n > 1:
            continue
        found.append((m.end(), values, "scores line"))
    for m in _JSON_OBJECT.finditer(text):
        vals = _json_scores(m.group(0), n)
        if vals is not None:
            found.append((m.end(), vals, "json"))
    return found


def _per_response_scores(text: str, n: int) -> list[float] | None:
    by_index: dict[int, float] = {}
    for m in _PER_RESPONSE.finditer(text):
        idx_s, val_s = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        by_index[int(idx_s)] = float(val_s)
    if by_index and sorted(by_index) == list(range(1, n + 1)):
        return [by_index[i] for i in range(1, n + 1)]
    by_index = {int(i): float(v) for i, v in _RESPONSE_OUT_OF_10.findall(text)}
    if by_index and sorted(by_index) == list(range(1, n + 1)):
        return [by_index[i] for i in range(1, n + 1)]
    plain = [float(v) for v in _SCORE_OUT_OF_10.findall(text)]
    if len(plain) == n:
        return plain
    return None


def _boxes_on_line(text: str, end: int, n: int) -> list[float] | None:
    """One box per response on the final box's line ("Scores: \\boxed{8}, \\boxed{9}")."""
    line_start = text.rfind("\n", 0, end) + 1
    boxes = [_numbers(m.group(1)) for m in _BOXED.finditer(text, line_start, end)]
    if len(boxes) == n and all(len(b) == 1 for b in boxes):
        return [b[0] for b in boxes]
    return None


def parse_scores(text: str, n_responses: int) -> list[float]:
    """The n overall scores from the LAST score box; ParseError on a missing box, count or range."""
    if n_responses < 1:
        raise ParseError("n_responses must be at least 1", raw=text, n_responses=n_responses)
    candidates = _candidates(text, n_responses)
    if candidates:
        end, values, kind = max(candidates, key=lambda c: c[0])
        if kind == "boxed" and len(values) == 1 and n_responses > 1:
            values = _boxes_on_line(text, end, n_responses) or values
        if len(values) != n_responses:
            raise ParseError(
                f"last score box ({kind}) holds {len(values)} score(s), expected {n_responses}",
                raw=text, n_responses=n_responses)
    else:
        per = _per_response_scores(text, n_responses)
        if per is None:
            raise ParseError("no scores found (expected a final line like "
                             "'Scores: \\boxed{x, y}')", raw=text, n_responses=n_responses)
        values = per
    bad = [v for v in values if not (math.isfinite(v) and SCORE_MIN <= v <= SCORE_MAX)]
    if bad:
        raise ParseError(f"scores out of range 1-10: {bad}", raw=text, n_responses=n_responses)
    return values


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
        try:
            w = float(m.group("w"))
        except ValueError:  # pragma: no cover
            continue
        if not math.isfinite(w):
            continue
        names.append(name.lower())
        raw.append((name, m.group("desc").strip(), w))
    if not raw and start:
        # Criteria listed without weights: take the bullet lines, equal weights.
        for line in region.splitlines():
            m2 = re.match(r"^\s*(?:[-*•]|\d{1,2}[.)])\s*\**([^:\n*]{2,80}?)\**\s*(?::\s*(.*))?$", line)
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
            body = re.split(r"(?im)^[ \t>*#_-]*(?:final\s+)?scores?\s*\**\s*[:=]", body)[0]
            blocks[idx - 1] = (blocks[idx - 1] + "\n" + body).strip()
    return blocks


def _principle_scores(block: str, principles: list[Principle]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in principles:
        pat = re.compile(re.escape(p.name) + r"[^\n\d]{0,20}?(" + _NUM + r")(?:\s*/\s*10)?",
                         re.IGNORECASE)
        matches = list(pat.finditer(block))
        m = matches[-1] if matches else None  # the last mention is the final word
        if m is not None:
            try:
                v = float(m.group(1))
            except ValueError:  # pragma: no cover
                continue
            if math.isfinite(v) and SCORE_MIN <= v <= SCORE_MAX:
                out[p.name] = v
    return out


def combine(principles: list[Principle], principle_scores: dict[str, float]) -> float | None:
    """sum_i w_i * s_i over principles (weights renormalised), if every principle has a score."""
    if not principles or any(p.name not in principle_scores for p in principles):
        return None
    total_w = sum(p.weight for p in principles)
    if total_w <= 0:
        return None
    value = sum(p.weight * principle_scores[p.name] for p in principles) / total_w
    return min(SCORE_MAX, max(SCORE_MIN, round(value, 4)))


def parse_grm(text: str, n_responses: int) -> ParsedGRM:
    """Principles, critiques and scores from one GRM output, in shown order. Raises ParseError."""
    overall = parse_scores(text, n_responses)
    principles = parse_principles(text)
    blocks = _analysis_blocks(text, n_responses)
    critiques: list[Critique] = []
    for block, score in zip(blocks, overall, strict=True):
        ps = _principle_scores(block, principles)
        critiques.append(Critique(analysis=block, principle_scores=ps, overall=score,
                                  weighted=combine(principles, ps)))
    combined = [c.score if c.score is not None else o for c, o in zip(critiques, overall, strict=True)]
    return ParsedGRM(principles=principles, critiques=critiques, overall_scores=overall,
                     scores=[float(s) for s in combined])


def scores_line_grammar(n_responses: int) -> str:
    """EBNF (xgrammar dialect) for exactly `Scores: \\boxed{s1, ..., sn}`, integers 1-10."""
    body = ' ", " '.join(["score"] * n_responses)
    return f'root ::= "Scores: \\\\boxed{{" {body} "}}"\nscore ::= [1-9] | "10"\n'


def grm_output_grammar(n_responses: int, max_criteria: int = 4, desc_chars: int = 40,
                       analysis_chars: int = 60) -> str:
    """EBNF for the whole GRM output this module parses: 2..max_criteria weighted criteria, one
    analysis line per response, the scores line. Lets even a tiny local model emit the format;
    the line lengths are capped so a judgement fits in a few hundred tokens."""
    crits = " ".join(f'"{i}. " crit' for i in (1, 2))
    crits += "".join(f' ("{i}. " crit' for i in range(3, max_criteria + 1))
    crits += ")?" * max(0, max_criteria - 2)
    analysis = " ".join(f'"Response {i}: " analysis' for i in range(1, n_responses + 1))
    body = ' ", " '.join(["score"] * n_responses)
    return (
        f'root ::= "Specific Criteria:\\n" {crits} "Analysis:\\n" {analysis} '
        f'"Scores: \\\\boxed{{" {body} "}}"\n'
        'crit ::= name " (Weight: " pct "%): " desc\n'
        'name ::= [A-Z] [A-Za-z -]{1,24}\n'
        'pct ::= [1-9] [0-9]?\n'
        f'desc ::= [^\\n]{{1,{desc_chars}}} "\\n"\n'
        f'analysis ::= [^\\n]{{1,{analysis_chars}}} "\\n"\n'
        'score ::= [1-9] | "10"\n'
    )


_BEST = re.compile(r"(?i)best\s*\**\s*[:=]\s*\**\s*(?:response\s*)?(\d{1,3})")


def parse_best_index(text: str, n_responses: int) -> int:
    """0-based index of the chosen response from a pairwise-baseline answer. Raises ParseError."""
    found: list[tuple[int, str]] = [(m.end(), m.group(1)) for m in _BOXED.finditer(text)]
    found += [(m.end(), m.group(1)) for m in _DOUBLE_BRACKET.finditer(text)]
    found += [(m.end(), m.group(1)) for m in _BEST.finditer(text)]
    if not found:
        raise ParseError("no choice found (expected 'Best: \\boxed{i}')", raw=text,
                         n_responses=n_responses)
    _, inner = max(found, key=lambda f: f[0])
    nums = re.findall(r"\d+", inner)
    if len(nums) != 1 or not (1 <= int(nums[0]) <= n_responses):
        raise ParseError(f"choice {inner!r} is not one response number 1-{n_responses}",
                         raw=text, n_responses=n_responses)
    return int(nums[0]) - 1


def parse_rating(text: str) -> float:
    """A single 1-10 rating (the meta judge's fallback mode). Raises ParseError."""
    return parse_scores(text, 1)[0]
