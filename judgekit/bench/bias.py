"""Swap and length probes: judge the same items in their order and reversed, keeping lengths.

`arun_bias` is what `judgekit bench bias` runs: the benchmark runner twice into
`<out_dir>/forward` and `<out_dir>/reverse` (the runner's `reverse=True`), over items whose
metadata records each response's length, so the runs carry what the length probe needs. The
metrics (`metrics.first_position_wins`, `length_bias`, `sample_agreement`,
`paired_position_consistency`) and the report's bias section (`report.bias_frame`, plot
`plots.plot_bias`) read the two run directories like any other runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judgekit.bench.datasets import load_dataset
from judgekit.bench.items import BenchItem
from judgekit.bench.metrics import LENGTHS_KEY
from judgekit.bench.runner import BenchScorer, RunResult, RunSpec, arun

PARTS = ("forward", "reverse")


def with_lengths(items: Sequence[BenchItem]) -> list[BenchItem]:
    """Copies whose metadata records each response's length in characters (dataset order)."""
    return [it.model_copy(update={"metadata": {**it.metadata,
                                               LENGTHS_KEY: [len(r) for r in it.responses]}})
            for it in items]


def bias_dirs(out_dir: str | os.PathLike[str]) -> list[Path]:
    """The forward and reverse run directories under `out_dir`."""
    return [Path(out_dir) / part for part in PARTS]


async def arun_bias(spec: RunSpec, scorer: BenchScorer) -> list[RunResult]:
    """Run `spec`'s items (all of a dataset; its `subset`/`limit` select as `arun` does)
    forward into `<out_dir>/forward` and reversed into `<out_dir>/reverse`; resumable like any
    run. Returns both runs' results."""
    items = spec.items if spec.items is not None else load_dataset(
        spec.dataset, subset=spec.subset, limit=spec.limit, data_dir=spec.data_dir,
        stratify=spec.stratify)
    results = []
    for path in bias_dirs(spec.out_dir):
        part = spec.model_copy(update={"items": with_lengths(items), "out_dir": path,
                                       "reverse": path.name == "reverse"})
        results.append(await arun(part, scorer))
    return results


def run_bias(items: Sequence[BenchItem] | RunSpec, scorer: BenchScorer,
             **fields: Any) -> list[RunResult]:
    """Sync twin of `arun_bias` (also inside Jupyter): a RunSpec, or items with the RunSpec's
    fields as keywords."""
    from judgekit.runtime import run_sync

    spec = items if isinstance(items, RunSpec) else RunSpec.of(items, **fields)
    return run_sync(arun_bias(spec, scorer))
