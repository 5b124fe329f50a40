"""The baselines of the search benchmarks: random search and multi-objective evolution, at the progressive
search's budget, spent in batches (search/strategies.py's docstring)."""

from __future__ import annotations

import logging

import numpy as np

from popnas_seg.config import RunConfig
from popnas_seg.results import TrainingResult
from popnas_seg.search.calibration import on_top_scale
from popnas_seg.search.pareto import (
    crowding_distance,
    non_dominated_sort,
    objective_matrix,
)
from popnas_seg.search.strategy_base import (
    PlannedNetwork,
    StepPlan,
    baseline_budget,
    parse_history,
    strategy_objectives,
)
from popnas_seg.search_space.encoding import (
    Cell,
    mutate_cell,
    random_cell,
)

# tries per wanted cell when sampling random/mutated cells that are new to the run
_SAMPLING_TRIES = 200


class _BatchedBaseline:
    """Shared budget bookkeeping: the budget is spent in batches of max_children + max_exploration_children."""

    origins: frozenset[str] = frozenset()

    def __init__(self, config: RunConfig, logger: logging.Logger | None = None) -> None:
        self.config = config
        self.log = logger or logging.getLogger("popnas_seg")
        ss = config.search_strategy
        self.budget = baseline_budget(config)
        self.batch = max(1, ss.max_children + ss.max_exploration_children)

    def planned_total(self) -> int:
        return self.budget

    def _mine(self, parsed: list[tuple[TrainingResult, Cell]]) -> list[tuple[TrainingResult, Cell]]:
        return [(r, c) for r, c in parsed if r.origin in self.origins]

    def _random_cells(self, rng: np.random.Generator, n: int, seen: set[str]) -> list[Cell]:
        """Up to n new cells, blocks uniform in 1..B, each uniform over encodings of that size."""
        space = self.config.search_space
        out: list[Cell] = []
        for _ in range(n * _SAMPLING_TRIES):
            if len(out) >= n:
                break
            blocks = int(rng.integers(1, space.blocks + 1))
            cell = random_cell(rng, blocks, space.operators, space.lookback_depth)
            if cell.key() not in seen:
                seen.add(cell.key())
                out.append(cell)
        return out


class RandomStrategy(_BatchedBaseline):
    """Random search over the same encodings and budget as the progressive search."""

    origins = frozenset({"random"})

    def plan_step(self, step: int, history: list[TrainingResult]) -> StepPlan | None:
        parsed = parse_history(history)
        remaining = self.budget - len(self._mine(parsed))
        if step < 1 or remaining <= 0:
            return None
        seen = {c.key() for _, c in parsed}
        rng = np.random.default_rng([self.config.others.seed, step, 17])
        cells = self._random_cells(rng, min(self.batch, remaining), seen)
        if not cells:
            self.log.info("random search: no new cell found; the search space is exhausted")
            return None
        return StepPlan(step, [PlannedNetwork(c, "random") for c in cells], [], [])


class EvolutionStrategy(_BatchedBaseline):
    """Multi-objective evolution (NSGA-II survival) over the same objectives as the run's hypervolume.

    The first `population_size` networks are random ("random"). After that, the population is the
    `population_size` survivors among every network of this search (elitist): whole non-dominated fronts of the
    measured objectives (`strategy_objectives`), the last front cut by crowding distance (larger first, ties by
    network id). Each child ("evolution") mutates the winner of a tournament of `tournament_size` survivors
    (lower front first, then larger crowding). A failed network counts as worst in every objective, an unprobed
    one as worst in analog Dice. Children of one batch share the survivors of the moment, so every decision
    depends on the history only.
    """

    origins = frozenset({"random", "evolution"})

    def plan_step(self, step: int, history: list[TrainingResult]) -> StepPlan | None:
        ss, space = self.config.search_strategy, self.config.search_space
        parsed = parse_history(on_top_scale(history, len(self.config.rung_budgets) - 1))
        mine = self._mine(parsed)
        remaining = self.budget - len(mine)
        if step < 1 or remaining <= 0:
            return None
        seen = {c.key() for _, c in parsed}
        rng = np.random.default_rng([self.config.others.seed, step, 29])
        wanted = min(self.batch, remaining)
        if len(mine) < ss.population_size:  # initial population: random cells
            cells = self._random_cells(rng, min(wanted, ss.population_size - len(mine)), seen)
            if not cells:
                return None
            return StepPlan(step, [PlannedNetwork(c, "random") for c in cells], [], [])

        population, rank, crowd = self.survivors(mine)
        children: list[Cell] = []
        for _ in range(wanted):
            child = None
            for _ in range(_SAMPLING_TRIES):
                contenders = rng.choice(len(population), size=min(ss.tournament_size, len(population)), replace=False)
                winner = population[int(min(contenders, key=lambda i: (rank[i], -crowd[i], i)))][1]
                try:
                    candidate = mutate_cell(winner, rng, space.operators, space.lookback_depth)
                except ValueError:
                    continue
                if candidate.key() not in seen:
                    child = candidate
                    break
            if child is None:
                break
            seen.add(child.key())
            children.append(child)
        if not children:
            self.log.info("evolution: no new mutation found; the search ends")
            return None
        return StepPlan(step, [PlannedNetwork(c, "evolution") for c in children], [], [])

    def survivors(
        self, mine: list[tuple[TrainingResult, Cell]]
    ) -> tuple[list[tuple[TrainingResult, Cell]], np.ndarray, np.ndarray]:
        """NSGA-II survival: the survivors, their front index and their crowding distance within the front."""
        size = self.config.search_strategy.population_size
        objectives = strategy_objectives(self.config)
        values, maximise = objective_matrix([r for r, _ in mine], objectives)
        values[[r.status != "ok" for r, _ in mine]] = np.nan  # a failed network is worst in every objective
        kept: list[int] = []
        ranks: list[int] = []
        crowds: list[float] = []
        for level, front in enumerate(non_dominated_sort(values, maximise)):
            distance = crowding_distance(values[front], maximise)
            by_crowding = sorted(range(len(front)), key=lambda j: (-distance[j], int(front[j])))
            take = by_crowding[: size - len(kept)]
            kept += [int(front[j]) for j in take]
            ranks += [level] * len(take)
            crowds += [float(distance[j]) for j in take]
            if len(kept) >= size:
                break
        return [mine[i] for i in kept], np.array(ranks), np.array(crowds)
