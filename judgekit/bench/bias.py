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

from judgekit.bench.items import BenchItem
from judgekit.bench.metrics import LENGTHS_KEY
from judgekit.bench.runner import BatchJudge, RunResult, arun

PARTS = ("forward", "reverse")


def with_lengths(items: Sequence[BenchItem]) -> list[BenchItem]:
    """Copies whose metadata records each response's length in characters (dataset order)."""
    return [it.model_copy(update={"metadata": {**it.metadata,
                                               LENGTHS_KEY: [len(r) for r in it.responses]}})
            for it in items]


def bias_dirs(out_dir: str | os.PathLike[str]) -> list[Path]:
    """The forward and reverse run directories under `out_dir`."""
    return [Path(out_dir) / part for part in PARTS]


async def arun_bias(items: Sequence[BenchItem], judge: BatchJudge, *,
                    out_dir: str | os.PathLike[str], **run_kwargs: Any) -> list[RunResult]:
    """Run `items` (all of a dataset; `subset`/`limit` in `run_kwargs` select as `arun` does)
    forward and reversed; resumable like any run. Returns both runs' results."""
    results = []
    for path in bias_dirs(out_dir):
        results.append(await arun(with_lengths(items), judge, out_dir=path,
                                  reverse=path.name == "reverse", **run_kwargs))
    return results


def run_bias(items: Sequence[BenchItem], judge: BatchJudge, **kwargs: Any) -> list[RunResult]:
    """Sync twin of `arun_bias` (also inside Jupyter)."""
    from judgekit.runtime import run_sync

    return run_sync(arun_bias(items, judge, **kwargs))
