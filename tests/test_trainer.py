"""Trainer: it learns, it is reproducible, failures become statuses, results and logs are sane."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from popnas_seg.config import RunConfig
from popnas_seg.data.pipeline import load_data
from popnas_seg.models.builder import build_model
from popnas_seg.search_space.encoding import Cell
from popnas_seg.training.schedules import WarmupSchedule, make_optimizer, make_schedule
from popnas_seg.training.trainer import Trainer


def _config(**training: object) -> RunConfig:
    hp = {"epochs": 3, "learning_rate": 0.01}
    hp.update(training)
    return RunConfig.model_validate(
        {
            "dataset": {"samples": 48, "generated_size": [32, 32], "crop": [32, 32], "batch_size": 8},
            "training_hyperparameters": hp,
            "architecture_hyperparameters": {"filters": 8, "motifs": 2, "normal_cells_per_motif": 0},
        }
    )


def tiny_unet(shape: tuple[int, int, int], classes: int, filters: int = 8, poison: bool = False) -> keras.Model:
    """A two-level encoder-decoder small enough to train in a second; `poison` injects inf."""
    inp = keras.Input(shape)
    a = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(inp)
    b = keras.layers.MaxPooling2D()(a)
    b = keras.layers.Conv2D(2 * filters, 3, padding="same", activation="relu")(b)
    b = keras.layers.UpSampling2D(interpolation="bilinear")(b)
    c = keras.layers.Concatenate()([a, b])
    c = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(c)
    if poison:
        c = keras.layers.Lambda(lambda t: t * float("inf"))(c)
    return keras.Model(inp, keras.layers.Conv2D(classes, 1, activation="softmax")(c))


@pytest.fixture(scope="module")
def setup() -> tuple[RunConfig, object, Trainer]:
    cfg = _config()
    data = load_data(cfg.dataset, seed=0)
    return cfg, data, Trainer(cfg, data)


def test_trainer_learns_and_reports_sane_fields(setup: tuple, tmp_path: Path) -> None:
    cfg, data, trainer = setup
    cell = Cell.from_string("[(-1,3x3 conv,-1,identity)]")
    model = build_model(cell, cfg.architecture_hyperparameters, data.input_shape, data.classes_count)
    keras.utils.set_random_seed(3)
    untrained = trainer.evaluate(keras.models.clone_model(model), "val")["dice"]
    result, trained = trainer.train(
        model,
        network_id=7,
        encoding="enc",
        blocks=2,
        seed=3,
        out_dir=tmp_path,
        flops=123,
        epochs=4,
    )
    assert result.status == "ok", result.error
    assert result.dice > untrained + 0.2 and result.dice > 0.6, (untrained, result.dice)
    # The returned model holds the best epoch's weights: re-evaluating gives the reported score.
    scores = trainer.evaluate(trained, "val")
    assert scores["dice"] == pytest.approx(result.dice, abs=1e-5)
    assert scores["miou"] == pytest.approx(result.miou, abs=1e-5)
    assert 0.0 <= trainer.evaluate(trained, "test")["dice"] <= 1.0
    assert (result.network_id, result.encoding, result.blocks, result.flops) == (7, "enc", 2, 123)
    assert result.params == trained.count_params() > 0
    assert result.epochs == 4 and 1 <= result.best_epoch <= 4
    assert len(result.epoch_times_s) == 4
    assert result.train_time_s > 0 and 0 < result.inference_time_ms < 1000
    rows = (tmp_path / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4 and "val_dice" in rows[0]
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    with pytest.raises(ValueError):
        trainer.evaluate(trained, "train")


def test_same_seed_same_score(setup: tuple) -> None:
    _, data, trainer = setup
    runs = [
        trainer.train(
            tiny_unet(data.input_shape, data.classes_count, filters=4),
            network_id=1,
            encoding="e",
            blocks=1,
            seed=11,
            epochs=1,
            verbose=False,
        )[0]
        for _ in range(2)
    ]
    assert runs[0].dice == runs[1].dice and runs[0].miou == runs[1].miou


def test_nan_loss_becomes_status_nan(setup: tuple) -> None:
    _, data, trainer = setup
    model = tiny_unet(data.input_shape, data.classes_count, filters=4, poison=True)
    result, _ = trainer.train(model, network_id=2, encoding="e", blocks=1, seed=0, epochs=3, verbose=False)
    assert result.status == "nan"
    assert result.dice == 0.0 and result.miou == 0.0
    assert result.epochs <= 1  # stopped in the first epoch, not after all three


def test_huge_learning_rate_does_not_raise() -> None:
    cfg = _config(learning_rate=10.0, optimizer="sgd", momentum=0.99, scheduler="constant")
    data = load_data(cfg.dataset, seed=0)
    result, _ = Trainer(cfg, data).train(
        tiny_unet(data.input_shape, data.classes_count, filters=4),
        network_id=3,
        encoding="e",
        blocks=1,
        seed=0,
        epochs=1,
        verbose=False,
    )
    assert result.status in ("ok", "nan")
    assert math.isfinite(result.dice)


def test_other_errors_become_status_failed(setup: tuple) -> None:
    _, data, trainer = setup
    wrong = tiny_unet(data.input_shape, data.classes_count + 2, filters=4)  # 4 outputs vs 2-class labels
    result, _ = trainer.train(wrong, network_id=4, encoding="e", blocks=1, seed=0, epochs=1, verbose=False)
    assert result.status == "failed"
    assert result.dice == 0.0 and result.error


def test_early_stopping_stops_before_the_last_epoch(setup: tuple) -> None:
    _, data, trainer = setup
    # A frozen network never improves after its first epoch: patience 1 stops at epoch 2.
    model = tiny_unet(data.input_shape, data.classes_count, filters=4)
    for layer in model.layers:
        layer.trainable = False
    result, _ = trainer.train(
        model,
        network_id=5,
        encoding="e",
        blocks=1,
        seed=0,
        epochs=5,
        early_stopping_patience=1,
        verbose=False,
        reinitialize=False,
    )
    assert result.status == "ok" and result.epochs == 2


def test_steps_per_epoch_sets_the_optimiser_steps(setup: tuple) -> None:
    """An epoch is `steps_per_epoch` batches whatever the split size (34 training images = 5 batches of 8)."""
    cfg, data, _ = setup
    for steps, expected in ((7, 7), (None, 5)):
        trainer = Trainer(_config(steps_per_epoch=steps), data)
        model = tiny_unet(data.input_shape, data.classes_count, filters=4)
        result, trained = trainer.train(model, network_id=1, encoding="e", blocks=1, seed=0, epochs=2, verbose=False)
        assert result.status == "ok" and result.epochs == 2
        assert int(trained.optimizer.iterations.numpy()) == 2 * expected, steps


def test_a_never_finite_validation_dice_is_not_ok(setup: tuple) -> None:
    """Regression: a network whose validation Dice was never finite (here: never measured, the validation
    data yield nothing while the training loss stays finite) was recorded as "ok" with Dice 0."""
    cfg, data, _ = setup

    class NoValidation:
        def __getattr__(self, name: str):
            return getattr(data, name)

        def val_dataset(self, fold: int = 0):
            return data.val_dataset(fold).take(0)

    trainer = Trainer(cfg, NoValidation())
    model = tiny_unet(data.input_shape, data.classes_count, filters=4)
    result, _ = trainer.train(model, network_id=2, encoding="e", blocks=1, seed=0, epochs=2, verbose=False)
    assert result.status == "nan" and result.dice == 0.0
    assert "never finite" in result.error


@pytest.mark.slow  # two more traced models; k-fold is a secondary path
def test_folds_average(tmp_path: Path) -> None:
    cfg = RunConfig.model_validate(
        {
            "dataset": {"samples": 24, "generated_size": [32, 32], "crop": [32, 32], "batch_size": 8, "folds": 2},
            "training_hyperparameters": {"epochs": 1},
        }
    )
    data = load_data(cfg.dataset, seed=0)
    result, model = Trainer(cfg, data).train(
        tiny_unet(data.input_shape, data.classes_count, filters=4),
        network_id=6,
        encoding="e",
        blocks=1,
        seed=0,
        fold=None,
        out_dir=tmp_path,
        verbose=False,
    )
    assert result.status == "ok"
    assert len(result.fold_dice) == 2
    assert result.dice == pytest.approx(float(np.mean(result.fold_dice)))
    assert (tmp_path / "folds.csv").exists() and (tmp_path / "fold_1" / "history.csv").exists()


def test_schedules_and_optimizers() -> None:
    hp = _config(learning_rate=0.1, warmup_epochs=1, scheduler="cosine").training_hyperparameters
    sched = make_schedule(hp, steps_per_epoch=10, epochs=5)
    lr = [float(ops.convert_to_numpy(sched(s))) for s in (0, 5, 10, 30, 49)]
    assert lr[0] == pytest.approx(0.01) and lr[1] < lr[2]  # linear warm-up to the peak
    assert lr[2] == pytest.approx(0.1, rel=1e-3) and lr[2] > lr[3] > lr[4]  # then cosine decay
    restarts = make_schedule(
        _config(learning_rate=0.1, scheduler="cosine_restarts", restart_period_epochs=1).training_hyperparameters,
        steps_per_epoch=10,
        epochs=5,
    )
    assert float(ops.convert_to_numpy(restarts(9))) < 0.01
    assert float(ops.convert_to_numpy(restarts(10))) == pytest.approx(0.1, rel=1e-3)  # restart
    const = make_schedule(_config(scheduler="constant", learning_rate=0.2).training_hyperparameters, 10, 5)
    assert const == pytest.approx(0.2)
    warm_const = WarmupSchedule.from_config(WarmupSchedule(0.2, 4, 0.2).get_config())
    assert float(ops.convert_to_numpy(warm_const(100))) == pytest.approx(0.2)
    sgd = make_optimizer(_config(optimizer="sgd", momentum=0.8).training_hyperparameters, 0.1)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == pytest.approx(0.8)
    assert isinstance(make_optimizer(_config(optimizer="adamw").training_hyperparameters, 0.1), keras.optimizers.AdamW)
