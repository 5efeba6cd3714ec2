"""RM-Bench (chat, code, safety; the math domain is not available): 3x3 style pairs per prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from judgekit.bench.datasets.base import DatasetError, read_json, records, row_context
from judgekit.bench.datasets.registry import register
from judgekit.bench.items import BenchItem, Label, place_best

RMBENCH_FILES = {
    "chat": "rm-bench/chat_filtered.json",
    "code": "rm-bench/code_filtered.json",
    "safety-refuse": "rm-bench/safety-refuse_filtered.json",
    "safety-response": "rm-bench/safety-response_filtered.json",
}
RMBENCH_STYLES = ("concise", "detailed", "detailed_markdown")


@register("rm-bench", description="RM-Bench chat/code/safety: 798 prompts x 3x3 style pairs "
          "(no math)", marker=RMBENCH_FILES["chat"], expected=798 * 9, license="ODC-BY",
          shipped=False, kind="pairwise")
def load_rmbench(root: Path) -> list[BenchItem]:
    """Each prompt gives 3x3 pairs: chosen style i vs rejected style j (0 concise, 1 detailed
    plain text, 2 detailed markdown), kept in metadata as `chosen_style` / `rejected_style`."""
    items: list[BenchItem] = []
    for subset, rel in RMBENCH_FILES.items():
        for n, row in records(read_json(root / rel), rel):
            with row_context(f"{rel} row {n}"):
                chosen, rejected = row["chosen"], row["rejected"]
                if len(chosen) != 3 or len(rejected) != 3:
                    raise DatasetError(f"RM-Bench {subset} {row['id']} ({rel} row {n}): "
                                       "expected 3 chosen, 3 rejected")
                for i in range(3):
                    for j in range(3):
                        item_id = f"rmbench-{subset}-{row['id']}-c{i}r{j}"
                        responses, best = place_best(item_id, chosen[i], [rejected[j]])
                        meta: dict[str, Any] = {
                            "prompt_id": str(row["id"]), "source_subset": row.get("subset", ""),
                            "domain": "safety" if subset.startswith("safety") else subset,
                            "chosen_style": i, "rejected_style": j,
                        }
                        if "language" in row:
                            meta["language"] = row["language"]
                        items.append(BenchItem(id=item_id, query=row["prompt"],
                                               responses=responses, label=Label.best_of(best),
                                               subset=subset, metadata=meta))
    return items
