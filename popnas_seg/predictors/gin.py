"""A Keras 3 Graph Isomorphism Network ensemble that predicts a [0, 1] score (Dice, analog Dice) of a cell.

Follows POPNAS' GIN predictor (POPNAS_FACTS.md section 3): 3 GIN layers (30/60/120, swish), graph pooling,
Dense(100, swish), Dense(1, sigmoid), MSE, AdamW with a (per-epoch) cosine decay, an ensemble trained on
KFold splits whose prediction is the mean. Two deliberate differences: pooling is a *masked* mean over the
real nodes (POPNAS averages the zero padding in, so a cell's embedding shrinks with the padding), and float32
instead of float64.

Written with keras.layers / keras.ops only, so it runs under any Keras backend. Training is seeded
(`keras.utils.set_random_seed`) per ensemble member, so the same cells and targets give the same predictor and
a resumed search re-plans identically.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import ops  # noqa: E402

from popnas_seg.atomic import atomic_write_json  # noqa: E402
from popnas_seg.predictors.features import score_targets  # noqa: E402
from popnas_seg.predictors.graph import CellGraphEncoder  # noqa: E402

GIN_UNITS = (30, 60, 120)
HEAD_UNITS = 100
BATCH_SIZE = 16
LEARNING_RATE = 5e-3
WEIGHT_DECAY = 5e-4
PATIENCE = 12
_META = "meta.json"


@keras.saving.register_keras_serializable(package="popnas_seg")
class GINConv(keras.layers.Layer):
    """h' = MLP((1 + eps) h + A h), masked so padded nodes stay zero. Inputs: (h [B,N,F], A [B,N,N], mask [B,N])."""

    def __init__(self, units: int, activation: str = "swish", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activation
        self.mlp_hidden = keras.layers.Dense(
            self.units, activation=activation, name="mlp_hidden", dtype=self.dtype_policy
        )
        self.mlp_out = keras.layers.Dense(self.units, activation=activation, name="mlp_out", dtype=self.dtype_policy)

    def build(self, input_shape: Any) -> None:
        features = int(input_shape[0][-1])
        # learnable eps (GIN-eps): lets the layer weigh a node's own state against the sum of its neighbours
        self.eps = self.add_weight(name="eps", shape=(), initializer="zeros", trainable=True)
        self.mlp_hidden.build((None, None, features))
        self.mlp_out.build((None, None, self.units))
        super().build(input_shape)

    def call(self, inputs: Sequence[Any]) -> Any:
        h, a, mask = inputs
        aggregated = (1.0 + self.eps) * h + ops.matmul(a, h)
        out = self.mlp_out(self.mlp_hidden(aggregated))
        return out * ops.expand_dims(mask, -1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return tuple(input_shape[0][:-1]) + (self.units,)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "activation": self.activation}


@keras.saving.register_keras_serializable(package="popnas_seg")
class MaskedMeanPool(keras.layers.Layer):
    """Mean of the node states over the real nodes only (padding excluded). Inputs: (h [B,N,F], mask [B,N])."""

    def call(self, inputs: Sequence[Any]) -> Any:
        h, mask = inputs
        total = ops.sum(h * ops.expand_dims(mask, -1), axis=1)
        count = ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
        return total / count

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0][0], input_shape[0][-1])


@contextmanager
def _float32_policy() -> Iterator[None]:
    """Build the predictor in float32 even when the trainer set a mixed-precision global policy (a mixed model
    would get a loss-scale optimizer and float16 sums of a few hundred tiny graphs buy nothing)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_gin_model(max_nodes: int, feature_size: int) -> keras.Model:
    """The GIN regressor: graph tensors in, one sigmoid score out."""
    with _float32_policy():
        return _build_gin_model(max_nodes, feature_size)


def _build_gin_model(max_nodes: int, feature_size: int) -> keras.Model:
    x_in = keras.Input((max_nodes, feature_size), name="features")
    a_in = keras.Input((max_nodes, max_nodes), name="adjacency")
    m_in = keras.Input((max_nodes,), name="mask")
    h = x_in
    for i, units in enumerate(GIN_UNITS):
        h = GINConv(units, name=f"gin_{i}")([h, a_in, m_in])
    pooled = MaskedMeanPool(name="pool")([h, m_in])
    z = keras.layers.Dense(HEAD_UNITS, activation="swish", name="head")(pooled)
    out = keras.layers.Dense(1, activation="sigmoid", name="score")(z)
    return keras.Model([x_in, a_in, m_in], out, name="gin_predictor")


class _CosineLearningRate(keras.callbacks.Callback):
    """Cosine decay from `base` towards 0 over the epochs, set on the optimizer's learning-rate variable.

    A schedule object would be baked into the compiled train function that all fits share; and the JAX
    trainer only reads variables back between epochs, so the decay is per epoch on every backend.
    """

    def __init__(self, base: float, epochs: int) -> None:
        super().__init__()
        self.base, self.epochs = float(base), max(1, int(epochs))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        progress = min(epoch, self.epochs) / self.epochs
        self.model.optimizer.learning_rate = self.base * 0.5 * (1.0 + math.cos(math.pi * progress))


class _CompiledGIN:
    """One compiled GIN per graph shape, shared by every fit and prediction in the process.

    Tracing Keras' train function costs seconds on a busy CPU while a whole fit of a few hundred tiny batches
    costs less, so each ensemble member gets fresh seeded initial weights and a zeroed optimizer on the same
    compiled model instead of a new model.
    """

    _instances: dict[tuple[int, int], _CompiledGIN] = {}

    def __init__(self, max_nodes: int, feature_size: int) -> None:
        self.shape = (max_nodes, feature_size)
        with _float32_policy():
            self.model = _build_gin_model(max_nodes, feature_size)
            # AdamW's decoupled weight decay is scaled by the learning rate, so it follows the cosine decay too
            self.model.compile(
                optimizer=keras.optimizers.AdamW(learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY),
                loss="mse",
                jit_compile=False,
            )

    @classmethod
    def get(cls, max_nodes: int, feature_size: int) -> _CompiledGIN:
        key = (int(max_nodes), int(feature_size))
        if key not in cls._instances:
            cls._instances[key] = cls(*key)
        return cls._instances[key]

    def train(self, inputs: list[np.ndarray], y: np.ndarray, epochs: int, seed: int) -> list[np.ndarray]:
        """Train from seeded initial weights; returns the trained (best-loss) weights."""
        keras.utils.set_random_seed(seed)
        self.model.set_weights(build_gin_model(*self.shape).get_weights())
        optimizer = self.model.optimizer
        if optimizer.built:
            for variable in optimizer.variables:
                variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))
            optimizer.learning_rate = LEARNING_RATE
        self.model.fit(
            inputs,
            y,
            batch_size=BATCH_SIZE,
            epochs=epochs,
            shuffle=True,
            verbose=0,
            callbacks=[
                _CosineLearningRate(LEARNING_RATE, epochs),
                keras.callbacks.EarlyStopping(monitor="loss", patience=PATIENCE, restore_best_weights=True),
            ],
        )
        return [np.array(w) for w in self.model.get_weights()]

    def predict(self, weights: list[np.ndarray], inputs: list[np.ndarray]) -> np.ndarray:
        self.model.set_weights(weights)
        return np.asarray(self.model.predict_on_batch(inputs), dtype=np.float64).reshape(-1)


class GINPredictor:
    """Ensemble of GIN regressors over cells, for targets in [0, 1]."""

    def __init__(
        self,
        operators: Sequence[str],
        lookback_depth: int,
        max_blocks: int,
        ensemble_units: int = 3,
        epochs: int = 80,
        seed: int = 0,
    ) -> None:
        if ensemble_units < 1 or epochs < 1:
            raise ValueError("ensemble_units and epochs must be >= 1")
        self.operators = list(operators)
        self.lookback_depth = int(lookback_depth)
        self.max_blocks = int(max_blocks)
        self.ensemble_units = int(ensemble_units)
        self.epochs = int(epochs)
        self.seed = int(seed)
        self.encoder = CellGraphEncoder(self.operators, self.lookback_depth, self.max_blocks)
        self.members: list[list[np.ndarray]] = []  # weights of each ensemble member
        self.train_size = 0

    @property
    def fitted(self) -> bool:
        return bool(self.members)

    def _compiled(self) -> _CompiledGIN:
        return _CompiledGIN.get(self.encoder.max_nodes, self.encoder.feature_size)

    def _splits(self, n: int) -> list[np.ndarray]:
        """Training indices of each member: KFold's train parts, or all data when there are too few samples."""
        if self.ensemble_units < 2 or n < self.ensemble_units or n < 2:
            return [np.arange(n) for _ in range(self.ensemble_units)]
        from sklearn.model_selection import KFold

        kfold = KFold(n_splits=self.ensemble_units, shuffle=True, random_state=self.seed)
        return [train for train, _ in kfold.split(np.arange(n))]

    def fit(self, cells: Sequence[Any], targets: Sequence[float]) -> GINPredictor:
        """Train a fresh ensemble on (cells, targets); targets are clipped to [0, 1], non-finite ones dropped."""
        cells, y = score_targets(cells, targets, "GINPredictor", np.float32)
        x, a, mask = self.encoder.batch(cells)
        compiled = self._compiled()
        self.members = [
            compiled.train([x[idx], a[idx], mask[idx]], y[idx], self.epochs, self.seed * 1009 + member)
            for member, idx in enumerate(self._splits(len(cells)))
        ]
        self.train_size = len(cells)
        return self

    def predict(self, cells: Sequence[Any], batch_size: int = 1024) -> np.ndarray:
        """Mean ensemble prediction per cell, shape [len(cells)], values in [0, 1]."""
        if not self.fitted:
            raise RuntimeError("GINPredictor.predict called before fit (or load)")
        if len(cells) == 0:
            return np.zeros(0, dtype=np.float64)
        compiled = self._compiled()
        out = np.zeros(len(cells), dtype=np.float64)
        for start in range(0, len(cells), batch_size):
            x, a, mask = self.encoder.batch(cells[start : start + batch_size])
            preds = [compiled.predict(weights, [x, a, mask]) for weights in self.members]
            out[start : start + len(x)] = np.mean(preds, axis=0)
        return out

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write meta.json and member_<i>.keras (each written to a temp name, then renamed) into `directory`."""
        if not self.fitted:
            raise RuntimeError("nothing to save: the predictor is not fitted")
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        model = build_gin_model(self.encoder.max_nodes, self.encoder.feature_size)
        for i, weights in enumerate(self.members):
            model.set_weights(weights)
            tmp = path / f".member_{i}.tmp.keras"
            model.save(tmp)
            os.replace(tmp, path / f"member_{i}.keras")
        atomic_write_json(
            path / _META,
            {
                "kind": "gin",
                "operators": self.operators,
                "lookback_depth": self.lookback_depth,
                "max_blocks": self.max_blocks,
                "ensemble_units": self.ensemble_units,
                "epochs": self.epochs,
                "seed": self.seed,
                "members": len(self.members),
                "train_size": self.train_size,
            },
        )
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> GINPredictor:
        path = Path(directory)
        meta_path = path / _META
        if not meta_path.exists():
            raise FileNotFoundError(f"no GIN predictor in {path} ({_META} missing)")
        meta = json.loads(meta_path.read_text())
        predictor = cls(
            meta["operators"],
            meta["lookback_depth"],
            meta["max_blocks"],
            ensemble_units=meta["ensemble_units"],
            epochs=meta["epochs"],
            seed=meta["seed"],
        )
        custom = {"GINConv": GINConv, "MaskedMeanPool": MaskedMeanPool}
        predictor.members = [
            [
                np.array(w)
                for w in keras.models.load_model(
                    path / f"member_{i}.keras", custom_objects=custom, compile=False
                ).get_weights()
            ]
            for i in range(int(meta["members"]))
        ]
        predictor.train_size = int(meta.get("train_size", 0))
        return predictor
