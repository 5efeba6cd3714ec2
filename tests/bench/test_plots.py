"""Plots people can read: the numbers drawn are checked against independent computations
(scipy's Wilson interval, a plain-formula Pearson r, a hand count of the overall accuracy) and
the pictures against what a reader needs (width cap, whole names, n on every bar, a visible 0%
bar, only panels with data, a note for a missing curve). Runs come from the real runner and a
scripted stand-in judge (tests/support/plot_runs.py); no model."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from support.bench_standin import ScriptedJudgeStandIn
from support.plot_runs import ALWAYS_WRONG, URL_SUBSET, many_subsets, write_run

from judgekit.bench import metrics as m
from judgekit.bench.intervals import bootstrap_band, pearson_r, wilson_interval
from judgekit.bench.items import BenchItem, Label
from judgekit.bench.plots import (
    MAX_WIDTH_PX,
    bias_figure,
    length_statistic,
    plot_subsets,
    scaling_figure,
    subset_bars,
    subsets_figure,
)
from judgekit.bench.report import load_run
from judgekit.bench.runner import run


def _wilson_reference(k: int, n: int) -> tuple[float, float]:
    """scipy's Wilson interval where scipy is installed, else the textbook formula
    (Wilson 1927; Agresti & Coull 1998, eq. 2) written out here."""
    try:
        from scipy.stats import binomtest
    except ImportError:
        z = 1.959963984540054
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return centre - half, centre + half
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("plotruns")
    subs = many_subsets()
    return {
        "meta": write_run(base / "grm-k4-meta", subs, samples=4, meta=True),
        "unrated": write_run(base / "grm-k4-unrated", subs, samples=4, meta=True,
                             meta_none=True),
        "k1": write_run(base / "baseline-k1", subs, samples=1),
        "few": write_run(base / "few", subs[:4], samples=1),
    }


# -- intervals ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "n"), [(0, 5), (5, 5), (3, 17), (1, 1), (61, 100), (999, 1000)])
def test_wilson_interval_matches_the_reference(k: int, n: int) -> None:
    lo, hi = wilson_interval(k, n)
    ref_lo, ref_hi = _wilson_reference(k, n)
    assert lo == pytest.approx(max(0.0, ref_lo), abs=1e-9)
    assert hi == pytest.approx(min(1.0, ref_hi), abs=1e-9)


def test_pearson_r_matches_the_formula_and_is_none_where_undefined() -> None:
    rng = random.Random(3)
    xs = [rng.uniform(-300, 300) for _ in range(50)]
    ys = [x / 100 + rng.gauss(0, 1) for x in xs]
    mx, my = sum(xs) / 50, sum(ys) / 50
    ref = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(
        sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))
    assert pearson_r(xs, ys) == pytest.approx(ref, abs=1e-12)
    assert pearson_r(xs, [-1.0] * 50) is None          # a constant score margin
    assert pearson_r([5.0] * 50, ys) is None            # a constant length margin
    assert pearson_r([1.0, 2.0], [2.0, 1.0]) is None    # two points: always +-1, no evidence
    assert length_statistic(list(zip(xs, [-1.0] * 50, strict=True))) == \
        "Pearson r undefined: constant score margin, n = 50"
    assert length_statistic(list(zip(xs, ys, strict=True))) == f"Pearson r = {ref:.2f}, n = 50"


def test_bootstrap_band_is_paired_seeded_and_about_the_binomial_width() -> None:
    rng = random.Random(0)
    n = 400
    a = [float(rng.random() < 0.7) for _ in range(n)]
    band = bootstrap_band([a, a], seed=1)
    assert band[0] == band[1]  # the same items resampled for every point
    assert bootstrap_band([a], seed=1) == bootstrap_band([a], seed=1)[:1]
    p = sum(a) / n
    lo, hi = band[0]
    assert lo < p < hi
    normal = 2 * 1.96 * math.sqrt(p * (1 - p) / n)
    assert (hi - lo) == pytest.approx(normal, rel=0.2)


# -- per-subset accuracy -------------------------------------------------------------------------
def test_subset_bars_carry_n_and_wilson_intervals(runs: dict[str, Path]) -> None:
    rec_by_subset: dict[str, list[m.ResultRecord]] = {}
    for rec in load_run(runs["k1"]).records:
        rec_by_subset.setdefault(rec.subset, []).append(rec)
    bars = subset_bars([runs["k1"]])
    assert {b.subset for b in bars} == set(many_subsets())
    for b in bars:
        recs = rec_by_subset[b.subset]
        # independent count: the strict pick is the unique top score, right when it is gold
        right = 0
        for rec in recs:
            assert rec.verdict is not None
            scores = [s for s in rec.verdict.scores if s is not None]
            top = [i for i, s in enumerate(rec.verdict.scores) if s == max(scores)]
            right += len(top) == 1 and top[0] == rec.label.best_index
        assert (b.n, b.correct) == (len(recs), right)
        assert (b.low, b.high) == pytest.approx(_wilson_reference(right, len(recs)), abs=1e-9)
        assert b.chance == pytest.approx(0.25 if b.subset.startswith("bestofn") else 0.5)


def test_the_subset_plot_is_readable(runs: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    many, few = tmp_path / "many.png", tmp_path / "few.png"
    assert plot_subsets([runs["k1"], runs["meta"]], many) is not None
    assert plot_subsets([runs["few"]], few) is not None
    (w_many, h_many), (w_few, h_few) = Image.open(many).size, Image.open(few).size
    assert w_many <= MAX_WIDTH_PX and w_few <= MAX_WIDTH_PX
    assert h_many > 5 * h_few  # it grows in height, not in width

    fig = subsets_figure([runs["k1"]])
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert URL_SUBSET in names and sorted(names) == sorted(many_subsets())  # whole names
    bars = {b.subset: b for b in subset_bars([runs["k1"]])}
    accs = [bars[n].accuracy for n in names]
    assert accs == sorted(accs)  # bottom to top: the best subset on top
    n_texts = [t.get_text() for t in ax.texts if "n=" in t.get_text()]
    assert sorted(n_texts) == sorted(f"{100 * b.accuracy:.0f}%  n={b.n}" for b in bars.values())
    # the 0% bar has a mark at zero on its row
    row = names.index(ALWAYS_WRONG)
    assert bars[ALWAYS_WRONG].correct == 0
    assert any(list(line.get_xdata()) == [0] and abs(line.get_ydata()[0] - row) < 0.5
               for line in ax.get_lines())
    # overall line at the pooled accuracy, chance marks at 1/responses
    overall = sum(b.correct for b in bars.values()) / sum(b.n for b in bars.values())
    vlines = [line for line in ax.get_lines() if (line.get_label() or "").startswith(
        "baseline-k1: overall")]
    assert len(vlines) == 1 and vlines[0].get_xdata()[0] == pytest.approx(100 * overall)
    chance = {round(line.get_xdata()[0]) for line in ax.get_lines()
              if line.get_linestyle() == ":"}
    assert chance == {25, 50}


# -- scaling -----------------------------------------------------------------------------------
def test_scaling_has_bands_both_curves_and_notes(runs: dict[str, Path]) -> None:
    fig = scaling_figure([runs["meta"], runs["unrated"], runs["k1"]])
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(lab.startswith("grm-k4-meta: voting") for lab in labels)
    assert any(lab.startswith("grm-k4-meta: meta-guided") for lab in labels)
    assert not any(lab.startswith("grm-k4-unrated: meta-guided") for lab in labels)
    assert len(ax.collections) == 3  # a band under each of the three curves
    note = fig.get_supxlabel()
    assert "grm-k4-unrated: no meta-guided curve: the meta judge rated none" in note
    assert "baseline-k1: k=1, no curve" in note
    # the band is around the curve: the plain curve's points lie inside their band
    curve = next(line for line in ax.get_lines() if line.get_label().startswith(
        "grm-k4-meta: voting"))
    records = load_run(runs["meta"]).records
    report = [100 * a.value for _, a in m.scaling_curve(records)
              if a.value is not None]
    assert list(curve.get_ydata()) == pytest.approx(report)  # the report's numbers
    band = ax.collections[0].get_paths()[0].vertices
    for k, acc in zip(curve.get_xdata(), curve.get_ydata(), strict=True):
        ys = [y for x, y in band if x == k]
        assert min(ys) <= acc <= max(ys)


# -- bias --------------------------------------------------------------------------------------
def _pairs(n: int) -> list[BenchItem]:
    out = []
    for i in range(n):
        rng = random.Random(i)
        a, b = "x" * rng.randrange(10, 400), "y" * rng.randrange(10, 400)
        out.append(BenchItem(id=f"i{i}", query="q", responses=[a, b], label=Label.best_of(i % 2),
                             metadata={m.LENGTHS_KEY: [len(a), len(b)]}))
    return out


def test_bias_shows_only_panels_with_data_and_names_its_statistic(tmp_path: Path) -> None:
    k1 = tmp_path / "k1"
    # second response always one point better: a constant score margin
    run(_pairs(20), ScriptedJudgeStandIn(lambda item, k: [[4.0, 5.0]] * k), out_dir=k1,
        dataset_name="mine")
    fig = bias_figure([k1])
    titles = [ax.get_title() for ax in fig.axes]
    assert not any("Agreement" in t for t in titles)  # k=1: nothing to agree on
    assert all(t and "no data" not in t for t in titles)
    position = next(ax for ax in fig.axes if ax.get_title() == "Position")
    legend = [t.get_text() for t in position.get_legend().get_texts()]
    assert "consistency with the --reverse twin" not in legend  # no twin, no legend entry
    scatter = next(ax for ax in fig.axes if ax.get_title().startswith("Length: score"))
    (label,) = [t.get_text() for t in scatter.get_legend().get_texts()]
    assert label == "k1 (Pearson r undefined: constant score margin, n = 20)"
    # the first-position win rate is 0%: a mark on the axis, not a missing bar
    assert any(list(line.get_ydata()) == [0, 0] for line in position.get_lines())

    bare = tmp_path / "bare"
    items = [it.model_copy(update={"metadata": {}}) for it in _pairs(6)]
    run(items, ScriptedJudgeStandIn(), out_dir=bare, dataset_name="mine")
    assert [ax.get_title() for ax in bias_figure([bare]).axes] == ["Position"]
