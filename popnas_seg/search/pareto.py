"""Multi-objective machinery with mixed directions: non-dominated sorting, crowding, hypervolume.

Every function takes the objective values as an ``[n, m]`` matrix plus one ``maximise`` flag per column, and
works internally in *minimisation space* (maximised columns negated), so callers never flip signs themselves.
Missing values (NaN, e.g. a network that was never probed) are treated as the worst possible value: they never
make a point dominate another one and never add hypervolume.

Objective names, directions and aliases live in `popnas_seg.objectives` (a bottom-floor module config/
validates against too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from popnas_seg.objectives import OBJECTIVES, canonical_objective, check_objectives

# A point in objective space: a list of floats or a 1-D array (the reference point is one).
Vector = Sequence[float] | np.ndarray

# Margin applied to the largest value of an unbounded (minimised) objective to place the reference point.
REFERENCE_MARGIN = 1.1


def maximise_flags(objectives: Sequence[str]) -> list[bool]:
    """The direction of each named objective (True = larger is better)."""
    check_objectives(objectives)
    return [OBJECTIVES[canonical_objective(o)][1] for o in objectives]


def _as_matrix(values: Any, maximise: Sequence[bool]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1) if len(maximise) == 1 else arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"objective values must be a [n, m] matrix, got shape {arr.shape}")
    if arr.shape[1] != len(maximise):
        raise ValueError(f"{arr.shape[1]} objective columns but {len(maximise)} directions")
    return arr


def to_minimisation(values: Any, maximise: Sequence[bool]) -> np.ndarray:
    """Negate maximised columns and map NaN to +inf (the worst value in minimisation space)."""
    arr = _as_matrix(values, maximise).copy()
    flip = np.asarray(maximise, dtype=bool)
    arr[:, flip] = -arr[:, flip]
    arr[np.isnan(arr)] = np.inf
    return arr


def dominates(a: Sequence[float], b: Sequence[float], maximise: Sequence[bool]) -> bool:
    """Strict Pareto dominance: `a` is no worse than `b` everywhere and better somewhere."""
    fa, fb = to_minimisation(np.asarray([a, b], dtype=float), maximise)
    return bool(np.all(fa <= fb) and np.any(fa < fb))


def weakly_dominates(a: Sequence[float], b: Sequence[float], maximise: Sequence[bool]) -> bool:
    """Non-strict dominance as in POPNAS' reference: `a` is no worse than `b` in every objective."""
    fa, fb = to_minimisation(np.asarray([a, b], dtype=float), maximise)
    return bool(np.all(fa <= fb))


def non_dominated_sort(values: Any, maximise: Sequence[bool]) -> list[np.ndarray]:
    """Fronts of row indices, best first (front 0 = the Pareto front); identical points share a front.

    O(n^2 m) with numpy: fine for the few thousand candidates of one step.
    """
    f = to_minimisation(values, maximise)
    n = f.shape[0]
    if n == 0:
        return []
    # dominated_by[i, j] = True when j strictly dominates i
    le = np.all(f[None, :, :] <= f[:, None, :], axis=2)
    lt = np.any(f[None, :, :] < f[:, None, :], axis=2)
    dominated_by = le & lt
    counts = dominated_by.sum(axis=1)
    remaining = np.ones(n, dtype=bool)
    fronts: list[np.ndarray] = []
    while remaining.any():
        front = np.flatnonzero(remaining & (counts == 0))
        if front.size == 0:  # cannot happen for a strict partial order; guard against NaN surprises
            front = np.flatnonzero(remaining)
        fronts.append(front)
        remaining[front] = False
        counts = counts - dominated_by[:, front].sum(axis=1)
    return fronts


def pareto_mask(values: Any, maximise: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the non-dominated rows (strict dominance; duplicates are all kept)."""
    f = to_minimisation(values, maximise)
    n = f.shape[0]
    mask = np.ones(n, dtype=bool)
    # chunked so that memory stays O(chunk * n * m) on large candidate sets
    chunk = max(1, 2_000_000 // max(1, n * f.shape[1]))
    for start in range(0, n, chunk):
        block = f[start : start + chunk]
        le = np.all(f[None, :, :] <= block[:, None, :], axis=2)
        lt = np.any(f[None, :, :] < block[:, None, :], axis=2)
        mask[start : start + chunk] = ~np.any(le & lt, axis=1)
    return mask


def crowding_distance(values: Any, maximise: Sequence[bool]) -> np.ndarray:
    """NSGA-II crowding distance of each row within the given set (pass one front at a time).

    Boundary points get +inf; a column where all points are equal adds nothing. Directions do not change the
    distance, `maximise` is taken for a uniform signature (and to map NaN to the worst end).
    """
    f = to_minimisation(values, maximise)
    n, m = f.shape
    distance = np.zeros(n, dtype=float)
    if n <= 2:
        distance[:] = np.inf
        return distance
    for j in range(m):
        col = f[:, j]
        order = np.argsort(col, kind="stable")
        lo, hi = col[order[0]], col[order[-1]]
        distance[order[0]] = distance[order[-1]] = np.inf
        with np.errstate(invalid="ignore"):  # inf - inf (a column of missing values) is skipped below
            span = hi - lo
        if not np.isfinite(span) or span <= 0:
            continue
        distance[order[1:-1]] += (col[order[2:]] - col[order[:-2]]) / span
    return distance


def hypervolume(points: Any, maximise: Sequence[bool], reference: Vector) -> float:
    """Volume dominated by `points` and bounded by `reference` (given in the objectives' own directions).

    Points that do not strictly dominate the reference in every objective (or hold NaN) contribute nothing.
    """
    f = to_minimisation(points, maximise)
    ref = to_minimisation(np.asarray(reference, dtype=float).reshape(1, -1), maximise)[0]
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"hypervolume reference must be finite, got {list(reference)}")
    keep = np.all(np.isfinite(f), axis=1) & np.all(f < ref, axis=1)
    f = f[keep]
    if f.shape[0] == 0:
        return 0.0
    if f.shape[1] == 1:
        return float(ref[0] - f[:, 0].min())
    # Normalise each column by the reference span of the points so pymoo's exact algorithm works on O(1) numbers
    # (params are ~1e5 while Dice is ~1): the volume is rescaled back afterwards.
    lo = f.min(axis=0)
    span = ref - lo
    from pymoo.indicators.hv import HV

    scaled = (f - lo) / span
    volume = float(HV(ref_point=np.ones(f.shape[1]))(scaled))
    return volume * float(np.prod(span))


def ideal_point(objectives: Sequence[str]) -> np.ndarray:
    """The best reachable value of each objective: 1 for the bounded scores, 0 for params and time."""
    check_objectives(objectives)
    return np.array([1.0 if OBJECTIVES[canonical_objective(o)][1] else 0.0 for o in objectives], dtype=float)


def normalised_hypervolume(points: Any, objectives: Sequence[str], reference: Vector) -> float:
    """Hypervolume divided by the box between `reference` and the ideal point, so it lies in [0, 1].

    1.0 would be a network with score 1 (Dice, analog Dice) and 0 params / 0 s; runs with the same reference
    compare directly. The reference rule is `reference_point`'s.
    """
    maximise = maximise_flags(objectives)
    box = float(np.prod(np.abs(ideal_point(objectives) - np.asarray(reference, dtype=float))))
    if not box > 0:
        raise ValueError(f"the reference point {list(reference)} coincides with the ideal in some objective")
    return hypervolume(points, maximise, reference) / box


def greedy_hypervolume_selection(
    values: Any,
    maximise: Sequence[bool],
    reference: Vector,
    k: int,
    order: Sequence[int] | None = None,
    held: Any = None,
    draws: Any = None,
) -> list[int]:
    """Up to `k` row indices chosen one at a time by their contribution to the hypervolume of `held` (points
    already measured, e.g. the run's trained networks) plus the picks so far.

    Every pick adds the most volume, so the ends of a front (cheap, robust) are taken as soon as they add more
    than another point near the best score; with `held`, a row adds only what the measured front lacks (a
    cheap cell predicted level with a trained one adds nothing). Ties and rows that add nothing are resolved
    by `order` (default: row order); once nothing adds volume, the rest follow `order`.

    `draws` ([S, n, m]: S plausible outcomes of every row, e.g. a prediction plus a sampled error) turns the
    gain into its Monte-Carlo expectation (expected hypervolume improvement, each draw keeping its own picks):
    a row whose mean lies just under the measured front still adds in the draws where it lands above it, and
    a second row next to a first pick still adds where the first one falls short.
    """
    f = _as_matrix(values, maximise)
    samples = f[None] if draws is None else np.asarray(draws, dtype=float)
    if samples.ndim != 3 or samples.shape[1:] != f.shape:
        raise ValueError(f"draws must be [S, {f.shape[0]}, {f.shape[1]}], got shape {samples.shape}")
    base = np.zeros((0, f.shape[1])) if held is None else _as_matrix(held, maximise)
    if base.shape[0]:
        base = base[pareto_mask(base, maximise)]  # the same volume, fewer points to recompute it from
    order = list(range(f.shape[0])) if order is None else [int(i) for i in order]
    chosen: list[int] = []
    held_volume = hypervolume(base, maximise, reference)
    current = np.full(samples.shape[0], held_volume)
    # gains below this are float noise of the exact algorithm (a point inside the held front "adds" ~1e-17)
    tolerance = max(1e-9 * hypervolume(np.vstack([base, f]), maximise, reference), 1e-300)
    while len(chosen) < min(k, len(order)):
        best, best_gain, best_gains = None, 0.0, current
        for i in order:
            if i in chosen:
                continue
            gains = (
                np.array([hypervolume(np.vstack([base, draw[chosen + [i]]]), maximise, reference) for draw in samples])
                - current
            )
            gain = float(gains.mean())
            if gain > tolerance and gain > best_gain * (1 + 1e-12):
                best, best_gain, best_gains = i, gain, gains
        if best is None:  # nothing adds volume: fill by the given order
            chosen += [i for i in order if i not in chosen][: k - len(chosen)]
            break
        chosen.append(best)
        current = current + best_gains
    return chosen


def objective_matrix(records: Sequence[Any], objectives: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
    """Measured objective values of `records` (TrainingResult or mappings) and their directions.

    A missing value (e.g. analog Dice of a network that was not probed) becomes NaN.
    """
    check_objectives(objectives)
    values = np.full((len(records), len(objectives)), np.nan, dtype=float)
    for i, record in enumerate(records):
        for j, name in enumerate(objectives):
            attr = OBJECTIVES[canonical_objective(name)][0]
            if isinstance(record, Mapping):  # a CSV row: the objective property is its score, else its mean
                value = record.get(attr)
                if attr == "analog_objective":
                    score = record.get("analog_score")
                    value = record.get("analog_dice") if score in (None, "") else score
            else:
                value = getattr(record, attr, None)
            if value is not None and value != "":
                values[i, j] = float(value)
    return values, maximise_flags(objectives)


def reference_point(
    objectives: Sequence[str],
    values: Any | None = None,
    *,
    overrides: Mapping[str, float] | None = None,
    largest_params: float | None = None,
) -> np.ndarray:
    """The hypervolume reference point, one value per objective, in the objectives' own directions.

    Rule (``overrides[name]``, the config's ``search_strategy.hypervolume_reference``, replaces any of them):

    - ``dice``, ``mean_iou``, ``analog_dice``: 0.0 (maximised and bounded in [0, 1], so every network
      with a positive score adds volume and hypervolumes of different runs compare directly);
    - ``params``: 1.1 x `largest_params`, the params of the largest network of the search space
      (``models.cost.largest_network_params``; ``search.reference.run_reference_point`` passes it); without it
      1.1 x the largest measured value in `values`;
    - ``time``: 1.1 x the largest measured training time in `values` (time has no analytic bound).

    `values` is the ``[n, m]`` matrix of the measured objectives (as from ``objective_matrix``).
    """
    check_objectives(objectives)
    overrides = {canonical_objective(k): v for k, v in (overrides or {}).items()}
    matrix = None if values is None else np.asarray(values, dtype=float).reshape(-1, len(objectives))

    def measured_max(j: int, name: str) -> float:
        column = np.array([]) if matrix is None else matrix[:, j]
        column = column[np.isfinite(column)]
        if column.size == 0:
            raise ValueError(
                f"no measured values to place the '{name}' reference point; "
                f"set search_strategy.hypervolume_reference.{name}"
            )
        return float(column.max())

    ref = np.zeros(len(objectives), dtype=float)
    for j, name in enumerate(canonical_objective(o) for o in objectives):
        if name in overrides:
            ref[j] = float(overrides[name])
        elif OBJECTIVES[name][1]:
            ref[j] = 0.0
        elif name == "params" and largest_params is not None:
            ref[j] = REFERENCE_MARGIN * float(largest_params)
        else:
            ref[j] = REFERENCE_MARGIN * measured_max(j, name)
    return ref
