"""Statistics of the search study (bench_search_study.py): gap closure with a bootstrap CI, the paired one-sided
test, anytime bands, equal-compute reads and random's expectation by subsampling.

Pure numpy/scipy on plain lists, so every number of the study is checked on hand-made cases
(tests/test_search_study.py) without training anything.

Why these and not the earlier ratio of median regrets (progressive <= 0.5 x random's): that ratio has no
yardstick for what is reachable at all (a floor set by training luck looks like a miss) and 5 seeds gave a 90 %
interval of about 0.4-1.6. Gap closure measures the share of random's regret that progressive removes of what an
oracle knowing the re-evaluated means removes, and its CI says whether the seeds can tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

BOOTSTRAP = 4000  # resamples: the 5 %/95 % percentiles move by < 0.01 between bootstrap seeds at 10 seeds
LEVEL = 0.90  # two-sided level of every interval (its lower end is the one-sided 95 % bound)


def gap_closure(r_random: ArrayLike, r_progressive: ArrayLike, r_oracle: ArrayLike) -> float:
    """(R_random - R_progressive) / (R_random - R_oracle) on the means over seeds; NaN when the oracle is no
    better than random (nothing to close). 1: progressive is as good as the oracle; 0: as random; < 0: worse."""
    rr = float(np.asarray(r_random, dtype=float).mean())
    rp = float(np.asarray(r_progressive, dtype=float).mean())
    ro = float(np.asarray(r_oracle, dtype=float).mean())
    gap = rr - ro
    return (rr - rp) / gap if gap > 0 else math.nan


def gap_closure_ci(
    r_random: Sequence[float],
    r_progressive: Sequence[float],
    r_oracle: Sequence[float] | float,
    resamples: int = BOOTSTRAP,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Gap closure and its percentile bootstrap interval over seeds.

    Random and progressive regrets are paired by seed (the runs of one seed share the search seed) and resampled
    together; per-seed oracle regrets (same length) are resampled with them, a single oracle value is fixed.
    Resamples where the oracle is no better than random are dropped (their share is not in the interval)."""
    rr, rp = np.asarray(r_random, dtype=float), np.asarray(r_progressive, dtype=float)
    if rr.shape != rp.shape or rr.size == 0:
        raise ValueError(f"paired regrets needed, got {rr.size} random and {rp.size} progressive")
    ro = np.asarray(r_oracle, dtype=float)
    paired_oracle = ro.ndim == 1 and ro.size == rr.size
    estimate = gap_closure(rr, rp, ro)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, rr.size, size=(resamples, rr.size))
    mr, mp = rr[idx].mean(axis=1), rp[idx].mean(axis=1)
    mo = ro[idx].mean(axis=1) if paired_oracle else np.full(resamples, float(ro.mean()))
    gap = mr - mo
    ok = gap > 0
    if not ok.any():
        return estimate, math.nan, math.nan
    values = (mr[ok] - mp[ok]) / gap[ok]
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return estimate, float(lo), float(hi)


def paired_one_sided(a: Sequence[float], b: Sequence[float]) -> tuple[int, float | None]:
    """Seeds where `a` beats `b`, and the one-sided Wilcoxon signed-rank p that `a` tends to exceed `b`.

    Paired, because the runs of one seed share its search seed: the seed-to-seed spread moves both, and an
    unpaired test (Mann-Whitney U) drowns a consistent difference in it."""
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    wins = int((diffs > 0).sum())
    if diffs.size < 2 or np.all(diffs == 0):
        return wins, None
    from scipy.stats import wilcoxon

    return wins, float(wilcoxon(diffs, alternative="greater").pvalue)


def bootstrap_band(
    curves: Sequence[Sequence[float]], resamples: int = BOOTSTRAP, level: float = LEVEL, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds of anytime curves (value after k = 1..n networks) and its percentile bootstrap band.

    Curves are cut to the shortest so every point holds every seed. Returns (mean, low, high), each [n]."""
    runs = [list(c) for c in curves if len(c)]
    if not runs:
        empty = np.zeros(0)
        return empty, empty, empty
    n = min(len(c) for c in runs)
    arr = np.array([c[:n] for c in runs], dtype=float)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(resamples, len(arr)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return arr.mean(axis=0), np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)


def prefix_at_compute(seconds: Sequence[float], budget: float) -> int:
    """How many networks (in training order) fit in `budget` cumulative training seconds."""
    total = np.cumsum(np.asarray(seconds, dtype=float))
    return int(np.searchsorted(total, budget + 1e-9, side="right"))


def value_at_compute(curve: Sequence[float], seconds: Sequence[float], budget: float) -> float:
    """An anytime curve's value after the networks that fit in `budget` seconds (0 before the first one)."""
    k = prefix_at_compute(seconds, budget)
    return float(curve[k - 1]) if k else 0.0


def subsamples(pool_size: int, n: int, draws: int, seed: int = 0) -> list[np.ndarray]:
    """`draws` subsets of `n` distinct rows of a pool of uniform draws: random search's budget-`n` outcomes,
    to estimate its expectation from all the draws already made (far less noisy than a few random runs)."""
    if n > pool_size:
        raise ValueError(f"cannot subsample {n} of {pool_size} uniform draws")
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(pool_size, size=n, replace=False)) for _ in range(draws)]
