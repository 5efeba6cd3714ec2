"""RMB: helpfulness and harmlessness pairs, and best-of-N sets."""

from __future__ import annotations

from pathlib import Path

from judgekit.bench.datasets.base import read_json, records, row_context
from judgekit.bench.datasets.registry import register
from judgekit.bench.items import BenchItem, Label, place_best
from judgekit.bench.messages import as_conversation


def _rmb_subset(kind: str, category_path: str) -> tuple[str, str]:
    parts = category_path.split("/")
    rest = parts[1:] if parts and parts[0].endswith("_set") else parts
    goal = rest[0] if rest else ""
    return f"{kind}/" + "/".join(rest), goal


@register("rmb", description="RMB helpfulness/harmlessness: 14543 pairs + 3786 best-of-N sets",
          marker="rmb/BoN_set", expected=14543 + 3786, license="not stated", shipped=False,
          kind="pairwise+bon")
def load_rmb(root: Path) -> list[BenchItem]:
    """Pairwise items (subset `pairwise/<goal>/<category>`) and best-of-N items (subset
    `bon/<goal>/<category>`: all responses in one list, label = the best's index)."""
    items: list[BenchItem] = []
    for path in sorted((root / "rmb" / "Pairwise_set").rglob("*.json")):
        where = str(path.relative_to(root))
        for n, row in records(read_json(path), where):
            with row_context(f"{where} row {n}"):
                subset, goal = _rmb_subset("pairwise", row["category_path"])
                item_id = f"rmb-pair-{row['pair_uid']}"
                responses, best = place_best(item_id, row["chosen"]["answer"],
                                             [row["reject"]["answer"]])
                items.append(BenchItem(
                    id=item_id, query=as_conversation(row["conversation_input"]),
                    responses=responses, label=Label.best_of(best), subset=subset,
                    metadata={"kind": "pairwise", "goal": goal,
                              "category_path": row["category_path"],
                              "chosen_model": row["chosen"].get("llm_name"),
                              "rejected_model": row["reject"].get("llm_name")},
                ))
    for path in sorted((root / "rmb" / "BoN_set").rglob("*.json")):
        where = str(path.relative_to(root))
        for n, row in records(read_json(path), where):
            with row_context(f"{where} row {n}"):
                subset, goal = _rmb_subset("bon", row["category_path"])
                item_id = f"rmb-bon-{row['bon_uid']}"
                losers = [x["answer"] for x in row["loser_list"]]
                responses, best = place_best(item_id, row["bon_best"]["answer"], losers)
                items.append(BenchItem(
                    id=item_id, query=as_conversation(row["conversation_input"]),
                    responses=responses, label=Label.best_of(best), subset=subset,
                    metadata={"kind": "bon", "goal": goal,
                              "category_path": row["category_path"],
                              "best_model": row["bon_best"].get("llm_name")},
                ))
    return items
