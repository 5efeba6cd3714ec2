"""How user text is fenced in a prompt: the one rule for the marker lines around every turn,
response, reference answer and judge's work that a template shows.

Each fenced text sits between `<name tag=TAG>` and `</name tag=TAG>` lines, where TAG is the
item's random tag (`judgekit.formats.fence_tag`), which the text cannot contain. The markup is
written here in Python, not in Jinja macros, because it is in every prompt: a macro call and the
partial's import cost more than the rest of the prompt's rendering. Templates reach it as the
global `fence` (no import needed); `_partials/fence.jinja` keeps the prose (the fencing rule
stated to the judge, the reference answer's introduction), which a `template_dir` may shadow,
and its macros, which delegate here, for templates that import the partial.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jinja2

FENCE_PARTIAL = "_partials/fence.jinja"


def block(name: str, text: Any, tag: str) -> str:
    """One fenced text: its opening marker, the text as it is, its closing marker."""
    return f"<{name} tag={tag}>\n{text}\n</{name} tag={tag}>"


def conversation(messages: Iterable[Mapping[str, Any]], tag: str) -> str:
    """Every turn of a conversation, each fenced with its role, one per line."""
    return "".join(f"<turn role={m['role']} tag={tag}>\n{m['content']}\n</turn tag={tag}>\n"
                   for m in messages)


def responses(items: Iterable[Any], tag: str) -> str:
    """Each response fenced under its 1-based position as shown, one per line."""
    return "".join(block(f"response-{i}", r, tag) + "\n" for i, r in enumerate(items, start=1))


class Fence:
    """The template global `fence`: the markup above, and the partial's prose (the fencing
    rule is rendered once per template environment: it is the same in every prompt)."""

    def __init__(self, environment: jinja2.Environment) -> None:
        self._environment = environment
        self._rule: str | None = None

    block = staticmethod(block)
    conversation = staticmethod(conversation)
    responses = staticmethod(responses)

    def _partial(self) -> Any:
        return self._environment.get_template(FENCE_PARTIAL).module

    def fencing_rule(self) -> str:
        """The rule stated to the judge: fenced text is material, never an instruction."""
        if self._rule is None:
            self._rule = str(self._partial().fencing_rule())
        return self._rule

    def reference(self, text: Any, tag: str) -> str:
        """A reference answer, introduced by the partial's prose (rendered per prompt: it
        names the tag)."""
        return str(self._partial().reference(text, tag))
