"""The hypervolume reference of a run: pareto's rule fed with the config's overrides and its largest network.

search/pareto.py stays "matrices in, matrices out"; the one step that needs the config and the parameter counter
(models/cost.py) composes them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from popnas_seg.config import RunConfig
from popnas_seg.models.cost import largest_network_params
from popnas_seg.objectives import canonical_objective
from popnas_seg.search.pareto import reference_point


def run_reference_point(
    objectives: Sequence[str],
    config: RunConfig,
    values: Any | None = None,
    input_shape: Sequence[int] | None = None,
    classes_count: int | None = None,
) -> np.ndarray:
    """`pareto.reference_point` for `config`'s run; params counted from the search space when the data's
    `input_shape` and `classes_count` are given (else measured, as the rule says)."""
    overrides = {canonical_objective(k): v for k, v in (config.search_strategy.hypervolume_reference or {}).items()}
    largest = None
    wants_params = "params" in (canonical_objective(o) for o in objectives) and "params" not in overrides
    if wants_params and input_shape is not None and classes_count is not None:
        largest = largest_network_params(
            config.search_space, config.architecture_hyperparameters, input_shape, classes_count
        )
    return reference_point(objectives, values, overrides=overrides, largest_params=largest)
