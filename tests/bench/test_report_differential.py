"""Issue 22, item 8: `bench report` is the live result. A differential test: hypothesis draws
runs (voting method, tie rule, k, meta-guided voting on or off, k_meta given or not, items that
fail, samples that fail to parse or to reach the server, samples the meta judge cannot rate, tie
labels), runs them through the real runner and Judge against the fault server (a FAKE judge and
meta judge answering from a seeded script over the real OpenAI SDK), and checks that every number
in the CSV of `bench report` equals the one computed here, from the Verdicts the run stored, by
`Reference`: a small implementation of the paper's rules (METHOD.md, paper-digest 5.1) that never
calls `aggregate` or the metrics module.

How it can fail: any report figure that is not the live vote (a re-broken tie, the sum where the
run voted by mean or majority, another k_meta rule at j samples, a failed item counted as judged,
an accuracy over items without a valid sample, a missing or extra cell) differs from the
reference; the live `Verdict.best` is checked against the reference vote too.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score
from support.fault_server import FaultServer

from judgekit import Judge
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.bench.items import BenchItem, Label
from judgekit.bench.report import load_runs, render_report
from judgekit.bench.runner import read_results, run
from judgekit.meta import MetaJudge
from judgekit.retry import RetryPolicy
from judgekit.schema import Judgement, SampleStatus, Verdict

REASK = "Your answer could not be read"
META = "You check the work of a judge"
LENGTHS_KEY = "response_chars"  # the bias probe's metadata key, as `judgekit bench bias` writes it


# -- the fake models -------------------------------------------------------------------------------
def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content if isinstance(content, str) else ""


class Script:
    """The fake judge and meta judge: every answer is drawn from one seeded stream. Which sample
    gets which answer depends on the order requests arrive in; the reference reads what the run
    stored, so that does not matter."""

    def __init__(self, seed: int, parse_fail: float, unrated: float) -> None:
        self.rng = random.Random(seed)
        self.parse_fail = parse_fail
        self.unrated = unrated
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        last = _text(messages[-1].get("content")) if messages else ""
        first_user = next((_text(m.get("content")) for m in messages if m.get("role") == "user"),
                          "")
        with self.lock:
            roll, a, b = self.rng.random(), self.rng.randint(4, 7), self.rng.randint(4, 7)
        if first_user.startswith(META):  # the meta judge's rating
            return "I cannot tell." if roll < self.unrated else f"Rating: \\boxed{{{a + 2}}}"
        if last.startswith(REASK):
            return "" if roll < 0.5 else f"Scores: \\boxed{{{a}, {b}}}"
        if roll < self.parse_fail:
            return "Both responses have merit; I cannot decide."
        return ("Specific Criteria:\n1. Accuracy (Weight: 100%): the answer is right.\n"
                f"Analysis:\nResponse 1: fine.\nResponse 2: fine.\nScores: \\boxed{{{a}, {b}}}")


# -- the reference ---------------------------------------------------------------------------------
def valid(s: Judgement) -> bool:
    return s.status in (SampleStatus.OK, SampleStatus.FORCED) and s.scores is not None


def top(scores: Sequence[float | None]) -> list[int]:
    values = [v for v in scores if v is not None]
    return [i for i, v in enumerate(scores) if values and v == max(values)]


def vote(samples: list[Judgement], n: int, voting: str, tie_rule: str, seed: int,
         k_meta: int | None) -> tuple[list[float | None], int | None, bool]:
    """The paper's vote (METHOD.md): valid samples only; meta-guided voting keeps the k_meta
    best-rated (earlier first on equal ratings; unrated ones fill free places in order); sum,
    mean or majority; strict ties have no best, random ties the seeded pick."""
    used = [s for s in sorted(samples, key=lambda s: s.sample_index) if valid(s)]
    if k_meta is not None:
        rated = sorted((s for s in used if s.meta_score is not None),
                       key=lambda s: (-(s.meta_score or 0.0), s.sample_index))[:k_meta]
        used = rated + [s for s in used if s.meta_score is None][:max(0, k_meta - len(rated))]
    if not used:
        return [None] * n, None, False
    totals = [0.0] * n
    for s in used:
        assert s.scores is not None
        if voting == "majority":
            if len(top(s.scores)) == 1:
                totals[top(s.scores)[0]] += 1.0
        else:
            totals = [t + v for t, v in zip(totals, s.scores, strict=True)]
    if voting == "mean":
        totals = [t / len(used) for t in totals]
    leaders = top(totals)
    if len(leaders) == 1:
        return list(totals), leaders[0], False
    return list(totals), random.Random(seed).choice(leaders) if tie_rule == "random" else None, True


class Reference:
    """Every figure of the report for one run, from its stored Verdicts."""

    def __init__(self, label: str, n_items: int, records: list[Any], setting: int | None) -> None:
        self.label = label
        self.n_items = n_items
        self.recs = records
        self.setting = setting

    # the live vote of a record over its first j samples
    def voted(self, v: Verdict, j: int | None = None, *, meta: bool | None = None,
              voting: str | None = None) -> tuple[list[float | None], int | None, bool]:
        samples = sorted(v.samples, key=lambda s: s.sample_index)[:j]
        use_meta = v.k_meta is not None if meta is None else meta
        km = None
        if use_meta:
            km = v.k_meta if j is None else (self.setting if self.setting is not None
                                             else max(1, j // 2))
        return vote(samples, v.n_responses, voting or v.voting, v.tie_rule, v.seed or 0, km)

    @staticmethod
    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    def judged(self) -> list[Any]:
        return [r for r in self.recs if r.verdict is not None and any(valid(s) for s in
                                                                      r.verdict.samples)]

    @staticmethod
    def gold(r: Any) -> int | None:
        return r.label.best if r.label.kind.value == "best" else None

    def accuracy(self, recs: list[Any]) -> tuple[float | None, int]:
        scored = [r for r in recs if r in self.judged() and self.gold(r) is not None]
        right = sum(self.voted(r.verdict)[1] == self.gold(r) for r in scored)
        return (100 * right / len(scored) if scored else None), len(scored)

    def preference(self, scores: Sequence[float | None]) -> object:
        t = top(scores)
        return None if not t else t[0] if len(t) == 1 else "tie"

    def figures(self) -> dict[tuple[str, str, str], object]:
        out: dict[tuple[str, str, str], object] = {}
        L = self.label
        judged = self.judged()
        verdicts = [r.verdict for r in self.recs if r.verdict is not None]
        samples = [s for v in verdicts for s in v.samples]
        k = max(v.k for v in verdicts)
        k_metas = {v.k_meta for v in verdicts}
        meta_run = len(k_metas) == 1 and None not in k_metas
        acc, acc_n = self.accuracy(self.recs)
        ties = [r for r in self.recs if r.label.kind.value == "tie"]
        agree = self.tie_agreement(judged)
        multi = [r for r in judged]
        usage = [v.usage for v in verdicts]
        prompt = sum(u.prompt_tokens for u in usage)
        summary: dict[str, object] = {
            "dataset": "toy", "model": verdicts[0].model, "judge": "grm", "k": k,
            "meta": meta_run, "voting": verdicts[0].voting, "tie_rule": verdicts[0].tie_rule,
            "k_meta": next(iter(k_metas)) if len(k_metas) == 1 else None,
            "items": self.n_items, "judged": len(judged), "failed": len(self.recs) - len(judged),
            "pending": self.n_items - len(self.recs), "accuracy": acc, "accuracy_items": acc_n,
            "tie_labelled": len(ties),
            "agreement_incl_ties": agree[0] if ties else None,
            "tie_rate": (100 * sum(len(top(self.voted(r.verdict)[0])) > 1 for r in multi)
                         / len(multi)) if multi else None,
            "invalid_sample_rate": (100 * sum(not valid(s) for s in samples) / len(samples)
                                    if samples else None),
            "samples_meta_unrated": (sum(valid(s) and s.meta_score is None for s in samples)
                                     if meta_run else None),
            "position_consistency": self.position_consistency(judged),
            "kappa_vs_human": self.kappa(judged),
            "tokens_per_item": sum(u.total_tokens for u in usage) / len(usage),
            "cached_prompt_share": (100 * sum(u.cached_prompt_tokens for u in usage) / prompt
                                    if prompt else None),
            "cost_usd_per_item": self.mean([u.cost_usd for u in usage if u.cost_usd is not None]),
            "seconds_per_item": sum(v.wall_time_s for v in verdicts) / len(verdicts),
        }
        out.update({("summary", key, L): value for key, value in summary.items()})
        for subset in sorted({r.subset for r in self.recs}):
            a, n = self.accuracy([r for r in self.recs if r.subset == subset])
            if n:
                out[("subsets", subset, L)] = a
                out[("subsets", subset, f"{L} n")] = n
        out[("benchmark", "toy: accuracy", L)] = acc
        out[("benchmark", "toy: accuracy_items", L)] = acc_n
        if ties:
            out[("benchmark", "toy: tie_labelled_items", L)] = len(ties)
            out[("benchmark", "toy: agreement_incl_ties", L)] = agree[0]
            out[("benchmark", "toy: tie_agreement", L)] = agree[1]
        k_gold = max((r.verdict.k for r in self.recs
                      if r.verdict is not None and self.gold(r) is not None), default=0)
        if k >= 2 and k_gold:
            for suffix, meta in [("", False)] + ([(" meta", True)] if meta_run else []):
                for j in range(1, k_gold + 1):
                    n = right = 0
                    for r in self.recs:
                        if r.verdict is None or self.gold(r) is None:
                            continue
                        scores, best, _ = self.voted(r.verdict, j, meta=meta)
                        if all(x is None for x in scores):
                            continue
                        n += 1
                        right += best == self.gold(r)
                    out[("scaling", str(j), f"{L}{suffix}")] = 100 * right / n if n else None
                    out[("scaling", str(j), f"{L}{suffix} n")] = n
        out.update({("bias", key, L): value for key, value in self.bias(judged).items()})
        return out

    def tie_agreement(self, judged: list[Any]) -> tuple[float | None, float | None]:
        n = agree = ties = tie_agree = 0
        for r in judged:
            t = top(self.voted(r.verdict)[0])
            n += 1
            if r.label.kind.value == "tie":
                ties += 1
                ok = len(t) > 1  # Label.tie(): every response is tied
                tie_agree += ok
            else:
                ok = t == [self.gold(r)]
            agree += ok
        return (100 * agree / n if n else None), (100 * tie_agree / ties if ties else None)

    def position_consistency(self, judged: list[Any]) -> float | None:
        rates = []
        for r in judged:
            by_order: dict[tuple[int, ...], list[object]] = {}
            for s in r.verdict.samples:
                if valid(s):
                    by_order.setdefault(tuple(s.permutation), []).append(
                        self.preference(s.scores))
            groups = list(by_order.values())
            pairs = [(a, b) for x in range(len(groups)) for y in range(x + 1, len(groups))
                     for a in groups[x] for b in groups[y]]
            if pairs:
                rates.append(sum(a == b for a, b in pairs) / len(pairs))
        return 100 * sum(rates) / len(rates) if rates else None

    def kappa(self, judged: list[Any]) -> float | None:
        human = [str(self.gold(r)) if self.gold(r) is not None else "tie" for r in judged]
        judge = [str(self.preference(self.voted(r.verdict)[0])) for r in judged]
        if not human or len(set(human) | set(judge)) < 2:
            return None
        value = cohen_kappa_score(human, judge)
        return None if math.isnan(value) else float(value)

    def bias(self, judged: list[Any]) -> dict[str, object]:
        samples = decided = first = tied = gold_n = gold_first = 0
        chance: list[float] = []
        for r in judged:
            for s in r.verdict.samples:
                if not valid(s):
                    continue
                samples += 1
                if self.gold(r) is not None:
                    gold_n += 1
                    gold_first += self.gold(r) == s.permutation[0]
                pick = self.preference(s.scores)
                if pick == "tie":
                    tied += 1
                    continue
                decided += 1
                first += pick == s.permutation[0]
                chance.append(0.5)
        sxy = sxx = syy = 0.0
        untied = longer_wins = 0
        wrong = [0, 0]
        right = [0, 0]
        for r in judged:
            lens = r.metadata[LENGTHS_KEY]
            dx = float(lens[0] - lens[1])
            mean = self.voted(r.verdict, voting="mean")[0]
            assert mean[0] is not None and mean[1] is not None
            ds = mean[0] - mean[1]
            sxy, sxx, syy = sxy + dx * ds, sxx + dx * dx, syy + ds * ds
            if not dx:
                continue
            longer = 0 if dx > 0 else 1
            _, best, tie = self.voted(r.verdict)
            if best is not None and not tie:
                untied += 1
                longer_wins += best == longer
            if self.gold(r) is not None:
                cell = right if self.gold(r) == longer else wrong
                cell[0] += 1
                cell[1] += best == self.gold(r)
        says = []
        for r in judged:
            prefs = [self.preference(s.scores) for s in r.verdict.samples if valid(s)]
            if len(prefs) >= 2:
                pairs = [(a, b) for i, a in enumerate(prefs) for b in prefs[i + 1:]]
                says.append((sum(a == b for a, b in pairs) / len(pairs), len(set(prefs)) == 1))
        figures: dict[str, object] = {
            "position_consistency": self.position_consistency(judged),
            "first_position_win_rate": 100 * first / decided if decided else None,
            "first_position_chance": 100 * sum(chance) / len(chance) if chance else None,
            "gold_shown_first": 100 * gold_first / gold_n if gold_n else None,
            "tied_samples": tied,
            "longer_win_rate": 100 * longer_wins / untied if untied else None,
            "untied_pairs": untied,
            "length_score_corr": sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None,
            "acc_longer_wrong": 100 * wrong[1] / wrong[0] if wrong[0] else None,
            "n_longer_wrong": wrong[0],
            "acc_longer_right": 100 * right[1] / right[0] if right[0] else None,
            "n_longer_right": right[0],
            "sample_agreement": 100 * sum(a for a, _ in says) / len(says) if says else None,
            "unanimous_items": 100 * sum(u for _, u in says) / len(says) if says else None,
        }
        measured = [v for key, v in figures.items() if key not in (
            "tied_samples", "untied_pairs", "n_longer_wrong", "n_longer_right",
            "first_position_chance")]
        return figures if any(v is not None for v in measured) else {}


# -- the runs ---------------------------------------------------------------------------------------
@st.composite
def runs(draw: st.DrawFn) -> dict[str, Any]:
    k = draw(st.integers(1, 4))
    n_items = draw(st.integers(3, 6))
    return {
        "voting": draw(st.sampled_from(["sum", "mean", "majority"])),
        "tie_rule": draw(st.sampled_from(["strict", "random"])),
        "k": k,
        "meta": draw(st.booleans()),
        "k_meta": draw(st.one_of(st.none(), st.integers(1, k + 1))),
        "seed": draw(st.integers(0, 10_000)),
        "parse_fail": draw(st.sampled_from([0.0, 0.3])),
        "unrated": draw(st.sampled_from([0.0, 0.4])),
        "labels": [draw(st.sampled_from(["0", "1", "tie"])) for _ in range(n_items)],
        "faults": [draw(st.sampled_from(["ok", "ok", "ok", "fail", "partial"]))
                   for _ in range(n_items)],
        "lengths": [[draw(st.integers(1, 3)) * 10, 20] for _ in range(n_items)],
    }


def _items(spec: dict[str, Any]) -> list[BenchItem]:
    out = []
    for i, (label, lengths) in enumerate(zip(spec["labels"], spec["lengths"], strict=True)):
        out.append(BenchItem(
            id=f"i{i}", query=f"jk-item-i{i} Which answer is better?",
            responses=[f"answer {i}a " + "x" * lengths[0], f"answer {i}b " + "y" * lengths[1]],
            label=Label.tie() if label == "tie" else Label.best_of(int(label)),
            subset="ab"[i % 2], metadata={LENGTHS_KEY: lengths}))
    return out


async def _no_sleep(_: float) -> None:
    return None


def _backend(server: FaultServer) -> OpenAIBackend:
    return OpenAIBackend("judge-test", base_url=server.openai_url, api_key="sk-test",
                         server_flavour="generic", retry=RetryPolicy(sleep=_no_sleep))


def _cells(report_csv: str) -> dict[tuple[str, str, str], str]:
    rows = list(csv.reader(io.StringIO(report_csv)))
    assert rows[0] == ["section", "row", "column", "value"]
    return {(s, r, c): v for s, r, c, v in rows[1:]}


def _same(got: str, want: object) -> bool:
    if isinstance(want, bool | str):
        return got == str(want)
    assert isinstance(want, int | float)
    return math.isclose(float(got), float(want), rel_tol=1e-3, abs_tol=0.011)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=runs())
def test_every_report_number_is_the_live_result(spec: dict[str, Any]) -> None:
    items = _items(spec)
    schedule = {f"i{i}": (["400"] * 40 if f == "fail" else ["ok", "400"] if f == "partial"
                          else [])
                for i, f in enumerate(spec["faults"])}
    with tempfile.TemporaryDirectory() as tmp, \
            FaultServer(reply=Script(spec["seed"], spec["parse_fail"], spec["unrated"]),
                        schedule=schedule) as server:
        meta = MetaJudge(_backend(server), mode="rating") if spec["meta"] else None
        judge = Judge(_backend(server), examples=False, structured=False, cache=None,
                      voting=spec["voting"], tie_rule=spec["tie_rule"], seed=spec["seed"],
                      meta=meta, concurrency=2)
        out = Path(tmp) / "run"
        run(items, judge, out_dir=out, samples=spec["k"], meta=spec["meta"],
            k_meta=spec["k_meta"], dataset_name="toy", concurrency=2)
        records = read_results(out)
        ref = Reference("run", len(items), records, spec["k_meta"])
        for r in records:  # the live Verdict is the reference vote
            assert r.verdict is not None
            assert (r.verdict.best, r.verdict.tie) == ref.voted(r.verdict)[1:]
        got = _cells(render_report(load_runs([out]), "csv"))
        want = {key: value for key, value in ref.figures().items() if value is not None}
        assert set(got) == set(want), (sorted(set(got) ^ set(want)), json.dumps(spec))
        wrong = {key: (got[key], value) for key, value in want.items()
                 if not _same(got[key], value)}
        assert not wrong, (wrong, json.dumps(spec))
