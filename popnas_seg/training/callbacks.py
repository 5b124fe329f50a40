"""The Trainer's one Keras callback, `EpochMonitor`, and the TensorBoard event files it writes.

Best-epoch tracking with the weights kept in memory, early stopping, the NaN stop and the per-epoch log line
(trainer.py reads the outcome from it).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np


class EpochMonitor(keras.callbacks.Callback):
    """Best-epoch tracking (weights kept in memory), early stopping, NaN stop and one log line per epoch.

    One callback instead of several so the per-batch work is a single finiteness check.
    """

    def __init__(
        self,
        epochs: int,
        patience: int | None,
        label: str,
        logger: logging.Logger,
        verbose: bool,
        event_dir: Path | None,
    ) -> None:
        super().__init__()
        self.epochs = epochs
        self.patience = patience
        self.label = label
        self.logger = logger
        self.level = logging.INFO if verbose else logging.DEBUG
        self.best_dice = -math.inf
        self.best_miou = 0.0
        self.best_epoch = -1
        self.best_weights: list[np.ndarray] | None = None
        self.epochs_run = 0
        self.epoch_times: list[float] = []
        self.nan = False
        self._epoch_start = 0.0
        self._writer: _EventWriter | None = None
        self._event_dir = event_dir

    def start_from(self, dice: float, miou: float, weights: list[np.ndarray]) -> None:
        """Count the weights the model starts with as epoch 0: training keeps them unless an epoch beats them."""
        self.best_dice, self.best_miou, self.best_weights = dice, miou, weights

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self._event_dir is not None:
            self._writer = _EventWriter.create(self._event_dir)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        self.epochs_run = epoch + 1
        seconds = time.perf_counter() - self._epoch_start
        self.epoch_times.append(seconds)
        if any(not math.isfinite(float(logs.get(k, 0.0))) for k in ("loss", "val_loss")):
            self.nan = True
            self.model.stop_training = True
        val_dice = float(logs.get("val_dice", float("nan")))
        if not self.nan and math.isfinite(val_dice) and val_dice > self.best_dice:
            self.best_dice = val_dice
            self.best_miou = float(logs.get("val_mean_iou", 0.0))
            self.best_epoch = epoch
            self.best_weights = self.model.get_weights()
        elif self.patience is not None and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True
        if self._writer is not None:
            self._writer.write(epoch + 1, {**logs, "epoch_time_s": seconds})
        self.logger.log(
            self.level,
            "%s epoch %d/%d  loss %.4f  dice %.3f  val_loss %.4f  val_dice %.3f  val_miou %.3f  %.1fs%s",
            self.label,
            epoch + 1,
            self.epochs,
            logs.get("loss", float("nan")),
            logs.get("dice", float("nan")),
            logs.get("val_loss", float("nan")),
            val_dice,
            logs.get("val_mean_iou", float("nan")),
            seconds,
            "  (NaN: stopping)" if self.nan else "",
        )

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _EventWriter:
    """TensorBoard-format scalar event files without the `tensorboard` package.

    `tf.summary.scalar` needs tensorboard installed; the lower-level `tf.summary.write` with the scalar
    plugin's metadata writes the very same records, which TensorBoard reads as scalars.
    """

    def __init__(self, writer: Any, tf: Any, metadata: Any) -> None:
        self._writer, self._tf, self._metadata = writer, tf, metadata

    @classmethod
    def create(cls, folder: Path) -> _EventWriter | None:
        try:
            import tensorflow as tf
            from tensorflow.core.framework import summary_pb2
        except ImportError:  # another backend without TF: no event files, the CSV history remains
            return None
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars", content=b""),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        )
        folder.mkdir(parents=True, exist_ok=True)
        return cls(tf.summary.create_file_writer(str(folder)), tf, metadata)

    def write(self, step: int, values: dict[str, Any]) -> None:
        tf = self._tf
        with self._writer.as_default():
            for name, value in values.items():
                try:
                    v = float(value)
                except (TypeError, ValueError):
                    continue
                tag = f"validation/{name[4:]}" if name.startswith("val_") else f"train/{name}"
                tf.summary.write(tag, tf.constant(v, tf.float32), step=step, metadata=self._metadata)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
