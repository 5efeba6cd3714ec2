"""The dataset registry: benchmark name -> loader of `BenchItem`s, and where the files are.

One module per benchmark (`judgebench`, `llmbar`, `rmbench`, `rmb`, `realmistake`, `xstest`,
`hhh`); each loader is registered with its metadata by `registry.register`. Where files are
looked up is `roots` (shipped data first, then `--data-dir` / `$JUDGEKIT_DATA_DIR` /
`../shared/data`); subset patterns and limits are `selection`.

Item ids are unique within a dataset and stable across loads. Where a source lists the chosen
response first (RM-Bench, RMB, HHH), the gold position is fixed per item by a hash of its id
(`items.stable_position`), so position bias cannot pass for accuracy. Every row of a source
becomes an item (an empty response is a response); a malformed row is a `DatasetError` naming
the file, row and field.
"""

from __future__ import annotations

# isort: off
# Registration order is the order `judgekit bench list` shows.
from judgekit.bench.datasets import judgebench, llmbar, rmbench, rmb, realmistake, xstest, hhh
# isort: on
from judgekit.bench.datasets.base import (
    DatasetError,
    DatasetInfo,
    DatasetKind,
    Loader,
    describe_validation,
    records,
    row_context,
)
from judgekit.bench.datasets.hhh import HHH_FILE, load_hhh, parse_prometheus_prompt
from judgekit.bench.datasets.judgebench import JUDGEBENCH_FILES, judgebench_category, load_judgebench
from judgekit.bench.datasets.llmbar import (
    LLMBAR_CASESTUDY,
    LLMBAR_PROCESSED,
    LLMBAR_SETS,
    load_llmbar,
    load_llmbar_casestudy,
    load_llmbar_processed,
)
from judgekit.bench.datasets.realmistake import (
    REALMISTAKE_MODELS,
    REALMISTAKE_PASSWORD,
    REALMISTAKE_TASKS,
    REALMISTAKE_ZIP,
    load_realmistake,
    read_encrypted_zip_member,
)
from judgekit.bench.datasets.registry import (
    dataset_names,
    get_info,
    list_datasets,
    load_dataset,
    locate,
    register,
    register_dataset,
)
from judgekit.bench.datasets.rmb import load_rmb
from judgekit.bench.datasets.rmbench import RMBENCH_FILES, RMBENCH_STYLES, load_rmbench
from judgekit.bench.datasets.roots import (
    ENV_DATA_DIR,
    check_data_dir,
    data_roots,
    default_data_dir,
    find_root,
    repo_root,
    shipped_data_dir,
)
from judgekit.bench.datasets.selection import select, stratified, subset_matches, subsets
from judgekit.bench.datasets.xstest import XSTEST_MODELS, load_xstest, xstest_is_error

BUILTIN_MODULES = (judgebench, llmbar, rmbench, rmb, realmistake, xstest, hhh)

__all__ = [
    "BUILTIN_MODULES",
    "ENV_DATA_DIR",
    "HHH_FILE",
    "JUDGEBENCH_FILES",
    "LLMBAR_CASESTUDY",
    "LLMBAR_PROCESSED",
    "LLMBAR_SETS",
    "REALMISTAKE_MODELS",
    "REALMISTAKE_PASSWORD",
    "REALMISTAKE_TASKS",
    "REALMISTAKE_ZIP",
    "RMBENCH_FILES",
    "RMBENCH_STYLES",
    "XSTEST_MODELS",
    "DatasetError",
    "DatasetInfo",
    "DatasetKind",
    "Loader",
    "check_data_dir",
    "data_roots",
    "dataset_names",
    "default_data_dir",
    "describe_validation",
    "find_root",
    "get_info",
    "judgebench_category",
    "list_datasets",
    "load_dataset",
    "load_hhh",
    "load_judgebench",
    "load_llmbar",
    "load_llmbar_casestudy",
    "load_llmbar_processed",
    "load_realmistake",
    "load_rmb",
    "load_rmbench",
    "load_xstest",
    "locate",
    "parse_prometheus_prompt",
    "read_encrypted_zip_member",
    "records",
    "register",
    "register_dataset",
    "repo_root",
    "row_context",
    "select",
    "shipped_data_dir",
    "stratified",
    "subset_matches",
    "subsets",
    "xstest_is_error",
]
