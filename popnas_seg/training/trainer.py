"""The Trainer: turns one built Keras network into a measured `TrainingResult`.

One trainer trains every network of a run (children, baselines, finalists) with the same recipe, so their
scores are comparable:

- seeded (`keras.utils.set_random_seed` + deterministic TF ops) and, by default, re-initialised under that
  seed (the model is cloned), so a network's score depends on its seed only, not on what ran before it:
  a resumed search reproduces the same numbers;
- optimizer (adamw / adam / sgd with momentum) and learning-rate schedule (cosine, cosine with restarts,
  constant; optional linear warm-up) from `training_hyperparameters`; XLA and mixed precision from `others`;
- loss = Dice + CE (training/losses.py); score = best validation foreground Dice over the epochs, and the
  model comes back with that epoch's weights; an epoch is `steps_per_epoch` batches drawn with replacement
  (null: one pass over the training split), so budgets do not shrink with the data set;
- failures are data, not exceptions: a NaN/inf loss, or a validation Dice that is never finite, gives
  status "nan" (Dice 0), any other error in training gives status "failed" with the message in
  `error`.

K-fold: with `dataset.folds > 1` and `train(..., fold=None)` every fold is trained from the same
initial weights; `dice`/`miou` are the means over folds (per-fold values in `fold_dice`), the
training time is the sum, and the returned model holds the weights of the best fold.

The optimizer and schedule are built in schedules.py, the per-epoch bookkeeping is callbacks.py's EpochMonitor.

Mixed precision is a global Keras policy that only affects layers built after it is set: the policy is
set when the Trainer is created, so create the Trainer before building the models it will train.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import statistics
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from popnas_seg.atomic import atomic_write_text
from popnas_seg.config import RunConfig
from popnas_seg.results import TrainingResult
from popnas_seg.training.callbacks import EpochMonitor
from popnas_seg.training.losses import (
    ForegroundDice,
    MeanIoU,
    SegmentationLoss,
)
from popnas_seg.training.schedules import make_optimizer, make_schedule

if TYPE_CHECKING:
    from popnas_seg.data.pipeline import SegmentationData

_LOG = logging.getLogger("popnas_seg.trainer")
# Every child network is a new graph: TensorFlow's "retracing" warnings are expected here and only drown the
# progress lines, so they are silenced (errors still show).
logging.getLogger("tensorflow").setLevel(logging.ERROR)


# ------------------------------------------------------------------------------------------ trainer


def _set_precision(mixed: bool) -> None:
    """mixed_float16 on a GPU, mixed_bfloat16 on CPU (float16 matmuls are emulated and slow there)."""
    if not mixed:
        keras.mixed_precision.set_global_policy("float32")
        return
    has_gpu = False
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    elif keras.backend.backend() == "jax":
        import jax

        has_gpu = any(d.platform == "gpu" for d in jax.devices())
    keras.mixed_precision.set_global_policy("mixed_float16" if has_gpu else "mixed_bfloat16")


def _enable_determinism() -> None:
    """Deterministic TF kernels on CPU. Not on a GPU: there some gradients (e.g. of bilinear resizing)
    have no deterministic kernel and would raise; seeds still make runs close, not bit-identical."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            tf.config.experimental.enable_op_determinism()


def _batches(dataset: Any) -> int:
    """Number of batches of a tf.data dataset (counted once when the cardinality is unknown)."""
    try:
        n = int(dataset.cardinality())
    except (AttributeError, TypeError):
        n = -1
    if n >= 0:
        return n
    return sum(1 for _ in dataset)


def _as_numpy(x: Any) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


@dataclasses.dataclass(frozen=True)
class _Fit:
    """What one `Trainer.train` call trains: the network's identity and the budget (see `train`'s arguments)."""

    network_id: int
    encoding: str
    blocks: int
    seed: int
    epochs: int
    flops: int
    patience: int | None
    verbose: bool
    reinitialize: bool
    keep_initial: bool


class Trainer:
    """Trains networks with one fixed recipe from a RunConfig on one `SegmentationData`."""

    def __init__(self, config: RunConfig, data: SegmentationData, logger: logging.Logger | None = None) -> None:
        self.config = config
        self.data = data
        self.logger = logger or _LOG
        _set_precision(bool(config.others.mixed_precision))

    # ---------------------------------------------------------------------------------- public API

    def train(
        self,
        model: keras.Model,
        *,
        network_id: int,
        encoding: str,
        blocks: int,
        seed: int,
        out_dir: str | os.PathLike[str] | None = None,
        epochs: int | None = None,
        flops: int = 0,
        early_stopping_patience: int | None = None,
        fold: int | None = 0,
        verbose: bool = True,
        reinitialize: bool = True,
        keep_initial: bool = False,
    ) -> tuple[TrainingResult, keras.Model]:
        """Train `model` and measure it; never raises for a failure of the network itself.

        `fold=None` with `dataset.folds > 1` trains every fold and averages (see module doc). With
        `reinitialize` the model is cloned with fresh weights drawn under `seed` (pass False to continue
        from the weights it has, e.g. fine-tuning). `keep_initial` (with `reinitialize=False`) scores the
        starting weights on validation first and counts them as epoch 0: the model that comes back is never
        worse on validation than the one that went in (`best_epoch` 0 when no epoch beat it; a NaN loss
        then stops training but keeps those weights, status "ok").
        """
        fit = _Fit(
            network_id=network_id,
            encoding=encoding,
            blocks=blocks,
            seed=seed,
            epochs=int(epochs or self.config.training_hyperparameters.epochs),
            flops=flops,
            patience=early_stopping_patience,
            verbose=verbose,
            reinitialize=reinitialize,
            keep_initial=keep_initial,
        )
        folds = int(getattr(self.data, "folds", 1) or 1)
        out = Path(out_dir) if out_dir is not None else None
        if fold is not None or folds <= 1:
            return self._train_fold(model, fit, out, fold or 0)
        return self._train_folds(model, fit, out, folds)

    def evaluate(self, model: keras.Model, split: str = "val", fold: int = 0) -> dict[str, float]:
        """Whole-image Dice and mIoU of `model` on a split: every image is segmented by the run's inference
        tiling (whole up to `inference.tile_size`, popnas_seg/imaging/tiling.py, as `predict` does), scored
        with the numpy scorer the analog evaluation also uses. So the reported score is the score a user gets."""
        from popnas_seg.imaging.tiling import evaluate_images

        if split == "val":
            images, masks = self.data.val_images(fold=fold)
        elif split == "test":
            images, masks = self.data.test_images()
        else:
            raise ValueError(f"split must be 'val' or 'test', not {split!r}")
        batch = int(self.config.dataset.val_test_batch_size or self.config.dataset.batch_size)
        tiling = self.config.tiling()
        predict = lambda x: _as_numpy(model.predict_on_batch(x))  # noqa: E731  (crop-sized tiles: one shape)
        if tiling.tile_size > 0:
            # Tiles of each image's size: the same weights behind an any-size input, called eagerly, as `predict`
            # does (a traced predict function fails at a second size for the bilinear decoder, see README).
            from popnas_seg.analog.export import dynamic_size

            any_size = dynamic_size(model)
            predict = lambda x: _as_numpy(any_size(x, training=False))  # noqa: E731
        scores = evaluate_images(
            predict, images, masks, tiling, self.data.classes_count, self.data.ignore_class, batch_size=batch
        )
        return {"dice": scores["dice"], "miou": scores["miou"]}

    # ---------------------------------------------------------------------------------- internals

    def _fresh_model(self, model: keras.Model, seed: int, reinitialize: bool) -> keras.Model:
        keras.utils.set_random_seed(seed)
        if not reinitialize:
            return model
        try:
            clone = keras.models.clone_model(model)
        except Exception as exc:  # e.g. a subclassed model: train the given weights, say so
            self.logger.debug("cannot clone %s for re-initialisation (%s); training it as given", model.name, exc)
            return model
        return clone

    def _check_precision(self, model: keras.Model) -> None:
        """Warn when mixed precision is configured but the model was built before the policy was set."""
        wanted = keras.mixed_precision.global_policy().name
        if wanted == "float32":
            return
        names = {layer.dtype_policy.name for layer in model.layers if layer.weights}
        if names and wanted not in names:
            self.logger.warning(
                "others.mixed_precision is on but %s was built with policy %s: create the Trainer before "
                "building models so they pick up %s",
                model.name,
                "/".join(sorted(names)),
                wanted,
            )

    def _compile(self, model: keras.Model, steps_per_epoch: int, epochs: int) -> None:
        hp = self.config.training_hyperparameters
        data = self.data
        weights = getattr(data, "class_weights", None)
        loss = SegmentationLoss(
            data.classes_count,
            ignore_class=data.ignore_class,
            class_weights=None if weights is None else np.asarray(weights, dtype=np.float64),
            dice_weight=hp.dice_loss_weight,
            ce_weight=hp.ce_loss_weight,
        )
        model.compile(
            optimizer=make_optimizer(hp, make_schedule(hp, steps_per_epoch, epochs)),
            loss=loss,
            metrics=[
                ForegroundDice(data.classes_count, data.ignore_class),
                MeanIoU(data.classes_count, data.ignore_class),
            ],
            jit_compile=bool(self.config.others.xla),
        )

    def _train_fold(
        self, model: keras.Model, fit: _Fit, out: Path | None, fold: int
    ) -> tuple[TrainingResult, keras.Model]:
        _enable_determinism()
        model = self._fresh_model(model, fit.seed, fit.reinitialize)
        self._check_precision(model)
        label = f"net {fit.network_id}" + (f" fold {fold}" if fold else "")
        result = TrainingResult(
            network_id=fit.network_id,
            encoding=fit.encoding,
            blocks=fit.blocks,
            dice=0.0,
            miou=0.0,
            params=int(model.count_params()),
            flops=int(fit.flops),
            train_time_s=0.0,
            inference_time_ms=0.0,
            epochs=0,
            status="ok",
        )
        monitor = EpochMonitor(
            fit.epochs, fit.patience, label, self.logger, fit.verbose, None if out is None else out / "tensorboard"
        )
        fit_time = 0.0
        try:
            steps_per_epoch = self.config.training_hyperparameters.steps_per_epoch
            train_ds = (
                self.data.train_dataset(fold=fold, steps_per_epoch=steps_per_epoch)
                if steps_per_epoch is not None
                else self.data.train_dataset(fold=fold)
            )
            val_ds = self.data.val_dataset(fold=fold)
            steps = max(1, _batches(train_ds))
            self._compile(model, steps, fit.epochs)
            if fit.keep_initial:
                self._score_start(model, val_ds, monitor, result)
            callbacks: list[keras.callbacks.Callback] = [monitor]
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                callbacks.append(keras.callbacks.CSVLogger(str(out / "history.csv")))
            start = time.perf_counter()
            try:
                model.fit(
                    train_ds, validation_data=val_ds, epochs=fit.epochs, callbacks=callbacks, verbose=0, shuffle=False
                )  # the pipeline shuffles (seeded); silences a Keras warning
            finally:
                fit_time = time.perf_counter() - start
        except Exception as exc:  # the network failed, the search goes on
            if monitor.nan:
                self.logger.debug("%s: error after a NaN loss: %s", label, exc)
            else:
                result.status = "failed"
                result.error = f"{type(exc).__name__}: {exc}"
                result.traceback = traceback.format_exc(limit=8)
                self.logger.warning("%s failed: %s", label, result.error)
        result.train_time_s = float(fit_time)
        result.epochs = int(monitor.epochs_run)
        result.epoch_times_s = [round(t, 4) for t in monitor.epoch_times]
        started = fit.keep_initial and result.start_val_dice is not None
        if monitor.nan and started and result.status == "ok":
            result.nan_at_epoch = int(monitor.epochs_run)
            self.logger.warning(
                "%s: loss became NaN/inf at epoch %d; keeping the best weights so far", label, monitor.epochs_run
            )
        elif monitor.nan:
            result.status = "nan"
            result.error = "loss became NaN or infinite; training stopped"
            self.logger.warning("%s: loss became NaN/inf at epoch %d; recorded with Dice 0", label, monitor.epochs_run)
        if result.status == "ok" and not math.isfinite(monitor.best_dice) and monitor.epochs_run > 0:
            # Not "ok" with Dice 0: a network that never had a finite validation Dice was never measured.
            result.status = "nan"
            result.error = "validation Dice was never finite; nothing to score"
            self.logger.warning(
                "%s: validation Dice never finite in %d epoch(s); recorded as nan", label, monitor.epochs_run
            )
        if result.status == "ok":
            if monitor.best_weights is not None:
                model.set_weights(monitor.best_weights)
            result.dice = float(max(monitor.best_dice, 0.0))
            result.miou = float(monitor.best_miou)
            result.best_epoch = int(monitor.best_epoch + 1)
            result.inference_time_ms = self._inference_ms(model, fold)
        return result, model

    def _score_start(self, model: keras.Model, val_ds: Any, monitor: EpochMonitor, result: TrainingResult) -> None:
        """Validation Dice of the weights training starts from (the same metric as every epoch's val_dice)."""
        scores = model.evaluate(val_ds, verbose=0, return_dict=True)
        dice, miou = float(scores.get("dice", math.nan)), float(scores.get("mean_iou", 0.0))
        if math.isfinite(dice):
            monitor.start_from(dice, miou, model.get_weights())
            result.start_val_dice = dice

    def _train_folds(
        self, model: keras.Model, fit: _Fit, out: Path | None, folds: int
    ) -> tuple[TrainingResult, keras.Model]:
        # Every fold starts from the same initial weights (drawn once under `seed`).
        base = self._fresh_model(model, fit.seed, fit.reinitialize)
        initial = base.get_weights()
        results: list[TrainingResult] = []
        best_model, best_dice = base, -1.0
        for k in range(folds):
            fold_model = keras.models.clone_model(base) if fit.reinitialize else base
            fold_model.set_weights(initial)
            res, trained = self._train_fold(
                fold_model, dataclasses.replace(fit, reinitialize=False), None if out is None else out / f"fold_{k}", k
            )
            results.append(res)
            if res.status != "ok":
                res.failed_fold = k
                return res, trained
            if res.dice > best_dice:
                best_model, best_dice = trained, res.dice
        fold_dice = [r.dice for r in results]
        fold_miou = [r.miou for r in results]
        fold_epochs = [r.epochs for r in results]
        merged = dataclasses.replace(
            results[0],
            dice=float(np.mean(fold_dice)),
            miou=float(np.mean(fold_miou)),
            train_time_s=float(sum(r.train_time_s for r in results)),
            inference_time_ms=float(np.median([r.inference_time_ms for r in results])),
            epochs=int(round(np.mean(fold_epochs))),
            # fold 0's own diagnostics do not describe the merged result
            epoch_times_s=None,
            best_epoch=None,
            start_val_dice=None,
            nan_at_epoch=None,
            folds=folds,
            fold_dice=fold_dice,
            fold_miou=fold_miou,
            fold_epochs=fold_epochs,
        )
        if out is not None:
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["fold", "dice", "miou", "epochs", "train_time_s"])
            for k, r in enumerate(results):
                writer.writerow([k, r.dice, r.miou, r.epochs, r.train_time_s])
            atomic_write_text(out / "folds.csv", buf.getvalue())
        return merged, best_model

    def _inference_ms(self, model: keras.Model, fold: int, repeats: int = 5) -> float:
        """Median time per image (ms) of `predict_on_batch` on one validation batch, after a warm-up call."""
        try:
            x, _ = next(iter(self.data.val_dataset(fold=fold)))
        except StopIteration:
            return 0.0
        n = int(x.shape[0]) or 1
        model.predict_on_batch(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.predict_on_batch(x)
            times.append(time.perf_counter() - start)
        return float(statistics.median(times) * 1000.0 / n)
