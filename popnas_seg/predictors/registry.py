"""The score-predictor extension point: the `ScorePredictor` Protocol, its name registry and the "auto" rule.

A score predictor learns a [0, 1] score (Dice, analog Dice) of a cell from the networks trained so far and
ranks the children the progressive search could train next. The search asks the registry for
`search_strategy.score_predictor` by name (`make_score_predictor`), so a new predictor is a `PredictorSpec`
registered with `register_predictor("name")` (docs/ARCHITECTURE.md has a one-screen example); the config then
accepts that name. The built-ins: "gin" (POPNAS's GIN ensemble), "ridge" and "forest" (cheap cell features).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from popnas_seg.registry import PREDICTORS

if TYPE_CHECKING:
    from popnas_seg.config import RunConfig

# "auto": the cheap-feature ridge below this many trained networks, the GIN ensemble from it on.
# Measured on held-out cells of recorded 8-epoch benchmark runs (tests/test_predictor_fixture.py; docs/benchmarks_log.md
# "Score predictors on held-out cells of recorded runs"): at 30, 40 and 60 training networks (10 and 20 on earlier
# data) the ridge ranked as well as or better than the GIN ensemble on both tasks (hard task, 60 networks: 0.51 vs
# 0.37 for 3 members x 80 epochs) at 1/100 of the fit time, so "auto" keeps the ridge over the whole measured range
# and uses POPNAS's GIN only beyond it.
AUTO_GIN_MIN_NETWORKS = 61
AUTO = "auto"


class ScorePredictor(Protocol):
    """What the progressive search needs of a score predictor (GINPredictor and FeatureScorePredictor are two)."""

    def fit(self, cells: Sequence[Any], targets: Sequence[float]) -> ScorePredictor:
        """Learn from trained cells and their measured scores; returns self."""

    def predict(self, cells: Sequence[Any]) -> np.ndarray:
        """One predicted score per cell."""

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted predictor to `path` (a file or folder named by `PredictorSpec.file_name`)."""


@dataclass(frozen=True)
class PredictorContext:
    """What a factory may read to build a fresh, unfitted predictor."""

    config: RunConfig
    seed: int  # differs per step and per target, fixed by others.seed: a resumed run refits identically
    train_size: int  # networks it will be fitted on
    cell_features: Callable[[Any], Sequence[float]]  # the cheap features (exact params and FLOPs included)


@dataclass(frozen=True)
class PredictorSpec:
    """A registered predictor: its factory and how its fitted files are named under predictors/b<step>/.

    `file_name(target)` names what `save` writes for a target ("score", "analog"); a loo error attribute
    `loo_rmse` on the fitted predictor, when present, is used as the selection's optimism (else a ridge is
    fitted beside it)."""

    factory: Callable[[PredictorContext], ScorePredictor]
    file_name: Callable[[str], str]


def register_predictor(name: str, *, replace: bool = False) -> Callable[[PredictorSpec], PredictorSpec]:
    """Decorator/function that makes `name` a valid `search_strategy.score_predictor`:
    `register_predictor("toy")(PredictorSpec(factory, lambda target: f"toy_{target}.json"))`."""
    if name == AUTO:
        raise ValueError(f'"{AUTO}" is the rule that picks a registered predictor; register under another name')
    return PREDICTORS.register(name, replace=replace)


def predictor_names() -> list[str]:
    """The names `search_strategy.score_predictor` accepts ("auto" included)."""
    return [AUTO, *PREDICTORS.names()]


def resolve_name(name: str, train_size: int) -> str:
    """ "auto" -> "ridge" below AUTO_GIN_MIN_NETWORKS trained networks, "gin" from there; others unchanged."""
    if name == AUTO:
        return "ridge" if train_size < AUTO_GIN_MIN_NETWORKS else "gin"
    return name


def make_score_predictor(name: str, context: PredictorContext) -> tuple[ScorePredictor, str, PredictorSpec]:
    """A fresh predictor for `name` ("auto" resolved by `context.train_size`), its resolved name and spec."""
    kind = resolve_name(name, context.train_size)
    spec: PredictorSpec = PREDICTORS.get(kind)
    return spec.factory(context), kind, spec


# ------------------------------------------------------------------------------------------ built-ins


def _gin(context: PredictorContext) -> ScorePredictor:
    from popnas_seg.predictors.gin import GINPredictor

    ss, space = context.config.search_strategy, context.config.search_space
    return GINPredictor(
        space.operators,
        space.lookback_depth,
        space.blocks,
        ensemble_units=ss.accuracy_predictor_ensemble_units,
        epochs=ss.predictor_epochs,
        seed=context.seed,
    )


def _features(kind: str) -> Callable[[PredictorContext], ScorePredictor]:
    def factory(context: PredictorContext) -> ScorePredictor:
        from popnas_seg.predictors.features import FeatureScorePredictor

        return FeatureScorePredictor(context.cell_features, kind, seed=context.seed)

    return factory


GIN = PredictorSpec(_gin, lambda target: f"gin_{target}")  # a folder of ensemble members
RIDGE = PredictorSpec(_features("ridge"), lambda target: f"ridge_{target}.joblib")
FOREST = PredictorSpec(_features("forest"), lambda target: f"forest_{target}.joblib")
