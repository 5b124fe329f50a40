"""Numpy Dice / mean IoU of label maps: the project's one scoring definition, without Keras.

Kept apart from `losses.py` (the Keras loss and metrics) so the analog worker, which scores torch
predictions, can import it without loading Keras/TensorFlow (seconds and hundreds of MB per worker).
`losses.py` re-exports every name here, so `from popnas_seg.training.losses import dice_score` keeps working.

Definitions (see `losses.py`): foreground Dice over classes 1..C-1 from counts accumulated over every pixel
of the evaluated set, `ignore_class` pixels left out; classes absent from labels and predictions are skipped,
and if every scored class is absent on both sides the Dice is undefined: NaN, not 1.0. (A 1.0 there let a
small subset of background-only tiles score a network perfectly for finding nothing; a NaN is skipped by
the search's bookkeeping and marks a validation split without foreground as unscorable.) mIoU keeps
background as a class, so it is defined whenever any valid pixel exists.
"""

from __future__ import annotations

import numpy as np

__all__ = ["confusion_counts", "dice_from_counts", "miou_from_counts", "dice_score", "miou_score"]


def confusion_counts(
    pred_labels: np.ndarray, true_labels: np.ndarray, classes: int, ignore_class: int | None = None
) -> np.ndarray:
    """Per-class counts [3, C]: intersection, predicted, actual over valid pixels.

    Counts add over batches, so callers can accumulate them and score a whole split exactly as the
    stateful Keras metrics do.
    """
    pred = np.asarray(pred_labels).reshape(-1).astype(np.int64)
    true = np.asarray(true_labels).reshape(-1).astype(np.int64)
    if pred.shape != true.shape:
        raise ValueError(f"prediction and label sizes differ: {pred.size} vs {true.size}")
    if ignore_class is not None:
        keep = true != ignore_class
        pred, true = pred[keep], true[keep]
    pred = np.clip(pred, 0, classes - 1)
    inter = np.bincount(true[pred == true], minlength=classes)[:classes]
    predicted = np.bincount(pred, minlength=classes)[:classes]
    actual = np.bincount(np.clip(true, 0, classes - 1), minlength=classes)[:classes]
    return np.stack([inter, predicted, actual]).astype(np.float64)


def _kept(classes: int, first: int, ignore_class: int | None) -> np.ndarray:
    keep = np.zeros(classes, dtype=bool)
    keep[first:] = True
    if ignore_class is not None:
        keep[ignore_class] = False
    return keep


def dice_from_counts(counts: np.ndarray, ignore_class: int | None = None) -> float:
    """Foreground Dice from `confusion_counts` (summed over batches)."""
    inter, predicted, actual = counts
    denom = predicted + actual
    present = (denom > 0) & _kept(len(inter), 1, ignore_class)
    if not present.any():
        return float("nan")  # no foreground in labels or predictions: nothing to score (module docstring)
    return float(np.mean(2.0 * inter[present] / denom[present]))


def miou_from_counts(counts: np.ndarray, ignore_class: int | None = None) -> float:
    """Mean IoU from `confusion_counts` (summed over batches)."""
    inter, predicted, actual = counts
    union = predicted + actual - inter
    present = (union > 0) & _kept(len(inter), 0, ignore_class)
    if not present.any():
        return 1.0
    return float(np.mean(inter[present] / union[present]))


def dice_score(
    pred_labels: np.ndarray, true_labels: np.ndarray, classes: int, ignore_class: int | None = None
) -> float:
    """Foreground Dice of label maps (same definition as `ForegroundDice`)."""
    return dice_from_counts(confusion_counts(pred_labels, true_labels, classes, ignore_class), ignore_class)


def miou_score(
    pred_labels: np.ndarray, true_labels: np.ndarray, classes: int, ignore_class: int | None = None
) -> float:
    """Mean IoU of label maps (same definition as `MeanIoU`)."""
    return miou_from_counts(confusion_counts(pred_labels, true_labels, classes, ignore_class), ignore_class)
