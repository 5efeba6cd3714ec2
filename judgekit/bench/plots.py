"""PNG plots of stored runs (matplotlib figures without pyplot, so no global backend changes;
never calls a model).

* `plot_subsets`  per-subset accuracy as horizontal bars sorted by value, with n and a 95%
                  Wilson interval on each bar and the overall and chance lines; the figure grows
                  in height with the subsets, never past `MAX_WIDTH_PX` wide, and subset names
                  are shown whole (a "/" in a name is text, not a hierarchy);
* `plot_scaling`  accuracy vs k: plain voting and meta-guided voting, recomputed over prefixes of
                  each run's stored samples (j = 1..k) with 95% paired-bootstrap bands, plus one
                  point per run when several runs of the same setup differ in k; a curve that
                  cannot be drawn is named in a note with the reason;
* `plot_rmbench`  the RM-Bench 3x3 style matrix of one run;
* `plot_bias`     the bias probes that have data (position, length, agreement among samples).

Each `*_figure` function builds the figure (for a notebook or a test to inspect); each `plot_*`
saves it. The numbers drawn come from `subset_bars` and `metrics`, so a test can check them.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgekit.bench import metrics as m
from judgekit.bench.intervals import bootstrap_band, pearson_r, wilson_interval
from judgekit.bench.report import BenchRun, as_runs, bias_groups

DPI = 110
MAX_WIDTH_PX = 2000
_COLORS = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]


def _figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, *,
            grid: bool = False) -> tuple[Any, Any]:
    """A figure and its axes from matplotlib's object API: no pyplot, so no global backend is
    switched and a notebook's inline plotting keeps working after a plot is written."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=not grid and nrows * ncols == 1)


def _save(fig: Any, path: str | os.PathLike[str], dpi: int = DPI) -> Path:
    out = Path(path)
    fig.savefig(out, dpi=dpi)
    return out


def _color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


# --------------------------------------------------------------------------------------------
# Per-subset accuracy
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubsetBar:
    """One bar of the per-subset plot: a run's accuracy on a subset, with its 95% Wilson
    interval and the chance level (the mean of 1/responses over the subset's items)."""

    run: str
    subset: str
    n: int
    correct: float
    low: float
    high: float
    chance: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.n


def _chance(records: Sequence[m.ResultRecord]) -> float:
    counted = [r for r in records if m.item_correct(r) is not None]
    return sum(1 / r.n_responses for r in counted) / len(counted) if counted else 0.0


def subset_bars(runs: Sequence[Any]) -> list[SubsetBar]:
    """The bars `plot_subsets` draws, one per run and subset with single-best items (subsets
    whose items all have tie or binary labels have no accuracy)."""
    bars: list[SubsetBar] = []
    for r in as_runs(runs):
        groups = m.group_by(r.records, lambda rec: rec.subset)
        for subset, members in sorted(groups.items()):
            acc = m.accuracy(members)
            if not acc.n:
                continue
            low, high = wilson_interval(acc.correct, acc.n)
            bars.append(SubsetBar(r.label, subset, acc.n, acc.correct, low, high,
                                  _chance(members)))
    return bars


def _label_lines(name: str, width: int) -> str:
    """A subset name whole: wrapped onto several lines only when longer than `width`."""
    if len(name) <= width:
        return name
    return "\n".join(textwrap.wrap(name, width, break_on_hyphens=False)) or name


def subsets_figure(runs: Sequence[Any]) -> Any | None:
    """The per-subset accuracy figure; None when no run has an item with a single best."""
    rs = as_runs(runs)
    bars = subset_bars(rs)
    if not bars:
        return None
    labels = [r.label for r in rs]
    first = {b.subset: b.accuracy for b in bars if b.run == labels[0]}
    names = sorted({b.subset for b in bars},
                   key=lambda sub: (first.get(sub, -1.0), sub), reverse=True)
    names.reverse()  # barh draws from the bottom: the best subset ends on top
    n_runs = len(rs)
    chars = 150  # label width in characters before a name wraps (figure capped at 2000 px)
    shown = [_label_lines(n, chars) for n in names]
    label_in = 0.075 * max(len(line) for s in shown for line in s.split("\n"))
    width = min(MAX_WIDTH_PX / DPI, max(8.0, 6.5 + label_in))
    lines = sum(s.count("\n") + 1 for s in shown)
    row_in = max(0.26 * n_runs, 0.2 * max(1, lines // max(1, len(names))))
    height = 1.9 + 0.22 * (n_runs + 1) + row_in * len(names)
    fig, ax = _figure((width, height))
    bar_h = 0.8 / n_runs
    by_key = {(b.run, b.subset): b for b in bars}
    for i, r in enumerate(rs):
        color = _color(i)
        for row, name in enumerate(names):
            b = by_key.get((r.label, name))
            if b is None:
                continue
            y = row + (n_runs - 1 - i) * bar_h - 0.4 + bar_h / 2
            ax.barh(y, 100 * b.accuracy, height=bar_h * 0.9, color=color,
                    xerr=[[max(0.0, 100 * (b.accuracy - b.low))],
                          [max(0.0, 100 * (b.high - b.accuracy))]],
                    error_kw={"ecolor": "black", "elinewidth": 0.8, "capsize": 2})
            if b.correct == 0:  # a 0% bar: a mark at zero, so it is not read as missing
                ax.plot([0], [y], marker="D", ms=5, color=color, mec="black", mew=0.6,
                        clip_on=False, zorder=3)
            ax.text(100 * b.high + 1.5, y, f"{100 * b.accuracy:.0f}%  n={b.n}", va="center",
                    fontsize=7, bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.3,
                                      "alpha": 0.8})
        overall = m.accuracy(r.records)
        if overall.value is not None:
            ax.axvline(100 * overall.value, color=color, ls="--", lw=1.2,
                       label=f"{r.label}: overall {100 * overall.value:.1f}% (n={overall.n})")
    chances = {round(b.chance, 6) for b in bars}
    if len(chances) == 1:
        c = chances.pop()
        ax.axvline(100 * c, color="grey", ls=":", lw=1.2, label=f"chance {100 * c:.0f}%")
    else:  # subsets with different numbers of responses: a chance mark on each row
        for row, name in enumerate(names):
            c = next(b.chance for b in bars if b.subset == name)
            ax.plot([100 * c] * 2, [row - 0.45, row + 0.45], color="grey", ls=":", lw=1.2,
                    label="chance (1 / responses)" if row == 0 else None)
    ax.set_yticks(range(len(names)), shown, fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlim(-2, 122)  # a 0% bar's mark clear of the axis
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("accuracy (%), with 95% Wilson intervals")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"Accuracy per subset (each run's own rules; sorted by {labels[0]})",
                 fontsize=10)
    missing = sorted({rec.subset for r in rs for rec in r.records} - set(names))
    if missing:
        ax.set_title(f"not shown (no single-best labels): {', '.join(missing)}", loc="left",
                     fontsize=7, y=-0.02, pad=-28, color="grey")
    fig.legend(loc="outside lower center", ncol=min(3, n_runs + 1), fontsize=7,
               frameon=False)
    return fig


def plot_subsets(runs: Sequence[Any], path: str | os.PathLike[str]) -> Path | None:
    """Per-subset accuracy bars (`subsets_figure`) as a PNG; None (no file) when no run has an
    item with a single best response."""
    fig = subsets_figure(runs)
    return None if fig is None else _save(fig, path)


# --------------------------------------------------------------------------------------------
# Scaling with k
# --------------------------------------------------------------------------------------------
def _meta_note(run: BenchRun) -> str | None:
    """Why a run has no meta-guided curve, or how much of it rests on rated samples."""
    samples = [s for r in run.records if r.verdict is not None for s in r.verdict.samples]
    rated = sum(s.meta_score is not None for s in samples)
    if not run.info.meta and not rated:
        return f"{run.label}: no meta-guided curve (run without --meta)"
    if not rated:
        return f"{run.label}: no meta-guided curve: the meta judge rated none of its " \
               f"{len(samples)} samples"
    if rated < len(samples):
        return f"{run.label}: the meta judge rated {rated} of {len(samples)} samples"
    return None


def scaling_outcomes(records: Sequence[m.ResultRecord], *,
                     meta: bool = False) -> list[tuple[int, list[bool]]]:
    """Per item, whether Voting@j (MetaRM@j with `meta`) picks the gold best, for j = 1..k: the
    vote over the item's first j stored samples under the run's own rules (`metrics.revote`,
    as `metrics.scaling_curve` counts it), over the items with a valid sample at every j, the
    same items in the same order at every j, which a paired bootstrap needs."""
    recs = [r for r in records if r.verdict is not None
            and r.label.best_index is not None and r.n_responses >= 2]
    k_max = max((r.verdict.k for r in recs if r.verdict is not None), default=0)
    votes = {j: [m.revote(r.verdict, j, meta=meta) for r in recs if r.verdict is not None]
             for j in range(1, k_max + 1)}
    keep = [i for i in range(len(recs)) if all(votes[j][i].used_samples for j in votes)]
    return [(j, [votes[j][i].best == recs[i].label.best_index for i in keep])
            for j in range(1, k_max + 1)]


def _curve(ax: Any, outcomes: list[tuple[int, list[bool]]], color: str, label: str,
           style: str, marker: str, seed: int) -> bool:
    pts = [(j, hits) for j, hits in outcomes if hits]
    if not pts:
        return False
    ks = [j for j, _ in pts]
    band = bootstrap_band([[float(h) for h in hits] for _, hits in pts], seed=seed)
    ax.fill_between(ks, [100 * lo for lo, _ in band], [100 * hi for _, hi in band],
                    color=color, alpha=0.15, lw=0)
    ax.plot(ks, [100 * sum(h) / len(h) for _, h in pts], color=color, ls=style,
            marker=marker, ms=4, label=f"{label} (n={len(pts[0][1])})")
    return True


def scaling_figure(runs: Sequence[Any]) -> Any | None:
    """Accuracy vs k; None when no run has k > 1 and no two runs of one setup differ in k."""
    rs = as_runs(runs)
    fig, ax = _figure((7.5, 5.0))
    drawn = False
    notes: list[str] = []
    for i, r in enumerate(rs):
        if r.k < 2:
            continue
        s = r.info.seed  # seeds the bootstrap only; votes follow the run's own rules
        color = _color(i)
        drawn |= _curve(ax, scaling_outcomes(r.records), color,
                        f"{r.label}: voting", "-", "o", s)
        note = _meta_note(r)
        if note:
            notes.append(note)
        rated = any(s.meta_score is not None for rec in r.records if rec.verdict is not None
                    for s in rec.verdict.samples)
        if m.has_meta_scores(r.records) and rated:
            drawn |= _curve(ax, scaling_outcomes(r.records, meta=True),
                            color, f"{r.label}: meta-guided", "--", "s", s)
    single = [r.label for r in rs if r.k < 2]
    groups: dict[tuple[str, str, str, bool], list[BenchRun]] = {}
    for r in rs:
        groups.setdefault((r.info.dataset, r.info.subset or "", r.model, r.info.meta),
                          []).append(r)
    in_series: set[str] = set()
    for (ds, _, model, meta), members in groups.items():
        if len({r.k for r in members}) < 2:
            continue
        pts = []
        for r in sorted(members, key=lambda x: x.k):
            acc = m.accuracy(r.records)
            if acc.value is not None:
                lo, hi = wilson_interval(acc.correct, acc.n)
                pts.append((r.k, 100 * acc.value, 100 * lo, 100 * hi))
                in_series.add(r.label)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                    yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
                    marker="D", ls=":", capsize=3, color="black",
                    label=f"{ds} {model}{' meta' if meta else ''}: separate runs")
        drawn = True
    if not drawn:
        return None
    notes += [f"{lab}: k=1, no curve (a curve needs k >= 2)" for lab in single
              if lab not in in_series]
    ax.set_xscale("log", base=2)
    ks = sorted({int(x) for line in ax.get_lines() for x in line.get_xdata()})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k (samples voted)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Inference-time scaling (each run's own rules; bands: 95% bootstrap over "
                 "items)",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    if notes:
        fig.supxlabel("\n".join(notes), fontsize=7, color="dimgrey", ha="left", x=0.02)
    return fig


def plot_scaling(runs: Sequence[Any], path: str | os.PathLike[str]) -> Path | None:
    """Accuracy vs k (`scaling_figure`) as a PNG; None (no file) when nothing scales."""
    fig = scaling_figure(runs)
    return None if fig is None else _save(fig, path)


# --------------------------------------------------------------------------------------------
# RM-Bench
# --------------------------------------------------------------------------------------------
def plot_rmbench(run: BenchRun, path: str | os.PathLike[str]) -> Path | None:
    """RM-Bench 3x3 matrix (rows: chosen style, columns: rejected style) of one run."""
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
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Bias probes
# --------------------------------------------------------------------------------------------
def _bars(ax: Any, groups: list[str], series: dict[str, list[float | None]], title: str,
          chance: float | None = None) -> None:
    """Grouped bars (percent): one group per run and one bar per series, for the runs and
    series that have a value (a legend entry without a bar reads as a measured zero)."""
    keep = [g for g in range(len(groups)) if any(v[g] is not None for v in series.values())]
    groups = [groups[g] for g in keep]
    series = {k: [v[g] for g in keep] for k, v in series.items()
              if any(v[g] is not None for g in keep)}
    width = 0.8 / max(len(series), 1)
    for i, (name, vals) in enumerate(series.items()):
        for g, v in enumerate(vals):
            if v is None:
                continue
            x = g + i * width
            ax.bar(x, 100 * v, width=width, color=_color(i),
                   label=name if g == next(j for j, w in enumerate(vals) if w is not None)
                   else None)
            if v == 0:  # a 0% bar: a mark on the axis, so it is not read as missing
                ax.plot([x - width * 0.4, x + width * 0.4], [0, 0], color=_color(i), lw=4,
                        solid_capstyle="butt", clip_on=False, zorder=3)
            ax.text(x, 100 * v + 1.5, f"{100 * v:.0f}", ha="center", fontsize=6)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups,
                  fontsize=7)
    if chance is not None:
        ax.axhline(100 * chance, ls="--", lw=1, color="grey", label=f"{100 * chance:.0f}%")
    ax.set_ylim(0, 130)  # room for the legend above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="upper left", ncol=2)


def _has(series: dict[str, list[float | None]]) -> bool:
    return any(v is not None for vals in series.values() for v in vals)


def length_statistic(points: Sequence[tuple[float, float]]) -> str:
    """The statistic printed for a length scatter: Pearson's r of the points drawn, or why it
    is undefined (a constant margin correlates with nothing)."""
    if len(points) < 3:
        return f"Pearson r undefined: {len(points)} pairs"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    r = pearson_r(xs, ys)
    if r is not None:
        return f"Pearson r = {r:.2f}, n = {len(points)}"
    const = "score margin" if len(set(ys)) == 1 else "length margin" if len(set(xs)) == 1 \
        else "margin"
    return f"Pearson r undefined: constant {const}, n = {len(points)}"


def bias_figure(runs: Sequence[Any]) -> Any | None:
    """The bias probes that have data, one panel each: position (consistency across orders
    within the records and between --reverse twins, first-position win rate; dashed: 50%),
    length (score margin against length margin per run, with Pearson's r where defined),
    accuracy where the longer response is wrong / right, and agreement among the k samples.
    None when no panel has data."""
    groups = bias_groups(runs)
    if not groups:
        return None
    labels = [g.label.replace(" + ", " +\n") for g in groups]
    panels: list[tuple[str, Any]] = []
    first = [m.first_position_wins(g.records) for g in groups]
    position = {
        "consistency across orders (within)":
            [m.position_consistency(g.records)["consistency"] for g in groups],
        "consistency with the --reverse twin":
            [m.paired_position_consistency(*[t.records for t in g.twin])["consistency"]
             if g.twin is not None else None for g in groups],
        "first-position win rate": [f["first_position_win_rate"] for f in first],
    }
    if _has(position):
        panels.append(("position", position))
    scatter = [(g.label, m.length_points(g.records, g.lengths)) for g in groups
               if g.twin is None]
    scatter = [(lab, pts) for lab, pts in scatter if pts]
    if scatter:
        panels.append(("scatter", scatter))
    lb = [m.length_bias(g.records, g.lengths) for g in groups]
    by_length = {"accuracy, longer response wrong": [x["acc_longer_wrong"] for x in lb],
                 "accuracy, longer response right": [x["acc_longer_right"] for x in lb],
                 "longer response wins": [x["longer_win_rate"] for x in lb]}
    if _has(by_length):
        panels.append(("length", by_length))
    agree = [m.sample_agreement(g.records) for g in groups]
    agreement = {"mean agreement of sample pairs": [a["agreement"] for a in agree],
                 "items with unanimous samples": [a["unanimous_rate"] for a in agree]}
    if _has(agreement):
        panels.append(("agreement", agreement))
    if not panels:
        return None
    ncols = min(2, len(panels))
    nrows = (len(panels) + 1) // 2
    fig, axes = _figure((5.2 * ncols, 4.0 * nrows), nrows, ncols, grid=True)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels):]:
        ax.remove()
    for ax, (kind, data) in zip(flat, panels, strict=False):
        if kind == "position":
            _bars(ax, labels, data, "Position", chance=0.5)
        elif kind == "length":
            _bars(ax, labels, data, "Length: accuracy by which response is longer "
                  "(the run's tie rule)", chance=0.5)
        elif kind == "agreement":
            _bars(ax, labels, data, "Agreement among the k samples")
        else:
            for i, (lab, pts) in enumerate(data):
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, alpha=0.5,
                           color=_color(i), label=f"{lab} ({length_statistic(pts)})")
            ax.axhline(0, lw=0.8, color="grey")
            ax.axvline(0, lw=0.8, color="grey")
            ax.set_xlabel("length margin (chars, response 1 - response 2)")
            ax.set_ylabel("score margin (mean 1-10)")
            ax.set_title("Length: score margin vs length margin", fontsize=9)
            ax.legend(fontsize=6)
    return fig


def plot_bias(runs: Sequence[Any], path: str | os.PathLike[str], *,
              dpi: int = DPI) -> Path | None:
    """The bias panels that have data (`bias_figure`) as a PNG; None (no file) when none has."""
    fig = bias_figure(runs)
    return None if fig is None else _save(fig, path, dpi)


def write_plots(runs: Sequence[Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """All plots that apply to these runs, as PNG files in `out_dir`; returns their paths."""
    rs = as_runs(runs)
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
