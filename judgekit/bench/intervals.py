"""Uncertainty of benchmark numbers: Wilson intervals for a proportion, paired bootstrap bands
for a curve over the same items, and Pearson's r where it is defined.

A per-subset accuracy over 12 items is a guess, and a plot without intervals invites reading
noise as a difference; these are the intervals the plots draw (pure functions, no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054
"""The standard normal quantile of 0.975: a two-sided 95% interval."""


def wilson_interval(correct: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `correct / n` (0..1). Unlike the normal
    approximation it stays inside [0, 1] and is not empty at 0% or 100%, which small subsets
    hit often."""
    if n <= 0:
        raise ValueError("a proportion needs n > 0")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_band(outcomes: Sequence[Sequence[float]], *, draws: int = 1000,
                   level: float = 0.95, seed: int = 0) -> list[tuple[float, float]]:
    """A percentile bootstrap band for a curve of means: `outcomes[j]` holds one value per item
    at point j, the same items in the same order at every point. Items are resampled once per
    draw for all points together (paired), so the band follows the curve rather than treating
    its points as independent. Seeded: the same band every time."""
    import numpy as np

    if not outcomes:
        return []
    n = len(outcomes[0])
    if n == 0 or any(len(o) != n for o in outcomes):
        raise ValueError("every point needs the same, non-zero number of items")
    values = np.asarray(outcomes, dtype=float)                     # points x items
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=draws)
    means = values @ weights.T / n                                 # points x draws
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2], axis=1)
    return [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]


def pearson_r(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's correlation coefficient; None where it is undefined: fewer than 3 points, or
    either variable constant (a constant margin has no correlation with anything)."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 1e-12 * max(1.0, mx * mx) * n or syy <= 1e-12 * max(1.0, my * my) * n:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
