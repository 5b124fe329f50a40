"""Multi-fidelity search: which networks of a step go on to the next rung, and their record across rungs.

Synchronous successive halving within each step (Li et al.'s ASHA without the asynchrony; Hyperband's inner loop):
every network of a step trains to rung 0 (`training_hyperparameters.epochs`); the measured Pareto front over the
search objectives (Dice, params and, when probing, the risk-aware analog score) of the step's rung-r networks,
completed by the next fronts and cut by crowding distance, gives the ceil(n / eta) networks that train on to rung
r + 1 (`search_strategy.rung_epochs`, cumulative). A single rung is the flat search.

Why synchronous per step, not Ray Tune's ASHAScheduler: a step's networks are planned together and the next step's
plan needs every one of them at its highest rung, so asynchronous promotion would only move the wait to the step's
end; and Tune's trainables keep their own checkpoints and experiment state, a second source of truth beside the
journal that a resume replays. The step's rungs run through the same executor (in process or Ray tasks) as rung 0.

Pure functions of plain data: no config, no files (the runner journals the decisions).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from popnas_seg.results import RungScore, TrainingResult
from popnas_seg.search.pareto import crowding_distance, non_dominated_sort, objective_matrix

__all__ = ["promotion_count", "rung_record", "rung_seed", "select_promoted"]


def promotion_count(candidates: int, eta: int) -> int:
    """How many of `candidates` networks move up a rung: ceil(candidates / eta) (0 of none)."""
    return math.ceil(candidates / eta) if candidates > 0 else 0


def select_promoted(results: Sequence[TrainingResult], objectives: Sequence[str], eta: int) -> list[int]:
    """Network ids of the `results` (one rung of one step) that train on, in the order they were chosen.

    Candidates are the networks whose training succeeded. Whole non-dominated fronts are taken best first while
    they fit; the front that does not fit gives its members of largest crowding distance (its extremes first,
    e.g. the smallest network and the best Dice), ties broken by the score objective, then the lower network id.
    A missing objective value (a failed probe) counts as the worst value of that objective.
    """
    ok = sorted((r for r in results if r.status == "ok"), key=lambda r: r.network_id)
    wanted = promotion_count(len(ok), eta)
    if wanted == 0:
        return []
    values, maximise = objective_matrix(ok, list(objectives))
    chosen: list[int] = []
    for front in non_dominated_sort(values, maximise):
        members = [int(i) for i in front]
        if len(chosen) + len(members) <= wanted:
            chosen += sorted(members, key=lambda i: _tie_key(values, maximise, i, ok))
            continue
        distance = crowding_distance(values[members], maximise)
        order = sorted(
            range(len(members)),
            key=lambda j: (-distance[j], *_tie_key(values, maximise, members[j], ok)),
        )
        chosen += [members[j] for j in order[: wanted - len(chosen)]]
        break
    return [ok[i].network_id for i in chosen]


def _tie_key(values: np.ndarray, maximise: Sequence[bool], i: int, ok: Sequence[TrainingResult]) -> tuple:
    """Sort key among equals: the first objective (the score) best first, then the lower network id."""
    first = values[i, 0]
    first = -np.inf if np.isnan(first) else first
    return (-first if maximise[0] else first, ok[i].network_id)


def rung_record(previous: TrainingResult | None, current: TrainingResult, epochs: int) -> TrainingResult:
    """The network's record after `current`, its training at rung `current.rung` (`epochs` cumulative epochs).

    `previous` is its record after the rung below (None at rung 0). The fields are the new rung's scores; `rungs`
    gains this rung's `RungScore`; `epochs` and `train_time_s` add up over the rungs. A continuation that failed
    (or went NaN) leaves the network at its previous rung and scores, with `failed_rung` and `rung_error` set:
    what it measured before stays true, and the journal's rung field keeps it from being tried again.
    """
    if previous is None:
        if current.status != "ok":
            return current
        return dataclasses.replace(current, rungs=[_score(current, epochs)])
    if current.status != "ok":
        return dataclasses.replace(
            previous,
            train_time_s=float(previous.train_time_s) + float(current.train_time_s),
            failed_rung=current.rung,
            rung_error=current.error or current.status,
        )
    return dataclasses.replace(
        current,
        rungs=[*previous.rungs, _score(current, epochs)],
        train_time_s=float(previous.train_time_s) + float(current.train_time_s),
        epochs=int(epochs),
        origin=previous.origin,
        step=previous.step,
    )


def _score(result: TrainingResult, epochs: int) -> RungScore:
    return RungScore(
        rung=result.rung,
        epochs=int(epochs),
        dice=float(result.dice),
        miou=float(result.miou),
        analog_score=result.analog_score,
        train_time_s=float(result.train_time_s),
    )


def rung_seed(seed: int, rung: int) -> int:
    """The training seed of a network's continuation at `rung` (rung 0: `seed` itself): another seed, so the
    continuation draws new batches instead of replaying rung 0's first epochs; the same for every network of
    the rung, so common random numbers hold at every rung."""
    return seed if rung == 0 else (seed + 7919 * rung) % (2**31 - 1)
