"""Which searched networks become finalists: selection rules, the knee of the Dice / params front, macro variants.

Selection rules (`select_finalists`):

- ``size_buckets`` (default): finalists across sizes, so a run always ends with a small network (issue 34: the
  best-scoring networks were the largest, and a small cell trained well matched them). The first finalist is the
  best network of at most `max_params` params (default `SMALL_UNET_FRACTION` of the U-Net's); the others are the
  best of the measured front in each of `count - 1` size buckets, log-spaced from `max_params` to the largest
  front network. "Best" is the risk-aware analog score (mean - k x std at the horizon), then Dice; networks
  without a probe rank by Dice after the probed ones. Empty buckets leave their slot to the best front networks
  not yet picked. If no network is that small, the smallest trained network takes the first slot.
- ``best_dice``: the measured Pareto front (over the search objectives) ordered by validation Dice.
- ``best_analog``: the same front ordered by the risk-aware analog score (unprobed networks last).
- ``knee``: the 2-D Dice / params front. Both axes are scaled to [0, 1] over the front (params on a log scale,
  since size matters in ratios), and each point's signed distance from the chord that joins the two extreme
  points (the smallest and the most accurate network) is measured; the knee is the point farthest above the
  chord, i.e. the one where giving up size stops buying Dice. Further finalists follow in decreasing distance.

When the front holds fewer networks than `analog.finalists`, the next non-dominated fronts fill up the list
with the same ordering.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from popnas_seg.config import ArchitectureConfig
from popnas_seg.results import TrainingResult

# Default `analog.max_params`: this fraction of the U-Net baseline's params (110k at the default architecture ->
# 16.5k; issue 34's target is a finalist of <= 20k params, goal 15k).
SMALL_UNET_FRACTION = 0.15


def default_max_params(unet_params: int, max_params: int | None = None) -> int:
    """`analog.max_params` if set, else SMALL_UNET_FRACTION of the U-Net's params (at least 1)."""
    return int(max_params) if max_params is not None else max(1, round(SMALL_UNET_FRACTION * unet_params))


def _analog_key(r: TrainingResult) -> tuple:
    """Sort key, best first: probed before unprobed, risk-aware analog score, Dice, fewer params, id."""
    score = r.analog_objective
    return (score is None, -(score if score is not None else 0.0), -r.dice, r.params, r.network_id)


def size_bucket_finalists(
    results: Sequence[TrainingResult], count: int, objectives: Sequence[str], max_params: int
) -> list[TrainingResult]:
    """The `size_buckets` rule (module doc): a small finalist first, then the best front network per size
    bucket above `max_params`, then the best remaining front networks."""
    ok = [r for r in results if r.status == "ok" and r.dice is not None and math.isfinite(r.dice)]
    if not ok or count < 1:
        return []
    small = [r for r in ok if r.params <= max_params]
    picked = [min(small, key=_analog_key) if small else min(ok, key=lambda r: (r.params, -r.dice, r.network_id))]
    fronts = _fronts(ok, list(objectives))
    front = fronts[0] if fronts else []
    larger = [r for r in front if r.params > max(max_params, picked[0].params)]
    if count > 1 and larger:
        lo = math.log(max(max_params, picked[0].params))
        hi = math.log(max(r.params for r in larger))
        edges = np.linspace(lo, hi, count)  # count - 1 buckets (lo, e1], (e1, e2], ..., (e_{n-2}, hi]
        for b in range(count - 1):
            inside = [r for r in larger if edges[b] < math.log(r.params) <= edges[b + 1] + 1e-12]
            if inside:
                picked.append(min(inside, key=_analog_key))
    for f in fronts:
        for r in sorted(f, key=_analog_key):
            if len(picked) >= count:
                return picked
            if all(p.network_id != r.network_id for p in picked):
                picked.append(r)
    return picked[:count]


def _fronts(results: Sequence[TrainingResult], objectives: Sequence[str]) -> list[list[TrainingResult]]:
    from popnas_seg.search.pareto import non_dominated_sort, objective_matrix

    if not results:
        return []
    values, maximise = objective_matrix(results, objectives)
    return [[results[int(i)] for i in front] for front in non_dominated_sort(values, maximise)]


def knee_distances(front: Sequence[TrainingResult]) -> list[float]:
    """Signed distance of each point above the chord joining the extreme points (Dice up, log params down).

    Both axes are normalised to [0, 1] over `front`; positive means the point bulges towards "small and
    accurate" beyond the straight trade-off line. Degenerate fronts (one point, or no spread) give zeros.
    """
    if len(front) < 3:
        return [0.0] * len(front)
    size = np.log10(np.maximum(np.array([r.params for r in front], float), 1.0))
    dice = np.array([r.dice for r in front], float)
    span_s, span_d = np.ptp(size), np.ptp(dice)
    if span_s == 0 or span_d == 0:
        return [0.0] * len(front)
    # x = smallness (1 = smallest), y = accuracy (1 = most accurate): the ideal corner is (1, 1).
    x = (size.max() - size) / span_s
    y = (dice - dice.min()) / span_d
    a = np.array([x[np.argmax(x)], y[np.argmax(x)]])  # smallest network
    b = np.array([x[np.argmax(y)], y[np.argmax(y)]])  # most accurate network
    chord = b - a
    norm = float(np.hypot(*chord))
    if norm == 0:
        return [0.0] * len(front)
    # 2-D cross product: positive on the side of the ideal corner (1, 1).
    cross = chord[0] * (y - a[1]) - chord[1] * (x - a[0])
    ideal = chord[0] * (1 - a[1]) - chord[1] * (1 - a[0])
    sign = 1.0 if ideal >= 0 else -1.0
    return (sign * cross / norm).tolist()


def select_finalists(
    results: Sequence[TrainingResult], rule: str, count: int, objectives: Sequence[str], max_params: int | None = None
) -> list[TrainingResult]:
    """The `count` networks to retrain, by `rule` ("size_buckets", "best_dice", "best_analog" or "knee"); see
    the module doc. `size_buckets` needs `max_params` (`default_max_params`)."""
    if rule == "size_buckets":
        if max_params is None:
            raise ValueError("selection rule size_buckets needs max_params")
        return size_bucket_finalists(results, count, objectives, max_params)
    ok = [r for r in results if r.status == "ok" and r.dice is not None and math.isfinite(r.dice)]
    if rule == "knee":
        fronts = _fronts(ok, ["dice", "params"])
    else:
        fronts = _fronts(ok, list(objectives))
    picked: list[TrainingResult] = []
    for front in fronts:
        if rule == "best_dice":
            ordered = sorted(front, key=lambda r: (-r.dice, r.params, r.network_id))
        elif rule == "best_analog":
            ordered = sorted(front, key=_analog_key)
        elif rule == "knee":
            dist = knee_distances(front)
            ordered = [r for _, r in sorted(zip(dist, front), key=lambda p: (-p[0], -p[1].dice, p[1].network_id))]
        else:
            raise ValueError(f"unknown selection rule {rule!r}")
        for r in ordered:
            if len(picked) < count and all(p.network_id != r.network_id for p in picked):
                picked.append(r)
        if len(picked) >= count:
            break
    return picked


def macro_variants(
    arch: ArchitectureConfig, input_shape: Sequence[int], enabled: bool
) -> list[tuple[str, ArchitectureConfig]]:
    """(suffix, architecture) pairs to try: the searched one, then filters x2 and motifs + 1 where valid.

    motifs + 1 needs the image sides divisible by 2**(motifs + 1); it is skipped otherwise.
    """
    out = [("", arch)]
    if not enabled:
        return out
    if arch.filters * 2 <= 512:
        out.append((f"_f{arch.filters * 2}", arch.model_copy(update={"filters": arch.filters * 2})))
    m = arch.motifs + 1
    if m <= 6 and all(int(s) % (2**m) == 0 for s in input_shape[:2]):
        out.append((f"_m{m}", arch.model_copy(update={"motifs": m})))
    return out
