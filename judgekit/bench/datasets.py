"""The dataset registry: benchmark name -> loader of `BenchItem`s, and where the files are.

Where data is looked up, dataset by dataset (the first folder that holds the dataset's files wins):

1. the data shipped in this repository (`data/` at the top of a checkout: LLMBar, JudgeBench
   and HHH, whose licences allow redistribution);
2. the data directory: the `data_dir` argument (`--data-dir`), else the environment variable
   `JUDGEKIT_DATA_DIR`, else `../shared/data` next to the repository or the current directory.

Item ids are unique within a dataset and stable across loads. Where a source lists the chosen
response first (RM-Bench, RMB, HHH), the gold position is fixed per item by a hash of its id
(`items.stable_position`), so position bias cannot pass for accuracy.
"""

from __future__ import annotations

import ast
import csv
import fnmatch
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from judgekit.bench.items import BenchItem, Label, place_best
from judgekit.errors import JudgekitError
from judgekit.schema import Message

ENV_DATA_DIR = "JUDGEKIT_DATA_DIR"
REALMISTAKE_PASSWORD = b"open-realmistake"  # published by the authors in their README


class DatasetError(JudgekitError, ValueError):
    """An unknown dataset or subset, or dataset files that are missing or malformed."""


Loader = Callable[[Path], list[BenchItem]]


@dataclass(frozen=True)
class DatasetInfo:
    """One registered benchmark. `marker` is the file or folder (relative to a data root) whose
    presence says the dataset is there; `expected` is the item count SOURCES.md gives."""

    name: str
    description: str
    marker: str
    loader: Loader
    expected: int
    license: str
    shipped: bool
    kind: str  # "pairwise", "pairwise+bon", "binary"


# --------------------------------------------------------------------------------------------
# Data roots
# --------------------------------------------------------------------------------------------
def repo_root() -> Path:
    """The checkout this package lives in (the parent of the `judgekit` package)."""
    return Path(__file__).resolve().parent.parent.parent


def shipped_data_dir() -> Path:
    """`judgekit/bench_data` inside an installed wheel (when packaged there), else the
    checkout's top-level `data/`."""
    packaged = Path(__file__).resolve().parent.parent / "bench_data"
    return packaged if packaged.is_dir() else repo_root() / "data"


def default_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """`data_dir`, else $JUDGEKIT_DATA_DIR, else ../shared/data beside the repo or cwd, if any."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    for base in (repo_root(), Path.cwd()):
        cand = base.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return None


def data_roots(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for dataset files, in order: shipped data, then the data dir."""
    roots = [shipped_data_dir()]
    extra = default_data_dir(data_dir)
    if extra is not None and extra.resolve() != roots[0].resolve():
        roots.append(extra)
    return roots


def locate(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The data root that holds dataset `name`, or None."""
    info = get_info(name)
    for root in data_roots(data_dir):
        if (root / info.marker).exists():
            return root
    return None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _messages(conversation: Sequence[dict[str, Any]]) -> list[Message]:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in conversation]


# --------------------------------------------------------------------------------------------
# JudgeBench
# --------------------------------------------------------------------------------------------
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


def load_judgebench(root: Path) -> list[BenchItem]:
    items: list[BenchItem] = []
    for split, rel in JUDGEBENCH_FILES.items():
        for row in _read_jsonl(root / rel):
            label = row["label"]
            if label not in ("A>B", "B>A"):
                raise DatasetError(f"JudgeBench pair {row['pair_id']}: unexpected label {label!r}")
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


# --------------------------------------------------------------------------------------------
# LLMBar (+ processed FairEval / LLMEval^2 / MT-Bench, + case study)
# --------------------------------------------------------------------------------------------
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
    items: list[BenchItem] = []
    for subset, rel in folders.items():
        data = _read_json(root / rel / "dataset.json")
        for i, row in enumerate(data):
            label = int(row["label"])
            if label not in (1, 2):
                raise DatasetError(f"{rel} item {i}: label {label!r} is not 1 or 2")
            items.append(BenchItem(
                id=f"{prefix}{subset}-{i}",
                query=row["input"],
                responses=[row["output_1"], row["output_2"]],
                label=Label.best_of(label - 1),
                subset=subset,
                metadata={"source_index": i},
            ))
    return items


def load_llmbar(root: Path) -> list[BenchItem]:
    return _llmbar_folders(root, LLMBAR_SETS, "")


def load_llmbar_processed(root: Path) -> list[BenchItem]:
    return _llmbar_folders(root, LLMBAR_PROCESSED, "llmbar-processed-")


def load_llmbar_casestudy(root: Path) -> list[BenchItem]:
    return _llmbar_folders(root, LLMBAR_CASESTUDY, "llmbar-casestudy-")


# --------------------------------------------------------------------------------------------
# RM-Bench
# --------------------------------------------------------------------------------------------
RMBENCH_FILES = {
    "chat": "rm-bench/chat_filtered.json",
    "code": "rm-bench/code_filtered.json",
    "safety-refuse": "rm-bench/safety-refuse_filtered.json",
    "safety-response": "rm-bench/safety-response_filtered.json",
}
RMBENCH_STYLES = ("concise", "detailed", "detailed_markdown")


def load_rmbench(root: Path) -> list[BenchItem]:
    """Each prompt gives 3x3 pairs: chosen style i vs rejected style j (0 concise, 1 detailed
    plain text, 2 detailed markdown), kept in metadata as `chosen_style` / `rejected_style`."""
    items: list[BenchItem] = []
    for subset, rel in RMBENCH_FILES.items():
        for row in _read_json(root / rel):
            chosen, rejected = row["chosen"], row["rejected"]
            if len(chosen) != 3 or len(rejected) != 3:
                raise DatasetError(f"RM-Bench {subset} {row['id']}: expected 3 chosen, 3 rejected")
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
                    items.append(BenchItem(id=item_id, query=row["prompt"], responses=responses,
                                           label=Label.best_of(best), subset=subset,
                                           metadata=meta))
    return items


# --------------------------------------------------------------------------------------------
# RMB
# --------------------------------------------------------------------------------------------
def _rmb_subset(kind: str, category_path: str) -> tuple[str, str]:
    parts = category_path.split("/")
    rest = parts[1:] if parts and parts[0].endswith("_set") else parts
    goal = rest[0] if rest else ""
    return f"{kind}/" + "/".join(rest), goal


def load_rmb(root: Path) -> list[BenchItem]:
    """Pairwise items (subset `pairwise/<goal>/<category>`) and best-of-N items (subset
    `bon/<goal>/<category>`: all responses in one list, label = the best's index)."""
    items: list[BenchItem] = []
    for path in sorted((root / "rmb" / "Pairwise_set").rglob("*.json")):
        for row in _read_json(path):
            subset, goal = _rmb_subset("pairwise", row["category_path"])
            item_id = f"rmb-pair-{row['pair_uid']}"
            responses, best = place_best(item_id, row["chosen"]["answer"],
                                         [row["reject"]["answer"]])
            items.append(BenchItem(
                id=item_id, query=_messages(row["conversation_input"]), responses=responses,
                label=Label.best_of(best), subset=subset,
                metadata={"kind": "pairwise", "goal": goal,
                          "category_path": row["category_path"],
                          "chosen_model": row["chosen"].get("llm_name"),
                          "rejected_model": row["reject"].get("llm_name")},
            ))
    for path in sorted((root / "rmb" / "BoN_set").rglob("*.json")):
        for row in _read_json(path):
            subset, goal = _rmb_subset("bon", row["category_path"])
            item_id = f"rmb-bon-{row['bon_uid']}"
            losers = [x["answer"] for x in row["loser_list"]]
            responses, best = place_best(item_id, row["bon_best"]["answer"], losers)
            items.append(BenchItem(
                id=item_id, query=_messages(row["conversation_input"]), responses=responses,
                label=Label.best_of(best), subset=subset,
                metadata={"kind": "bon", "goal": goal, "category_path": row["category_path"],
                          "best_model": row["bon_best"].get("llm_name")},
            ))
    return items


# --------------------------------------------------------------------------------------------
# ReaLMistake (password-protected zip, read in memory: the plain text never touches the disk)
# --------------------------------------------------------------------------------------------
REALMISTAKE_ZIP = "realmistake/data.zip"
REALMISTAKE_TASKS = ("math_word_problem_generation", "finegrained_fact_verification",
                     "answerability_classification")
REALMISTAKE_MODELS = ("gpt-4-0613", "Llama-2-70b-chat-hf")


def _literal(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def read_encrypted_zip_member(path: Path, member: str, password: bytes) -> bytes:
    """One member of a ZipCrypto-encrypted zip, decrypted in memory (stdlib `zipfile`).

    AES-encrypted members (compression method 99) are not supported by the standard library:
    they raise DatasetError naming the `pyzipper` package.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(member)
            if info.compress_type == 99:
                raise DatasetError(f"{path}: {member} is AES-encrypted; install `pyzipper`")
            return zf.read(info, pwd=password)
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError) as exc:
        raise DatasetError(f"cannot read {member} from {path}: {exc}") from exc


def load_realmistake(root: Path) -> list[BenchItem]:
    """900 single-response items; label `error=True` when the human label is "error"."""
    path = root / REALMISTAKE_ZIP
    items: list[BenchItem] = []
    for task in REALMISTAKE_TASKS:
        for model in REALMISTAKE_MODELS:
            raw = read_encrypted_zip_member(path, f"data/{task}/{model}.jsonl",
                                            REALMISTAKE_PASSWORD)
            for n, line in enumerate(io.StringIO(raw.decode("utf-8"))):
                if not line.strip():
                    continue
                row = json.loads(line)
                meta = _literal(row.get("metadata"))
                source_id = meta.get("id") if isinstance(meta, dict) else None
                label = row["error_label"]
                if label not in ("error", "no_error"):
                    raise DatasetError(f"ReaLMistake {task}/{model} line {n}: label {label!r}")
                cats = _literal(row.get("error_categories"))
                items.append(BenchItem(
                    id=f"realmistake-{task}-{model}-{n}",
                    query=row["input"],
                    responses=[row["llm_response"]],
                    label=Label.binary(error=label == "error"),
                    subset=f"{task}/{model}",
                    # The human explanation is left out: results files must not carry dataset text.
                    metadata={"task": task, "response_model": model, "source_id": source_id,
                              "error_categories": cats if isinstance(cats, list) else []},
                ))
    return items


# --------------------------------------------------------------------------------------------
# XSTest
# --------------------------------------------------------------------------------------------
XSTEST_MODELS = ("gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct")


def xstest_is_error(prompt_label: str, final_label: str) -> bool:
    """The gold flag: a good response fully complies with a safe prompt and fully refuses an
    unsafe one. A partial refusal counts as an error either way (it neither helps fully with a
    safe request nor cleanly declines an unsafe one)."""
    if prompt_label == "safe":
        return final_label != "1_full_compliance"
    return final_label != "2_full_refusal"


def load_xstest(root: Path) -> list[BenchItem]:
    """450 prompts x 5 models' completions = 2250 single-response items (subset model/safe|unsafe)."""
    prompts = {row["id"]: row for row in _read_csv(root / "xstest" / "xstest_prompts.csv")}
    items: list[BenchItem] = []
    for model in XSTEST_MODELS:
        rows = _read_csv(root / "xstest" / "model_completions"
                         / f"xstest_v2_completions_{model}.csv")
        for row in rows:
            pid = row["id"].removeprefix("v2-")
            prompt = prompts.get(pid)
            if prompt is None:
                raise DatasetError(f"XSTest {model}: completion {row['id']} has no prompt")
            final = row["final_label"]
            items.append(BenchItem(
                id=f"xstest-{model}-{pid}",
                query=row["prompt"],
                responses=[row["completion"]],
                label=Label.binary(error=xstest_is_error(prompt["label"], final)),
                subset=f"{model}/{prompt['label']}",
                metadata={"model": model, "type": prompt["type"], "prompt_label": prompt["label"],
                          "final_label": final, "focus": prompt.get("focus", "")},
            ))
    return items


# --------------------------------------------------------------------------------------------
# HHH alignment (Prometheus-formatted)
# --------------------------------------------------------------------------------------------
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


def load_hhh(root: Path) -> list[BenchItem]:
    items: list[BenchItem] = []
    counters: dict[str, int] = {}
    for row in _read_json(root / HHH_FILE):
        source = row["source"]
        n = counters.get(source, 0)
        counters[source] = n + 1
        q1, chosen = parse_prometheus_prompt(row["chosen_instruction"])
        q2, rejected = parse_prometheus_prompt(row["rejected_instruction"])
        if q1 != q2:
            raise DatasetError(f"HHH {source} item {n}: chosen and rejected prompts differ")
        item_id = f"hhh-{source}-{n}"
        responses, best = place_best(item_id, chosen, [rejected])
        items.append(BenchItem(id=item_id, query=q1, responses=responses,
                               label=Label.best_of(best), subset=source,
                               metadata={"source_index": n}))
    return items


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> None:
    """Add (or replace) a benchmark in the registry."""
    _REGISTRY[info.name] = info
    _load_cached.cache_clear()


for _info in (
    DatasetInfo("judgebench", "JudgeBench gpt (350) + claude (270) pairs; objective correctness",
                JUDGEBENCH_FILES["gpt"], load_judgebench, 620, "MIT", True, "pairwise"),
    DatasetInfo("llmbar", "LLMBar Natural + 4 adversarial sets (= RewardBench llmbar-*)",
                LLMBAR_SETS["llmbar-natural"], load_llmbar, 419, "MIT", True, "pairwise"),
    DatasetInfo("llmbar-processed", "FairEval, LLMEval^2, MT-Bench human pairs (LLMBar-processed)",
                LLMBAR_PROCESSED["faireval"], load_llmbar_processed, 466, "MIT", True, "pairwise"),
    DatasetInfo("llmbar-casestudy", "LLMBar case-study sets (constraint, negation, base-9/10)",
                LLMBAR_CASESTUDY["constraint"], load_llmbar_casestudy, 315, "MIT", True,
                "pairwise"),
    DatasetInfo("rm-bench", "RM-Bench chat/code/safety: 798 prompts x 3x3 style pairs (no math)",
                RMBENCH_FILES["chat"], load_rmbench, 798 * 9, "ODC-BY", False, "pairwise"),
    DatasetInfo("rmb", "RMB helpfulness/harmlessness: 14543 pairs + 3786 best-of-N sets",
                "rmb/BoN_set", load_rmb, 14543 + 3786, "not stated", False, "pairwise+bon"),
    DatasetInfo("realmistake", "ReaLMistake: 900 single responses, human error labels",
                REALMISTAKE_ZIP, load_realmistake, 900, "CC BY-SA 4.0", False, "binary"),
    DatasetInfo("xstest", "XSTest v2: 450 prompts x 5 models' completions, refusal labels",
                "xstest/xstest_prompts.csv", load_xstest, 2250,
                "prompts CC-BY-4.0; completions vendor terms", False, "binary"),
    DatasetInfo("hhh", "Anthropic HHH alignment (Prometheus copy): 221 pairs",
                HHH_FILE, load_hhh, 221, "Apache-2.0", True, "pairwise"),
):
    _REGISTRY[_info.name] = _info


def dataset_names() -> list[str]:
    return list(_REGISTRY)


def get_info(name: str) -> DatasetInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise DatasetError(f"unknown dataset {name!r} (known: {known})") from None


@lru_cache(maxsize=8)
def _load_cached(name: str, root: str) -> tuple[BenchItem, ...]:
    items = get_info(name).loader(Path(root))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DatasetError(f"dataset {name}: duplicate item id {item.id}")
        seen.add(item.id)
    return tuple(items)


def subset_matches(subset: str, pattern: str) -> bool:
    """A subset matches a pattern when equal, below it (`pairwise` matches `pairwise/Harm...`), or
    matching it as a glob (`*/safe`). Comma-separated patterns match any."""
    for pat in (p.strip() for p in pattern.split(",")):
        if not pat:
            continue
        if subset == pat or subset.startswith(pat.rstrip("/") + "/") \
                or fnmatch.fnmatchcase(subset, pat):
            return True
    return False


def stratified(items: Sequence[BenchItem], n: int) -> list[BenchItem]:
    """`n` items spread evenly over subsets: round-robin across subsets (sorted by name), each
    subset in loader order. Deterministic; the result keeps loader order."""
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.subset, []).append(i)
    chosen: list[int] = []
    queues = [groups[k] for k in sorted(groups)]
    depth = 0
    while len(chosen) < n and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(chosen) < n:
                chosen.append(q[depth])
        depth += 1
    return [items[i] for i in sorted(chosen)]


def select(items: Iterable[BenchItem], subset: str | None = None,
           limit: int | None = None, stratify: bool = False) -> list[BenchItem]:
    """Filter by subset pattern, then keep `limit` items: the first ones (loader order), or with
    `stratify` an even spread over subsets (`stratified`)."""
    out = [it for it in items if subset is None or subset_matches(it.subset, subset)]
    if subset is not None and not out:
        raise DatasetError(f"no items in subset {subset!r}")
    if limit is None:
        return out
    return stratified(out, max(0, limit)) if stratify else out[: max(0, limit)]


def load_dataset(name: str, subset: str | None = None, limit: int | None = None,
                 data_dir: str | os.PathLike[str] | None = None,
                 stratify: bool = False) -> list[BenchItem]:
    """The items of a registered benchmark, optionally one subset (pattern) and N items (the
    first N, or an even spread over subsets with `stratify`)."""
    get_info(name)
    root = locate(name, data_dir)
    if root is None:
        searched = ", ".join(str(r) for r in data_roots(data_dir))
        raise DatasetError(f"dataset {name!r} not found (searched {searched}); "
                           f"pass --data-dir or set {ENV_DATA_DIR}")
    return select(_load_cached(name, str(root.resolve())), subset, limit, stratify)


def subsets(items: Iterable[BenchItem]) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[it.subset] = out.get(it.subset, 0) + 1
    return out


def list_datasets(data_dir: str | os.PathLike[str] | None = None,
                  count: bool = True) -> list[dict[str, Any]]:
    """One row per registered benchmark: name, item count (None when not found), subsets,
    expected count (SOURCES.md), where it was found, licence, whether the repo ships it."""
    rows: list[dict[str, Any]] = []
    for name, info in _REGISTRY.items():
        root = locate(name, data_dir)
        n_items: int | None = None
        n_subsets: int | None = None
        if root is not None and count:
            items = _load_cached(name, str(root.resolve()))
            n_items, n_subsets = len(items), len(subsets(items))
        rows.append({"name": name, "items": n_items, "expected": info.expected,
                     "subsets": n_subsets, "kind": info.kind,
                     "location": str(root) if root is not None else None,
                     "license": info.license, "shipped": info.shipped,
                     "description": info.description})
    return rows
