"""The one message normaliser of the benchmark and training loaders.

A query is a string, or a conversation: a list of chat turns whose last turn is the query. The
loaders accept turns as dicts with `role` and `content` (any other keys, such as RMB's
`language`, are dropped) and hand the judge plain `{"role", "content"}` string dicts. This
module only checks the turns (naming the bad one, so a loader can name the row); the conversion
itself is the judge's (`judgekit.prompts.as_messages`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from judgekit.prompts import as_messages
from judgekit.schema import Message


def as_conversation(turns: Any) -> list[Message]:
    """A list of `{"role", "content"}` messages from a list of dict-like turns.

    Raises ValueError naming the turn (0-based) and the missing or wrong field, so a loader can
    report the row it came from; an empty conversation is an error too.
    """
    if not isinstance(turns, list | tuple):
        raise ValueError(f"a conversation must be a list of messages, got {type(turns).__name__}")
    if not turns:
        raise ValueError("the conversation is empty")
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            raise ValueError(f"message {i} is not an object with role and content")
        for key in ("role", "content"):
            if key not in turn or turn[key] is None:
                raise ValueError(f"message {i} has no {key!r}")
    # The judge's own rule turns the checked turns into {"role", "content"} strings.
    return as_messages([{"role": t["role"], "content": t["content"]} for t in turns])


def as_query(value: Any) -> str | list[Message]:
    """A query as the judge takes it: a string stays a string, a conversation is normalised."""
    if isinstance(value, str):
        return value
    return as_conversation(value)
