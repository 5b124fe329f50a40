"""The search's ETA from measured wall time per network, by cell size, so it converges as networks finish.

Per network the runner records its wall time (from the previous network's end, so planning, predictor fits,
export and probe are counted where they happen) and its block count. A remaining network is estimated by:

- the mean measured time of networks with the same block count, when there are any;
- else, with two or more block counts measured, a straight line through the per-size means (time grows with
  blocks: cells with more blocks hold more operators), extrapolated;
- else (only smaller cells measured, e.g. during step 1 of the progressive search) the time of the largest
  measured size: bigger cells take at least that long, so the sum is a **lower bound** and is shown as "≥".

Nothing measured yet gives no estimate ("?"), never a guess. Which sizes are still to come is the strategy's
business: the progressive search trains step k's cells with k blocks (`progressive_future_blocks`); random and
evolution draw sizes across the whole range, so their unplanned networks count at the mean of every network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from popnas_seg.config import RunConfig
    from popnas_seg.results import TrainingResult


@dataclass(frozen=True)
class Estimate:
    """Seconds still to go; `lower_bound` when some of it was extrapolated from smaller cells only."""

    seconds: float
    lower_bound: bool = False

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(self.seconds + other.seconds, self.lower_bound or other.lower_bound)


@dataclass
class NetworkTimes:
    """Measured wall seconds per network, grouped by block count (0: the U-Net or other non-cell networks)."""

    by_blocks: dict[int, list[float]] = field(default_factory=dict)

    def add(self, blocks: int, seconds: float) -> None:
        if math.isfinite(seconds) and seconds >= 0:
            self.by_blocks.setdefault(int(blocks), []).append(float(seconds))

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_blocks.values())

    def mean_all(self) -> float | None:
        values = [t for v in self.by_blocks.values() for t in v]
        return sum(values) / len(values) if values else None

    def per_network(self, blocks: int) -> Estimate | None:
        """Estimated seconds of one network with `blocks` blocks (module docstring); None before any measurement."""
        means = {b: sum(v) / len(v) for b, v in self.by_blocks.items() if v and b > 0}
        if int(blocks) in self.by_blocks and self.by_blocks[int(blocks)]:
            values = self.by_blocks[int(blocks)]
            return Estimate(sum(values) / len(values))
        if not means:
            overall = self.mean_all()
            return None if overall is None else Estimate(overall, lower_bound=True)
        if len(means) >= 2:
            xs, ys = list(means), list(means.values())
            x_mean, y_mean = sum(xs) / len(xs), sum(ys) / len(ys)
            sxx = sum((x - x_mean) ** 2 for x in xs)
            slope = max(0.0, sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sxx)
            return Estimate(max(0.0, y_mean + slope * (blocks - x_mean)))
        ((size, mean),) = means.items()
        return Estimate(mean, lower_bound=blocks > size)

    def remaining(self, blocks: Sequence[int]) -> Estimate | None:
        """Estimated seconds for networks of the given block counts; None when nothing is measured yet."""
        total = Estimate(0.0)
        for b in blocks:
            one = self.per_network(b)
            if one is None:
                return None
            total = total + one
        return total


def progressive_future_blocks(config: Any, last_planned_step: int) -> list[int]:
    """Block counts of the networks the progressive search will plan after `last_planned_step` (at most).

    Step k trains `max_children` cells of k blocks plus exploration children on every step but the last, the
    same count as `strategies.progressive_budget`.
    """
    ss, blocks = config.search_strategy, int(config.search_space.blocks)
    explore = 0 if ss.pnas_mode else int(ss.max_exploration_children)
    out: list[int] = []
    for step in range(max(2, last_planned_step + 1), blocks + 1):
        out += [step] * (int(ss.max_children) + (explore if step < blocks else 0))
    return out


def search_remaining(
    times: NetworkTimes,
    config: Any,
    step_blocks: Sequence[int],
    later_planned: Sequence[int],
    last_planned_step: int,
    unplanned_count: int,
) -> Estimate | None:
    """The whole search's remaining time: this step's networks, planned later ones, and those not planned yet."""
    known = times.remaining([*step_blocks, *later_planned])
    if known is None:
        return None
    if config.search_strategy.strategy == "progressive":
        future = times.remaining(progressive_future_blocks(config, last_planned_step))
        return None if future is None else known + future
    mean = times.mean_all()
    return None if mean is None else known + Estimate(max(0, unplanned_count) * mean)


def format_eta(estimate: Estimate | None) -> str:
    """'?' when unknown, '≥4m10s' for a lower bound, else '4m10s'."""
    if estimate is None or not math.isfinite(estimate.seconds):
        return "?"
    seconds = int(round(estimate.seconds))
    if seconds >= 3600:
        text = f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    elif seconds >= 60:
        text = f"{seconds // 60}m{seconds % 60:02d}s"
    else:
        text = f"{seconds}s"
    return ("≥" if estimate.lower_bound else "") + text


@dataclass
class Progress:
    """Terminal progress: networks done/planned, the best so far, and an ETA from measured times (search/eta.py)."""

    planned_total: int
    times: NetworkTimes = field(default_factory=NetworkTimes)
    last_mark: float = field(default_factory=time.monotonic)

    def network_done(self, blocks: int) -> None:
        """Record one finished network: its wall time is the time since the previous one finished (or the start)."""
        now = time.monotonic()
        self.times.add(blocks, now - self.last_mark)
        self.last_mark = now

    def etas(
        self, config: RunConfig, step: int, planned: dict[int, dict], finished: dict[int, TrainingResult]
    ) -> tuple[str, str]:
        """(this step, whole search) remaining time as text: '?' before any measurement, '≥' for a lower bound."""

        def todo(step_no: int) -> list[int]:
            return [int(n.get("blocks", 0)) for n in planned[step_no]["networks"] if n["network_id"] not in finished]

        step_left = self.times.remaining(todo(step))
        later = [b for s in sorted(planned) if s > step for b in todo(s)]
        planned_count = sum(len(e["networks"]) for e in planned.values())
        search_left = search_remaining(
            self.times, config, todo(step), later, max(planned), self.planned_total - planned_count
        )
        return format_eta(step_left), format_eta(search_left)
