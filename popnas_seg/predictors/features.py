"""A cheap-feature score predictor: the fallback while too few networks are trained for the GIN to rank well.

Features are those of the time predictor (`cell_time_features`: blocks, operator counts, lookback uses, block
inputs, DAG depth, concatenated blocks, log params, log FLOPs); params and FLOPs are exact and free, and on
short-trained segmentation networks the score grows with capacity, which a linear model on these features
captures from a handful of points. `kind="ridge"`: standardised features, RidgeCV over a fixed alpha grid;
`kind="forest"`: a small seeded random forest (for comparison in benchmarks/search/bench_predictors.py).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.atomic import atomic_write_bytes


def score_targets(
    cells: Sequence[Any], targets: Sequence[float], who: str, dtype: Any = float
) -> tuple[list[Any], np.ndarray]:
    """The training set every score predictor fits on: non-finite targets dropped, the rest clipped to [0, 1]."""
    y = np.asarray(targets, dtype=dtype).ravel()
    if len(cells) != y.size:
        raise ValueError(f"{len(cells)} cells but {y.size} targets")
    keep = np.isfinite(y)
    kept = [c for c, k in zip(cells, keep) if k]
    if not kept:
        raise ValueError(f"{who}.fit needs at least one cell with a finite target")
    return kept, np.clip(y[keep], 0.0, 1.0)


FeatureFn = Callable[[Any], Sequence[float]]
RIDGE_ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
KINDS = ("ridge", "forest")


class FeatureScorePredictor:
    """Regressor of a [0, 1] score (Dice, analog Dice) from cheap cell features."""

    def __init__(self, feature_fn: FeatureFn, kind: str = "ridge", seed: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown feature predictor kind {kind!r}; known: {list(KINDS)}")
        self.feature_fn = feature_fn
        self.kind = kind
        self.seed = int(seed)
        self.model: Any = None
        self.constant: float | None = None  # too few (or constant) targets for a regressor
        self.train_size = 0
        # ridge only: root-mean-square leave-one-out error on the training set (RidgeCV's exact shortcut), the
        # search's estimate of how far a measured score strays from a prediction; None when not available
        self.loo_rmse: float | None = None

    @property
    def fitted(self) -> bool:
        return self.model is not None or self.constant is not None

    def _features(self, cells: Sequence[Any]) -> np.ndarray:
        return np.asarray([list(self.feature_fn(c)) for c in cells], dtype=float).reshape(len(cells), -1)

    def fit(self, cells: Sequence[Any], targets: Sequence[float]) -> FeatureScorePredictor:
        """Fit on (cells, targets); non-finite targets are dropped, the rest clipped to [0, 1]."""
        cells, y = score_targets(cells, targets, "FeatureScorePredictor", float)
        self.train_size = len(cells)
        self.model, self.constant, self.loo_rmse = None, None, None
        if len(cells) < 3 or np.ptp(y) == 0:
            self.constant = float(np.mean(y))
            return self
        x = self._features(cells)
        if self.kind == "ridge":
            from sklearn.linear_model import RidgeCV
            from sklearn.pipeline import Pipeline
            from sklearn.preprocessing import StandardScaler

            ridge = RidgeCV(alphas=RIDGE_ALPHAS, store_cv_results=True)
            self.model = Pipeline([("scale", StandardScaler()), ("ridge", ridge)]).fit(x, y)
            # cv_results_: squared leave-one-out errors, one column per alpha
            squared = ridge.cv_results_[:, list(RIDGE_ALPHAS).index(ridge.alpha_)]
            self.loo_rmse = float(np.sqrt(np.mean(squared)))
        else:
            from sklearn.ensemble import RandomForestRegressor

            self.model = RandomForestRegressor(
                n_estimators=200, min_samples_leaf=2, random_state=self.seed, n_jobs=1
            ).fit(x, y)
        return self

    def predict(self, cells: Sequence[Any]) -> np.ndarray:
        """Predicted score per cell, clipped to [0, 1]."""
        if not self.fitted:
            raise RuntimeError("FeatureScorePredictor.predict called before fit (or load)")
        if len(cells) == 0:
            return np.zeros(0, dtype=float)
        if self.constant is not None:
            return np.full(len(cells), self.constant)
        return np.clip(self.model.predict(self._features(cells)), 0.0, 1.0)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """joblib file with the fitted model (the feature function is not saved)."""
        import joblib

        buffer = io.BytesIO()
        joblib.dump(
            {
                "kind": self.kind,
                "model": self.model,
                "constant": self.constant,
                "train_size": self.train_size,
                "seed": self.seed,
            },
            buffer,
        )
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str], feature_fn: FeatureFn) -> FeatureScorePredictor:
        """Inverse of `save`; pass the same feature function the predictor was fitted with."""
        import joblib

        state = joblib.load(Path(path))
        predictor = cls(feature_fn, kind=state["kind"], seed=state.get("seed", 0))
        predictor.model, predictor.constant = state["model"], state["constant"]
        predictor.train_size = state["train_size"]
        return predictor
