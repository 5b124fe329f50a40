"""The measured front's hypervolume as a run trains its networks: the anytime curve that compares searches.

A run folder's csv/training_results.csv lists its networks in training order (`plots.load_results` reads them).
`hypervolume_curve` gives the normalised hypervolume (`pareto.normalised_hypervolume`) of the front of the first k
of them, k = 1..N, against one reference point chosen by the caller, so runs of one task (other strategies, other
seeds) compare on one scale, and `networks_to_reach` reads how many networks a run needed to reach another run's
final value. Why here and not in a benchmark: the strategy comparison of benchmarks/search/ and a user comparing
their own runs ask the same question of the same folders.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from popnas_seg.results import TrainingResult
from popnas_seg.search.pareto import normalised_hypervolume, objective_matrix


def usable_results(results: Sequence[TrainingResult], objectives: Sequence[str]) -> list[TrainingResult]:
    """Networks that count for the front: trained fine, and probed when analog Dice is an objective."""
    ok = [r for r in results if r.status == "ok"]
    if "analog_dice" in objectives:
        ok = [r for r in ok if r.analog_dice is not None]
    return ok


def front_hypervolume(results: Sequence[TrainingResult], objectives: Sequence[str], reference: np.ndarray) -> float:
    """Normalised hypervolume of the measured front of `results` (0 when none counts)."""
    usable = usable_results(results, objectives)
    if not usable:
        return 0.0
    values, _ = objective_matrix(usable, objectives)
    return float(normalised_hypervolume(values, objectives, reference))


def hypervolume_curve(
    results: Sequence[TrainingResult], objectives: Sequence[str], reference: np.ndarray
) -> list[float]:
    """Normalised hypervolume of the measured front over the first k networks, k = 1..len(results)."""
    return [front_hypervolume(results[:k], objectives, reference) for k in range(1, len(results) + 1)]


def networks_to_reach(curve: Sequence[float], target: float) -> int | None:
    """Smallest k whose prefix hypervolume reaches `target` (None: never)."""
    for k, hv in enumerate(curve, start=1):
        if hv >= target - 1e-12:
            return k
    return None
