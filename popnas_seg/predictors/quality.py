"""How good the predictors were on the networks trained next: rank correlations for scores, MAPE for time.

Rank correlation is what matters for the search (the front is a ranking), so it is reported for every step;
both functions ignore pairs with a NaN or inf on either side and return NaN when too little is left. A rank
correlation needs `MIN_RANK_POINTS` networks: with 2 Spearman can only be +-1, with 3 only +-1 or +-0.5, so
one swapped pair decides it (the report says "too few networks" instead of printing -1.000 at n = 2).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

MIN_RANK_POINTS = 4


def _finite_pairs(
    predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predicted, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    if p.shape != m.shape:
        raise ValueError(f"predicted ({p.size}) and measured ({m.size}) differ in length")
    keep = np.isfinite(p) & np.isfinite(m)
    return p[keep], m[keep]


def rank_quality(predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Spearman and Kendall (tau-b) correlations; NaN below MIN_RANK_POINTS pairs or when a side is constant."""
    from scipy.stats import kendalltau, spearmanr

    p, m = _finite_pairs(predicted, measured)
    if p.size < MIN_RANK_POINTS or np.all(p == p[0]) or np.all(m == m[0]):
        return {"spearman": float("nan"), "kendall": float("nan")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spearman = float(spearmanr(p, m).statistic)
        kendall = float(kendalltau(p, m).statistic)
    return {"spearman": spearman, "kendall": kendall}


def mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error in percent (100 * mean |p - m| / |m|), skipping measured zeros."""
    p, m = _finite_pairs(predicted, measured)
    keep = m != 0
    if not np.any(keep):
        return float("nan")
    return float(100.0 * np.mean(np.abs(p[keep] - m[keep]) / np.abs(m[keep])))
