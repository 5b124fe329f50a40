"""Loss and metric definitions: perfect predictions, ignore_class, class weights, numpy/Keras agreement."""

from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from keras import ops

from popnas_seg.training.losses import (
    ForegroundDice,
    MeanIoU,
    SegmentationLoss,
    confusion_counts,
    dice_from_counts,
    dice_score,
    miou_score,
)


def _labels(seed: int = 0, classes: int = 3, shape: tuple[int, ...] = (2, 8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, size=shape).astype(np.int32)


def _onehot(labels: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[labels]


def _soft(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    e = np.exp(logits)
    return e / e.sum(-1, keepdims=True)


def _value(x: object) -> float:
    return float(ops.convert_to_numpy(x))


def test_perfect_prediction_gives_zero_loss_and_dice_one() -> None:
    y = _labels()
    p = _onehot(y, 3)
    loss = SegmentationLoss(3)
    assert _value(loss(y, p)) == pytest.approx(0.0, abs=1e-5)
    metric = ForegroundDice(3)
    metric.update_state(y, p)
    assert _value(metric.result()) == pytest.approx(1.0)
    iou = MeanIoU(3)
    iou.update_state(y, p)
    assert _value(iou.result()) == pytest.approx(1.0)
    assert dice_score(y, y, 3) == 1.0 and miou_score(y, y, 3) == 1.0


def test_wrong_prediction_scores_low() -> None:
    y = _labels()
    wrong = (y + 1) % 3
    assert dice_score(wrong, y, 3) == 0.0
    assert _value(SegmentationLoss(3)(y, _onehot(wrong, 3))) > 5.0


def test_ignore_class_pixels_change_nothing() -> None:
    classes, ignore = 3, 2
    y = _labels(1, classes=2)
    p = _soft(2, (*y.shape, classes))
    pred = p.argmax(-1)
    # Relabel some pixels as ignore and make the prediction there garbage: nothing may change.
    y_ign = y.copy()
    y_ign[:, :3, :] = ignore
    p_bad = p.copy()
    p_bad[:, :3, :, :] = _soft(3, p_bad[:, :3, :, :].shape)
    ref = SegmentationLoss(classes, ignore_class=ignore)
    keep = y_ign != ignore
    # Loss on the cropped valid region equals the loss with ignored pixels present.
    y_crop, p_crop = y[:, 3:, :], p[:, 3:, :, :]
    assert _value(ref(y_ign, p_bad)) == pytest.approx(_value(ref(y_crop, p_crop)), rel=1e-5)
    # Metrics and numpy twins agree with and without the ignored rows.
    d1 = dice_score(p_bad.argmax(-1), y_ign, classes, ignore)
    d2 = dice_score(pred[:, 3:, :], y_crop, classes, ignore)
    assert d1 == pytest.approx(d2)
    assert miou_score(p_bad.argmax(-1), y_ign, classes, ignore) == pytest.approx(
        miou_score(pred[:, 3:, :], y_crop, classes, ignore)
    )
    m = ForegroundDice(classes, ignore_class=ignore)
    m.update_state(y_ign, p_bad)
    assert _value(m.result()) == pytest.approx(d1, abs=1e-6)
    assert keep.sum() < keep.size  # the test really had ignored pixels


def test_class_weights_change_ce_but_not_scale() -> None:
    y = _labels(4, classes=2)
    p = _soft(5, (*y.shape, 2))
    plain = SegmentationLoss(2, dice_weight=0.0)
    weighted = SegmentationLoss(2, dice_weight=0.0, class_weights=[1.0, 5.0])
    uniform = SegmentationLoss(2, dice_weight=0.0, class_weights=[3.0, 3.0])
    assert _value(weighted(y, p)) != pytest.approx(_value(plain(y, p)), rel=1e-3)
    assert _value(uniform(y, p)) == pytest.approx(_value(plain(y, p)), rel=1e-5)
    with pytest.raises(ValueError):
        SegmentationLoss(2, class_weights=[1.0, 2.0, 3.0])


def test_keras_metrics_match_numpy_over_batches() -> None:
    classes = 3
    dice, iou = ForegroundDice(classes), MeanIoU(classes)
    counts = np.zeros((3, classes))
    preds, trues = [], []
    for seed in range(3):
        y = _labels(10 + seed, classes)
        p = _soft(20 + seed, (*y.shape, classes))
        dice.update_state(y, p)
        iou.update_state(y[..., None], p)  # [B,H,W,1] labels are accepted too
        counts += confusion_counts(p.argmax(-1), y, classes)
        preds.append(p.argmax(-1))
        trues.append(y)
    pred_all, true_all = np.concatenate(preds), np.concatenate(trues)
    assert _value(dice.result()) == pytest.approx(dice_score(pred_all, true_all, classes), abs=1e-6)
    assert _value(dice.result()) == pytest.approx(dice_from_counts(counts), abs=1e-6)
    assert _value(iou.result()) == pytest.approx(miou_score(pred_all, true_all, classes), abs=1e-6)
    dice.reset_state()
    assert math.isnan(_value(dice.result()))  # nothing seen: undefined, not a perfect score


def test_absent_foreground_convention() -> None:
    y = np.zeros((1, 4, 4), dtype=np.int32)
    assert math.isnan(dice_score(y, y, 2))  # no foreground anywhere: undefined (was 1.0, see imaging/scores.py)
    assert miou_score(y, y, 2) == 1.0  # background is a class of mIoU: defined
    pred = y.copy()
    pred[0, 0, 0] = 1
    assert dice_score(pred, y, 2) == 0.0  # a false positive on an empty image is a miss
