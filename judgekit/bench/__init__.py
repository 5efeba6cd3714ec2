"""Benchmarks for judges: datasets, a resumable runner, pure metrics, reports and plots.

    from judgekit.judge import Judge
    from judgekit.bench import render_report, run

    run("llmbar", Judge("openai:gpt-4o-mini"), out_dir="runs/llmbar-k4", samples=4)
    # the same as: await arun(RunSpec(dataset="llmbar", out_dir=..., samples=4), judge)
    print(render_report(["runs/llmbar-k4"]))  # or: judgekit bench report runs/llmbar-k4

Heavy pieces (pandas, matplotlib) are imported only when a report or plot is made.
"""

from judgekit.bench.baseline import PairwiseBaselineJudge
from judgekit.bench.bias import arun_bias, run_bias, with_lengths
from judgekit.bench.datasets import (
    DatasetError,
    DatasetInfo,
    dataset_names,
    list_datasets,
    load_dataset,
    register_dataset,
)
from judgekit.bench.generic import (
    FieldMap,
    LoadResult,
    load_csv,
    load_dataframe,
    load_file,
    load_jsonl,
    read_file,
)
from judgekit.bench.items import BenchItem, Label, LabelKind
from judgekit.bench.metrics import TieRule
from judgekit.bench.report import (
    benchmark_frame,
    bias_frame,
    load_run,
    load_runs,
    paired_frame,
    published_frame,
    render_report,
    report_frames,
    scaling_frame,
    subset_frame,
    summary_frame,
)
from judgekit.bench.runner import (
    BenchRunError,
    ResultRecord,
    RunInfo,
    RunResult,
    RunSpec,
    arun,
    data_mapping,
    make_judge,
    read_results,
    read_run_info,
    run,
)

__all__ = [
    "BenchItem",
    "BenchRunError",
    "DatasetError",
    "DatasetInfo",
    "FieldMap",
    "Label",
    "LabelKind",
    "LoadResult",
    "PairwiseBaselineJudge",
    "ResultRecord",
    "RunInfo",
    "RunResult",
    "RunSpec",
    "TieRule",
    "arun",
    "arun_bias",
    "benchmark_frame",
    "bias_frame",
    "data_mapping",
    "dataset_names",
    "list_datasets",
    "load_csv",
    "load_dataframe",
    "load_dataset",
    "load_file",
    "load_jsonl",
    "load_run",
    "load_runs",
    "make_judge",
    "paired_frame",
    "published_frame",
    "read_file",
    "read_results",
    "read_run_info",
    "register_dataset",
    "render_report",
    "report_frames",
    "run",
    "run_bias",
    "scaling_frame",
    "subset_frame",
    "summary_frame",
    "with_lengths",
]
