"""An Anthropic message body as judgekit reads it: the one rule for online responses
(`judgekit.backends.anthropic_backend`) and message batch results (`judgekit.batch_api.anthropic`).

As for OpenAI (`judgekit.backends.openai_body`, where the reason is measured): judgekit's own
models of the fields it reads, not the SDK's `Message`, with unknown fields and block types
ignored and missing or null ones empty. What judgekit reads must have its type: a text block
whose text is not a string is a malformed response, not text for the parser.
"""

from __future__ import annotations

import json

from judgekit.backends.body import LenientBody


class BlockBody(LenientBody):
    """One content block: `text` (its text) or `tool_use` (the forced tool call's `input`);
    other types (thinking, server tools) are not part of the answer."""

    type: str
    text: str | None = None
    input: object = None


class MessageUsageBody(LenientBody):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None

    @property
    def prompt_tokens(self) -> int:
        """Every prompt token: Anthropic's `input_tokens` leaves out the cached and the written
        ones, which are prompt tokens too (billed at the cache prices)."""
        return ((self.input_tokens or 0) + (self.cache_read_input_tokens or 0)
                + (self.cache_creation_input_tokens or 0))


class MessageBody(LenientBody):
    content: list[BlockBody] | None = None
    stop_reason: str | None = None
    usage: MessageUsageBody | None = None

    def answer(self) -> tuple[str, bool]:
        """(the answer's text, whether it is a tool call's input): the forced tool call's
        input as JSON when the message has one (a structured answer), else its text blocks."""
        blocks = self.content or []
        tool = next((b for b in blocks if b.type == "tool_use"), None)
        if tool is not None:
            return json.dumps(tool.input, ensure_ascii=False), True
        return "".join(b.text or "" for b in blocks if b.type == "text"), False
