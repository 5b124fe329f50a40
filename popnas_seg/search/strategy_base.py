"""What every search strategy shares: the plan it returns, the protocol the runner calls, the budgets.

The runner (search/runner.py) and the strategies (search/progressive.py, search/baselines.py) both read these;
the registry of strategy names is search/strategies.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from popnas_seg.config import RunConfig
from popnas_seg.results import TrainingResult
from popnas_seg.search_space.encoding import (
    Cell,
    single_block_cells,
)

ORIGINS = ("b1", "pareto", "exploration", "random", "evolution")
PARENT_ORIGINS = frozenset({"b1", "pareto", "exploration"})
# tries per wanted cell when sampling random/mutated cells that are new to the run
_SAMPLING_TRIES = 200


@dataclass
class PlannedNetwork:
    """One network the runner should train, and why it was chosen."""

    cell: Cell
    origin: str  # "b1" | "pareto" | "exploration" | "random" | "evolution"


@dataclass
class StepPlan:
    """The networks of one step plus the tables that explain the choice."""

    step: int  # 1-based step index (= blocks for the progressive search)
    networks: list[PlannedNetwork]
    predictions: list[dict]  # one row per scored candidate (csv/predictions_b<k>.csv)
    front: list[dict]  # the predicted Pareto front rows (csv/pareto_front_b<k>.csv); [] for baselines


class SearchStrategy(Protocol):
    def plan_step(self, step: int, history: list[TrainingResult]) -> StepPlan | None:
        """The networks of `step` given every network finished so far; None when the search is over."""

    def planned_total(self) -> int:
        """Networks the whole search will train (an upper bound, for progress bars and ETAs)."""


def strategy_objectives(config: RunConfig) -> list[str]:
    """Pareto objectives in order: the score metric, then the additional ones (analog only when probing)."""
    objectives: list[str] = [config.search_strategy.score_metric, *config.search_strategy.additional_pareto_objectives]
    if not config.analog.probe and "analog_dice" in objectives:
        objectives.remove("analog_dice")
    return objectives


def score_value(record: TrainingResult, metric: str) -> float:
    """The configured score of a finished network (`dice` or `mean_iou` -> TrainingResult.miou)."""
    value = record.miou if metric == "mean_iou" else record.dice
    return float("nan") if value is None else float(value)


def parse_history(history: Sequence[TrainingResult]) -> list[tuple[TrainingResult, Cell]]:
    """(record, cell) for every record whose encoding is a cell (baselines such as the U-Net are skipped)."""
    out = []
    for record in sorted(history, key=lambda r: r.network_id):
        try:
            out.append((record, Cell.from_string(record.encoding)))
        except ValueError:
            continue
    return out


def progressive_budget(config: RunConfig) -> int:
    """Networks the progressive search trains at most: step 1, then K children per step and exploration
    children on every step but the last (POPNAS explores only cells that will be expanded again)."""
    ss, space = config.search_strategy, config.search_space
    explore = 0 if ss.pnas_mode else ss.max_exploration_children
    b1 = len(single_block_cells(space.operators, space.lookback_depth))
    if ss.b1_max_networks is not None:
        b1 = min(b1, ss.b1_max_networks)
    return b1 + (space.blocks - 1) * ss.max_children + max(space.blocks - 2, 0) * explore


def baseline_budget(config: RunConfig) -> int:
    """The random/evolution budget: `max_networks`, or what the progressive search would train."""
    return config.search_strategy.max_networks or progressive_budget(config)
