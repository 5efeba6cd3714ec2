"""Reading one label value: the label formats, tie values and the majority of annotators.

The label column is read according to `label_format`:

==============  ================================================================================
index0          0-based index of the best response
index1          1-based index of the best response (LLMBar style)
letter          "A", "B", "C" ... (the best response's letter)
preference      "A>B", "B>A", "A>>B", "A=B"
ranks           a list of ranks per response, 1 = best (equal ranks are ties)
best_text       the text of the best response (must equal one of the responses)
binary_error    truthy = the single response has an error
binary_ok       truthy = the single response is good (no error)
auto            strings as `preference`/`letter`/tie words, lists as `ranks`, integers as
                0-based if any label in the file is 0, else 1-based
==============  ================================================================================

Ties: in every format but the binary ones, `ranks` and `best_text`, a tie word (`TIE_WORDS`:
"tie", "draw", "equal", "A=B", ...) is a tie label, and so is any value listed in
`FieldMap.tie_labels` (for index formats whose tie is a number: PandaLM's 0 in 1-based labels,
Auto-J's 2 in 0-based ones).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Literal

from judgekit.bench.items import Label, LabelKind

LabelFormat = Literal["auto", "index0", "index1", "letter", "preference", "ranks", "best_text",
                      "binary_error", "binary_ok"]

TIE_WORDS = ("tie", "draw", "equal", "same", "=", "a=b", "b=a", "both", "none")
_TRUE = {"1", "true", "yes", "y", "t", "error"}
_FALSE = {"0", "false", "no", "n", "f", "no_error", "ok", "correct"}


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def as_list(value: Any) -> Any:
    """A list from a list, a tuple, a numpy array or a JSON list string; else unchanged."""
    if isinstance(value, list | tuple):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, str):
        out = value.tolist()
        return out if isinstance(out, list) else value
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, list) else value
    return value


def int_like(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return int_like(value.item())
    return None


def _norm(value: Any) -> str:
    """A label value as compared with tie values: integers as digits, text lower-cased."""
    as_int = int_like(value)
    return str(as_int) if as_int is not None else str(value).strip().lower()


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"cannot read {value!r} as a yes/no flag")


def _letter_index(text: str) -> int | None:
    t = text.strip().upper()
    for prefix in ("RESPONSE ", "OUTPUT ", "ASSISTANT "):
        t = t.removeprefix(prefix)
    if len(t) == 1 and "A" <= t <= "Z":
        return ord(t) - ord("A")
    return None


def is_tie_value(value: Any, tie_labels: Iterable[Any] = ()) -> bool:
    """Whether a label value says "tie": a tie word, or one of `tie_labels`."""
    norm = _norm(value)
    return norm in TIE_WORDS or norm in {_norm(t) for t in tie_labels}


def parse_label(value: Any, responses: list[str], fmt: LabelFormat, *,
                int_base: int = 0, tie_labels: Sequence[Any] = ()) -> Label:
    """One label value -> Label. `int_base` is used by `auto` for integer labels; `tie_labels`
    are extra values that mean a tie (every format but ranks, best_text and the binary ones)."""
    n = len(responses)
    if is_missing(value):
        raise ValueError("the label is missing")
    if fmt in ("binary_error", "binary_ok"):
        flag = _truthy(value)
        return Label.binary(error=flag if fmt == "binary_error" else not flag)
    if fmt == "best_text":
        text = str(value)
        if text not in responses:
            raise ValueError("the best_text label equals none of the responses")
        return Label.best_of(responses.index(text))
    if fmt == "ranks" or (fmt == "auto" and isinstance(as_list(value), list)):
        ranks = as_list(value)
        if not isinstance(ranks, list):
            raise ValueError(f"ranks must be a list, got {value!r}")
        ints = [int_like(r) for r in ranks]
        if any(r is None for r in ints):
            raise ValueError(f"ranks must be integers, got {value!r}")
        clean = [r for r in ints if r is not None]
        if len(set(clean)) == 1 and n > 1:
            return Label.tie()
        return Label.ranking(clean)
    if is_tie_value(value, tie_labels):
        return Label.tie()
    if fmt in ("index0", "index1"):
        idx = int_like(value)
        if idx is None:
            raise ValueError(f"label {value!r} is not an integer index")
        best = idx - (1 if fmt == "index1" else 0)
        if best < 0:
            raise ValueError(f"label {value!r} is not a {'1' if fmt == 'index1' else '0'}-based "
                             "index")
        return Label.best_of(best)
    text = str(value).strip()
    if fmt in ("preference", "auto"):
        if ">" in text:
            left = _letter_index(text.split(">")[0])
            if left is not None:
                return Label.best_of(left)
        if "=" in text:
            return Label.tie()
    if fmt in ("letter", "auto"):
        li = _letter_index(text)
        if li is not None:
            return Label.best_of(li)
    if fmt == "auto":
        idx = int_like(value)
        if idx is not None and idx - int_base >= 0:
            return Label.best_of(idx - int_base)
    raise ValueError(f"cannot read label {value!r} as {fmt}")


def _vote_key(label: Label) -> Hashable:
    if label.kind is LabelKind.BEST:
        return ("best", label.best)
    if label.kind is LabelKind.TIE:
        return ("tie",)
    if label.kind is LabelKind.BINARY:
        return ("binary", label.error)
    raise ValueError("a majority over annotators needs best, tie or binary labels, not rankings")


def majority_label(labels: Sequence[Label]) -> Label:
    """The majority of several annotators' labels. A majority tie (the top count shared by two
    or more answers) is a tie; for binary labels an even split is an error."""
    if not labels:
        raise ValueError("no annotator gave a label")
    counts = Counter(_vote_key(lb) for lb in labels)
    top = max(counts.values())
    winners = [k for k, c in counts.items() if c == top]
    if len(winners) == 1:
        return next(lb for lb in labels if _vote_key(lb) == winners[0])
    if any(lb.kind is LabelKind.BINARY for lb in labels):
        raise ValueError("the annotators split evenly on the error flag")
    return Label.tie()
