"""Scores of networks that stopped at a lower rung, mapped onto the top rung's scale for the predictors.

In a multi-fidelity search (search/promotion.py) most networks stop at rung 0 and a few reach the top rung. A
predictor fitted on the raw mix would learn the budget a network happened to get, not its cell: a promoted cell's
Dice after 8 epochs is not comparable with a stopped one's after 2. So every network's target is its
highest-rung score, and a score measured at a lower rung r is first mapped onto the top rung by a monotone
increasing map learned from the networks measured at both (the simplest honest form of "the rung as a
feature"): a least-squares line of top-rung score on rung-r score when at least `MIN_LINE_PAIRS` networks have
both and the slope comes out positive, else the mean shift (top - rung r) of the pairs there are, else nothing.

The map is monotone, so it never reorders the networks that stopped at the same rung; it only places them among
the promoted ones. It is fitted on the promoted networks alone (the best of their rung), so its slope is
attenuated by their narrow range: the stopped networks are pulled towards the promoted ones' mean, which is the
regression to the mean their noisier measurement calls for.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from popnas_seg.results import RungScore, TrainingResult

__all__ = ["MIN_LINE_PAIRS", "RungMap", "fit_rung_map", "on_top_scale", "top_rung_values"]

MIN_LINE_PAIRS = 3


class RungMap:
    """y = slope x + intercept, slope > 0 (monotone increasing)."""

    def __init__(self, slope: float = 1.0, intercept: float = 0.0) -> None:
        self.slope = float(slope)
        self.intercept = float(intercept)

    def __call__(self, value: float) -> float:
        return self.slope * float(value) + self.intercept

    def __repr__(self) -> str:
        return f"RungMap(slope={self.slope:.4g}, intercept={self.intercept:.4g})"


def fit_rung_map(pairs: Sequence[tuple[float, float]]) -> RungMap:
    """The monotone map from lower-rung scores to top-rung scores of `pairs` (lower, top) (see module doc)."""
    clean = [(float(x), float(y)) for x, y in pairs if math.isfinite(float(x)) and math.isfinite(float(y))]
    if not clean:
        return RungMap()
    x, y = np.array(clean).T
    if len(clean) >= MIN_LINE_PAIRS and float(np.ptp(x)) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        if slope > 0:
            return RungMap(float(slope), float(intercept))
    return RungMap(1.0, float(np.mean(y - x)))


def top_rung_values(
    records: Sequence[TrainingResult],
    top: int,
    value: Callable[[RungScore], float | None],
    current: Callable[[TrainingResult], float | None],
) -> list[float | None]:
    """Each record's score on the top rung's scale, aligned with `records`.

    `value` reads the score from a `RungScore`, `current` from the record itself (its highest rung's, used as is
    for records at the top rung and for single-rung records without `rungs`). A lower-rung score goes through
    the map fitted on the records measured at that rung and at `top`.
    """
    maps: dict[int, RungMap] = {}

    def rung_map(rung: int) -> RungMap:
        if rung not in maps:
            pairs = []
            for r in records:
                low, high = r.rung_score(rung), r.rung_score(top)
                if low is not None and high is not None:
                    a, b = value(low), value(high)
                    if a is not None and b is not None:
                        pairs.append((a, b))
            maps[rung] = fit_rung_map(pairs)
        return maps[rung]

    out: list[float | None] = []
    for r in records:
        raw = current(r)
        if raw is None or not r.rungs or r.rung >= top or not math.isfinite(float(raw)):
            out.append(raw)
        else:
            out.append(rung_map(r.rung)(raw))
    return out


def on_top_scale(records: Sequence[TrainingResult], top: int) -> list[TrainingResult]:
    """Copies of `records` whose Dice, mIoU and analog score are on the top rung's scale (`top_rung_values`), and
    whose training time is rung 0's (what an untrained child costs at rung 0): the history a strategy fits its
    predictors on and ranks by. Records of a single-rung run come back unchanged (no `rungs`)."""
    if top <= 0 or not any(r.rungs for r in records):
        return list(records)
    dice = top_rung_values(records, top, lambda s: s.dice, lambda r: r.dice)
    miou = top_rung_values(records, top, lambda s: s.miou, lambda r: r.miou)
    analog = top_rung_values(records, top, lambda s: s.analog_score, lambda r: r.analog_score)
    out = []
    for r, d, m, a in zip(records, dice, miou, analog):
        first = r.rung_score(0)
        out.append(
            dataclasses.replace(
                r,
                dice=r.dice if d is None else float(d),
                miou=r.miou if m is None else float(m),
                analog_score=a,
                train_time_s=r.train_time_s if first is None else first.train_time_s,
            )
        )
    return out
