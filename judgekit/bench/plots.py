"""PNG plots of stored runs (matplotlib figures without pyplot, so no global backend changes;
never calls a model).

* `plot_scaling`  accuracy vs k: plain voting and meta-guided voting, recomputed over prefixes of
                  each run's stored samples (j = 1..k), plus one point per run when several runs
                  of the same setup differ in k;
* `plot_subsets`  per-subset accuracy bars, one bar per run;
* `plot_rmbench`  the RM-Bench 3x3 style matrix of one run;
* `plot_bias`     the bias probes: position, length, agreement among the k samples.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judgekit.bench import metrics as m
from judgekit.bench.report import BenchRun, _runs, bias_groups


def _figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1) -> tuple[Any, Any]:
    """A figure and its axes from matplotlib's object API: no pyplot, so no global backend is
    switched and a notebook's inline plotting keeps working after a plot is written."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=nrows * ncols == 1)


def plot_scaling(runs: Sequence[Any], path: str | os.PathLike[str]) -> Path | None:
    """Accuracy vs k under each run's own rules; None (no file) when no run has k > 1 and no
    two runs differ in k."""
    rs = _runs(runs)
    fig, ax = _figure((7, 4.5))
    drawn = False
    for r in rs:
        if r.k < 2:
            continue
        pts = [(j, a.value) for j, a in m.scaling_curve(r.records) if a.value is not None]
        if pts:
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o",
                    label=f"{r.label}: voting")
            drawn = True
        if m.has_meta_scores(r.records):
            mp = [(j, a.value) for j, a in m.scaling_curve(r.records, meta=True)
                  if a.value is not None]
            if mp:
                ax.plot([p[0] for p in mp], [100 * p[1] for p in mp], marker="s",
                        linestyle="--", label=f"{r.label}: meta-guided")
                drawn = True
    groups: dict[tuple[str, str, str, bool], list[BenchRun]] = {}
    for r in rs:
        key = (r.info.dataset, r.info.subset or "", r.model, r.info.meta)
        groups.setdefault(key, []).append(r)
    for (ds, _, model, meta), members in groups.items():
        ks = sorted({r.k for r in members})
        if len(ks) < 2:
            continue
        pts2 = []
        for r in sorted(members, key=lambda x: x.k):
            acc = m.accuracy(r.records).value
            if acc is not None:
                pts2.append((r.k, 100 * acc))
        ax.plot([p[0] for p in pts2], [p[1] for p in pts2], marker="D", linestyle=":",
                label=f"{ds} {model}{' meta' if meta else ''}: separate runs")
        drawn = True
    if not drawn:
        return None
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples voted)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Inference-time scaling (each run's own rules)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    out = Path(path)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def _coarse(subset: str, depth: int) -> str:
    return "/".join(subset.split("/")[:depth])


def plot_subsets(runs: Sequence[Any], path: str | os.PathLike[str], *,
                 max_groups: int = 24) -> Path | None:
    """Grouped bars of accuracy per subset under each run's own rules (subset paths are cut to
    a coarser level when there are more than `max_groups`)."""
    rs = _runs(runs)
    per_run: list[dict[str, float]] = []
    all_subsets: set[str] = set()
    for r in rs:
        subsets = {rec.subset for rec in r.records}
        depth = max((x.count("/") + 1 for x in subsets), default=1)
        while depth > 1 and len({_coarse(x, depth) for x in subsets}) > max_groups:
            depth -= 1
        groups: dict[str, list[m.ResultRecord]] = {}
        for rec in r.records:
            groups.setdefault(_coarse(rec.subset, depth), []).append(rec)
        values: dict[str, float] = {}
        for g, members in groups.items():
            acc = m.accuracy(members).value
            if acc is not None:
                values[g] = 100 * acc
        per_run.append(values)
        all_subsets |= set(values)
    if not all_subsets:
        return None
    names = sorted(all_subsets)
    width = 0.8 / max(len(rs), 1)
    fig, ax = _figure((max(6.0, 0.45 * len(names) * max(1, len(rs)) + 2), 4.5))
    for i, (r, accs) in enumerate(zip(rs, per_run, strict=True)):
        xs = [n + i * width for n in range(len(names))]
        ax.bar(xs, [accs.get(name, 0.0) for name in names], width=width, label=r.label)
    ax.set_xticks([n + width * (len(rs) - 1) / 2 for n in range(len(names))])
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy per subset (each run's own rules)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def plot_rmbench(run: BenchRun, path: str | os.PathLike[str]) -> Path | None:
    """RM-Bench 3x3 matrix (rows: chosen style, columns: rejected style) of one run, under
    its own rules."""
    res = m.rmbench_matrix(run.records)
    if not res["n"]:
        return None
    styles = ["concise", "detailed", "markdown"]
    grid = [[(100 * v if v is not None else float("nan")) for v in row] for row in res["matrix"]]
    fig, ax = _figure((4.8, 4.2))
    im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
    for i in range(3):
        for j in range(3):
            v = res["matrix"][i][j]
            ax.text(j, i, "" if v is None else f"{100 * v:.0f}", ha="center", va="center",
                    color="white")
    ax.set_xticks(range(3), styles)
    ax.set_yticks(range(3), styles)
    ax.set_xlabel("rejected response style")
    ax.set_ylabel("chosen response style")
    ax.set_title(f"{run.label}: RM-Bench (hard = upper right)", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def _no_data(ax: Any, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _bars(ax: Any, groups: list[str], series: dict[str, list[float | None]], title: str,
          chance: float | None = None) -> bool:
    """Grouped bars (percent): one group per run, one bar per series; False when empty."""
    if not any(v is not None for vals in series.values() for v in vals):
        _no_data(ax, title)
        return False
    width = 0.8 / max(len(series), 1)
    for i, (name, vals) in enumerate(series.items()):
        xs = [g + i * width for g in range(len(groups))]
        ax.bar(xs, [100 * v if v is not None else 0.0 for v in vals], width=width, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=7)
    if chance is not None:
        ax.axhline(100 * chance, ls="--", lw=1, color="grey")
    ax.set_ylim(0, 125)  # room for the legend above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    return True


def plot_bias(runs: Sequence[Any], path: str | os.PathLike[str], *,
              dpi: int = 110) -> Path | None:
    """Four panels, one bar group per run and per run pooled with its --reverse twin: position
    (consistency across orders within the records and between the twins, first-position win
    rate; dashed: 50%), length (score margin against length margin per run, with the
    correlation), accuracy where the longer response is wrong / right, and agreement among the
    k samples. None (no file) when no panel has data."""
    groups = bias_groups(runs)
    if not groups:
        return None
    labels = [g.label.replace(" + ", " +\n") for g in groups]
    fig, axes = _figure((10, 7.5), 2, 2)
    drawn = False

    first = [m.first_position_wins(g.records) for g in groups]
    drawn |= _bars(axes[0][0], labels, {
        "consistency across orders (within)":
            [m.position_consistency(g.records)["consistency"] for g in groups],
        "consistency with the --reverse twin":
            [m.paired_position_consistency(*[t.records for t in g.twin])["consistency"]
             if g.twin is not None else None for g in groups],
        "first-position win rate": [f["first_position_win_rate"] for f in first],
    }, "Position", chance=0.5)

    ax = axes[0][1]
    any_points = False
    for g in groups:
        pts = m.length_points(g.records, g.lengths) if g.twin is None else []
        if not pts:
            continue
        corr = m.length_bias(g.records, g.lengths)["correlation"]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, alpha=0.6,
                   label=f"{g.label} (r={'n/a' if corr is None else f'{corr:.2f}'})")
        any_points = True
    if any_points:
        ax.axhline(0, lw=0.8, color="grey")
        ax.axvline(0, lw=0.8, color="grey")
        ax.set_xlabel("length margin (chars, response 1 - response 2)")
        ax.set_ylabel("score margin (mean 1-10)")
        ax.set_title("Length: score margin vs length margin", fontsize=9)
        ax.legend(fontsize=6)
        drawn = True
    else:
        _no_data(ax, "Length: score margin vs length margin")

    lb = [m.length_bias(g.records, g.lengths) for g in groups]
    drawn |= _bars(axes[1][0], labels, {
        "accuracy, longer response wrong": [x["acc_longer_wrong"] for x in lb],
        "accuracy, longer response right": [x["acc_longer_right"] for x in lb],
        "longer response wins": [x["longer_win_rate"] for x in lb],
    }, "Length: accuracy by which response is longer (the run's tie rule)", chance=0.5)

    agree = [m.sample_agreement(g.records) for g in groups]
    drawn |= _bars(axes[1][1], labels, {
        "mean agreement of sample pairs": [a["agreement"] for a in agree],
        "items with unanimous samples": [a["unanimous_rate"] for a in agree],
    }, "Agreement among the k samples")
    if not drawn:
        return None
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=dpi)
    return out


def write_plots(runs: Sequence[Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """All plots that apply to these runs, as PNG files in `out_dir`; returns their paths."""
    rs = _runs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path | None] = [
        plot_scaling(rs, out / "scaling.png"),
        plot_subsets(rs, out / "subsets.png"),
        plot_bias(rs, out / "bias.png"),
    ]
    for i, r in enumerate(rs):
        if any("chosen_style" in rec.metadata for rec in r.records):
            made.append(plot_rmbench(r, out / f"rmbench_matrix_{i}.png"))
    return [p for p in made if p is not None]
