"""Training-time predictor: an SVR on features of the encoding (POPNAS_FACTS.md section 4, simplified).

POPNAS tunes an SVR with Hyperopt through aMLLibrary on nine hand-made features. Here: a scikit-learn
Pipeline(StandardScaler, SVR) tuned by a small GridSearchCV over kernel / C / epsilon with KFold when there are
enough samples. The target is log(seconds), standardised, so epsilon is a relative tolerance and one slow
outlier does not dominate. A linear kernel is in the grid (and is the default for tiny sets) because step b
predicts b-block cells from networks of at most b-1 blocks: it must extrapolate, which an RBF kernel cannot.

Features (`cell_time_features`): blocks, operator counts, lookback use, block->block inputs, DAG depth, concat
inputs, and log analytic params / FLOPs from a cost callable the caller passes in (so this module never imports
the model builder).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.atomic import atomic_write_bytes

FeatureFn = Callable[[Any], Sequence[float]]
CostFn = Callable[[Any], tuple[float, float]]

GRID = {
    "svr__kernel": ["linear", "rbf"],
    "svr__C": [0.3, 1.0, 3.0, 10.0],
    "svr__epsilon": [0.01, 0.1],
}
MIN_SAMPLES_FOR_GRID = 6


def dag_depth(cell: Any) -> int:
    """Longest chain of blocks feeding each other (1 for a cell whose blocks all read lookbacks)."""
    depths: list[int] = []
    for b in cell.blocks:
        inner = [depths[i] for i in (b.in1, b.in2) if i >= 0]
        depths.append(1 + max(inner, default=0))
    return max(depths, default=0)


def cell_time_features(
    cell: Any, operators: Sequence[str], lookback_depth: int, cost_fn: CostFn | None = None
) -> list[float]:
    """The time predictor's feature vector of one cell (order is fixed by `operators` and `lookback_depth`)."""
    blocks = list(cell.blocks)
    op_counts = [0.0] * len(operators)
    index = {op: i for i, op in enumerate(operators)}
    lookback_uses = [0.0] * lookback_depth
    block_inputs = 0.0
    referenced: set[int] = set()
    for b in blocks:
        for op in (b.op1, b.op2):
            if op in index:
                op_counts[index[op]] += 1
        for inp in (b.in1, b.in2):
            if inp < 0:
                if -inp <= lookback_depth:
                    lookback_uses[-inp - 1] += 1
            else:
                block_inputs += 1
                referenced.add(inp)
    concat_inputs = float(sum(1 for i in range(len(blocks)) if i not in referenced))
    features = [float(len(blocks)), *op_counts, *lookback_uses, block_inputs, float(dag_depth(cell)), concat_inputs]
    if cost_fn is not None:
        params, flops = cost_fn(cell)
        features += [float(np.log1p(max(params, 0))), float(np.log1p(max(flops, 0)))]
    return features


class TimePredictor:
    """SVR regressor of training seconds from cell features."""

    def __init__(self, feature_fn: FeatureFn, seed: int = 0) -> None:
        self.feature_fn = feature_fn
        self.seed = int(seed)
        self.pipeline: Any = None
        self.constant: float | None = None  # log-seconds, when too few samples for a regressor
        self.y_mean = 0.0
        self.y_std = 1.0
        self.train_size = 0
        self.best_params: dict[str, Any] = {}

    @property
    def fitted(self) -> bool:
        return self.pipeline is not None or self.constant is not None

    def _features(self, cells: Sequence[Any]) -> np.ndarray:
        return np.asarray([list(self.feature_fn(c)) for c in cells], dtype=float).reshape(len(cells), -1)

    def fit(self, cells: Sequence[Any], seconds: Sequence[float]) -> TimePredictor:
        """Fit on measured times; non-finite or non-positive times are dropped."""
        from sklearn.model_selection import GridSearchCV, KFold
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVR

        y = np.asarray(seconds, dtype=float).ravel()
        if len(cells) != y.size:
            raise ValueError(f"{len(cells)} cells but {y.size} times")
        keep = np.isfinite(y) & (y > 0)
        cells = [c for c, k in zip(cells, keep) if k]
        if not cells:
            raise ValueError("TimePredictor.fit needs at least one positive, finite time")
        y_log = np.log(y[keep])
        self.train_size = len(cells)
        self.pipeline, self.constant, self.best_params = None, None, {}
        if len(cells) < 2 or np.ptp(y_log) == 0:
            self.constant = float(np.mean(y_log))
            return self
        self.y_mean, self.y_std = float(y_log.mean()), float(y_log.std()) or 1.0
        target = (y_log - self.y_mean) / self.y_std
        x = self._features(cells)
        pipeline = Pipeline([("scale", StandardScaler()), ("svr", SVR(kernel="linear", C=1.0, epsilon=0.1))])
        if len(cells) >= MIN_SAMPLES_FOR_GRID:
            cv = KFold(n_splits=min(5, len(cells) // 2), shuffle=True, random_state=self.seed)
            search = GridSearchCV(pipeline, GRID, cv=cv, scoring="neg_mean_absolute_error", n_jobs=1, refit=True)
            search.fit(x, target)
            self.pipeline = search.best_estimator_
            self.best_params = dict(search.best_params_)
        else:
            self.pipeline = pipeline.fit(x, target)
        return self

    def predict(self, cells: Sequence[Any]) -> np.ndarray:
        """Predicted training seconds per cell."""
        if not self.fitted:
            raise RuntimeError("TimePredictor.predict called before fit (or load)")
        if len(cells) == 0:
            return np.zeros(0, dtype=float)
        if self.constant is not None:
            return np.full(len(cells), float(np.exp(self.constant)))
        z = self.pipeline.predict(self._features(cells))
        return np.exp(z * self.y_std + self.y_mean)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """joblib file with the fitted pipeline and target scaling (the feature function is not saved)."""
        import joblib

        buffer = io.BytesIO()
        joblib.dump(
            {
                "pipeline": self.pipeline,
                "constant": self.constant,
                "y_mean": self.y_mean,
                "y_std": self.y_std,
                "train_size": self.train_size,
                "best_params": self.best_params,
                "seed": self.seed,
            },
            buffer,
        )
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str], feature_fn: FeatureFn) -> TimePredictor:
        """Inverse of `save`; pass the same feature function the predictor was fitted with."""
        import joblib

        state = joblib.load(Path(path))
        predictor = cls(feature_fn, seed=state.get("seed", 0))
        predictor.pipeline = state["pipeline"]
        predictor.constant = state["constant"]
        predictor.y_mean, predictor.y_std = state["y_mean"], state["y_std"]
        predictor.train_size = state["train_size"]
        predictor.best_params = state.get("best_params", {})
        return predictor
