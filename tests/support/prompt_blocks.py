"""Reading rendered prompts in tests: the fenced response blocks, in the order shown."""

from __future__ import annotations

import hashlib
import re
from typing import Any

CLASHING_TAG = "0123456789abcdef"


def make_first_tag_candidate(monkeypatch: Any, tag: str = CLASHING_TAG) -> None:
    """Make `fence_tag`'s first candidate (the hash of the item with counter 0) be `tag`, so a
    test can put `tag` into a text and see the candidate skipped; later candidates hash as usual."""
    real = hashlib.sha256

    class _First:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def hexdigest(self) -> str:
            if self.data.endswith((0).to_bytes(4, "big")):
                return tag + "0" * 48
            return real(self.data).hexdigest()

    monkeypatch.setattr(hashlib, "sha256", _First)

_ITEM_TAG = re.compile(r"#### Responses(?: to Score)? \(tag=([0-9a-f]{16})\) ####")


def item_tag(prompt: str) -> str:
    """The per-prompt fence tag of the item part (not the worked examples' tag)."""
    m = _ITEM_TAG.search(prompt)
    assert m, "no fenced responses section in the prompt"
    return m.group(1)


def response_blocks(prompt: str) -> list[tuple[int, str]]:
    """(1-based position, text) of each response fenced with the prompt's own tag."""
    tag = re.escape(item_tag(prompt))
    return [(int(m.group(1)), m.group(2)) for m in re.finditer(
        r"^<response-(\d+) tag=" + tag + r">\n(.*?)\n</response-\1 tag=" + tag + r">$",
        prompt, re.DOTALL | re.MULTILINE)]


def shown_responses(prompt: str) -> list[str]:
    return [text for _, text in response_blocks(prompt)]


def position_of(prompt: str, marker: str) -> int:
    """1-based position of the first fenced response containing `marker`."""
    return next(i for i, body in response_blocks(prompt) if marker in body)
