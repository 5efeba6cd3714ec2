"""Reports over stored runs: tables (text, markdown, CSV) and pandas frames. Never calls a model.

Accuracies and rates in the tables are percentages (as the paper prints them); token counts are
per item, cost is USD per item, time is seconds per item. `cached_prompt_share` is the percentage
of all prompt tokens the provider served from its prompt cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judgekit.bench import metrics as m
from judgekit.bench.runner import ResultRecord, RunInfo, read_results, read_run_info

CAVEAT = (
    "Published numbers come from trained judges (DeepSeek-GRM, SPCT-tuned) or from other "
    "prompts and full benchmark versions, so they are context, not targets. The paper found that "
    "self-written principles barely help an untrained judge (GPT-4o, RewardBench Chat Hard "
    "76.1 -> 75.9; [P] Table 1): for a prompt-only judge the comparison that matters is the GRM "
    "prompt vs the plain judge (`--baseline pairwise`) on the same model and items."
)


@dataclass(frozen=True)
class Published:
    """A published reference number (percent)."""

    dataset: str
    metric: str
    system: str
    value: float
    source: str
    note: str = ""


_P2 = "[P] Table 2/10"
PUBLISHED: tuple[Published, ...] = (
    # LLMBar's 419 pairs are 92% of RewardBench Chat Hard (456 = llmbar-* + mt-bench-hard 37).
    Published("llmbar", "accuracy", "DeepSeek-GRM-27B greedy", 78.3, "[P] Table 8",
              "RewardBench Chat Hard"),
    Published("llmbar", "accuracy", "DeepSeek-GRM-27B Voting@32", 81.8, "[P] Table 8",
              "RewardBench Chat Hard"),
    Published("llmbar", "accuracy", "DeepSeek-GRM-27B MetaRM@32", 85.7, "[P] Table 8",
              "RewardBench Chat Hard"),
    Published("llmbar", "accuracy", "LLM-as-a-Judge (Gemma-2-27B, trained) greedy", 69.3,
              "[P] Table 8", "RewardBench Chat Hard"),
    Published("llmbar", "accuracy", "GPT-4o, pointwise, no principles", 76.1, "[P] Table 1",
              "RewardBench Chat Hard"),
    Published("llmbar", "accuracy", "GPT-4o + self-generated principles", 75.9, "[P] Table 1",
              "RewardBench Chat Hard"),
    Published("llmbar", "accuracy", "Gemma-2-27B-it + self-generated principles", 64.0,
              "[P] Table 1", "RewardBench Chat Hard"),
    Published("rmb", "rmb", "DeepSeek-GRM-27B greedy", 69.0, _P2),
    Published("rmb", "rmb", "DeepSeek-GRM-27B Voting@32", 69.7, _P2),
    Published("rmb", "rmb", "DeepSeek-GRM-27B MetaRM@32", 70.3, _P2),
    Published("rmb", "rmb", "LLM-as-a-Judge (Gemma-2-27B, trained)", 64.8, _P2),
    Published("rmb", "rmb", "GPT-4o", 73.8, _P2),
    Published("rmb", "help_bon", "DeepSeek-GRM-27B greedy", 62.3, _P2),
    Published("rmb", "help_pairwise", "DeepSeek-GRM-27B greedy", 80.5, _P2),
    Published("rmb", "harm_bon", "DeepSeek-GRM-27B greedy", 57.0, _P2),
    Published("rmb", "harm_pairwise", "DeepSeek-GRM-27B greedy", 76.1, _P2),
    Published("rmb", "help_bon", "LLM-as-a-Judge (Gemma-2-27B, trained)", 55.8, _P2),
    Published("rmb", "help_pairwise", "LLM-as-a-Judge (Gemma-2-27B, trained)", 78.5, _P2),
    Published("rmb", "harm_bon", "LLM-as-a-Judge (Gemma-2-27B, trained)", 50.8, _P2),
    Published("rmb", "harm_pairwise", "LLM-as-a-Judge (Gemma-2-27B, trained)", 73.9, _P2),
    Published("realmistake", "roc_auc", "DeepSeek-GRM-27B greedy", 72.2, "[P] Table 13"),
    Published("realmistake", "roc_auc", "DeepSeek-GRM-27B Voting@8", 74.4, "[P] Table 13"),
    Published("realmistake", "roc_auc", "GPT-4o-2024-08-06", 74.3, "[P] Table 13"),
    Published("realmistake", "roc_auc", "Gemma-2-27B-it", 65.8, "[P] Table 13"),
    Published("realmistake", "roc_auc", "DeepSeek-V2.5-0905", 69.4, "[P] Table 13"),
    Published("rm-bench", "total", "J1-Llama-70B", 82.7, "[Sky2] via digest 6.3",
              "third-party; full RM-Bench incl. math"),
    Published("judgebench", "accuracy", "J1-Llama-70B", 60.0, "[Sky2] via digest 6.3",
              "third-party; JudgeBench scores both orders"),
)


def published_for(dataset: str) -> list[Published]:
    return [p for p in PUBLISHED if p.dataset == dataset]


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------
@dataclass
class BenchRun:
    path: Path
    info: RunInfo
    records: list[ResultRecord] = field(default_factory=list)
    label: str = ""

    @property
    def k(self) -> int:
        ks = [r.verdict.k for r in self.records if r.verdict is not None]
        return max(ks) if ks else self.info.samples

    @property
    def model(self) -> str:
        for r in self.records:
            if r.verdict is not None and r.verdict.model:
                return r.verdict.model
        return self.info.model or "embedded"


def load_run(path: str | os.PathLike[str]) -> BenchRun:
    p = Path(path)
    return BenchRun(path=p, info=read_run_info(p), records=read_results(p), label=p.name)


def load_runs(paths: Iterable[str | os.PathLike[str]],
              aggregate: str | None = None) -> list[BenchRun]:
    """Runs as stored, or with every Verdict re-voted under another aggregate rule
    (`judgekit.aggregate.rescore`: overall or weighted, from the stored critiques)."""
    runs = [load_run(p) for p in paths]
    if aggregate is not None:
        from judgekit.aggregate import rescore

        for run in runs:
            for rec in run.records:
                if rec.verdict is not None:
                    rec.verdict = rescore(rec.verdict, aggregate)
    names = [r.label for r in runs]
    for r in runs:  # disambiguate equal folder names
        if names.count(r.label) > 1:
            r.label = str(r.path)
    return runs


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 2)


def _rnd(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def run_rules(run: BenchRun) -> dict[str, Any]:
    """The run's own voting method, tie rule and meta keep rule, as its Verdicts record them
    (None where its Verdicts disagree or there are none)."""
    def one(values: set[Any]) -> Any:
        return next(iter(values)) if len(values) == 1 else None

    verdicts = [r.verdict for r in run.records if r.verdict is not None]
    return {"voting": one({v.voting for v in verdicts}),
            "tie_rule": one({v.tie_rule for v in verdicts}),
            "k_meta": one({v.k_meta for v in verdicts})}


def summarize(run: BenchRun) -> dict[str, Any]:
    """One run's headline numbers (percentages for accuracies and rates), all from the stored
    Verdicts under the run's own rules (see `judgekit.bench.metrics`). `judged` items have a
    valid sample; the others `failed`; `accuracy` is over the judged items with a single gold
    best (`accuracy_items` of them), blank when there are none."""
    recs = run.records
    ps = m.parse_stats(recs)
    cost = m.cost_stats(recs)
    kappa = m.human_agreement(recs)
    pos = m.position_consistency(recs)
    n_tie_labels = m.count_tie_labels(recs)
    ties = m.tie_label_agreement(recs)
    acc = m.accuracy(recs)
    rules = run_rules(run)
    return {
        "dataset": run.info.dataset,
        "subset": run.info.subset or "",
        "model": run.model,
        "judge": f"baseline:{run.info.baseline}" if run.info.baseline else "grm",
        "k": run.k,
        "meta": run.info.meta,
        "voting": rules["voting"],
        "tie_rule": rules["tie_rule"],
        "k_meta": rules["k_meta"],
        "items": run.info.n_items,
        "judged": ps["items_judged"],
        "failed": ps["items_failed"],
        "pending": max(0, run.info.n_items - len(recs)),
        "accuracy": _pct(acc.value),
        "accuracy_items": acc.n,
        "tie_labelled": n_tie_labels,
        "agreement_incl_ties": _pct(ties["agreement"]) if n_tie_labels else None,
        "tie_rate": _pct(m.tie_rate(recs)["tie_rate"]),
        "invalid_sample_rate": _pct(ps["invalid_sample_rate"]),
        "samples_meta_unrated": ps["samples_meta_unrated"] if rules["k_meta"] else None,
        "position_consistency": _pct(pos["consistency"]),
        "kappa_vs_human": _rnd(kappa["kappa"], 3),
        "tokens_per_item": _rnd(cost["total_tokens"], 1),
        "cached_prompt_share": _pct(cost["cached_share"]),
        "cost_usd_per_item": _rnd(cost["cost_usd"], 6),
        "seconds_per_item": _rnd(cost["wall_time_s"], 3),
    }


def benchmark_metrics(run: BenchRun) -> dict[str, float | None]:
    """The benchmark's own figures, by the benchmark's definition (percentages), under the
    run's own rules."""
    recs = run.records
    out: dict[str, float | None] = {}
    ds = run.info.dataset
    if any("chosen_style" in r.metadata for r in recs):
        for domain, res in m.rmbench_by_domain(recs).items():
            for key in ("hard", "normal", "easy", "total"):
                out[f"{domain}/{key}"] = _pct(res[key])
        if "average/total" in out:
            out["total"] = out["average/total"]
    if any(r.metadata.get("goal") and r.metadata.get("kind") for r in recs):
        res = m.rmb_scores(recs)
        for key in ("help_bon", "help_pairwise", "harm_bon", "harm_pairwise", "rmb"):
            out[key] = _pct(res[key])
    if any(r.label.kind.value == "binary" for r in recs):
        res = m.binary_scores(recs)
        for key in ("roc_auc", "precision", "recall", "f1", "accuracy"):
            out[key] = _pct(res[key])
        out["n"] = float(res["n"])
    if not out or ds in ("llmbar", "judgebench", "hhh", "llmbar-processed", "llmbar-casestudy"):
        acc = m.accuracy(recs)
        out["accuracy"] = _pct(acc.value)
        out["accuracy_items"] = float(acc.n)
    n_ties = m.count_tie_labels(recs)
    if n_ties:  # human-preference data with ties: accuracy above leaves them out
        ties = m.tie_label_agreement(recs)
        out["tie_labelled_items"] = float(n_ties)
        out["agreement_incl_ties"] = _pct(ties["agreement"])
        out["tie_agreement"] = _pct(ties["tie_agreement"])
    return out


# --------------------------------------------------------------------------------------------
# Frames (the pandas API)
# --------------------------------------------------------------------------------------------
def as_runs(runs: Sequence[BenchRun] | Sequence[str | os.PathLike[str]]) -> list[BenchRun]:
    """Runs given loaded or as directories, as the frames here and the plots (`bench.plots`)
    both take them: one reading of that argument for both."""
    if runs and all(isinstance(r, BenchRun) for r in runs):
        return [r for r in runs if isinstance(r, BenchRun)]
    return load_runs([r for r in runs if not isinstance(r, BenchRun)])


def summary_frame(runs: Sequence[Any]) -> Any:
    """One row per run (index = run label)."""
    import pandas as pd

    rs = as_runs(runs)
    return pd.DataFrame([summarize(r) for r in rs], index=[r.label for r in rs])


def subset_frame(runs: Sequence[Any]) -> Any:
    """Accuracy (percent, the run's tie rule) per subset (rows) and run (columns), plus an
    item-count column per run."""
    import pandas as pd

    rs = as_runs(runs)
    data: dict[str, dict[str, Any]] = {}
    for r in rs:
        for subset, acc in m.accuracy_by_subset(r.records).items():
            if acc.n:
                data.setdefault(r.label, {})[subset] = _pct(acc.value)
                data.setdefault(f"{r.label} n", {})[subset] = acc.n
    return pd.DataFrame(data).sort_index()


def benchmark_frame(runs: Sequence[Any]) -> Any:
    """Benchmark-specific figures (rows `dataset: metric`) per run, with published numbers."""
    import pandas as pd

    rs = as_runs(runs)
    rows: dict[str, dict[str, Any]] = {}
    for r in rs:
        for key, value in benchmark_metrics(r).items():
            rows.setdefault(f"{r.info.dataset}: {key}", {})[r.label] = value
    for name in rows:
        ds, metric = name.split(": ", 1)
        refs = [p for p in published_for(ds) if p.metric == metric]
        grm = [p for p in refs if p.system == "DeepSeek-GRM-27B greedy"]
        plain = [p for p in refs if p.system.startswith("LLM-as-a-Judge")]
        other = [p for p in refs if p not in grm and p not in plain
                 and not p.system.startswith("DeepSeek-GRM")]
        if grm:
            rows[name]["paper: GRM-27B greedy"] = grm[0].value
        if plain:
            rows[name]["paper: LLM-as-a-Judge"] = plain[0].value
        if other:
            rows[name]["other published"] = f"{other[0].system} {other[0].value:g}"
    return pd.DataFrame.from_dict(rows, orient="index")


def published_frame(datasets: Iterable[str] | None = None) -> Any:
    import pandas as pd

    wanted = set(datasets) if datasets is not None else None
    rows = [p.__dict__ for p in PUBLISHED if wanted is None or p.dataset in wanted]
    return pd.DataFrame(rows)


def scaling_frame(runs: Sequence[Any]) -> Any:
    """Accuracy (percent) of Voting@j, and MetaRM@j for meta-guided runs, recomputed from each
    run's stored samples for j = 1..k under the run's own rules (`metrics.scaling_curve`);
    rows j, columns `run` / `run meta`, each with the count of items judged at j (` n`)."""
    import pandas as pd

    rs = as_runs(runs)
    cols: dict[str, dict[int, Any]] = {}
    for r in rs:
        if r.k < 2:
            continue
        curves = [("", False)] + ([(" meta", True)] if m.has_meta_scores(r.records) else [])
        for suffix, meta in curves:
            points = m.scaling_curve(r.records, meta=meta)
            cols[f"{r.label}{suffix}"] = {j: _pct(a.value) for j, a in points}
            cols[f"{r.label}{suffix} n"] = {j: a.n for j, a in points}
    frame = pd.DataFrame(cols)
    frame.index.name = "k"
    return frame


def paired_frame(runs: Sequence[Any]) -> Any:
    """Position consistency between runs of the same dataset shown in opposite orders (one run
    with `reverse=True`): over the shared items decisive in both orders, the share where both
    pick the same response (`items`; `undecided`: shared items tied or failed in either)."""
    import pandas as pd

    rs = as_runs(runs)
    rows: dict[str, dict[str, Any]] = {}
    for a in rs:
        for b in rs:
            if a.info.reverse or not b.info.reverse or a.info.dataset != b.info.dataset:
                continue
            res = m.paired_position_consistency(a.records, b.records)
            if res["items"] or res["undecided"]:
                rows[f"{a.label} vs {b.label}"] = {"items": res["items"],
                                                   "undecided": res["undecided"],
                                                   "consistency": _pct(res["consistency"])}
    return pd.DataFrame.from_dict(rows, orient="index")


def run_lengths(run: BenchRun) -> dict[str, list[int]]:
    """Response lengths (characters, dataset order) by item id, for the length probe: {} when
    the records carry their own (`judgekit bench bias` runs) or the run's dataset is not a
    registered one that loads here."""
    if all(m.LENGTHS_KEY in r.metadata for r in run.records):
        return {}
    from judgekit.bench.datasets import DatasetError, dataset_names, load_dataset

    if run.info.dataset not in dataset_names():
        return {}
    try:
        items = load_dataset(run.info.dataset, subset=run.info.subset)
    except (DatasetError, OSError, ValueError):
        return {}
    return {it.id: [len(r) for r in it.responses] for it in items}


def reverse_twins(runs: Sequence[BenchRun]) -> list[tuple[BenchRun, BenchRun]]:
    """(run, its --reverse twin) pairs: same dataset, subset, judge, model and k."""
    def key(r: BenchRun) -> tuple[Any, ...]:
        return (r.info.dataset, r.info.subset, r.info.baseline, r.model, r.k)

    return [(a, b) for a in runs for b in runs
            if not a.info.reverse and b.info.reverse and key(a) == key(b)]


def bias_summary(records: Sequence[ResultRecord],
                 lengths: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """The bias probes of a set of records (percentages; the length accuracies under the run's
    own tie rule). See `metrics.first_position_wins`, `length_bias`, `sample_agreement`."""
    pos = m.position_consistency(records)
    first = m.first_position_wins(records)
    length = m.length_bias(records, lengths)
    agree = m.sample_agreement(records)
    return {
        "position_consistency": _pct(pos["consistency"]),
        "first_position_win_rate": _pct(first["first_position_win_rate"]),
        "first_position_chance": _pct(first["chance"]),
        "gold_shown_first": _pct(first["gold_shown_first"]),
        "tied_samples": first["ties"],
        "longer_win_rate": _pct(length["longer_win_rate"]),
        "untied_pairs": length["decided"],
        "length_score_corr": _rnd(length["correlation"], 3),
        "acc_longer_wrong": _pct(length["acc_longer_wrong"]),
        "n_longer_wrong": length["n_longer_wrong"],
        "acc_longer_right": _pct(length["acc_longer_right"]),
        "n_longer_right": length["n_longer_right"],
        "sample_agreement": _pct(agree["agreement"]),
        "unanimous_items": _pct(agree["unanimous_rate"]),
    }


@dataclass
class BiasGroup:
    """Records the bias probes are computed over: one run, or a run pooled with its --reverse
    twin (`twin` set: every item seen in both orders, so positions are balanced)."""

    label: str
    records: list[ResultRecord]
    lengths: dict[str, list[int]]
    twin: tuple[BenchRun, BenchRun] | None = None


def bias_groups(runs: Sequence[Any]) -> list[BiasGroup]:
    """One group per run, then one per run and --reverse twin pooled."""
    rs = as_runs(runs)
    lengths = {id(r): run_lengths(r) for r in rs}
    groups = [BiasGroup(r.label, r.records, lengths[id(r)]) for r in rs]
    for a, b in reverse_twins(rs):
        groups.append(BiasGroup(f"{a.label} + {b.label}", [*a.records, *b.records],
                                {**lengths[id(a)], **lengths[id(b)]}, twin=(a, b)))
    return groups


def bias_frame(runs: Sequence[Any]) -> Any:
    """Bias probes per run (columns), plus one column per run and --reverse twin pooled, with
    `reverse_consistency`: over the items decisive in both orders (`reverse_items`), the share
    where the two orders pick the same response. Rows are metrics; an empty frame when nothing
    was measured."""
    import pandas as pd

    cols: dict[str, dict[str, Any]] = {}
    for g in bias_groups(runs):
        row = bias_summary(g.records, g.lengths)
        if g.twin is not None:
            paired = m.paired_position_consistency(g.twin[0].records, g.twin[1].records)
            row = {"reverse_consistency": _pct(paired["consistency"]),
                   "reverse_items": paired["items"], **row}
        cols[g.label] = row
    frame = pd.DataFrame(cols)
    if frame.empty:
        return frame
    counts = {"tied_samples", "n_longer_wrong", "n_longer_right", "untied_pairs",
              "reverse_items"}
    measured = [i for i in frame.index if i not in counts and i != "first_position_chance"]
    if frame.loc[measured].isna().all().all():
        return pd.DataFrame()
    return frame


def report_frames(runs: Sequence[Any]) -> dict[str, Any]:
    """Every table of the report, by section name."""
    rs = as_runs(runs)
    frames = {
        "summary": summary_frame(rs).T,
        "subsets": subset_frame(rs),
        "benchmark": benchmark_frame(rs),
        "scaling": scaling_frame(rs),
        "paired": paired_frame(rs),
        "bias": bias_frame(rs),
    }
    return {k: v for k, v in frames.items() if not v.empty}


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
SECTION_TITLES = {
    "summary": "Runs (accuracies and rates in %, from the stored Verdicts under each run's own "
               "voting method, tie rule and meta keep rule: the live result; judged: items with "
               "a valid sample, failed: without; accuracy over judged items with one gold best "
               "(accuracy_items), leaving tie-labelled items out as the papers do; "
               "agreement_incl_ties counts them)",
    "subsets": "Accuracy per subset (%, the run's tie rule)",
    "benchmark": "Benchmark metrics (%, the run's rules) next to published numbers",
    "scaling": "Accuracy vs k, voting over the first k stored samples under the run's rules "
               "(%; n: items judged at k)",
    "paired": "Position consistency between a run and its --reverse twin (%, over items "
              "decisive in both orders)",
    "bias": "Bias probes (%): position (consistency across orders over items decisive in both, "
            "first-position win rate vs chance), length (the longer response's win rate over "
            "untied pairs, score-length correlation, accuracy where the longer response is "
            "wrong / right), agreement among the k samples",
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:g}" if abs(value) >= 1000 or value == int(value) else f"{value:.4g}"
    return str(value)


def _grid(frame: Any) -> tuple[list[str], list[list[str]]]:
    header = [str(frame.index.name or "")] + [str(c) for c in frame.columns]
    rows = [[str(idx)] + [_cell(v) for v in row] for idx, row in zip(frame.index,
                                                                     frame.itertuples(index=False),
                                                                     strict=True)]
    return header, rows


def format_table(frame: Any) -> str:
    return _format_cells(*_grid(frame), "table")


def format_markdown(frame: Any) -> str:
    return _format_cells(*_grid(frame), "markdown")


def format_csv(frames: dict[str, Any]) -> str:
    """All sections as one long CSV: section,row,column,value."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "row", "column", "value"])
    for section, frame in frames.items():
        for idx, row in zip(frame.index, frame.itertuples(index=False), strict=True):
            for col, value in zip(frame.columns, row, strict=True):
                cell = _cell(value)
                if cell != "":
                    w.writerow([section, idx, col, cell])
    return buf.getvalue()


@dataclass(frozen=True)
class ReportTable:
    """One table of the report as printed cells: what `render_report` writes as text and
    `judgekit view` shows as HTML, so both always show the same numbers."""

    section: str
    title: str
    header: list[str]
    rows: list[list[str]]


def report_tables(runs: Sequence[Any]) -> list[ReportTable]:
    """Every table of the report, in order, then the published reference numbers for the runs'
    datasets; `CAVEAT` goes under them."""
    rs = as_runs(runs)
    tables = [ReportTable(section, SECTION_TITLES.get(section, section), *_grid(frame))
              for section, frame in report_frames(rs).items()]
    pub = published_table(sorted({r.info.dataset for r in rs}))
    return [*tables, pub] if pub is not None else tables


def published_table(datasets: Iterable[str]) -> ReportTable | None:
    wanted = set(datasets)
    refs = [p for p in PUBLISHED if p.dataset in wanted]
    if not refs:
        return None
    header = ["dataset", "metric", "system", "value", "source", "note"]
    rows = [[p.dataset, p.metric, p.system, _cell(p.value), p.source, p.note] for p in refs]
    return ReportTable("published", "Published reference numbers (%)", header, rows)


def _format_cells(header: list[str], rows: list[list[str]], fmt: str) -> str:
    if fmt == "markdown":
        def esc(x: str) -> str:
            return x.replace("|", "\\|").replace("\n", " ")

        lines = ["| " + " | ".join(esc(h) for h in header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows])
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    return "\n".join(lines)


def render_report(runs: Sequence[Any], fmt: str = "table") -> str:
    """The report as text: `table` (aligned), `markdown` or `csv`."""
    if fmt not in ("table", "markdown", "csv"):
        raise ValueError(f"unknown format {fmt!r} (table, markdown, csv)")
    rs = as_runs(runs)
    if fmt == "csv":
        return format_csv(report_frames(rs))
    parts: list[str] = []
    for table in report_tables(rs):
        parts.append(f"## {table.title}" if fmt == "markdown" else f"{table.title}\n")
        parts.append(_format_cells(table.header, table.rows, fmt))
        parts.append("")
    parts.append(("> " if fmt == "markdown" else "Note: ") + CAVEAT)
    return "\n".join(parts) + "\n"
