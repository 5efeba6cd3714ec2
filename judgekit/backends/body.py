"""What the providers' body models (`openai_body`, `anthropic_body`) share: the lenient model
base, the two ways a body arrives (JSON text online, a parsed object in a batch result), and the
one-line error of a body judgekit cannot read."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class LenientBody(BaseModel):
    """A provider's body, or a part of it: the fields judgekit reads, unknown ones ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class MalformedBody(ValueError):
    """A body that is not JSON, or holds a field judgekit reads with the wrong type; the message
    is one line naming the first offending field, never the body's text."""


Body = TypeVar("Body", bound=LenientBody)


def read_json(model: type[Body], raw: bytes | str) -> Body:
    """The body of an online response, as the server sent it (JSON text)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _malformed(exc) from None


def read_parsed(model: type[Body], body: object) -> Body:
    """The body of a batch result, already parsed from its JSON line."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _malformed(exc) from None


def _malformed(exc: ValidationError) -> MalformedBody:
    """The MalformedBody of a body that failed validation: its first bad field, and how many."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return MalformedBody(f"{where}: {first['msg']} ({exc.error_count()} error(s))")
