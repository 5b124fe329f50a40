"""Search strategies: decide WHAT to train next (the runner knows HOW to train, probe and log it).

Every strategy is a pure function of (config, seed, history): the same finished networks give the same plan, so
a resumed run re-plans identically. The runner asks `plan_step(step, history)` for steps 1, 2, ... until it
answers None.

- `ProgressiveStrategy` (POPNAS): step 1 trains every single-block cell (or a params-stratified sample of them);
  step b expands the cells of step b-1 by one block, scores every child, and every single-block cell a capped
  step 1 left untrained, with the predictors (ridge or GIN for Dice and analog Dice, SVR for time, exact params
  from the encoding), and trains up to `max_children` cells of the predicted Pareto front (greedy
  predicted contribution to the hypervolume of the trained networks, each child's scores raised by the
  predictor's leave-one-out error; the best predicted scores with `selection: "score"`; top-K by predicted
  score in `pnas_mode`), taken from the next non-dominated fronts when the front holds fewer, plus up to
  `max_exploration_children` exploration cells.
- `RandomStrategy`: cells uniform over valid encodings of 1..B blocks at the same budget, in batches.
- `EvolutionStrategy`: multi-objective evolution (NSGA-II rank + crowding survival) over the same objectives.

This module is the registry of strategy names (`register_strategy`, `make_strategy`, the built-in factories);
the strategies live in search/progressive.py (step 1's cells: search/step_one.py) and search/baselines.py, what
they share in search/strategy_base.py. Their names are re-exported here, so the old import paths keep working.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from popnas_seg.config import RunConfig
from popnas_seg.predictors.registry import AUTO_GIN_MIN_NETWORKS
from popnas_seg.registry import STRATEGIES
from popnas_seg.search.baselines import EvolutionStrategy, RandomStrategy
from popnas_seg.search.progressive import ProgressiveStrategy
from popnas_seg.search.step_one import b1_cells, spread_order
from popnas_seg.search.strategy_base import (
    ORIGINS,
    PARENT_ORIGINS,
    PlannedNetwork,
    SearchStrategy,
    StepPlan,
    baseline_budget,
    parse_history,
    progressive_budget,
    score_value,
    strategy_objectives,
)

# Re-exported: the strategies' classes and shared helpers keep their old import path (tests, benchmarks, docs).
__all__ = [
    "AUTO_GIN_MIN_NETWORKS",
    "ORIGINS",
    "PARENT_ORIGINS",
    "EvolutionStrategy",
    "PlannedNetwork",
    "ProgressiveStrategy",
    "RandomStrategy",
    "SearchStrategy",
    "StepPlan",
    "StrategyContext",
    "StrategyFactory",
    "b1_cells",
    "baseline_budget",
    "evolution",
    "make_strategy",
    "parse_history",
    "progressive",
    "progressive_budget",
    "random_search",
    "register_strategy",
    "score_value",
    "spread_order",
    "strategy_objectives",
]


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy factory may read: the run's config, the networks' input and classes, where a strategy
    saves its fitted predictors (None: nowhere) and the run's logger."""

    config: RunConfig
    input_shape: tuple[int, ...]
    classes_count: int
    predictors_dir: Path | None
    logger: logging.Logger


StrategyFactory = Callable[[StrategyContext], SearchStrategy]


def register_strategy(name: str, *, replace: bool = False) -> Callable[[StrategyFactory], StrategyFactory]:
    """Decorator that makes `name` a valid `search_strategy.strategy` (docs/ARCHITECTURE.md, a new strategy)."""
    return STRATEGIES.register(name, replace=replace)


def progressive(context: StrategyContext) -> SearchStrategy:
    return ProgressiveStrategy(
        context.config, context.input_shape, context.classes_count, context.predictors_dir, context.logger
    )


def random_search(context: StrategyContext) -> SearchStrategy:
    return RandomStrategy(context.config, context.logger)


def evolution(context: StrategyContext) -> SearchStrategy:
    return EvolutionStrategy(context.config, context.logger)


def make_strategy(
    config: RunConfig,
    input_shape: Sequence[int],
    classes_count: int,
    predictors_dir: Path | None = None,
    logger: logging.Logger | None = None,
) -> SearchStrategy:
    """The strategy registered as `config.search_strategy.strategy` (deprecated config names are logged here)."""
    log = logger or logging.getLogger("popnas_seg")
    for note in config.search_strategy.deprecation_notes():
        log.warning("%s", note)
    factory: StrategyFactory = STRATEGIES.get(config.search_strategy.strategy)
    context = StrategyContext(
        config,
        tuple(int(v) for v in input_shape),
        int(classes_count),
        None if predictors_dir is None else Path(predictors_dir),
        log,
    )
    return factory(context)
