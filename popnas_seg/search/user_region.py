"""The hypervolume a user reads: the region of fronts worth having, on a log-params axis.

Why not `pareto.normalised_hypervolume` with `pareto.reference_point` (scores 0, params 1.1 x the largest cell, a
linear axis): there the box of the single cheapest cell (e.g. 122 params at Dice 0.8) is most of the volume, so a
run's hypervolume mostly says whether it drew that cell, and a network with a Dice no user would accept still
adds volume. The convention here (used by the run's own hypervolume, its plot and report, and the search
benchmark):

- **params on a log10 axis** from `PARAMS_IDEAL` (1) up to the **U-Net's params**: a halving of the size is worth
  the same anywhere, and a network larger than the U-Net adds nothing (the U-Net is the user's alternative);
- **score floors near the nadir of the useful region**: Dice floor = the U-Net's Dice minus `DICE_MARGIN`, the same
  for analog Dice (the U-Net trained and probed with the same budget as the searched networks); below it a
  network adds nothing;
- normalised by the box between that reference and the ideal (scores 1, 1 param), so it lies in [0, 1];
- beside it, the best Dice and analog Dice per size bucket (`SIZE_BUCKETS`): what a user picking a size gets.

Without a U-Net measured at the search budget (a run's search stage trains none) the floors are the config's
`search_strategy.hypervolume_reference` scores, else 0, and the params end is still the U-Net's (analytic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from popnas_seg.objectives import canonical_objective
from popnas_seg.search.pareto import (
    hypervolume,
    maximise_flags,
    objective_matrix,
)

# Stated margin under the U-Net's Dice (and analog Dice) that places the score floors: a network within 0.05 Dice of
# the U-Net at a fraction of its size is what a user wants; one further below is not a substitute for it.
DICE_MARGIN = 0.05
# The ideal end of the log-params axis (1 parameter): a fixed end, so hypervolumes of runs compare directly.
PARAMS_IDEAL = 1.0
# Upper ends (inclusive) of the size buckets a user picks from: tiny, small, medium, up to a small U-Net.
SIZE_BUCKETS: tuple[int, ...] = (1_000, 5_000, 20_000, 85_000)
_SCORE_FLOOR = {"dice": "dice_floor", "mean_iou": "dice_floor", "analog_dice": "analog_floor"}


@dataclass(frozen=True)
class UserRegion:
    """The reference corner of the region users care about, in the objectives' own units.

    `params_ceiling`: the U-Net's params; `dice_floor` / `analog_floor`: lowest scores that still count;
    `time_ceiling`: only when training time is an objective (linear axis, no analytic bound)."""

    params_ceiling: float
    dice_floor: float = 0.0
    analog_floor: float = 0.0
    time_ceiling: float | None = None

    def reference(self, objectives: Sequence[str]) -> np.ndarray:
        """The reference point for `objectives` (natural units: params not logged)."""
        out = []
        for name in (canonical_objective(o) for o in objectives):
            if name == "params":
                out.append(self.params_ceiling)
            elif name == "time":
                if self.time_ceiling is None:
                    raise ValueError("time is an objective: the region needs a time_ceiling")
                out.append(self.time_ceiling)
            else:
                out.append(getattr(self, _SCORE_FLOOR[name]))
        return np.asarray(out, dtype=float)

    def describe(self) -> str:
        """One line for a report: where the reference corner is."""
        return (
            f"Dice floor {self.dice_floor:.3f}, analog Dice floor {self.analog_floor:.3f}, params "
            f"{PARAMS_IDEAL:.0f} to {self.params_ceiling:,.0f} on a log10 axis"
        )


def region_from_unet(
    unet_dice: float, unet_params: float, unet_analog_dice: float | None = None, margin: float = DICE_MARGIN
) -> UserRegion:
    """The region under a U-Net measured at the search budget: floors = its scores minus `margin` (never < 0)."""
    analog = 0.0 if unet_analog_dice is None or not math.isfinite(unet_analog_dice) else unet_analog_dice - margin
    return UserRegion(
        params_ceiling=float(unet_params),
        dice_floor=max(0.0, float(unet_dice) - margin),
        analog_floor=max(0.0, float(analog)),
    )


def run_region(
    config: Any,
    input_shape: Sequence[int],
    classes_count: int,
    values: Any | None = None,
    objectives: Sequence[str] = (),
) -> UserRegion:
    """A run's region: params up to the run's U-Net (`models.cost.unet_params`), score floors from
    `search_strategy.hypervolume_reference` (else 0), time up to 1.1 x the slowest measured network."""
    from popnas_seg.models.cost import unet_params

    overrides = {
        canonical_objective(k): float(v) for k, v in (config.search_strategy.hypervolume_reference or {}).items()
    }
    params = overrides.get("params") or unet_params(
        config.architecture_hyperparameters, int(input_shape[-1]), classes_count
    )
    time_ceiling = overrides.get("time")
    if time_ceiling is None and "time" in [canonical_objective(o) for o in objectives] and values is not None:
        column = np.asarray(values, dtype=float).reshape(-1, len(objectives))[:, list(objectives).index("time")]
        column = column[np.isfinite(column)]
        time_ceiling = 1.1 * float(column.max()) if column.size else None
    return UserRegion(
        params_ceiling=float(params),
        dice_floor=overrides.get("dice", overrides.get("mean_iou", 0.0)),
        analog_floor=overrides.get("analog_dice", 0.0),
        time_ceiling=time_ceiling,
    )


def log_params(values: Any, objectives: Sequence[str]) -> np.ndarray:
    """`values` with the params column as log10(params) (at least `PARAMS_IDEAL`): the axis the region is measured
    on (greedy selections by this convention work on it)."""
    out = np.array(values, dtype=float, copy=True)
    for j, name in enumerate(objectives):
        if canonical_objective(name) == "params":
            out[:, j] = np.log10(np.maximum(out[:, j], PARAMS_IDEAL))
    return out


def region_hypervolume(values: Any, objectives: Sequence[str], region: UserRegion) -> float:
    """Hypervolume of `values` ([n, m] in natural units) inside `region`, params on a log10 axis, normalised by
    the box between the region's reference and the ideal (scores 1, `PARAMS_IDEAL` params): in [0, 1]."""
    maximise = maximise_flags(objectives)
    matrix = np.asarray(values, dtype=float).reshape(-1, len(objectives))
    reference = region.reference(objectives)
    ideal = np.array([1.0 if up else 0.0 for up in maximise])
    for j, name in enumerate(objectives):
        if canonical_objective(name) == "params":
            ideal[j] = PARAMS_IDEAL
    log_ref, log_ideal = log_params(reference[None], objectives)[0], log_params(ideal[None], objectives)[0]
    box = float(np.prod(np.abs(log_ideal - log_ref)))
    if not box > 0:
        raise ValueError(f"the region's reference {list(reference)} coincides with the ideal in some objective")
    if matrix.shape[0] == 0:
        return 0.0
    return hypervolume(log_params(matrix, objectives), maximise, log_ref) / box


def records_hypervolume(records: Sequence[Any], objectives: Sequence[str], region: UserRegion) -> float:
    """`region_hypervolume` of TrainingResults (or mappings); missing values never add volume."""
    if not records:
        return 0.0
    values, _ = objective_matrix(records, objectives)
    return region_hypervolume(values, objectives, region)


def bucket_bests(records: Sequence[Any], buckets: Sequence[int] = SIZE_BUCKETS) -> list[dict[str, Any]]:
    """Per size bucket (params <= each bound): how many networks, and the best Dice and analog Dice among them
    (None where the bucket is empty or nothing was probed). Buckets are cumulative: what a user with that
    size limit can pick."""
    values, _ = objective_matrix(records, ["params", "dice", "analog_dice"]) if records else (np.zeros((0, 3)), [])
    rows = []
    for bound in buckets:
        inside = values[values[:, 0] <= bound] if len(values) else values
        dice = inside[:, 1][np.isfinite(inside[:, 1])]
        analog = inside[:, 2][np.isfinite(inside[:, 2])]
        rows.append(
            {
                "bucket": int(bound),
                "networks": int(len(inside)),
                "best_dice": float(dice.max()) if dice.size else None,
                "best_analog_dice": float(analog.max()) if analog.size else None,
            }
        )
    return rows
