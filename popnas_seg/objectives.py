"""The objective names of the project, their directions and deprecated aliases (a bottom-floor module).

config/search.py validates `search_strategy.objectives` against these names and search/pareto.py ranks by them, so they
live below both (no import circle config -> search -> models -> config):

- ``dice`` / ``mean_iou``: the digital validation score (maximise, bounded in [0, 1]);
- ``params``: exact parameter count from the encoding (minimise);
- ``analog_dice``: the risk-aware *analog Dice* at the probe horizon, mean - analog.risk_k x std over
  programmings (`TrainingResult.analog_objective`; rows of older runs without the score rank on their mean),
  not the analog/digital ratio (maximise, at most 1; DESIGN.md "Analog robustness" explains why the ratio
  would let useless networks crowd the front). The old name
  ``analog_robustness`` is accepted as an alias (``OBJECTIVE_ALIASES``); the ratio keeps the name robustness;
- ``time``: measured training time in seconds (minimise).
"""

from __future__ import annotations

from collections.abc import Sequence

# objective name -> (TrainingResult attribute, maximise?)
OBJECTIVES: dict[str, tuple[str, bool]] = {
    "dice": ("dice", True),
    "mean_iou": ("miou", True),
    "params": ("params", False),
    "analog_dice": ("analog_objective", True),
    "time": ("train_time_s", False),
}
# deprecated objective name -> current name (old configs and journals keep working)
OBJECTIVE_ALIASES: dict[str, str] = {"analog_robustness": "analog_dice"}


def canonical_objective(name: str) -> str:
    """The current name of an objective (maps deprecated aliases)."""
    return OBJECTIVE_ALIASES.get(name, name)


def check_objectives(objectives: Sequence[str]) -> None:
    """Raise ValueError naming the unknown objectives, if any."""
    unknown = [o for o in objectives if canonical_objective(o) not in OBJECTIVES]
    if unknown:
        raise ValueError(f"unknown objectives {unknown}; known: {sorted(OBJECTIVES)}")
