"""Judges that argue: each judge judges the same responses with suggested fixes, then reviews the
other judges' fixes (accept or reject, with a reason) and may revise its scores.

The flow of `adebate` (DeepSeek's GRM paper ends with the wish for judges that compete and
argue with suggested fixes; this is that step, built from judgekit's own parts):

1. **Openings.** Every judge (a `Judge` whose format asks for fixes: `Judge(..., fixes=True)`)
   draws one judgement through its own pipeline (`Judge.ascore`). Its first valid sample is its
   *position*: principles, critiques, scores and fixes. Every fix gets an id (F1, F2, ...). A
   judge without a valid sample sits the debate out (its opening Verdict says why).
2. **Rounds.** In each round every judge sees the others' positions (and, after the first
   round, their last reviews) in `prompts/debate/default.jinja` and answers every fix another
   judge suggested, in a fixed form parsed strictly (`judgekit.parsing.parse_review`): one line
   'F<id>: accept|reject - <reason>' per fix, a 'Score change:' line, and the final scores
   line. The review goes through the same `Sampler` as any judgement (truncation rule, forcing
   or re-ask, the judge's grammar when it decodes structured), so a reply that cannot be read is
   a recorded failure, and that judge keeps its previous scores and answers.
3. **Outcome.** A fix is accepted when more of its reviewers accepted it than rejected it (each
   reviewer's last answer counts; a tie or no answer rejects it). With a single valid position
   there is no one to review, and its fixes stand. The final scores are a vote, through
   `judgekit.aggregate.aggregate` (the one voting rule), over each judge's last valid sample:
   its last readable review, else its opening judgement. Who changed their mind, from which
   scores to which and why, is recorded in `DebateResult.mind_changes`. A review's scores are
   the judge's final line (its overall scores, whatever its aggregate rule).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from judgekit.aggregate import aggregate
from judgekit.errors import ParseError
from judgekit.formats import (
    CHARS_PER_TOKEN,
    GRMFormat,
    JudgingFormat,
    ParsedJudgement,
    fence_tag,
)
from judgekit.parsing import parse_review, parse_scores, review_grammar, scores_line_grammar
from judgekit.prompts import as_messages, render
from judgekit.runtime import run_sync
from judgekit.schema import Judgement, Message, Usage, Verdict
from judgekit.voting import TieRule, VotingMethod

if TYPE_CHECKING:
    from judgekit.judge import Judge

DEBATE_TEMPLATE = "debate/default.jinja"


def judge_label(index: int) -> str:
    """A judge's name in prompts and traces: A, B, C, ... (J27, J28, ... past Z)."""
    return chr(ord("A") + index) if index < 26 else f"J{index + 1}"


class Fix(BaseModel):
    """One suggested fix and what the debate made of it."""

    id: str = Field(description="F1, F2, ...: unique within one debate")
    judge: int = Field(description="index of the judge that suggested it")
    response: int = Field(description="index of the response it is for")
    text: str
    accepted_by: list[int] = Field(default_factory=list, description="judges whose last "
                                   "answer accepted it")
    rejected_by: list[int] = Field(default_factory=list)
    accepted: bool = False


class FixAnswer(BaseModel):
    fix: str
    accept: bool
    reason: str = ""


class DebateTurn(BaseModel):
    """One judge's review in one round. `scores_after` is None when the review could not be
    read (its `sample` says why); the judge then keeps `scores_before`."""

    round: int
    judge: int
    reviewed: list[str] = Field(default_factory=list, description="the fix ids it was asked")
    answers: list[FixAnswer] = Field(default_factory=list)
    scores_before: list[float]
    scores_after: list[float] | None = None
    score_change: str | None = Field(None, description="the judge's own reason for changing "
                                     "its scores, where it gave one")
    sample: Judgement

    @property
    def changed_mind(self) -> bool:
        return self.scores_after is not None and self.scores_after != self.scores_before


class MindChange(BaseModel):
    """A judge that revised its scores in a round, and why."""

    judge: int
    round: int
    before: list[float]
    after: list[float]
    reason: str | None = None
    accepted: list[str] = Field(default_factory=list, description="fixes it accepted then")
    rejected: list[str] = Field(default_factory=list)


class DebateResult(BaseModel):
    """Everything a debate did: openings, fixes, every round's reviews, and the final vote."""

    judges: list[str] = Field(description="each judge's label and model")
    openings: list[Verdict]
    fixes: list[Fix] = Field(default_factory=list)
    rounds: list[list[DebateTurn]] = Field(default_factory=list)
    final: list[Judgement] = Field(default_factory=list, description="each voting judge's last "
                                   "valid sample (sample_index = judge index)")
    scores: list[float | None]
    best: int | None = None
    tie: bool = False
    voting: str = "sum"
    mind_changes: list[MindChange] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)

    @property
    def accepted_fixes(self) -> list[Fix]:
        return [f for f in self.fixes if f.accepted]

    def mean_scores(self) -> list[float | None]:
        """Each response's mean score over the voting judges (the 1-10 scale)."""
        out: list[float | None] = []
        for i in range(len(self.scores)):
            vals = [jd.scores[i] for jd in self.final if jd.scores is not None]
            out.append(sum(vals) / len(vals) if vals else None)
        return out


# --------------------------------------------------------------------------------------------
# The review format: a JudgingFormat, so the Sampler's rules apply to debate replies too
# --------------------------------------------------------------------------------------------
class _Position(BaseModel):
    """What the debate prompt shows of one judge: its criteria, critiques, scores and fixes."""

    label: str
    principles: list[dict[str, Any]]
    critiques: list[dict[str, Any]]

    def texts(self) -> list[str]:
        out = [str(p["name"]) + str(p["description"]) for p in self.principles]
        for c in self.critiques:
            out.append(str(c["analysis"]))
            out += [str(f["text"]) for f in c["fixes"]]
        return out


class ReviewFormat(JudgingFormat):
    """One judge's review in one debate round. The context (positions, fixes to answer, last
    replies) is bound at construction; `parse` reads the review strictly."""

    name = "debate"
    rates_with_meta = False

    def __init__(self, *, me: _Position, others: list[_Position], review: list[dict[str, Any]],
                 replies: list[dict[str, Any]], template: str = DEBATE_TEMPLATE,
                 template_dir: str | Path | None = None, system: str | None = None) -> None:
        super().__init__(template=template, template_dir=template_dir, system=system)
        self.me = me
        self.others = others
        self.review = review
        self.replies = replies
        self.fix_ids = [str(f["id"]) for f in review]

    def _texts(self) -> list[str]:
        out = self.me.texts() + [t for p in self.others for t in p.texts()]
        out += [str(f["text"]) for f in self.review]
        for r in self.replies:
            out += [str(a["reason"]) for a in r["answers"]] + [str(r["score_change"])]
        return out

    def messages(self, query: str | Sequence[Message], shown: Sequence[str], *, tag: str,
                 hint_best: int | None = None, reference: str | None = None) -> list[Message]:
        # The judges' texts are fenced too, and a judge may echo the tag of its own GRM prompt
        # (the item's tag): the debate prompt's tag is computed over everything it fences.
        own_tag = fence_tag(query, [*shown, *self._texts()], reference)
        text = render(self.template, self.template_dir, messages=as_messages(query),
                      responses=list(shown), tag=own_tag, me=self.me.label,
                      own=self.me.model_dump(), others=[p.model_dump() for p in self.others],
                      replies=self.replies, review=self.review, reference=reference)
        return self._wrap(text)

    def parse(self, text: str, n_responses: int) -> ParsedJudgement:
        return ParsedJudgement(scores=parse_review(text, n_responses, self.fix_ids).scores)

    def parse_reask(self, answer: str, reply: str, n_responses: int) -> ParsedJudgement:
        """The scores line from the reply alone (the re-ask asks for nothing else); the fix
        answers, which the re-ask does not ask again, from the first answer."""
        scores = parse_scores(reply, n_responses)
        parse_review(answer.rstrip() + "\n" + reply, n_responses, self.fix_ids)
        return ParsedJudgement(scores=scores)

    def output_grammar(self, n_responses: int, max_tokens: int | None = None) -> str | None:
        # Under a token budget, the reason lines share most of it, so the scores line fits.
        reason = 300
        if max_tokens is not None:
            share = max_tokens * CHARS_PER_TOKEN * 0.7 / (len(self.fix_ids) + 1)
            reason = int(min(300, max(24, share)))
        return review_grammar(n_responses, self.fix_ids, reason)

    def final_line_grammar(self, n_responses: int) -> str:
        return scores_line_grammar(n_responses)

    def final_line_example(self, n_responses: int) -> str:
        return "Scores: \\boxed{" + ", ".join(["x"] * n_responses) + "}"

    def _fingerprint_material(self) -> str:
        return json.dumps([super()._fingerprint_material(), self.fix_ids])


# --------------------------------------------------------------------------------------------
# The debate
# --------------------------------------------------------------------------------------------
def check_judges(judges: Sequence[Judge]) -> None:
    """ValueError unless there is a judge and every judge's format suggests fixes."""
    if not judges:
        raise ValueError("a debate needs at least one judge")
    for i, judge in enumerate(judges):
        fmt = judge.format
        if not isinstance(fmt, GRMFormat) or not fmt.fixes:
            raise ValueError(f"judge {judge_label(i)} ({judge.model}) does not suggest fixes: "
                             "build it with Judge(..., fixes=True)")


def _first_valid(verdict: Verdict) -> Judgement | None:
    return next((s for s in verdict.samples if s.valid), None)


def _positions_and_fixes(openings: list[Verdict]) -> tuple[
        dict[int, Judgement], list[Fix], dict[int, dict[tuple[int, int], str]]]:
    """Each judge's position (its first valid sample; a judge without one sits out), every
    fix with its id in judge order, and per judge the id of its k-th fix for response i."""
    samples: dict[int, Judgement] = {}
    fixes: list[Fix] = []
    fix_ids: dict[int, dict[tuple[int, int], str]] = {}
    for j, verdict in enumerate(openings):
        sample = _first_valid(verdict)
        if sample is None or sample.scores is None:
            continue
        samples[j] = sample
        fix_ids[j] = {}
        for i, c in enumerate(sample.critiques):
            for k, text in enumerate(c.fixes):
                fix = Fix(id=f"F{len(fixes) + 1}", judge=j, response=i, text=text)
                fixes.append(fix)
                fix_ids[j][(i, k)] = fix.id
    return samples, fixes, fix_ids


def _percent(weight: float) -> int:
    return round(weight * 100)


def _position(label: str, sample: Judgement, scores: list[float],
              fix_ids: dict[tuple[int, int], str]) -> _Position:
    """A judge's position: `fix_ids[(response, k)]` names its k-th fix for a response."""
    critiques = []
    for i, c in enumerate(sample.critiques):
        critiques.append({"response": i + 1, "score": f"{scores[i]:g}",
                          "analysis": c.analysis.strip() or "(no analysis)",
                          "fixes": [{"id": fix_ids[(i, k)], "text": t}
                                    for k, t in enumerate(c.fixes)]})
    principles = [{"name": p.name, "weight": _percent(p.weight), "description": p.description}
                  for p in sample.principles]
    return _Position(label=label, principles=principles, critiques=critiques)


async def adebate(query: str | Sequence[Message], responses: Sequence[str],
                  judges: Sequence[Judge], *, rounds: int = 1,
                  voting: VotingMethod | str = VotingMethod.SUM,
                  tie_rule: TieRule | str = TieRule.STRICT, seed: int = 0,
                  reference: str | None = None) -> DebateResult:
    """Debate `responses` to `query` among `judges` for `rounds` rounds (see the module doc).

    Args:
      judges: Judge objects whose format suggests fixes (`Judge(..., fixes=True)`): different
        models, or one model with different seeds (and a temperature) or rubrics.
      rounds: review rounds after the openings (0: openings only, every fix stands).
      voting, tie_rule, seed: the vote over the judges' last samples (`judgekit.aggregate`).
      reference: a reference answer, shown (fenced) in the openings and the reviews.
    """
    responses = list(responses)
    if not responses:
        raise ValueError("at least one response is needed")
    if rounds < 0:
        raise ValueError(f"rounds must be at least 0, got {rounds}")
    check_judges(judges)
    n = len(responses)
    labels = [judge_label(i) for i in range(len(judges))]
    openings = list(await asyncio.gather(*(j.ascore(query, responses, 1, reference=reference)
                                           for j in judges)))
    usage = Usage.total(v.usage for v in openings)

    samples, fixes, fix_ids = _positions_and_fixes(openings)
    scores: dict[int, list[float]] = {j: list(s.scores or []) for j, s in samples.items()}
    last: dict[int, Judgement] = dict(samples)
    answers: dict[str, dict[int, bool]] = {f.id: {} for f in fixes}
    history: list[list[DebateTurn]] = []
    debating = len(samples) >= 2
    for r in range(1, rounds + 1 if debating else 1):
        positions = {j: _position(labels[j], samples[j], scores[j], fix_ids[j]) for j in samples}
        replies = _replies(history[-1], labels) if history else {}
        turns = await asyncio.gather(*(
            _review(judges[j], query, responses, r, j, positions, fixes, replies, scores[j],
                    reference) for j in samples))
        for turn in turns:
            usage = usage + turn.sample.usage
            if turn.scores_after is None:
                continue
            scores[turn.judge] = list(turn.scores_after)
            last[turn.judge] = turn.sample
            for a in turn.answers:
                answers[a.fix][turn.judge] = a.accept
        history.append(list(turns))

    for fix in fixes:
        given = answers[fix.id]
        fix.accepted_by = sorted(j for j, ok in given.items() if ok)
        fix.rejected_by = sorted(j for j, ok in given.items() if not ok)
        fix.accepted = len(fix.accepted_by) > len(fix.rejected_by) if history else True

    final = [last[j].model_copy(update={"sample_index": j}) for j in sorted(last)]
    result = aggregate(final, n, voting=voting, tie_rule=tie_rule, seed=seed)
    return DebateResult(
        judges=[f"{labels[i]}: {j.model}" for i, j in enumerate(judges)], openings=openings,
        fixes=fixes, rounds=history, final=final, scores=result.scores, best=result.best,
        tie=result.tie, voting=VotingMethod(voting).value, mind_changes=_mind_changes(history),
        usage=usage)


def debate(query: str | Sequence[Message], responses: Sequence[str], judges: Sequence[Judge],
           **kwargs: Any) -> DebateResult:
    """Sync twin of `adebate`; safe inside Jupyter."""
    return run_sync(adebate(query, responses, judges, **kwargs))


def _replies(turns: list[DebateTurn], labels: list[str]) -> dict[int, dict[str, Any]]:
    """Each judge's readable review of the last round, as the next prompt shows it."""
    out: dict[int, dict[str, Any]] = {}
    for t in turns:
        if t.scores_after is None:
            continue
        out[t.judge] = {"label": labels[t.judge], "score_change": t.score_change or "none",
                        "answers": [{"fix": a.fix, "verdict": "accept" if a.accept else "reject",
                                     "reason": a.reason} for a in t.answers]}
    return out


async def _review(judge: Judge, query: str | Sequence[Message], responses: list[str],
                  round_no: int, me: int, positions: dict[int, _Position], fixes: list[Fix],
                  replies: dict[int, dict[str, Any]], before: list[float],
                  reference: str | None) -> DebateTurn:
    """One judge's review in one round, through the judge's backend and the Sampler."""
    review = [{"id": f.id, "by": judge_label(f.judge), "response": f.response + 1,
               "text": f.text} for f in fixes if f.judge != me]
    fmt = ReviewFormat(me=positions[me], others=[p for j, p in positions.items() if j != me],
                       review=review, replies=[r for j, r in replies.items() if j != me],
                       template_dir=judge.format.template_dir, system=judge.format.system)
    pipe = judge.pipeline
    sampler = pipe.sampler.with_format(fmt)  # the judge's backend, grammar use and re-asks
    item_seed = pipe.item_seed(query, responses) + round_no
    (sample,) = await sampler.sample(query, responses, k=1, seed=item_seed,
                                     config=pipe.sample_config(1, item_seed),
                                     reference=reference)
    turn = DebateTurn(round=round_no, judge=me, reviewed=fmt.fix_ids, scores_before=before,
                      sample=sample)
    if not sample.valid or sample.scores is None:
        return turn
    try:
        parsed = parse_review(sample.raw_text, len(responses), fmt.fix_ids)
    except ParseError as exc:  # pragma: no cover - the sampler already parsed this text
        sample.error = str(exc)
        return turn
    turn.answers = [FixAnswer(fix=f, accept=ok, reason=why)
                    for f, (ok, why) in parsed.answers.items()]
    turn.scores_after = list(sample.scores)
    turn.score_change = parsed.score_change
    return turn


def _mind_changes(history: list[list[DebateTurn]]) -> list[MindChange]:
    out = []
    for turns in history:
        for t in turns:
            if t.changed_mind and t.scores_after is not None:
                out.append(MindChange(
                    judge=t.judge, round=t.round, before=t.scores_before, after=t.scores_after,
                    reason=t.score_change, accepted=[a.fix for a in t.answers if a.accept],
                    rejected=[a.fix for a in t.answers if not a.accept]))
    return out


__all__ = [
    "DebateResult",
    "DebateTurn",
    "Fix",
    "FixAnswer",
    "MindChange",
    "ReviewFormat",
    "adebate",
    "check_judges",
    "debate",
    "judge_label",
]
