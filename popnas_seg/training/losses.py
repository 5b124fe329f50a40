"""Segmentation loss and metrics, written with `keras.ops` so they run under any Keras backend.

One definition of "Dice" for the whole project: foreground Dice over classes 1..C-1, from counts
accumulated over every pixel of the evaluated set (not a mean of per-image scores), with pixels labelled
`ignore_class` left out. The Keras metric `ForegroundDice` (used during training / validation) and the numpy
`dice_score` (used by the trainer's `evaluate` and by the analog probe / drift scoring) compute exactly
this, so a digital and an analog Dice are directly comparable.

Convention for classes that appear neither in the labels nor in the predictions: they are skipped; if every
foreground class is absent on both sides the score is 1.0 (nothing to find, nothing found).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

_EPS = 1e-7


def _prepare(y_true: Any, y_pred: Any, classes_count: int, ignore_class: int | None) -> tuple[Any, Any, Any]:
    """Return (one-hot labels [B,H,W,C], probabilities float32 [B,H,W,C], valid-pixel mask [B,H,W,1])."""
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape):  # [B,H,W,1] labels
        y_true = ops.squeeze(y_true, axis=-1)
    y_true = ops.cast(y_true, "int32")
    if ignore_class is None:
        valid = ops.ones_like(y_true, dtype="float32")
        safe = y_true
    else:
        is_valid = ops.not_equal(y_true, ignore_class)
        valid = ops.cast(is_valid, "float32")
        safe = ops.where(is_valid, y_true, ops.zeros_like(y_true))
    onehot = ops.one_hot(safe, classes_count, dtype="float32")
    return onehot, y_pred, ops.expand_dims(valid, -1)


class SegmentationLoss(keras.losses.Loss):
    """Soft Dice over the foreground classes plus (class-weighted) cross-entropy on softmax outputs.

    `loss = dice_weight * (1 - mean_c softDice_c) + ce_weight * CE`, c = 1..C-1. The soft Dice is computed
    over the whole batch (more stable than per image on small crops with few nuclei). The CE is a weighted
    mean like PyTorch's `CrossEntropyLoss(weight=...)`: sum(w_y * ce) / sum(w_y) over valid pixels, so class
    weights change the balance between classes, not the loss scale. Pixels labelled `ignore_class`
    contribute to neither term.
    """

    def __init__(
        self,
        classes_count: int,
        ignore_class: int | None = None,
        class_weights: Sequence[float] | np.ndarray | None = None,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        smooth: float = 1.0,
        name: str = "segmentation_loss",
        **kwargs: Any,
    ) -> None:
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        if classes_count < 2:
            raise ValueError("classes_count must be >= 2")
        self.classes_count = int(classes_count)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        if class_weights is not None:
            class_weights = [float(w) for w in np.asarray(class_weights, dtype=np.float64).reshape(-1)]
            if len(class_weights) != self.classes_count:
                raise ValueError(f"class_weights has {len(class_weights)} entries, expected {self.classes_count}")
        self.class_weights = class_weights
        self.dice_weight = float(dice_weight)
        self.ce_weight = float(ce_weight)
        self.smooth = float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        onehot, probs, valid = _prepare(y_true, y_pred, self.classes_count, self.ignore_class)
        total = ops.convert_to_tensor(0.0, dtype="float32")
        if self.ce_weight > 0:
            log_p = ops.log(ops.clip(probs, _EPS, 1.0))
            ce = -ops.sum(onehot * log_p, axis=-1, keepdims=True)  # [B,H,W,1]
            if self.class_weights is not None:
                w = ops.convert_to_tensor(np.asarray(self.class_weights, dtype=np.float32))
                pixel_w = ops.sum(onehot * w, axis=-1, keepdims=True) * valid
            else:
                pixel_w = valid
            ce_mean = ops.sum(ce * pixel_w) / ops.maximum(ops.sum(pixel_w), _EPS)
            total = total + self.ce_weight * ce_mean
        if self.dice_weight > 0:
            fg_true = (onehot * valid)[..., 1:]
            fg_pred = (probs * valid)[..., 1:]
            axes = (0, 1, 2)
            inter = ops.sum(fg_true * fg_pred, axis=axes)
            denom = ops.sum(fg_true, axis=axes) + ops.sum(fg_pred, axis=axes)
            dice = (2.0 * inter + self.smooth) / (denom + self.smooth)
            if self.ignore_class is not None and self.ignore_class > 0:
                # The ignore label is not a class to segment: leave it out of the Dice mean.
                keep = np.ones(self.classes_count - 1, dtype=np.float32)
                keep[self.ignore_class - 1] = 0.0
                dice = ops.sum(dice * keep) / max(float(keep.sum()), 1.0) if keep.sum() else ops.ones_like(dice[0])
            else:
                dice = ops.mean(dice)
            total = total + self.dice_weight * (1.0 - dice)
        return total

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            classes_count=self.classes_count,
            ignore_class=self.ignore_class,
            class_weights=self.class_weights,
            dice_weight=self.dice_weight,
            ce_weight=self.ce_weight,
            smooth=self.smooth,
        )
        return config


class _CountMetric(keras.metrics.Metric):
    """Accumulates per-class intersection / predicted / true pixel counts of argmax predictions."""

    def __init__(
        self, classes_count: int, ignore_class: int | None = None, name: str = "counts", **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.classes_count = int(classes_count)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        shape = (self.classes_count,)
        self.intersection = self.add_weight(name="intersection", shape=shape, initializer="zeros", dtype="float32")
        self.predicted = self.add_weight(name="predicted", shape=shape, initializer="zeros", dtype="float32")
        self.actual = self.add_weight(name="actual", shape=shape, initializer="zeros", dtype="float32")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        onehot, probs, valid = _prepare(y_true, y_pred, self.classes_count, self.ignore_class)
        pred_onehot = ops.one_hot(ops.argmax(probs, axis=-1), self.classes_count, dtype="float32") * valid
        onehot = onehot * valid
        axes = (0, 1, 2)
        self.intersection.assign_add(ops.sum(onehot * pred_onehot, axis=axes))
        self.predicted.assign_add(ops.sum(pred_onehot, axis=axes))
        self.actual.assign_add(ops.sum(onehot, axis=axes))

    def reset_state(self) -> None:
        for v in (self.intersection, self.predicted, self.actual):
            v.assign(ops.zeros_like(v))

    def _classes_mask(self, first: int) -> np.ndarray:
        keep = np.zeros(self.classes_count, dtype=np.float32)
        keep[first:] = 1.0
        if self.ignore_class is not None:
            keep[self.ignore_class] = 0.0
        return keep

    @staticmethod
    def _masked_mean(scores: Any, present: Any, empty: float = 1.0) -> Any:
        n = ops.sum(present)
        return ops.where(n > 0, ops.sum(scores * present) / ops.maximum(n, 1.0), empty)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(classes_count=self.classes_count, ignore_class=self.ignore_class)
        return config


class ForegroundDice(_CountMetric):
    """Dice over foreground classes 1..C-1 of argmax predictions, from counts over all seen batches; NaN
    when no foreground class was seen in labels or predictions (as `scores.dice_from_counts`)."""

    def __init__(self, classes_count: int, ignore_class: int | None = None, name: str = "dice", **kwargs: Any) -> None:
        super().__init__(classes_count, ignore_class, name=name, **kwargs)

    def result(self) -> Any:
        denom = self.predicted + self.actual
        keep = ops.convert_to_tensor(self._classes_mask(1))
        present = ops.cast(denom > 0, "float32") * keep
        scores = 2.0 * self.intersection / ops.maximum(denom, 1.0)
        return self._masked_mean(scores, present, empty=float("nan"))


class MeanIoU(_CountMetric):
    """Mean IoU over all classes (background included, ignore_class excluded) of argmax predictions."""

    def __init__(
        self, classes_count: int, ignore_class: int | None = None, name: str = "mean_iou", **kwargs: Any
    ) -> None:
        super().__init__(classes_count, ignore_class, name=name, **kwargs)

    def result(self) -> Any:
        union = self.predicted + self.actual - self.intersection
        keep = ops.convert_to_tensor(self._classes_mask(0))
        present = ops.cast(union > 0, "float32") * keep
        scores = self.intersection / ops.maximum(union, 1.0)
        return self._masked_mean(scores, present)


# ---------------------------------------------------------------- numpy twins (digital and analog evaluation)
# Defined in imaging/scores.py (no Keras import, for the analog worker); re-exported here for existing imports.
from popnas_seg.imaging.scores import (  # noqa: E402,F401
    confusion_counts,
    dice_from_counts,
    dice_score,
    miou_from_counts,
    miou_score,
)
