"""One trial from plain data to a `TrainingResult`: build, count FLOPs, train, test, save, analog-probe.

Every network the project trains is one `Trial`: the search's children, the finalists' model selection,
their final training (longer, with patience, warm-started from earlier weights, scored on the test split)
and the U-Net baseline. A trial is plain, picklable data, so the same unit of work runs in process or as a
remote task (evaluation/executor.py). Keras, the trainer and AIHWKit are imported only when a trial is
evaluated, never when this module is imported.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from popnas_seg.config import ArchitectureConfig, RunConfig
from popnas_seg.results import TrainingResult

if TYPE_CHECKING:
    from popnas_seg.data.pipeline import SegmentationData
    from popnas_seg.training.trainer import Trainer

__all__ = ["NetworkEvaluator", "PROBE_DICE_TOLERANCE", "Trial", "UNET_ENCODING", "trial_blocks"]

# Keras vs converted-torch digital Dice on the probe images: a larger gap means the export changed the network.
PROBE_DICE_TOLERANCE = 0.01
# The encoding that names the hand-written U-Net baseline instead of a searched cell.
UNET_ENCODING = "unet"


@dataclass(frozen=True)
class Trial:
    """One network to train and measure. `architecture` is `ArchitectureConfig.model_dump(mode="json")`.

    `out_dir` is the trial's own folder (history.csv, TensorBoard events, the search's model files): it is
    emptied first (leftovers of an interrupted attempt). `epochs`/`early_stopping_patience` None mean the
    config's training budget. `warm_start`: a .keras file whose weights training continues from (instead of
    fresh weights drawn under `seed`); with `keep_initial` those weights count as epoch 0, so the trial never
    hands back a network worse on validation than the one it started from. `test` scores whole test images
    (tiled like `predict`) into the result's `test_dice`/`test_miou`. `save` writes out_dir/model.keras
    (and model.weights.h5 when `others.save_children_weights`), or with `model_path` the any-size, uncompiled
    model there instead (the deliverable of final training); `probe` runs the analog probe with `probe_seed`
    on the first `analog.probe_images` validation images. `rung`: the multi-fidelity rung the trial trains
    (search/promotion.py); above 0 it is a continuation (`warm_start` the rung below's model, `keep_initial`).
    """

    network_id: int
    encoding: str
    architecture: dict[str, Any]
    seed: int
    out_dir: str
    origin: str = ""
    step: int = 0
    epochs: int | None = None
    early_stopping_patience: int | None = None
    warm_start: str | None = None
    keep_initial: bool = False
    test: bool = False
    save: bool = True
    model_path: str | None = None
    probe: bool = False
    probe_seed: int = 0
    rung: int = 0


def trial_blocks(encoding: str) -> int:
    """Blocks of a trial's cell (0 for the U-Net): what the ETA model counts by."""
    if encoding == UNET_ENCODING:
        return 0
    from popnas_seg.search_space.encoding import Cell

    return len(Cell.from_string(encoding).blocks)


class NetworkEvaluator:
    """Evaluates `Trial`s against one config and one loaded dataset; keeps the trainer between trials."""

    def __init__(
        self,
        config: RunConfig,
        data: SegmentationData,
        logger: logging.Logger | None = None,
        trainer_factory: Callable[[], Trainer] | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.log = logger or logging.getLogger("popnas_seg")
        self._trainer_factory = trainer_factory
        self._trainer: Trainer | None = None
        self._probe_arrays: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None

    # ------------------------------------------------------------------ pieces
    def trainer(self) -> Trainer:
        """The trainer; created before any model is built, since it sets the mixed-precision policy."""
        if self._trainer is None:
            if self._trainer_factory is not None:
                self._trainer = self._trainer_factory()
            else:
                from popnas_seg.training.trainer import Trainer

                self._trainer = Trainer(self.config, self.data, self.log)
        return self._trainer

    def build(self, encoding: str, arch: ArchitectureConfig) -> tuple[Any, int]:
        """The Keras model for `encoding` (or the U-Net for UNET_ENCODING) and its FLOPs on one input image."""
        height, width, channels = self.data.input_shape
        shape = (int(height), int(width), int(channels))
        classes = self.data.classes_count
        if encoding == UNET_ENCODING:
            from popnas_seg.models.builder import build_unet
            from popnas_seg.models.cost import unet_flops

            return build_unet(arch, shape, classes), unet_flops(arch, shape, classes)
        from popnas_seg.models.builder import build_model
        from popnas_seg.models.cost import count_flops
        from popnas_seg.search_space.encoding import Cell

        cell = Cell.from_string(encoding)
        return build_model(cell, arch, shape, classes), count_flops(cell, arch, shape, classes)

    def probe_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """x, y and (whole images) their sizes: the first `analog.probe_images` validation images, whole and
        packed for the worker (`tiling.pack_images`) when `analog.probe_whole_images`, else centre crops
        (sizes None)."""
        if self._probe_arrays is None:
            n = self.config.analog.probe_images
            if self.config.analog.probe_whole_images:
                from popnas_seg.imaging.tiling import pack_images

                self._probe_arrays = pack_images(*self.data.val_images(n))
            else:
                x, y = self.data.val_arrays(n)
                self._probe_arrays = (x, y, None)
        return self._probe_arrays

    # ------------------------------------------------------------------ the unit of work
    def evaluate(self, trial: Trial) -> TrainingResult:
        """Build, train, test, save and (if asked) probe `trial`; failures of the network become result rows."""
        return self.evaluate_with_model(trial)[0]

    def evaluate_with_model(self, trial: Trial) -> tuple[TrainingResult, Any]:
        """`evaluate`, also returning the trained Keras model for in-process callers."""
        out_dir = Path(trial.out_dir)
        if out_dir.exists():  # leftovers of an interrupted attempt: start clean
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        trainer = self.trainer()  # first: it sets the mixed-precision policy that the model build must see
        arch = ArchitectureConfig.model_validate(trial.architecture)
        model, flops = self.build(trial.encoding, arch)
        if trial.warm_start is not None:
            model.load_weights(trial.warm_start)
        result, model = trainer.train(
            model,
            network_id=trial.network_id,
            encoding=trial.encoding,
            blocks=trial_blocks(trial.encoding),
            seed=trial.seed,
            out_dir=out_dir,
            epochs=trial.epochs,
            flops=flops,
            early_stopping_patience=trial.early_stopping_patience,
            reinitialize=trial.warm_start is None,
            keep_initial=trial.keep_initial,
        )
        result.origin = trial.origin
        result.step = trial.step
        result.rung = trial.rung
        if result.status == "ok":
            if trial.test:
                test = trainer.evaluate(model, split="test")  # whole test images, tiled like `predict`
                result.test_dice, result.test_miou = float(test["dice"]), float(test["miou"])
            if trial.save:
                self._save_model(model, out_dir, trial.model_path)
            if trial.probe:
                self._probe(model, result, out_dir, trial.probe_seed)
        return result, model

    def _save_model(self, model: Any, out_dir: Path, model_path: str | None) -> None:
        """model.keras always (best_model/ and the front need it; pruned at the end unless
        save_children_models); model.weights.h5 kept for every network when save_children_weights. With
        `model_path`: only the any-size, uncompiled model (what `predict` and the export load) there."""
        if model_path is not None:
            from popnas_seg.analog.export import save_keras

            save_keras(model, model_path)
            return
        tmp = out_dir / "model.tmp.keras"
        model.save(tmp)
        tmp.replace(out_dir / "model.keras")
        if self.config.others.save_children_weights:
            tmp_w = out_dir / "model.tmp.weights.h5"
            model.save_weights(tmp_w)
            tmp_w.replace(out_dir / "model.weights.h5")

    def _probe(self, model: Any, result: TrainingResult, out_dir: Path, seed: int) -> None:
        from popnas_seg.analog.export import keras_to_onnx
        from popnas_seg.analog.probe import probe_analog
        from popnas_seg.training.losses import dice_score

        x, y, sizes = self.probe_arrays()
        batch = max(1, self.config.dataset.batch_size)
        tile = (int(self.data.input_shape[0]), int(self.data.input_shape[1]))
        if sizes is None:
            probs = model.predict(x, verbose=0, batch_size=batch)
            digital = float(dice_score(np.argmax(probs, axis=-1), y, self.data.classes_count, self.data.ignore_class))
        else:  # whole images, tiled exactly as the worker tiles them
            from popnas_seg.imaging.tiling import evaluate_images, unpack_images

            images, masks = unpack_images(x, y, sizes)
            digital = float(
                evaluate_images(
                    lambda b: np.asarray(model.predict_on_batch(b)),
                    images,
                    masks,
                    tile,
                    self.data.classes_count,
                    self.data.ignore_class,
                    batch_size=batch,
                )["dice"]
            )
        result.probe_digital_dice = digital
        try:
            onnx_path = keras_to_onnx(model, out_dir / "model.onnx")
            probe = probe_analog(
                onnx_path,
                x,
                y,
                self.config.analog,
                self.data.classes_count,
                self.data.ignore_class,
                digital_dice=digital,
                seed=seed,
                tile=None if sizes is None else tile,
                sizes=sizes,
            )
        except Exception as exc:  # the probe must never kill the search: the row records why it is empty
            self.log.warning("analog probe of network %d failed: %s", result.network_id, exc)
            result.probe_error = str(exc)
            return
        result.analog_dice = float(probe.analog_dice_mean)
        result.analog_dice_std = float(probe.analog_dice_std)
        result.analog_score = float(probe.analog_score)
        result.robustness = None if probe.robustness is None else float(probe.robustness)
        coverage = probe.coverage or {}
        frac = coverage.get("weights_analog_fraction")
        result.analog_coverage = None if frac is None else float(frac)
        torch_dice = probe.digital_dice_torch
        if torch_dice is not None:
            result.probe_digital_dice_torch = float(torch_dice)
            if abs(float(torch_dice) - digital) > PROBE_DICE_TOLERANCE:
                self.log.warning(
                    "network %d: the converted torch network scores digital Dice %.4f, Keras %.4f (difference "
                    "%.4f > %.2f): the analog probe may not measure this network",
                    result.network_id,
                    torch_dice,
                    digital,
                    abs(float(torch_dice) - digital),
                    PROBE_DICE_TOLERANCE,
                )
        result.probe_time_s = float(probe.time_s)
        result.digital_layers = [str(d) for d in coverage.get("digital_layers", [])]
