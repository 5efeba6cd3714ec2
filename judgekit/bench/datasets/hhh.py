"""Anthropic HHH alignment, from the Prometheus-formatted copy: 221 pairs."""

from __future__ import annotations

from pathlib import Path

from judgekit.bench.datasets.base import DatasetError, read_json, records, row_context
from judgekit.bench.datasets.registry import register
from judgekit.bench.items import BenchItem, Label, place_best

HHH_FILE = "hhh-alignment/hhh_alignment_eval.json"
_HHH_INSTRUCTION = "###The instruction to evaluate:\n"
_HHH_RESPONSE = "\n\n###Response to evaluate:\n"
_HHH_RUBRIC = "\n\n###Score Rubrics:"


def parse_prometheus_prompt(text: str) -> tuple[str, str]:
    """(instruction, response) out of a Prometheus absolute-grading prompt."""
    try:
        after = text.split(_HHH_INSTRUCTION, 1)[1]
        instruction, rest = after.split(_HHH_RESPONSE, 1)
        response = rest.split(_HHH_RUBRIC, 1)[0]
    except IndexError as exc:
        raise DatasetError("not a Prometheus absolute-grading prompt") from exc
    return instruction.strip(), response.strip()


@register("hhh", description="Anthropic HHH alignment (Prometheus copy): 221 pairs",
          marker=HHH_FILE, expected=221, license="Apache-2.0", shipped=True, kind="pairwise")
def load_hhh(root: Path) -> list[BenchItem]:
    items: list[BenchItem] = []
    counters: dict[str, int] = {}
    for row_n, row in records(read_json(root / HHH_FILE), HHH_FILE):
        where = f"{HHH_FILE} row {row_n}"
        with row_context(where):
            source = row["source"]
            n = counters.get(source, 0)
            counters[source] = n + 1
            try:
                q1, chosen = parse_prometheus_prompt(row["chosen_instruction"])
                q2, rejected = parse_prometheus_prompt(row["rejected_instruction"])
            except DatasetError as exc:
                raise DatasetError(f"{where}: {exc}") from exc
            if q1 != q2:
                raise DatasetError(f"HHH {source} item {n} ({where}): chosen and rejected "
                                   "prompts differ")
            item_id = f"hhh-{source}-{n}"
            responses, best = place_best(item_id, chosen, [rejected])
            items.append(BenchItem(id=item_id, query=q1, responses=responses,
                                   label=Label.best_of(best), subset=source,
                                   metadata={"source_index": n}))
    return items
