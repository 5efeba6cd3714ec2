"""LLMBar: Natural and the four adversarial sets (= RewardBench's chat-hard `llmbar-*`), the
LLMBar-processed human-preference sets (FairEval, LLMEval^2, MT-Bench) and the case studies."""

from __future__ import annotations

from pathlib import Path

from judgekit.bench.datasets.base import DatasetError, read_json, records, row_context
from judgekit.bench.datasets.registry import register
from judgekit.bench.items import BenchItem, Label

LLMBAR_SETS = {
    "llmbar-natural": "llmbar/LLMBar/Natural",
    "llmbar-adver-neighbor": "llmbar/LLMBar/Adversarial/Neighbor",
    "llmbar-adver-GPTInst": "llmbar/LLMBar/Adversarial/GPTInst",
    "llmbar-adver-GPTOut": "llmbar/LLMBar/Adversarial/GPTOut",
    "llmbar-adver-manual": "llmbar/LLMBar/Adversarial/Manual",
}
LLMBAR_PROCESSED = {
    "faireval": "llmbar/Processed/FairEval",
    "llmeval2": "llmbar/Processed/LLMEval^2",
    "mt-bench-human": "llmbar/Processed/MT-Bench",
}
LLMBAR_CASESTUDY = {
    "constraint": "llmbar/CaseStudy/Constraint",
    "negation": "llmbar/CaseStudy/Negation",
    "normal": "llmbar/CaseStudy/Normal",
    "base-9": "llmbar/CaseStudy/Base_9",
    "base-10": "llmbar/CaseStudy/Base_10",
}


def _llmbar_folders(root: Path, folders: dict[str, str], prefix: str) -> list[BenchItem]:
    """Items of `{input, output_1, output_2, label}` files; label 1 or 2 is the better output.
    An empty output is kept: it is a response like any other (LLMEval^2 has one)."""
    items: list[BenchItem] = []
    for subset, rel in folders.items():
        where = f"{rel}/dataset.json"
        for i, row in records(read_json(root / rel / "dataset.json"), where):
            with row_context(f"{where} row {i}"):
                raw = row["label"]
                try:
                    label = int(raw)
                except (TypeError, ValueError):
                    label = None
                if label not in (1, 2):
                    raise DatasetError(f"{where} row {i}: field 'label' is {raw!r}, not 1 or 2")
                items.append(BenchItem(
                    id=f"{prefix}{subset}-{i}",
                    query=row["input"],
                    responses=[row["output_1"], row["output_2"]],
                    label=Label.best_of(label - 1),
                    subset=subset,
                    metadata={"source_index": i},
                ))
    return items


@register("llmbar", description="LLMBar Natural + 4 adversarial sets (= RewardBench llmbar-*)",
          marker=LLMBAR_SETS["llmbar-natural"], expected=419, license="MIT", shipped=True,
          kind="pairwise")
def load_llmbar(root: Path) -> list[BenchItem]:
    return _llmbar_folders(root, LLMBAR_SETS, "")


@register("llmbar-processed", description="FairEval, LLMEval^2, MT-Bench human pairs "
          "(LLMBar-processed)", marker=LLMBAR_PROCESSED["faireval"], expected=466, license="MIT",
          shipped=True, kind="pairwise")
def load_llmbar_processed(root: Path) -> list[BenchItem]:
    return _llmbar_folders(root, LLMBAR_PROCESSED, "llmbar-processed-")


@register("llmbar-casestudy", description="LLMBar case-study sets (constraint, negation, "
          "base-9/10)", marker=LLMBAR_CASESTUDY["constraint"], expected=315, license="MIT",
          shipped=True, kind="pairwise")
def load_llmbar_casestudy(root: Path) -> list[BenchItem]:
    return _llmbar_folders(root, LLMBAR_CASESTUDY, "llmbar-casestudy-")
