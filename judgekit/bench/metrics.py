"""Benchmark metrics: pure functions of stored results (no model is ever called here).

**A report is the live result.** Every voted figure is recomputed from the stored samples of
each Verdict through `judgekit.aggregate.aggregate` with the run's own rules, as the Verdict
records them: its voting method, tie rule, tie-break seed (the item's seed, so a random tie is
broken as the live run broke it) and meta-guided keep rule (`aggregate.k_meta_for`). Votes over
the first j samples (scaling curves) use the same rules (`revote`). So `accuracy` over a run
equals the share of items whose `Verdict.best` is the gold best.

An item is *judged* when it has at least one valid sample; any other item (no verdict, every
sample an API or parse failure) is *failed*: left out of every quality metric and counted apart.
Accuracies are over judged items, with their count beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from judgekit.aggregate import Aggregation, aggregate, k_meta_for
from judgekit.bench.items import LabelKind
from judgekit.bench.runner import ResultRecord
from judgekit.schema import SampleStatus, Verdict
from judgekit.voting import NEUTRAL_SCORE, TieRule, VotingMethod, top_set

__all__ = ["NEUTRAL_SCORE", "TieRule", "top_set"]


@dataclass(frozen=True)
class Accuracy:
    n: int
    correct: float

    @property
    def value(self) -> float | None:
        return self.correct / self.n if self.n else None

    def __add__(self, other: Accuracy) -> Accuracy:
        return Accuracy(self.n + other.n, self.correct + other.correct)


# --------------------------------------------------------------------------------------------
# The live vote of a stored Verdict
# --------------------------------------------------------------------------------------------
def revote(verdict: Verdict, j: int | None = None, *, meta: bool | None = None,
           tie_rule: TieRule | str | None = None,
           voting: VotingMethod | str | None = None) -> Aggregation:
    """The vote over the first `j` stored samples (by sample index; all of them when None)
    through `aggregate`, with the run's voting method, tie rule, the item's seed and the
    k_meta rule, as the Verdict records them. `meta` None: meta-guided exactly when the run
    was; False: plain voting; True: meta-guided. `tie_rule` and `voting` override the run's
    (a strict reading, a mean score)."""
    samples = sorted(verdict.samples, key=lambda s: s.sample_index)
    if j is not None:
        samples = samples[:j]
    use_meta = verdict.k_meta is not None if meta is None else meta
    k_meta = None
    if use_meta:
        k_meta = (verdict.k_meta if j is None and verdict.k_meta is not None
                  else k_meta_for(len(samples), verdict.k_meta_setting))
    return aggregate(samples, verdict.n_responses,
                     voting=voting if voting is not None else verdict.voting,
                     tie_rule=tie_rule if tie_rule is not None else verdict.tie_rule,
                     seed=verdict.seed if verdict.seed is not None else 0, k_meta=k_meta)


def judged(rec: ResultRecord) -> bool:
    """The item has at least one valid sample (else it failed: `ResultRecord.failed`)."""
    return not rec.failed


def record_scores(rec: ResultRecord) -> list[float | None]:
    """The item's voted scores (all None for a failed item)."""
    if rec.verdict is None:
        return [None] * rec.n_responses
    return list(revote(rec.verdict).scores)


def usable(records: Iterable[ResultRecord]) -> list[ResultRecord]:
    """The judged records (at least one valid sample)."""
    return [r for r in records if judged(r)]


def item_correct(rec: ResultRecord, rule: TieRule | str | None = None) -> bool | None:
    """Whether the vote picked the gold best response (under the run's tie rule, or `rule`);
    None when the item has no single gold best (ties, binary labels) or was not judged."""
    gold = rec.label.best_index
    if gold is None or rec.n_responses < 2 or not judged(rec):
        return None
    assert rec.verdict is not None
    return revote(rec.verdict, tie_rule=rule).best == gold


def accuracy(records: Iterable[ResultRecord], rule: TieRule | str | None = None) -> Accuracy:
    """Accuracy over the judged items with a single gold best response, as the papers report
    it (tie-labelled items are left out, see `tie_label_agreement`), under the run's own tie
    rule unless `rule` says another."""
    n = correct = 0
    for rec in records:
        ok = item_correct(rec, rule)
        if ok is None:
            continue
        n += 1
        correct += ok
    return Accuracy(n, correct)


# --------------------------------------------------------------------------------------------
# Tie labels: human-preference data where the gold says "both equally good"
# --------------------------------------------------------------------------------------------
def gold_tie(rec: ResultRecord) -> frozenset[int] | None:
    """The responses the gold label declares tied at the top (a tie label, or a ranking whose
    top rank is shared), or None when the label names a single best or is binary."""
    label = rec.label
    if rec.n_responses < 2:
        return None
    if label.kind is LabelKind.TIE:
        return frozenset(label.tied if label.tied is not None else range(rec.n_responses))
    if label.kind is LabelKind.RANKING and label.ranks:
        top = min(label.ranks)
        tied = [i for i, r in enumerate(label.ranks) if r == top]
        return frozenset(tied) if len(tied) > 1 else None
    return None


def tie_label_agreement(records: Iterable[ResultRecord]) -> dict[str, Any]:
    """Agreement with the gold label, tie-labelled items included, over judged multi-response
    items whose gold is a single best or a tie.

    A single-best label agrees when the judge's top score is that response alone; a tie label
    agrees when the judge's verdict is a tie among exactly the tied responses (its top score
    shared by them). Ties are read from the voted scores, so no tie-break rule applies. An item
    with no valid score agrees with nothing. `accuracy` is the same over the non-tie items."""
    n = agree = ties = tie_agree = 0
    for rec in usable(records):
        tied = gold_tie(rec)
        gold = rec.label.best_index if rec.n_responses >= 2 else None
        if tied is None and gold is None:
            continue
        top = top_set(record_scores(rec))
        n += 1
        if tied is not None:
            ties += 1
            ok = len(top) > 1 and frozenset(top) == tied
            tie_agree += ok
        else:
            ok = top == [gold]
        agree += ok
    return {"items": n, "agree": agree, "agreement": agree / n if n else None,
            "tie_labelled": ties, "tie_agree": tie_agree,
            "tie_agreement": tie_agree / ties if ties else None}


def count_tie_labels(records: Iterable[ResultRecord]) -> int:
    """How many items (judged or not) carry a tie as their gold label."""
    return sum(1 for r in records if gold_tie(r) is not None)


def group_by(records: Iterable[ResultRecord],
             key: Callable[[ResultRecord], Hashable]) -> dict[Any, list[ResultRecord]]:
    out: dict[Any, list[ResultRecord]] = {}
    for rec in records:
        out.setdefault(key(rec), []).append(rec)
    return out


def accuracy_by_subset(records: Iterable[ResultRecord],
                       rule: TieRule | str | None = None) -> dict[str, Accuracy]:
    groups = group_by(records, lambda r: r.subset)
    return {k: accuracy(v, rule) for k, v in sorted(groups.items())}


def tie_rate(records: Iterable[ResultRecord]) -> dict[str, Any]:
    """Share of multi-response items with a valid score whose top score is shared. Items with
    no valid sample are not counted here (see `parse_stats`)."""
    n = ties = 0
    for rec in usable(records):
        if rec.n_responses < 2:
            continue
        top = top_set(record_scores(rec))
        if not top:
            continue
        n += 1
        ties += len(top) > 1
    return {"items": n, "ties": ties, "tie_rate": ties / n if n else None}


# --------------------------------------------------------------------------------------------
# Parse failures, cost
# --------------------------------------------------------------------------------------------
def parse_stats(records: Iterable[ResultRecord]) -> dict[str, Any]:
    """Items judged (a valid sample) and failed (none); samples invalid, by kind; and the
    valid samples of meta-guided items that the meta judge could not rate."""
    recs = list(records)
    samples = invalid = parse_failures = api_errors = unrated = 0
    for rec in recs:
        if rec.verdict is None:
            continue
        for s in rec.verdict.samples:
            samples += 1
            invalid += not s.valid
            parse_failures += s.status is SampleStatus.PARSE_FAILURE
            api_errors += s.status is SampleStatus.API_ERROR
            unrated += rec.verdict.k_meta is not None and s.valid and s.meta_score is None
    n_judged = len(usable(recs))
    return {
        "items": len(recs),
        "items_judged": n_judged,
        "items_failed": len(recs) - n_judged,
        "samples": samples,
        "samples_invalid": invalid,
        "samples_parse_failure": parse_failures,
        "samples_api_error": api_errors,
        "samples_meta_unrated": unrated,
        "invalid_sample_rate": invalid / samples if samples else None,
    }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def cost_stats(records: Iterable[ResultRecord]) -> dict[str, Any]:
    """Mean tokens, calls, cost (USD, over items whose cost is known) and wall time per item,
    and the cached share: the fraction of all prompt tokens the provider read from its prompt
    cache (None when no prompt token was billed)."""
    recs = [r for r in records if r.verdict is not None]
    usages = [r.verdict.usage for r in recs if r.verdict is not None]
    costs = [u.cost_usd for u in usages if u.cost_usd is not None]
    walls = [r.verdict.wall_time_s for r in recs if r.verdict is not None]
    prompt_total = sum(u.prompt_tokens for u in usages)
    return {
        "items": len(recs),
        "prompt_tokens": _mean([u.prompt_tokens for u in usages]),
        "cached_prompt_tokens": _mean([u.cached_prompt_tokens for u in usages]),
        "cached_share": (sum(u.cached_prompt_tokens for u in usages) / prompt_total
                         if prompt_total else None),
        "completion_tokens": _mean([u.completion_tokens for u in usages]),
        "total_tokens": _mean([u.total_tokens for u in usages]),
        "calls": _mean([u.calls for u in usages]),
        "cost_usd": _mean(costs),
        "total_cost_usd": sum(costs) if costs else None,
        "wall_time_s": _mean(walls),
    }


# --------------------------------------------------------------------------------------------
# RM-Bench 3x3 style matrix
# --------------------------------------------------------------------------------------------
def rmbench_matrix(records: Iterable[ResultRecord],
                   rule: TieRule | str | None = None) -> dict[str, Any]:
    """Accuracy of chosen style i (row) vs rejected style j (column), styles 0 concise,
    1 detailed, 2 detailed markdown. As RM-Bench defines them: hard = mean of the upper-right
    cells (i < j: the chosen response is less styled than the rejected one), normal = the
    diagonal, easy = the lower-left cells; total = mean of all nine cells."""
    cells: dict[tuple[int, int], Accuracy] = {}
    for rec in records:
        i, j = rec.metadata.get("chosen_style"), rec.metadata.get("rejected_style")
        ok = item_correct(rec, rule)
        if i is None or j is None or ok is None:
            continue
        cells[(i, j)] = cells.get((i, j), Accuracy(0, 0)) + Accuracy(1, ok)
    matrix: list[list[float | None]] = [[None] * 3 for _ in range(3)]
    for (i, j), acc in cells.items():
        if 0 <= i < 3 and 0 <= j < 3:
            matrix[i][j] = acc.value

    def mean_of(pairs: list[tuple[int, int]]) -> float | None:
        vals = [matrix[i][j] for i, j in pairs if matrix[i][j] is not None]
        return sum(v for v in vals if v is not None) / len(vals) if vals else None

    idx = [(i, j) for i in range(3) for j in range(3)]
    return {
        "matrix": matrix,
        "n": sum(a.n for a in cells.values()),
        "hard": mean_of([(i, j) for i, j in idx if i < j]),
        "normal": mean_of([(i, j) for i, j in idx if i == j]),
        "easy": mean_of([(i, j) for i, j in idx if i > j]),
        "total": mean_of(idx),
    }


def rmbench_by_domain(records: Iterable[ResultRecord],
                      rule: TieRule | str | None = None) -> dict[str, dict[str, Any]]:
    """`rmbench_matrix` per domain (chat, code, safety: both safety files pooled, as RM-Bench
    does), plus "average": the mean over domains of each figure."""
    groups = group_by(records, lambda r: r.metadata.get("domain", r.subset))
    out = {d: rmbench_matrix(v, rule) for d, v in sorted(groups.items())}
    if out:
        avg: dict[str, Any] = {"n": sum(v["n"] for v in out.values())}
        for key in ("hard", "normal", "easy", "total"):
            vals = [v[key] for v in out.values() if v[key] is not None]
            avg[key] = sum(vals) / len(vals) if vals else None
        out["average"] = avg
    return out


# --------------------------------------------------------------------------------------------
# RMB
# --------------------------------------------------------------------------------------------
RMB_PARTS = (("Helpfulness", "bon"), ("Helpfulness", "pairwise"), ("Harmlessness", "bon"),
             ("Harmlessness", "pairwise"))


def rmb_scores(records: Iterable[ResultRecord],
               rule: TieRule | str | None = None) -> dict[str, Any]:
    """RMB as the paper scores it: accuracy of Help-BoN, Help-Pair, Harm-BoN, Harm-Pair (BoN
    correct only when the argmax is the labelled best) and their plain mean (over the parts
    present)."""
    groups = group_by(records, lambda r: (r.metadata.get("goal"), r.metadata.get("kind")))
    out: dict[str, Any] = {}
    values: list[float] = []
    for goal, kind in RMB_PARTS:
        acc = accuracy(groups.get((goal, kind), []), rule)
        name = f"{'help' if goal == 'Helpfulness' else 'harm'}_{kind}"
        out[name] = acc.value
        out[f"{name}_n"] = acc.n
        if acc.value is not None:
            values.append(acc.value)
    out["rmb"] = sum(values) / len(values) if values else None
    out["parts"] = len(values)
    return out


# --------------------------------------------------------------------------------------------
# Single-response error detection (ReaLMistake, XSTest)
# --------------------------------------------------------------------------------------------
def mean_score(rec: ResultRecord, response: int = 0) -> float | None:
    """A response's 1-10 score: its mean over the samples the run's vote used (the kept ones
    under meta-guided voting), through `aggregate`; None for a failed item."""
    if rec.verdict is None or response >= rec.n_responses:
        return None
    return revote(rec.verdict, voting=VotingMethod.MEAN).scores[response]


def roc_auc(y_true: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None with a single class."""
    if len(y_true) != len(scores):
        raise ValueError("y_true and scores differ in length")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    n_pos = sum(1 for y in y_true if y)
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = sum(r for r, y in zip(ranks, y_true, strict=True) if y)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def binary_scores(records: Iterable[ResultRecord], threshold: float = NEUTRAL_SCORE
                  ) -> dict[str, Any]:
    """Error detection on single responses, where a high score means "no error".

    ROC-AUC of the mean 1-10 score against the gold "no error" flag (the paper's ReaLMistake
    metric), and precision / recall / F1 of the *error* class when a score below `threshold`
    flags an error. Over the judged items: a failed item (no valid score) is counted apart,
    never given a score.
    """
    y_ok: list[bool] = []
    vals: list[float] = []
    for rec in usable(records):
        if rec.label.kind is not LabelKind.BINARY or rec.label.error is None:
            continue
        s = mean_score(rec)
        assert s is not None  # a judged item has a valid score
        y_ok.append(not rec.label.error)
        vals.append(s)
    tp = fp = fn = tn = 0
    for ok, s in zip(y_ok, vals, strict=True):
        pred_error = s < threshold
        if pred_error and not ok:
            tp += 1
        elif pred_error and ok:
            fp += 1
        elif not pred_error and not ok:
            fn += 1
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall > 0 else None)
    n = len(vals)
    return {"n": n, "roc_auc": roc_auc(y_ok, vals), "threshold": threshold,
            "precision": precision, "recall": recall, "f1": f1,
            "accuracy": (tp + tn) / n if n else None, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "error_rate_gold": (n - sum(y_ok)) / n if n else None}


# --------------------------------------------------------------------------------------------
# Position consistency, agreement with humans
# --------------------------------------------------------------------------------------------
def _preference(scores: Sequence[float | None]) -> Hashable:
    top = top_set(scores)
    if not top:
        return None
    return top[0] if len(top) == 1 else "tie"


def position_consistency(records: Iterable[ResultRecord]) -> dict[str, Any]:
    """Within each pair, do samples shown in different orders prefer the same response?

    For every two valid samples of an item shown in different orders, they agree when both pick
    the same response (or both tie). The item's rate is the share of agreeing cross-order sample
    pairs; the result is the mean over items that have valid samples in at least two orders
    (k >= 2 with balanced permutations)."""
    rates: list[float] = []
    for rec in usable(records):
        if rec.n_responses != 2 or rec.verdict is None:
            continue
        by_order: dict[tuple[int, ...], list[Hashable]] = {}
        for s in rec.verdict.samples:
            if s.valid and s.scores is not None:
                by_order.setdefault(tuple(s.permutation), []).append(_preference(s.scores))
        orders = list(by_order.values())
        if len(orders) < 2:
            continue
        agree = total = 0
        for a in range(len(orders)):
            for b in range(a + 1, len(orders)):
                for pa in orders[a]:
                    for pb in orders[b]:
                        total += 1
                        agree += pa == pb
        rates.append(agree / total)
    return {"items": len(rates), "consistency": _mean(rates)}


def _decisive_pick(rec: ResultRecord) -> int | None:
    """The response the item's vote picked, in the dataset's order, when the vote is decisive
    (one response, no tie, not broken by a tie rule); else None."""
    if rec.verdict is None or not judged(rec):
        return None
    vote = revote(rec.verdict)
    if vote.best is None or vote.tie:
        return None
    return rec.order[vote.best] if rec.order is not None else vote.best


def paired_position_consistency(run_a: Iterable[ResultRecord],
                                run_b: Iterable[ResultRecord]) -> dict[str, Any]:
    """Two runs of the same items, typically one with `reverse=True`: over the items whose
    vote is decisive in both orders (a tie, or a failure, in either says nothing about
    position), the share where both pick the same response (in the dataset's order).
    `undecided` counts the shared items left out."""
    b_by_id = {r.item_id: r for r in run_b}
    n = agree = undecided = 0
    for ra in run_a:
        rb = b_by_id.get(ra.item_id)
        if rb is None or ra.n_responses < 2:
            continue
        pa, pb = _decisive_pick(ra), _decisive_pick(rb)
        if pa is None or pb is None:
            undecided += 1
            continue
        n += 1
        agree += pa == pb
    return {"items": n, "consistency": agree / n if n else None, "undecided": undecided}


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two label sequences; None when undefined (chance agreement is 1)."""
    if len(a) != len(b):
        raise ValueError("the two label sequences differ in length")
    n = len(a)
    if n == 0:
        return None
    po = sum(1 for x, y in zip(a, b, strict=True) if x == y) / n
    cats = set(a) | set(b)
    pe = sum((list(a).count(c) / n) * (list(b).count(c) / n) for c in cats)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def human_agreement(records: Iterable[ResultRecord]) -> dict[str, Any]:
    """Cohen's kappa between the judge's pairwise preference (response 0, 1 or "tie") and the
    human label (best or tie), over two-response items. Meaningful where gold ties exist; also
    given for tie-free sets. An item with no valid sample counts as a tie."""
    human: list[Hashable] = []
    judge: list[Hashable] = []
    gold_ties = 0
    for rec in usable(records):
        if rec.n_responses != 2 or rec.label.kind not in (LabelKind.BEST, LabelKind.TIE):
            continue
        h: Hashable = rec.label.best if rec.label.kind is LabelKind.BEST else "tie"
        gold_ties += h == "tie"
        j = _preference(record_scores(rec))
        human.append(h)
        judge.append("tie" if j is None else j)
    agree = sum(1 for x, y in zip(human, judge, strict=True) if x == y)
    return {"items": len(human), "gold_ties": gold_ties, "kappa": cohen_kappa(human, judge),
            "agreement": agree / len(human) if human else None}


# --------------------------------------------------------------------------------------------
# Inference-time scaling from stored samples
# --------------------------------------------------------------------------------------------
def has_meta_scores(records: Iterable[ResultRecord]) -> bool:
    """Whether any item was voted meta-guided."""
    return any(r.verdict is not None and r.verdict.k_meta is not None for r in records)


def scaling_curve(records: Iterable[ResultRecord], ks: Sequence[int] | None = None, *,
                  meta: bool = False) -> list[tuple[int, Accuracy]]:
    """Accuracy of Voting@j (or MetaRM@j with `meta`) for each j in `ks` (default 1..k): the
    vote over each item's first j stored samples (`revote`, the run's rules), over the items
    with a single gold best and a valid sample among those j."""
    recs = [r for r in records if r.verdict is not None and r.label.best_index is not None
            and r.n_responses >= 2]
    k_max = max((r.verdict.k for r in recs if r.verdict is not None), default=0)
    points: list[tuple[int, Accuracy]] = []
    for j in (ks if ks is not None else range(1, k_max + 1)):
        n = correct = 0
        for rec in recs:
            assert rec.verdict is not None
            vote = revote(rec.verdict, j, meta=meta)
            if not vote.used_samples:
                continue
            n += 1
            correct += vote.best == rec.label.best_index
        points.append((j, Accuracy(n, correct)))
    return points


# --------------------------------------------------------------------------------------------
# Bias probes: position, length, agreement among the k samples
# --------------------------------------------------------------------------------------------
LENGTHS_KEY = "response_chars"
"""Item metadata key holding each response's length in characters, in the dataset's order
(`judgekit bench bias` stores it, so its runs carry their own lengths)."""


def first_position_wins(records: Iterable[ResultRecord]) -> dict[str, Any]:
    """How often a sample's single best response is the one it was shown first.

    Over valid samples of multi-response items; a sample whose top score is shared picks nothing
    and is counted in `ties`. An order-blind judge wins from the first position at `chance`
    (the mean of 1/n) when the gold response is shown first as often as by chance
    (`gold_shown_first`: balanced permutations at k >= 2, or a run pooled with its --reverse
    twin); a higher rate is a first-position bias, a lower one a last-position bias."""
    samples = decided = first = ties = gold_n = gold_first = 0
    chance: list[float] = []
    for rec in usable(records):
        if rec.n_responses < 2 or rec.verdict is None:
            continue
        gold = rec.label.best_index
        for s in rec.verdict.samples:
            if not s.valid or s.scores is None:
                continue
            samples += 1
            shown_first = s.permutation[0] if s.permutation else 0
            if gold is not None:
                gold_n += 1
                gold_first += gold == shown_first
            pick = _preference(s.scores)
            if not isinstance(pick, int):
                ties += 1
                continue
            decided += 1
            first += pick == shown_first
            chance.append(1.0 / rec.n_responses)
    return {"samples": samples, "decided": decided, "ties": ties, "first_wins": first,
            "first_position_win_rate": first / decided if decided else None,
            "chance": _mean(chance), "gold_shown_first": gold_first / gold_n if gold_n else None}


def record_lengths(rec: ResultRecord,
                   lengths: Mapping[str, Sequence[int]] | None = None) -> list[int] | None:
    """The record's response lengths in the order the judge saw them: from `lengths` (by item
    id, dataset order) or the record's own `response_chars` metadata, remapped through
    `rec.order` for a --reverse run; None when unknown or of the wrong size."""
    raw = (lengths or {}).get(rec.item_id) or rec.metadata.get(LENGTHS_KEY)
    if raw is None or len(raw) != rec.n_responses:
        return None
    values = [int(x) for x in raw]
    return [values[i] for i in rec.order] if rec.order is not None else values


def length_bias(records: Iterable[ResultRecord],
                lengths: Mapping[str, Sequence[int]] | None = None) -> dict[str, Any]:
    """Does the judge prefer the longer of two responses?

    Over judged two-response items with known lengths (characters; see `record_lengths`):

    * `correlation`: between the score margin (mean 1-10 score of response 0 minus response 1)
      and the length margin (its length minus the other's), computed with both orders of every
      pair, so it does not depend on which response is listed first (that is the uncentered
      correlation sum(dx*ds) / sqrt(sum dx^2 * sum ds^2));
    * `longer_win_rate`: among the untied items (the vote picked one response without a tie)
      of unequal lengths, the share where the vote picked the longer response;
    * `acc_longer_wrong` / `acc_longer_right`: accuracy (the run's tie rule) on pairs whose
      gold best is the shorter / the longer response. A length-biased judge does worse on the
      first.
    """
    sxy = sxx = syy = 0.0
    n_corr = decided = longer_wins = 0
    wrong = right = Accuracy(0, 0)
    for rec in usable(records):
        lens = record_lengths(rec, lengths) if rec.n_responses == 2 else None
        if lens is None or rec.verdict is None:
            continue
        dx = float(lens[0] - lens[1])
        a, b = mean_score(rec, 0), mean_score(rec, 1)
        if a is not None and b is not None:
            ds = a - b
            n_corr += 1
            sxy += dx * ds
            sxx += dx * dx
            syy += ds * ds
        if not dx:
            continue
        longer = 0 if dx > 0 else 1
        vote = revote(rec.verdict)
        if vote.best is not None and not vote.tie:
            decided += 1
            longer_wins += vote.best == longer
        ok = item_correct(rec)
        if ok is None:
            continue
        if rec.label.best_index == longer:
            right += Accuracy(1, ok)
        else:
            wrong += Accuracy(1, ok)
    corr = sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else None
    return {"pairs": n_corr, "correlation": corr, "decided": decided,
            "longer_win_rate": longer_wins / decided if decided else None,
            "n_longer_wrong": wrong.n, "acc_longer_wrong": wrong.value,
            "n_longer_right": right.n, "acc_longer_right": right.value}


def _sample_verdict(scores: Sequence[float], n_responses: int) -> Hashable:
    """What one sample says: its single best response (or "tie"); for a single response, which
    side of `NEUTRAL_SCORE` its score lands on."""
    if n_responses == 1:
        s = scores[0]
        return "good" if s > NEUTRAL_SCORE else "bad" if s < NEUTRAL_SCORE else "neutral"
    return _preference(scores)


def sample_agreement(records: Iterable[ResultRecord]) -> dict[str, Any]:
    """Agreement among an item's k samples, over items with at least two valid samples.

    An item's agreement is the share of its pairs of valid samples that say the same (same
    single best response, or both a tie; single responses: the same side of 5.5); `agreement`
    is the mean over items, `unanimous_rate` the share of items whose samples all agree.
    `per_item` lists the items' rates (for a histogram)."""
    rates: list[float] = []
    unanimous = 0
    for rec in usable(records):
        if rec.verdict is None:
            continue
        says = [_sample_verdict(s.scores, rec.n_responses) for s in rec.verdict.samples
                if s.valid and s.scores is not None]
        if len(says) < 2:
            continue
        pairs = [(a, b) for i, a in enumerate(says) for b in says[i + 1:]]
        rates.append(sum(a == b for a, b in pairs) / len(pairs))
        unanimous += len(set(says)) == 1
    return {"items": len(rates), "agreement": _mean(rates),
            "unanimous_rate": unanimous / len(rates) if rates else None, "per_item": rates}


def length_points(records: Iterable[ResultRecord],
                  lengths: Mapping[str, Sequence[int]] | None = None) -> list[tuple[float, float]]:
    """(length margin, score margin) of each two-response item, both of response 0 minus
    response 1 (the points behind `length_bias`'s correlation, for a scatter plot)."""
    out: list[tuple[float, float]] = []
    for rec in usable(records):
        lens = record_lengths(rec, lengths) if rec.n_responses == 2 else None
        a, b = mean_score(rec, 0), mean_score(rec, 1)
        if lens is not None and a is not None and b is not None:
            out.append((float(lens[0] - lens[1]), a - b))
    return out
