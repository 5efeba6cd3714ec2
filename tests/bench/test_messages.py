"""The one message normaliser the loaders share (it defers to the judge's `as_messages`)."""

from __future__ import annotations

import pytest

from judgekit.bench.messages import as_conversation, as_query
from judgekit.prompts import as_messages


def test_turns_become_role_content_strings() -> None:
    turns = [{"role": "user", "content": "hi", "language": "en"},
             {"role": "assistant", "content": 3}, {"role": "user", "content": ""}]
    out = as_conversation(turns)
    assert out == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "3"},
                   {"role": "user", "content": ""}]
    assert out == as_messages(out)
    assert as_query("plain") == "plain" and as_query(turns) == out


@pytest.mark.parametrize(("turns", "message"), [
    ([], "the conversation is empty"),
    ("not a list", None),
    ({"role": "user"}, "must be a list"),
    ([{"role": "user", "content": "a"}, "b"], "message 1 is not an object"),
    ([{"content": "a"}], "message 0 has no 'role'"),
    ([{"role": "user", "content": None}], "message 0 has no 'content'"),
])
def test_bad_conversations_name_the_turn(turns: object, message: str | None) -> None:
    if message is None:  # a string is a query, not a conversation
        assert as_query(turns) == "not a list"
        return
    with pytest.raises(ValueError, match=message):
        as_conversation(turns)
