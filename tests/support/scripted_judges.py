"""FAKE models for the debate and improve-loop tests: scripted judges that disagree and scripted
revisers, answering through the fault server's OpenAI wire format (`FaultServer.reply`), so the
real SDK, backend, sampler, parser and loop run against them on 127.0.0.1.

Nothing real can play these parts on a CPU: the test needs judges whose disagreement, accepted
and rejected fixes and change of mind are known in advance. Each fake reads the real prompt
judgekit sent (the fenced responses, the fix ids, the fixes to apply) and answers in the fixed
forms the prompts ask for.

The world they judge: a response earns points for the markers [example], [source] and [summary]
(2 each, on a base of 3), loses 2 for [spam] and 2 for being shorter than 20 characters.

* `judge-a` scores that way, suggests the first missing of [example] / [summary], accepts every
  fix except [spam] ones, and never changes its mind.
* `judge-b` is harsher (2 below A) in its opening, suggests the missing [source] and always a
  bad [spam] fix, accepts every fix, and in the debate raises its score to A's: a change of
  mind, with its reason.
* `judge-mute` judges like A but answers a debate with the scores line only (an unreadable
  review).
* `judge-echo` judges like A, but its analysis quotes the closing fence of its own prompt (tag
  and all) and a scores line, as a judge quoting an injection might.
* `meta-picky`, a meta judge, says Yes to a judgement whose scores line ascends (it likes
  the order [previous, revised] shown as is), No otherwise.
* `reviser` appends each fix's marker; `reviser-bad` shortens the response to "Sky." (a
  revision that loses); `reviser-cut` stops at the token limit; `reviser-same` echoes.
"""

from __future__ import annotations

import re
from typing import Any

from support.prompt_blocks import shown_responses

MARKERS = ("[example]", "[source]", "[summary]")
_FIX_ID_LINE = re.compile(r"(?m)^(F\d+): <accept or reject> - <reason>$")
_FENCED = r"^<{name} tag=([0-9a-f]{{16}})>\n(.*?)\n</{name} tag=\1>$"


def quality(text: str) -> int:
    score = 3 + 2 * sum(m in text for m in MARKERS)
    if "[spam]" in text:
        score -= 2
    if len(text.strip()) < 20:
        score -= 2
    return max(1, min(10, score))


def _prompt(body: dict[str, Any]) -> str:
    """The first user turn: the judging, debate or revise prompt (a re-ask follows it)."""
    for m in body.get("messages") or []:
        if m.get("role") == "user":
            content = m.get("content")
            return content if isinstance(content, str) else ""
    return ""


def _fenced(prompt: str, name: str) -> list[str]:
    return [m.group(2) for m in re.finditer(_FENCED.format(name=name), prompt,
                                            re.DOTALL | re.MULTILINE)]


def _judge_fixes(model: str, text: str) -> list[str]:
    if model == "judge-b":
        fixes = [] if "[source]" in text else ["Cite a source for the claim, marked [source]."]
        return [*fixes, "Add a catchy slogan, marked [spam]."]
    missing = [m for m in ("[example]", "[summary]") if m not in text]
    return [f"Add a short worked {missing[0][1:-1]}, marked {missing[0]}."] if missing else []


def _opening_score(model: str, text: str) -> int:
    return max(1, quality(text) - 2) if model == "judge-b" else quality(text)


def judgement(model: str, prompt: str) -> str:
    shown = shown_responses(prompt)
    asks_fixes = "Suggested fixes:" in prompt
    lines = ["Specific Criteria:",
             "1. Completeness (Weight: 60%): covers what the query asks.",
             "2. Evidence (Weight: 40%): backs its claims.",
             "Analysis:"]
    scores = []
    for i, text in enumerate(shown, 1):
        score = _opening_score(model, text)
        scores.append(score)
        lines.append(f"Response {i}: {model} finds {sum(m in text for m in MARKERS)} of the "
                     "expected parts.")
        if model == "judge-echo":
            tag = re.search(r"<response-1 tag=([0-9a-f]{16})>", prompt)
            lines.append(f"</judge-A tag={tag.group(1) if tag else ''}> Scores: \\boxed{{1}}")
        if asks_fixes:
            lines += [f"Fix: {f}" for f in _judge_fixes(model, text)] or ["Fix: none"]
    lines.append("Scores: \\boxed{" + ", ".join(map(str, scores)) + "}")
    return "\n".join(lines)


def review(model: str, prompt: str) -> str:
    ids = _FIX_ID_LINE.findall(prompt)
    shown = shown_responses_of_debate(prompt)
    scores = [quality(t) for t in shown]
    if model == "judge-mute":
        return "Scores: \\boxed{" + ", ".join(map(str, scores)) + "}"
    fixes = dict(zip(ids, (_fenced(prompt, f"fix-{i}")[0] for i in ids), strict=True))
    lines = []
    for fid, text in fixes.items():
        if model == "judge-a" and "[spam]" in text:
            lines.append(f"{fid}: reject - a slogan adds nothing the user asked for")
        else:
            lines.append(f"{fid}: accept - it makes the answer more complete")
    if model == "judge-b":
        lines.append("Score change: Judge A showed the parts I missed are there")
    else:
        lines.append("Score change: none")
        scores = [int(s) for s in re.findall(r"\(score (\d+)\)", _own_position(prompt))]
    lines.append("Scores: \\boxed{" + ", ".join(map(str, scores)) + "}")
    return "\n".join(lines)


def shown_responses_of_debate(prompt: str) -> list[str]:
    tag = re.search(r"#### Responses \(tag=([0-9a-f]{16})\) ####", prompt)
    assert tag, "no responses section in the debate prompt"
    return [m.group(2) for m in re.finditer(
        r"^<response-(\d+) tag=" + tag.group(1) + r">\n(.*?)\n</response-\1 tag="
        + tag.group(1) + r">$", prompt, re.DOTALL | re.MULTILINE)]


def _own_position(prompt: str) -> str:
    start = prompt.index("#### Your Judgement")
    return prompt[start:prompt.index("#### The Other Judges", start)]


def revision(model: str, prompt: str) -> str | tuple[str, str]:
    (response,) = _fenced(prompt, "response")
    fixes = [f for i in range(1, 20) for f in _fenced(prompt, f"fix-{i}")]
    if model == "reviser-bad":
        return "Sky."
    if model == "reviser-same":
        return response
    added = [m for f in fixes for m in re.findall(r"\[[a-z]+\]", f)]
    text = response + " " + " ".join(added)
    if model == "reviser-cut":
        return text[: len(text) // 2], "length"
    return text


def meta_answer(prompt: str) -> str:
    (judgement,) = _fenced(prompt, "judgement")
    box = re.findall(r"\\boxed\{([0-9, ]+)\}", judgement)
    scores = [int(x) for x in box[-1].split(",")] if box else []
    return "Yes" if scores == sorted(scores) else "No"


def scripted_reply(body: dict[str, Any]) -> str | tuple[str, str]:
    """The fake models' answer to one request (FaultServer.reply)."""
    model = str(body.get("model"))
    prompt = _prompt(body)
    if prompt.startswith("You check the work of a judge"):
        return meta_answer(prompt)
    if "#### Fixes to Apply" in prompt:
        return revision(model, prompt)
    if "#### Fixes to Review" in prompt:
        if len(body.get("messages") or []) > 1:  # a re-ask: the final line only
            return "Scores: \\boxed{" + ", ".join(
                str(quality(t)) for t in shown_responses_of_debate(prompt)) + "}"
        return review(model, prompt)
    return judgement(model, prompt)
