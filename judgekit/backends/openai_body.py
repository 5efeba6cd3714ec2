"""A chat completion body as judgekit reads it: the one rule for online responses
(`judgekit.backends.openai_backend`) and batch result lines (`judgekit.batch_api.openai`).

Why not the SDK's own `ChatCompletion`: the SDK builds it field by field (`construct_type`), at
about the CPU cost of judgekit's prompt rendering and verdict parsing together
(`benchmarks/bench_concurrency.py` prints what it costs a bare loop). These models hold only the
fields judgekit reads; unknown fields are ignored and missing or null ones take their empty
value, as the SDK's lenient reading did, so servers that add or leave out fields read the same.
What judgekit does read must have its type: a message whose content is not text is a malformed
response, never a score-less text the parser would have to guess at.
"""

from __future__ import annotations

import math

from judgekit.backends.base import Completion, TokenLogprob
from judgekit.backends.body import LenientBody


class TopLogprobBody(LenientBody):
    token: str
    logprob: float | None = None


class TokenLogprobBody(LenientBody):
    token: str
    logprob: float
    top_logprobs: list[TopLogprobBody] | None = None


class ChoiceLogprobsBody(LenientBody):
    content: list[TokenLogprobBody] | None = None


class ChoiceMessageBody(LenientBody):
    content: str | None = None


class ChoiceBody(LenientBody):
    message: ChoiceMessageBody | None = None
    finish_reason: str | None = None
    logprobs: ChoiceLogprobsBody | None = None


class PromptTokensDetailsBody(LenientBody):
    cached_tokens: int | None = None


class UsageBody(LenientBody):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetailsBody | None = None

    @property
    def cached_tokens(self) -> int:
        details = self.prompt_tokens_details
        return (details.cached_tokens or 0) if details is not None else 0


class ChatCompletionBody(LenientBody):
    choices: list[ChoiceBody] | None = None
    usage: UsageBody | None = None


def completion_from_choice(choice: ChoiceBody, structured_fallback: str | None = None) -> Completion:
    """One choice as a Completion; a choice without a message, or with null content, is empty
    text (which the parser then records as unparsed, never scores)."""
    text = (choice.message.content if choice.message is not None else None) or ""
    return Completion(text=text, finish_reason=choice.finish_reason,
                      logprobs=_logprobs(choice.logprobs),
                      structured_fallback=structured_fallback)


def _logprobs(lp: ChoiceLogprobsBody | None) -> list[TokenLogprob] | None:
    if lp is None or not lp.content:
        return None
    return [TokenLogprob(token=tok.token, logprob=tok.logprob,
                         top={t.token: t.logprob for t in tok.top_logprobs or []
                              if t.logprob is not None and math.isfinite(t.logprob)})
            for tok in lp.content]
