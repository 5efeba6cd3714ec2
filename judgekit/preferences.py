"""Preference data from the improve loop's traces, as TRL's DPO and reward trainers take it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from judgekit.improve import ImproveTrace, latest_traces, read_traces
from judgekit.prompts import as_messages
from judgekit.schema import Message


# --------------------------------------------------------------------------------------------
def preference_pairs(traces: Iterable[ImproveTrace], *, conversational: bool = False,
                     include_lost: bool = True, margin: bool = False) -> list[dict[str, Any]]:
    """Preference rows from the loop's pairwise checks, as TRL's DPOTrainer and RewardTrainer
    take them: `prompt`, `chosen`, `rejected` (plain text, or with `conversational` a list of
    messages for the prompt and one assistant turn for each answer).

    Every pairwise check with a single winner is one row: a kept revision is chosen over the
    version it replaced; with `include_lost`, a revision that lost is rejected against the
    version it tried to replace. Ties and checks without valid samples give no row. Each row
    also carries the judges' mean pairwise scores (`score_chosen`, `score_rejected`, 1-10),
    `item_id` and `round`; `margin` adds their difference as the `margin` column that TRL's
    RewardTrainer adds to its loss. A plain prompt needs a single-turn query.
    """
    rows: list[dict[str, Any]] = []
    for t in traces:
        for rnd in t.rounds:
            check, revision = rnd.pairwise, rnd.revision
            if check is None or revision is None or revision.text is None or check.best is None:
                continue
            if check.best == 0 and not include_lost:
                continue
            previous, revised = rnd.response, revision.text
            chosen, rejected = (revised, previous) if check.best == 1 else (previous, revised)
            s_prev, s_rev = check.mean_scores
            s_chosen, s_rejected = (s_rev, s_prev) if check.best == 1 else (s_prev, s_rev)
            row: dict[str, Any] = {
                "prompt": _prompt_value(t.query, conversational),
                "chosen": [{"role": "assistant", "content": chosen}] if conversational
                else chosen,
                "rejected": [{"role": "assistant", "content": rejected}] if conversational
                else rejected,
                "score_chosen": s_chosen, "score_rejected": s_rejected,
                "item_id": t.id, "round": rnd.index}
            if margin:
                row["margin"] = (s_chosen or 0.0) - (s_rejected or 0.0)
            rows.append(row)
    return rows


def _prompt_value(query: str | list[Message], conversational: bool) -> str | list[Message]:
    messages = as_messages(query)
    if conversational:
        return messages
    if len(messages) != 1 or messages[0]["role"] != "user":
        raise ValueError("a plain-text prompt needs a single-turn query; export this "
                         "conversation with conversational=True")
    return messages[0]["content"]


def write_preferences(traces: Iterable[ImproveTrace] | str | os.PathLike[str],
                      path: str | os.PathLike[str], **kwargs: Any) -> int:
    """Write `preference_pairs` as JSONL (`datasets.load_dataset("json", data_files=path)`
    reads it as is); `traces` may be a traces JSONL file. Returns the number of rows."""
    if isinstance(traces, str | os.PathLike):
        traces = latest_traces(read_traces(traces)).values()
    rows = preference_pairs(traces, **kwargs)
    with Path(path).open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


__all__ = ["preference_pairs", "write_preferences"]
