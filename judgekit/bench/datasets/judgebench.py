"""JudgeBench (gpt and claude splits): pairs labelled by objective correctness."""

from __future__ import annotations

from pathlib import Path

from judgekit.bench.datasets.base import DatasetError, read_jsonl, row_context
from judgekit.bench.datasets.registry import register
from judgekit.bench.items import BenchItem, Label

JUDGEBENCH_FILES = {
    "gpt": "judgebench/dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl",
    "claude": "judgebench/dataset=judgebench,response_model=claude-3-5-sonnet-20240620.jsonl",
}


def judgebench_category(source: str) -> str:
    """JudgeBench's four categories from its `source` field."""
    if source.startswith("mmlu-pro"):
        return "knowledge"
    if source.startswith("livecodebench"):
        return "coding"
    if source.startswith("livebench-math"):
        return "math"
    if source.startswith("livebench-reasoning"):
        return "reasoning"
    return source


@register("judgebench", description="JudgeBench gpt (350) + claude (270) pairs; objective "
          "correctness", marker=JUDGEBENCH_FILES["gpt"], expected=620, license="MIT",
          shipped=True, kind="pairwise")
def load_judgebench(root: Path) -> list[BenchItem]:
    items: list[BenchItem] = []
    for split, rel in JUDGEBENCH_FILES.items():
        for n, row in enumerate(read_jsonl(root / rel)):
            with row_context(f"{rel} row {n}"):
                label = row["label"]
                if label not in ("A>B", "B>A"):
                    raise DatasetError(f"JudgeBench pair {row['pair_id']} ({rel} row {n}): "
                                       f"unexpected label {label!r}")
                items.append(BenchItem(
                    id=f"judgebench-{split}-{row['pair_id']}",
                    query=row["question"],
                    responses=[row["response_A"], row["response_B"]],
                    label=Label.best_of(0 if label == "A>B" else 1),
                    subset=f"{split}/{judgebench_category(row['source'])}",
                    metadata={"source": row["source"], "original_id": str(row["original_id"]),
                              "response_model": row["response_model"], "split": split},
                ))
    return items
