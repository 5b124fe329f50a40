"""The finalists stage's analog half: export each finalist (ONNX + torch, checked equivalent), then HWA + drift.

Steps 4 and 5 of stage.py, each recorded in the journal (`finalist_exported`, `finalist_drift_done`) once its
files exist; the AIHWKit work runs in the analog worker (analog/drift.py, analog/worker.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.analog.drift import DriftReport
from popnas_seg.finalists.context import Finalist, StageContext
from popnas_seg.runlog.events import FinalistDriftDone, FinalistExported

SAMPLE_IMAGES = 4
MONTH_S = 2592000.0
DRIFT_LABELS = {"before": "no HWA", "control": "digital control", "after": "after HWA"}


class ExportAndDrift(StageContext):
    """Export (d) and HWA + drift (e) of one finalist; FinalistsStage runs them after final training."""

    # ------------------------------------------------------------------ (d) export
    def export(self, f: Finalist, model: Any) -> dict[str, Any]:
        """ONNX + torch export with the equivalence checks (analog/equivalence.py); also stores digital predictions
        of sample images."""
        from popnas_seg.analog.equivalence import export_checked
        from popnas_seg.analog.export import save_npz_atomic

        out = self.final_dir / f.name
        files = [out / n for n in ("model.onnx", "model.pt", "samples.npz")]
        done = self._last(FinalistExported, name=f.name)
        if done is not None and all(p.exists() for p in files):
            return done
        if model is None:
            import keras

            model = keras.saving.load_model(out / "model.keras", compile=False)
        x, y = self._test_arrays()
        check = export_checked(
            model, out, x, y, self.data.classes_count, self.data.ignore_class, self._batch(), self._whole_sample()
        )
        if not check.equivalent:
            self.log.error(
                "export of %s is NOT equivalent: torch max|diff| %.2e, onnxruntime %.2e, Dice %.4f vs "
                "%.4f; its analog scores do not describe the Keras network",
                f.name,
                check.torch_max_abs_diff,
                check.onnxruntime_max_abs_diff,
                check.keras_dice,
                check.torch_dice,
            )
        n = min(SAMPLE_IMAGES, len(x))
        save_npz_atomic(out / "samples.npz", images=x[:n], truth=y[:n], digital=np.argmax(check.keras_probs[:n], -1))
        event = self.run.journal.append(
            FinalistExported(
                name=f.name,
                torch_max_abs_diff=check.torch_max_abs_diff,
                onnxruntime_max_abs_diff=check.onnxruntime_max_abs_diff,
                keras_test_dice=check.keras_dice,
                torch_test_dice=check.torch_dice,
                equivalent=check.equivalent,
                onnxruntime_latency_ms=check.onnxruntime_latency_ms,
                test_images=int(len(x)),
            )
        )
        self.log.info(
            "  %s exported: max|keras - torch| %.2e, max|keras - onnxruntime| %.2e, Dice %.4f / %.4f",
            f.name,
            check.torch_max_abs_diff,
            check.onnxruntime_max_abs_diff,
            check.keras_dice,
            check.torch_dice,
        )
        return event

    def _whole_sample(self) -> np.ndarray | None:
        """The first held-out image whole, cut to a multiple of 2**motifs, when larger than the crop."""
        images, _ = self.data.test_images()
        if not images:
            images, _ = self.data.val_images()
        if not images:
            return None
        div = 2**self.config.architecture_hyperparameters.motifs
        h, w = (images[0].shape[0] // div) * div, (images[0].shape[1] // div) * div
        if (h, w) == tuple(self.data.input_shape[:2]):
            return None
        return np.ascontiguousarray(images[0][None, :h, :w], np.float32)

    def _whole_test(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Whole held-out images packed for the analog worker (`tiling.pack_images`): x, y, sizes."""
        from popnas_seg.imaging.tiling import pack_images

        images, masks = self.data.test_images()
        if not images:  # test_size 0: the validation split is the only held-out data
            images, masks = self.data.val_images()
        return pack_images(images, masks)

    def _batch(self) -> int:
        ds = self.config.dataset
        return int(ds.val_test_batch_size or ds.batch_size)

    # ------------------------------------------------------------------ (e) HWA + drift
    def _drift_done(self, name: str) -> DriftReport | None:
        """The drift report a finished `finalist_drift_done` event recorded for `name` (None: not scored)."""
        done = self._last(FinalistDriftDone, name=name)
        return None if done is None else DriftReport.from_dict(done["report"])

    def drift(self, f: Finalist, samples: bool = False) -> DriftReport:
        """HWA + drift scoring in the analog worker; with `samples`, also analog label maps at 1 month."""
        from popnas_seg.analog.drift import hwa_and_drift

        out = self.final_dir / f.name
        done = self._drift_done(f.name)
        if done is not None and (out / "drift_report.json").exists():
            return done
        a, hp = self.config.analog, self.config.training_hyperparameters
        train_x, train_y = self._train_arrays()
        test_x, test_y, test_sizes = self._whole_test()  # analog Dice on whole images, tiled
        val_x, val_y = self.data.val_arrays()  # HWA / control checkpoint selection (crops)
        self.log.info(
            "analog: %s, HWA %d epoch(s), drift at %s s, %d programmings",
            f.name,
            a.hwa_epochs,
            a.eval_times,
            a.repetitions,
        )
        t0 = time.monotonic()
        seed = self._seed(f.encoding, "analog")
        report = hwa_and_drift(
            out / "model.onnx",
            train_x,
            train_y,
            test_x,
            test_y,
            a,
            self.data.classes_count,
            self.data.ignore_class,
            out,
            seed,
            self.config.dataset.batch_size,
            class_weights=getattr(self.data, "class_weights", None),
            dice_weight=hp.dice_loss_weight,
            ce_weight=hp.ce_loss_weight,
            tile=self.config.tiling(),
            test_sizes=test_sizes,
            val_x=val_x,
            val_y=val_y,
            steps_per_epoch=hp.steps_per_epoch,
        )
        for r in report.rows(f.name):
            self.log.info(
                "  %s %s, t = %g s: analog Dice %.3f ± %.3f",
                f.name,
                DRIFT_LABELS.get(r["hwa"], r["hwa"]),
                r["time"],
                r["mean"],
                r["std"] or 0.0,
            )
        if samples:
            try:
                _analog_sample_predictions(out, report, MONTH_S, seed)
            except Exception as exc:  # only a figure depends on it
                self.log.warning("analog sample predictions of %s failed: %s", f.name, exc)
        self.run.journal.append(FinalistDriftDone(name=f.name, report=report.to_dict(), wall_s=time.monotonic() - t0))
        return report


def _analog_sample_predictions(folder: Path, report: DriftReport, t_inference: float, seed: int) -> Path:
    """Label maps of folder/samples.npz images from the analog network (HWA checkpoint if any) at `t_inference`.

    An analog worker job like every AIHWKit job (analog/worker.py explains why); the result goes to
    folder/analog_samples.npz.
    """
    from popnas_seg.analog.worker import run_job

    checkpoint = report.checkpoints.get("hwa") or report.checkpoints.get("inference")
    if checkpoint is None:
        raise FileNotFoundError(f"no analog checkpoint recorded for {folder}")
    with np.load(folder / "samples.npz") as npz:
        images = np.asarray(npz["images"], np.float32)
    run_job(
        "analog_samples",
        {
            "onnx_path": str(folder / "model.onnx"),
            "checkpoint": str(checkpoint),
            "out": str(folder / "analog_samples.npz"),
            "t_inference": float(t_inference),
            "seed": int(seed),
        },
        {"images": images},
        timeout_s=1800.0,
    )
    return folder / "analog_samples.npz"
