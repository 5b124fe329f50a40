"""The progressive strategy (POPNAS): step 1 trains single-block cells, each later step expands the cells of the
step before by one block, scores every child with the predictors and trains the predicted Pareto front plus
exploration cells (the whole rule: search/strategies.py's docstring)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.config import RunConfig
from popnas_seg.predictors.registry import (
    PredictorContext,
    make_score_predictor,
)
from popnas_seg.results import TrainingResult
from popnas_seg.search.calibration import on_top_scale
from popnas_seg.search.exploration import exploration_picks
from popnas_seg.search.pareto import (
    greedy_hypervolume_selection,
    maximise_flags,
    non_dominated_sort,
    objective_matrix,
    pareto_mask,
    weakly_dominates,
)
from popnas_seg.search.reference import run_reference_point
from popnas_seg.search.step_one import b1_cells, spread_order
from popnas_seg.search.strategy_base import (
    PARENT_ORIGINS,
    PlannedNetwork,
    StepPlan,
    parse_history,
    progressive_budget,
    score_value,
    strategy_objectives,
)
from popnas_seg.search_space.encoding import (
    Cell,
    expand_cell,
    rescales_its_parent,
    single_block_cells,
)


class ProgressiveStrategy:
    """POPNAS: progressive expansion, predictor-scored children, predicted Pareto front + exploration."""

    def __init__(
        self,
        config: RunConfig,
        input_shape: Sequence[int],
        classes_count: int,
        predictors_dir: Path | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.config = config
        height, width, channels = (int(v) for v in input_shape)
        self.input_shape = (height, width, channels)
        self.classes_count = int(classes_count)
        self.predictors_dir = None if predictors_dir is None else Path(predictors_dir)
        self.log = logger or logging.getLogger("popnas_seg")
        self.objectives = strategy_objectives(config)
        self._cost_cache: dict[str, tuple[int, int]] = {}

    def planned_total(self) -> int:
        return progressive_budget(self.config)

    # -- costs ----------------------------------------------------------------------------------------------
    def cost(self, cell: Cell) -> tuple[int, int]:
        """(params, FLOPs) computed exactly from the encoding, cached by canonical key."""
        key = cell.key()
        if key not in self._cost_cache:
            from popnas_seg.models.cost import count_flops, count_params

            arch = self.config.architecture_hyperparameters
            params = count_params(cell, arch, self.input_shape[-1], self.classes_count)
            flops = count_flops(cell, arch, self.input_shape, self.classes_count)
            self._cost_cache[key] = (int(params), int(flops))
        return self._cost_cache[key]

    # -- planning -------------------------------------------------------------------------------------------
    def plan_step(self, step: int, history: list[TrainingResult]) -> StepPlan | None:
        blocks = self.config.search_space.blocks
        if step < 1 or step > blocks:
            return None
        parsed = parse_history(on_top_scale(history, len(self.config.rung_budgets) - 1))
        seen = {cell.key() for _, cell in parsed}
        if step == 1:
            cells = [c for c in b1_cells(self.config, lambda c: self.cost(c)[0]) if c.key() not in seen]
            if not cells:
                return None
            cells = spread_order(cells)  # b1_cells comes cheapest first: every prefix spans the cost range
            return StepPlan(1, [PlannedNetwork(c, "b1") for c in cells], [], [])
        return self._plan_expansion(step, parsed, seen)

    def _parents(self, step: int, parsed: list[tuple[TrainingResult, Cell]]) -> list[Cell]:
        previous = [(r, c) for r, c in parsed if r.step == step - 1 and r.origin in PARENT_ORIGINS]
        ok = [c for r, c in previous if r.status == "ok"]
        # if every network of the previous step failed, still expand them: the predictors judge the children
        return ok or [c for _, c in previous]

    def _plan_expansion(self, step: int, parsed: list[tuple[TrainingResult, Cell]], seen: set[str]) -> StepPlan | None:
        space, ss = self.config.search_space, self.config.search_strategy
        parents = self._parents(step, parsed)
        candidates: list[Cell] = []
        keys: set[str] = set()
        # children that compute their parent again (see rescales_its_parent) would spend a network on noise
        skip_rescales = self.config.architecture_hyperparameters.concat_only_unused_blocks
        rescaled = 0
        for parent in parents:
            for child in expand_cell(parent, space.operators, space.lookback_depth):
                key = child.key()
                if key in keys or key in seen:
                    continue
                keys.add(key)
                if skip_rescales and rescales_its_parent(child):
                    rescaled += 1
                    continue
                candidates.append(child)
        # a capped step 1 leaves single-block cells untrained: they stay candidates of every later step, scored
        # beside the children, so the predictors can still pick one the cap left out (on the hard task about half
        # of each seed's measured union front is single-block cells)
        leftovers = 0
        for cell in single_block_cells(space.operators, space.lookback_depth):
            key = cell.key()
            if key not in keys and key not in seen:
                keys.add(key)
                candidates.append(cell)
                leftovers += 1
        if rescaled:
            self.log.info(
                "step %d: %d children left out: their new block only rescales the parent's output", step, rescaled
            )
        if not candidates:
            self.log.info("step %d: no new children to expand (%d parents); the search ends", step, len(parents))
            return None

        predicted = self._predict(step, parsed, candidates)
        costs = [self.cost(c) for c in candidates]
        columns = {
            ss.score_metric: predicted["score"],
            "params": np.array([p for p, _ in costs], dtype=float),
            "analog_dice": predicted.get("analog"),
            "time": predicted.get("time"),
        }
        objectives = [o for o in self.objectives if columns.get(o) is not None]
        dropped = [o for o in self.objectives if o not in objectives]
        if dropped:
            self.log.info(
                "step %d: objectives %s left out of the front (not enough data to predict them)", step, dropped
            )
        values = np.stack([columns[o] for o in objectives], axis=1)
        maximise = maximise_flags(objectives)
        score = predicted["score"]
        # highest predicted score first, ties by expansion order (parents by network id): deterministic
        order = [int(i) for i in np.argsort(-score, kind="stable")]

        front_mask = np.zeros(len(candidates), dtype=bool)
        chosen: list[int] = []
        if ss.pnas_mode:
            chosen = order[: ss.max_children]
        else:
            # the predicted Pareto front (strict dominance, so two candidates with identical predicted objectives
            # are both on it; equivalent cells never reach this point: candidates are deduplicated by key)
            front_mask = pareto_mask(values, maximise)
            on_front = [i for i in order if front_mask[i]]
            reference = self._predicted_reference(objectives, values)
            held, _ = objective_matrix([r for r, _ in parsed if r.status == "ok"], objectives)
            optimistic = values if ss.selection == "score" else self._optimistic(step, objectives, values, predicted)

            def take(members: list[int], k: int) -> list[int]:
                if ss.selection == "score":  # POPNAS: the best predicted scores (no crowding)
                    return members[:k]
                # greedy contribution to the hypervolume of the trained networks: a child is worth what it may
                # add to them, so the cheap and robust ends get children only while they can still gain (not one
                # more cell level with a trained 122-param one)
                return [
                    members[j]
                    for j in greedy_hypervolume_selection(optimistic[members], maximise, reference, k, held=held)
                ]

            chosen = take(on_front, ss.max_children)
            if len(chosen) < ss.max_children:
                # a predicted front smaller than K (on the easy task the predictors can rank one cheap cell above
                # every other) would leave the step's budget unspent: the next non-dominated fronts fill it
                for layer in non_dominated_sort(values, maximise)[1:]:
                    if len(chosen) >= ss.max_children:
                        break
                    in_layer = {int(j) for j in layer}
                    members = [i for i in order if i in in_layer]
                    chosen += take(members, ss.max_children - len(chosen))
                self.log.info(
                    "step %d: the predicted front holds %d cells; %d children come from the next fronts",
                    step,
                    int(front_mask.sum()),
                    len(chosen) - int(front_mask.sum()),
                )
        exploration: list[int] = []
        if not ss.pnas_mode and ss.max_exploration_children > 0 and step < space.blocks:
            exploration = exploration_picks(
                candidates,
                score,
                [candidates[i] for i in chosen],
                space.operators,
                space.lookback_depth,
                ss.max_exploration_children,
                lambda i, j: weakly_dominates(values[j], values[i], maximise),
            )
        origin = {i: "pareto" for i in chosen} | {i: "exploration" for i in exploration}
        networks = [PlannedNetwork(candidates[i], origin[i]) for i in chosen + exploration]

        rows = []
        for i in order:
            rows.append(
                {
                    "encoding": str(candidates[i]),
                    "blocks": len(candidates[i].blocks),
                    "predicted_dice": float(score[i]),
                    "predicted_analog_dice": _maybe(predicted.get("analog"), i),
                    "predicted_time": _maybe(predicted.get("time"), i),
                    "params": costs[i][0],
                    "flops": costs[i][1],
                    "pareto_optimal": bool(front_mask[i]),
                    "selected": i in origin,
                    "origin": origin.get(i, ""),
                }
            )
        front = [] if ss.pnas_mode else [row for row in rows if row["pareto_optimal"]]
        self.log.info(
            "step %d: %d parents -> %d new children + %d untrained single-block cells; predicted front %d; "
            "training %d pareto + %d exploration",
            step,
            len(parents),
            len(candidates) - leftovers,
            leftovers,
            int(front_mask.sum()),
            len(chosen),
            len(exploration),
        )
        return StepPlan(step, networks, rows, front)

    def _optimistic(
        self, step: int, objectives: list[str], values: np.ndarray, predicted: dict[str, Any]
    ) -> np.ndarray:
        """Predicted objectives with the scores raised by `selection_optimism` leave-one-out errors (capped at 1).

        Why: the trained front is the upper envelope of noisy measurements (lucky draws), while a predictor
        gives means; against that envelope almost no mid-size child is predicted to gain and the picks collapse
        onto the largest cells. An upper confidence bound counts what a child may plausibly add."""
        kappa = self.config.search_strategy.selection_optimism
        out = values.copy()
        raised = {
            self.config.search_strategy.score_metric: kappa * predicted.get("score_error", 0.0),
            "analog_dice": kappa * predicted.get("analog_error", 0.0),
        }
        for j, name in enumerate(objectives):
            if raised.get(name):
                out[:, j] = np.minimum(out[:, j] + raised[name], 1.0)
        if any(raised.values()):
            self.log.info(
                "step %d: children counted with predicted Dice + %.4f, analog Dice + %.4f (%.2g leave-one-out errors)",
                step,
                raised[self.config.search_strategy.score_metric],
                raised["analog_dice"],
                kappa,
            )
        return out

    def _predicted_reference(self, objectives: list[str], values: np.ndarray) -> np.ndarray:
        """The run's hypervolume reference (search/pareto.py rule) for predicted values: score and analog Dice
        0, params 1.1 x the largest network; time 1.1 x the largest predicted time."""
        return run_reference_point(objectives, self.config, values, self.input_shape, self.classes_count)

    def _predict(self, step: int, parsed: list[tuple[TrainingResult, Cell]], candidates: list[Cell]) -> dict[str, Any]:
        """Fit the predictors on the finished networks and score `candidates`.

        Returns {"score": array, "analog": array | None, "time": array | None}; predictors are saved under
        predictors_dir/b<step>/ when a folder was given.
        """
        ss = self.config.search_strategy
        out_dir = None if self.predictors_dir is None else self.predictors_dir / f"b{step}"
        ok = [(r, c) for r, c in parsed if r.status == "ok"]

        def fit(targets: list[tuple[Cell, float]], offset: int, name: str) -> Any:
            seed = self.config.others.seed * 7919 + step * 101 + offset
            context = self._predictor_context(len(targets), seed)
            predictor, kind, spec = make_score_predictor(ss.score_predictor, context)
            predictor.fit([c for c, _ in targets], [t for _, t in targets])
            self.log.info("step %d: %s predictor = %s (fitted on %d networks)", step, name, kind, len(targets))
            if out_dir is not None:
                predictor.save(out_dir / spec.file_name(name))
            return predictor

        result: dict[str, Any] = {"analog": None, "time": None, "score_error": 0.0, "analog_error": 0.0}
        scored = [(c, score_value(r, ss.score_metric)) for r, c in ok]
        scored = [(c, t) for c, t in scored if math.isfinite(t)]
        if scored:
            predictor = fit(scored, 0, "score")
            result["score"] = predictor.predict(candidates)
            result["score_error"] = self._loo_error(predictor, scored)
        else:
            self.log.warning(
                "step %d: no successfully trained network to fit the score predictor; "
                "children are ranked by their other objectives only",
                step,
            )
            result["score"] = np.zeros(len(candidates))

        if "analog_dice" in self.objectives:
            probed = [
                (c, float(r.analog_objective))
                for r, c in ok  # the risk-aware score (issue 34)
                if r.analog_objective is not None and math.isfinite(r.analog_objective)
            ]
            if len(probed) >= 2:
                predictor = fit(probed, 1, "analog")
                result["analog"] = predictor.predict(candidates)
                result["analog_error"] = self._loo_error(predictor, probed)

        # the time predictor is cheap: fitted every step (its predictions are journaled and scored in
        # csv/predictor_quality.csv; the ETA uses measured times, search/eta.py), an objective only when configured
        timed = [
            (c, float(r.train_time_s))
            for r, c in ok
            if r.train_time_s is not None and math.isfinite(r.train_time_s) and r.train_time_s > 0
        ]
        if timed:
            predictor = self.time_predictor().fit([c for c, _ in timed], [t for _, t in timed])
            result["time"] = predictor.predict(candidates)
            if out_dir is not None:
                predictor.save(out_dir / "time_svr.joblib")
        return result

    def _loo_error(self, predictor: Any, targets: list[tuple[Cell, float]]) -> float:
        """How far a measured score strays from a prediction: the leave-one-out RMS error of the cheap-feature
        ridge on `targets` (the fitted predictor's own when it is that ridge; a GIN has no cheap one, so a ridge
        is fitted beside it). 0 while too few networks are trained for a ridge."""
        error = getattr(predictor, "loo_rmse", None)
        if error is None and len(targets) >= 3:
            from popnas_seg.predictors.features import FeatureScorePredictor

            ridge = FeatureScorePredictor(self._cell_features(), "ridge")
            error = ridge.fit([c for c, _ in targets], [t for _, t in targets]).loo_rmse
        return 0.0 if error is None else float(error)

    def _cell_features(self) -> Callable[[Cell], Sequence[float]]:
        """The cheap cell features (exact params and FLOPs from the cost cache) the ridge and the SVR read."""
        from popnas_seg.predictors.time_svr import cell_time_features

        space = self.config.search_space
        return partial(
            cell_time_features, operators=space.operators, lookback_depth=space.lookback_depth, cost_fn=self.cost
        )

    def _predictor_context(self, train_size: int, seed: int) -> PredictorContext:
        return PredictorContext(self.config, seed, train_size, self._cell_features())

    def score_predictor(self, train_size: int, seed: int) -> tuple[Any, str]:
        """A fresh (unfitted) predictor of a [0, 1] score and its registered name, per
        `search_strategy.score_predictor` (predictors/registry.py: "auto" uses the cheap-feature ridge while fewer
        than AUTO_GIN_MIN_NETWORKS networks are trained, then GIN)."""
        predictor, kind, _ = make_score_predictor(
            self.config.search_strategy.score_predictor, self._predictor_context(train_size, seed)
        )
        return predictor, kind

    def time_predictor(self) -> Any:
        """A fresh SVR time predictor over this search space's features (with exact params and FLOPs)."""
        from popnas_seg.predictors.time_svr import TimePredictor

        return TimePredictor(self._cell_features(), seed=self.config.others.seed)


def _maybe(values: np.ndarray | None, i: int) -> float | None:
    return None if values is None else float(values[i])
