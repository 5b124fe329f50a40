"""The search: Pareto machinery, exploration, strategies (what to train) and the runner (how to train it).

Names are loaded lazily so that importing one submodule (e.g. the runner) does not import every other one.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "non_dominated_sort": "popnas_seg.search.pareto",
    "pareto_mask": "popnas_seg.search.pareto",
    "crowding_distance": "popnas_seg.search.pareto",
    "hypervolume": "popnas_seg.search.pareto",
    "reference_point": "popnas_seg.search.pareto",
    "objective_matrix": "popnas_seg.search.pareto",
    "exploration_picks": "popnas_seg.search.exploration",
    "PlannedNetwork": "popnas_seg.search.strategy_base",
    "StepPlan": "popnas_seg.search.strategy_base",
    "SearchStrategy": "popnas_seg.search.strategy_base",
    "make_strategy": "popnas_seg.search.strategies",
    "progressive_budget": "popnas_seg.search.strategy_base",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
