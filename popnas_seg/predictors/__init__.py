"""Predictors that score cells before training them: GIN (Dice, analog Dice), SVR (time), and their quality;
a new score predictor registers by name (predictors/registry.py).

Names are loaded lazily so that reading quality metrics or graphs does not import Keras.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CellGraphEncoder": "popnas_seg.predictors.graph",
    "GINPredictor": "popnas_seg.predictors.gin",
    "TimePredictor": "popnas_seg.predictors.time_svr",
    "cell_time_features": "popnas_seg.predictors.time_svr",
    "rank_quality": "popnas_seg.predictors.quality",
    "mape": "popnas_seg.predictors.quality",
    "PredictorContext": "popnas_seg.predictors.registry",
    "PredictorSpec": "popnas_seg.predictors.registry",
    "ScorePredictor": "popnas_seg.predictors.registry",
    "register_predictor": "popnas_seg.predictors.registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
