"""Choosing items: subset patterns, a plain or stratified limit, and subset counts."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Sequence

from judgekit.bench.datasets.base import DatasetError
from judgekit.bench.items import BenchItem


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
    items = list(items)
    out = [it for it in items if subset is None or subset_matches(it.subset, subset)]
    if subset is not None and not out:
        raise DatasetError(f"no items in subset {subset!r}; {known_subsets(items, subset)}")
    if limit is None:
        return out
    return stratified(out, max(0, limit)) if stratify else out[: max(0, limit)]


def known_subsets(items: Iterable[BenchItem], pattern: str | None = None,
                  most: int = 40) -> str:
    """The valid subset names, for an error on an unknown one: close matches of `pattern`
    first (a typo's fix), then every name when there are at most `most`, else the top-level
    groups (a group name selects its subsets) with their counts."""
    names = sorted(subsets(items))
    close = difflib.get_close_matches(pattern or "", names, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    if len(names) <= most:
        return f"{hint}the subsets are: {', '.join(names)}"
    members: dict[str, list[str]] = {}
    for name in names:
        members.setdefault(name.split("/")[0], []).append(name)
    shown = ", ".join(f"{g}/* ({len(m)})" if len(m) > 1 else m[0] for g, m in members.items())
    return (f"{hint}{len(names)} subsets in groups: {shown} (`judgekit bench list -v` names "
            "them all)")


def subsets(items: Iterable[BenchItem]) -> dict[str, int]:
    """Item count per subset, in first-seen order."""
    out: dict[str, int] = {}
    for it in items:
        out[it.subset] = out.get(it.subset, 0) + 1
    return out
