"""After the search: pick finalists from the measured front, retrain them longer, export them, score them on analog.

Sub-steps, each recorded in the journal once its files exist, so a re-run continues where it stopped:

1. ``finalists_selected``   the candidates picked from the final measured front by `analog.selection_rule`
2. ``model_selection_done`` one per candidate variant (the cell at the searched macro-architecture, plus
                            filters x2 / motifs + 1 when `analog.macro_variants`) -> final/model_selection.csv;
                            the best variant of each candidate (validation Dice) becomes that finalist
3. ``finalist_trained``     final training to convergence (at most `analog.final_epochs`, stopping after
                            `early_stopping_patience` epochs without a better validation Dice, best weights),
                            warm-started from the chosen variant's model-selection weights, which count as epoch 0:
                            final training never hands back a network worse on validation than the one it got;
                            test Dice/mIoU on whole test images (tiled, as `predict`), final/<id>/model.keras
4. ``finalist_exported``    final/<id>/model.onnx (dynamic batch, height and width), model.pt (the
                            onnx2torch module's state dict: tensors only); Keras vs torch vs ONNX Runtime
                            equivalence on test crops and on one whole test image (a second size)
5. ``finalist_drift_done``  drift scoring with no HWA, after a digital fine-tune control and after HWA
                            (analog/drift.py), checkpoints in final/<id>/
6. ``finalist_done``        the finalist's row of final/finalists.csv

The U-Net baseline (`analog.unet_baseline`) gets the same budget and rule: a model-selection training (variant
``unet``, `analog.model_selection_epochs`), then steps 3-6 as finalist ``unet`` from those weights.
At the end, final/recommendation.json names the network to use (recommendation.py).

The selection rules are in selection.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from popnas_seg.analog.drift import DriftReport
from popnas_seg.config import ArchitectureConfig, RunConfig
from popnas_seg.evaluation.evaluator import UNET_ENCODING, NetworkEvaluator, Trial
from popnas_seg.finalists.selection import macro_variants, select_finalists
from popnas_seg.results import TrainingResult, backfill_analog_scores
from popnas_seg.runlog.events import (
    Event,
    FinalistDone,
    FinalistDriftDone,
    FinalistExported,
    FinalistsFinished,
    FinalistsSelected,
    FinalistTrained,
    ModelSelectionDone,
    NetworkFinished,
    Result,
)

if TYPE_CHECKING:
    from popnas_seg.data.pipeline import SegmentationData
    from popnas_seg.runlog.folder import RunFolder
    from popnas_seg.training.trainer import Trainer

UNET = "unet"
SAMPLE_IMAGES = 4
MONTH_S = 2592000.0
DRIFT_LABELS = {"before": "no HWA", "control": "digital control", "after": "after HWA"}


def learning_histories(final_dir: Path, names: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """final/<name>/training/history.csv rows of each finalist that has one (the learning curves)."""
    from popnas_seg.runlog.tables import read_csv

    out = {}
    for name in names:
        rows = read_csv(Path(final_dir) / str(name) / "training" / "history.csv")
        if rows:
            out[str(name)] = rows
    return out


# ---------------------------------------------------------------------------------------------------- the stage
@dataclass
class _Finalist:
    """One network going through final training: a searched cell with its chosen macro variant, or the U-Net."""

    name: str
    network_id: int
    encoding: str
    blocks: int
    arch: ArchitectureConfig
    origin: str
    variant: str = ""  # model-selection variant whose weights final training starts from ("" : none)


class FinalistsStage:
    """Runs or resumes the finalists stage of one run folder (see the module docstring for the sub-steps)."""

    def __init__(
        self, run: RunFolder, config: RunConfig, data: SegmentationData, logger: logging.Logger | None = None
    ) -> None:
        self.run = run
        self.config = config
        self.data = data
        self.log = logger or logging.getLogger("popnas_seg")
        self.final_dir = Path(run.final_dir)
        self._trainer: Trainer | None = None
        self._network_evaluator: NetworkEvaluator | None = None
        self._test: tuple[np.ndarray, np.ndarray] | None = None
        self._train: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ journal helpers
    def _events(self, kind: type[Event], **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.run.journal.events(kind) if all(e.get(k) == v for k, v in match.items())]

    def _last(self, kind: type[Event], **match: Any) -> dict[str, Any] | None:
        events = self._events(kind, **match)
        return events[-1] if events else None

    def _trainer_(self) -> Trainer:
        """The stage's one trainer (model selection and final training alike), the evaluator's factory."""
        if self._trainer is None:
            from popnas_seg.training.trainer import Trainer

            self._trainer = Trainer(self.config, self.data, self.log)
        return self._trainer

    def _test_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._test is None:
            x, y = self.data.test_arrays()
            if len(x) == 0:  # test_size 0: the validation split is the only held-out data
                x, y = self.data.val_arrays()
            self._test = (np.asarray(x, np.float32), np.asarray(y, np.int32))
        return self._test

    def _train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._train is None:
            x, y = self.data.train_arrays()
            self._train = (np.asarray(x, np.float32), np.asarray(y, np.int32))
        return self._train

    def _seed(self, encoding: str, salt: str = "") -> int:
        from popnas_seg.search.runner import network_seed

        return network_seed(self.config.others.seed, encoding + salt)

    # ------------------------------------------------------------------ (a) selection
    def select(self) -> list[TrainingResult]:
        """The candidates, fixed in the journal the first time so a resumed run keeps the same ones."""
        event = self._last(FinalistsSelected)
        if event is not None:
            return [TrainingResult.from_dict(c) for c in event["candidates"]]
        from popnas_seg.search.strategies import strategy_objectives

        results = self._search_results()
        a = self.config.analog
        objectives = strategy_objectives(self.config)
        rule = a.selection_rule
        if rule in ("best_analog", "size_buckets") and not any(r.analog_objective is not None for r in results):
            self.log.warning("selection_rule %s but no network has an analog score: ordering by Dice", rule)
        max_params = None
        if rule == "size_buckets":
            from popnas_seg.finalists.selection import default_max_params
            from popnas_seg.models.cost import unet_params

            arch = self.config.architecture_hyperparameters
            max_params = default_max_params(
                unet_params(arch, int(self.data.input_shape[-1]), int(self.data.classes_count)), a.max_params
            )
            if not any(r.status == "ok" and r.params <= max_params for r in results):
                self.log.warning(
                    "no trained network has at most %d params (analog.max_params): the smallest one "
                    "is the small finalist",
                    max_params,
                )
        picked = select_finalists(results, rule, a.finalists, objectives, max_params)
        if not picked and not a.unet_baseline:
            from popnas_seg.errors import UserError

            raise UserError(f"no successfully trained network in {self.run.path}: run the search stage first")
        self.run.journal.append(
            FinalistsSelected(
                rule=rule, objectives=objectives, max_params=max_params, candidates=[Result.of(r) for r in picked]
            )
        )
        self.log.info("finalists (%s): %s", rule, ", ".join(f"{r.network_id} (dice {r.dice:.3f})" for r in picked))
        return picked

    def _search_results(self) -> list[TrainingResult]:
        events = self.run.journal.events(NetworkFinished)
        if events:
            by_id = {}
            for e in events:
                r = TrainingResult.from_dict(e["result"])
                by_id[r.network_id] = r
            return backfill_analog_scores(list(by_id.values()), self.config.analog.risk_k)
        from popnas_seg.runlog.tables import read_csv

        return backfill_analog_scores(
            [TrainingResult.from_dict(r) for r in read_csv(Path(self.run.csv_dir) / "training_results.csv")],
            self.config.analog.risk_k,
        )

    # ------------------------------------------------------------------ (b) model selection
    def model_selection(self, candidates: Sequence[TrainingResult]) -> list[_Finalist]:
        """Short retraining of every candidate variant; the best variant (validation Dice) of each cell wins."""
        a = self.config.analog
        shape = tuple(self.data.input_shape)
        chosen: list[_Finalist] = []
        for cand in candidates:
            best: tuple[float, _Finalist] | None = None
            for suffix, arch in macro_variants(self.config.architecture_hyperparameters, shape, a.macro_variants):
                variant = f"{cand.network_id}{suffix}"
                done = self._last(ModelSelectionDone, variant=variant)
                if done is None:
                    done = self._train_selection_variant(cand, variant, arch)
                finalist = _Finalist(
                    str(cand.network_id),
                    cand.network_id,
                    cand.encoding,
                    cand.blocks,
                    ArchitectureConfig(**done["arch"]),
                    cand.origin,
                    variant,
                )
                dice = float(done["dice"]) if done["status"] == "ok" else -1.0
                if best is None or dice > best[0]:
                    best = (dice, finalist)
            assert best is not None
            chosen.append(best[1])
        self._write_selection_table(chosen)
        return chosen

    def _write_selection_table(self, chosen: Sequence[_Finalist]) -> None:
        """final/model_selection.csv: every variant trained, the chosen ones marked."""
        from popnas_seg.runlog.tables import write_csv

        rows = []
        winners = {(f.network_id, f.arch.filters, f.arch.motifs) for f in chosen}
        for e in self.run.journal.events(ModelSelectionDone):
            row = {
                k: e[k]
                for k in (
                    "variant",
                    "network_id",
                    "encoding",
                    "filters",
                    "motifs",
                    "dice",
                    "miou",
                    "params",
                    "flops",
                    "epochs",
                    "train_time_s",
                    "status",
                )
            }
            row["chosen"] = (e["network_id"], e["filters"], e["motifs"]) in winners
            rows.append(row)
        write_csv(self.final_dir / "model_selection.csv", rows)

    def _evaluator(self) -> NetworkEvaluator:
        """The search's unit of work (build, FLOPs, train), sharing this stage's trainer."""
        if self._network_evaluator is None:
            self._network_evaluator = NetworkEvaluator(self.config, self.data, self.log, trainer_factory=self._trainer_)
        return self._network_evaluator

    def _train_selection_variant(self, cand: TrainingResult, variant: str, arch: ArchitectureConfig) -> dict[str, Any]:
        """Short training of one variant; its weights (model.keras) are where final training starts."""
        from popnas_seg.search_space.encoding import Cell

        key = UNET if cand.encoding == UNET_ENCODING else Cell.from_string(cand.encoding).key()
        self.log.info(
            "model selection: %s (%s, filters %d, motifs %d), %d epochs",
            variant,
            cand.encoding,
            arch.filters,
            arch.motifs,
            self.config.analog.model_selection_epochs,
        )
        result = self._evaluator().evaluate(
            Trial(
                network_id=cand.network_id,
                encoding=cand.encoding,
                architecture=arch.model_dump(mode="json"),
                seed=self._seed(key, variant),
                out_dir=str(self._selection_dir(variant)),
                epochs=self.config.analog.model_selection_epochs,
                save=True,
                probe=False,
            )
        )
        return self.run.journal.append(
            ModelSelectionDone(
                variant=variant,
                network_id=cand.network_id,
                encoding=cand.encoding,
                filters=arch.filters,
                motifs=arch.motifs,
                arch=arch.model_dump(mode="json"),
                dice=result.dice,
                miou=result.miou,
                params=result.params,
                flops=result.flops,
                epochs=result.epochs,
                train_time_s=result.train_time_s,
                status=result.status,
            )
        )

    def _selection_dir(self, variant: str) -> Path:
        return self.final_dir / "model_selection" / variant

    def unet_selection(self) -> _Finalist:
        """The U-Net baseline after its model-selection training (the finalists' budget: same epochs, same rule)."""
        arch = self.config.architecture_hyperparameters
        unet = _Finalist(UNET, -1, UNET_ENCODING, 0, arch, UNET, UNET)
        # a run from before the U-Net had a model selection, already past its final training, keeps it as it is
        if self._last(ModelSelectionDone, variant=UNET) is None and self._last(FinalistTrained, name=UNET) is None:
            cand = TrainingResult(
                network_id=-1,
                encoding=UNET_ENCODING,
                blocks=0,
                dice=0.0,
                miou=0.0,
                params=0,
                flops=0,
                train_time_s=0.0,
                inference_time_ms=0.0,
                epochs=0,
                origin=UNET,
            )
            self._train_selection_variant(cand, UNET, arch)
        return unet

    # ------------------------------------------------------------------ (c) final training
    def _start_weights(self, f: _Finalist) -> Path | None:
        """The model-selection weights `f` starts final training from (None: a run from before they were kept,
        or a failed model-selection training: final training then starts from fresh weights)."""
        if not f.variant:
            return None
        done = self._last(ModelSelectionDone, variant=f.variant)
        path = self._selection_dir(f.variant) / "model.keras"
        return path if done is not None and done.get("status") == "ok" and path.is_file() else None

    def final_training(self, f: _Finalist) -> tuple[dict[str, Any], Any]:
        """Train `f` for `analog.final_epochs` with early stopping; returns (journal event, model or None)."""
        out = self.final_dir / f.name
        done = self._last(FinalistTrained, name=f.name)
        if done is not None and (out / "model.keras").exists():
            return done, None
        a = self.config.analog
        start = self._start_weights(f)
        self.log.info(
            "final training: %s (%s), up to %d epochs, patience %d, from %s",
            f.name,
            f.encoding,
            a.final_epochs,
            a.early_stopping_patience,
            "fresh weights" if start is None else f"its model-selection weights ({f.variant})",
        )
        trial = Trial(
            network_id=f.network_id,
            encoding=UNET_ENCODING if f.name == UNET else f.encoding,
            architecture=f.arch.model_dump(mode="json"),
            seed=self._seed(f.encoding, "final"),
            out_dir=str(out / "training"),
            origin=f.origin,
            epochs=a.final_epochs,
            early_stopping_patience=a.early_stopping_patience,
            warm_start=None if start is None else str(start),
            keep_initial=start is not None,
            test=True,
            model_path=str(out / "model.keras"),  # any input size, uncompiled: plain keras.saving.load_model
        )
        result, model = self._evaluator().evaluate_with_model(trial)
        event = self.run.journal.append(
            FinalistTrained(
                name=f.name,
                result=Result.of(result),
                arch=f.arch.model_dump(mode="json"),
                test_dice=result.test_dice,
                test_miou=result.test_miou,
                start_weights=None if start is None else str(start.relative_to(self.final_dir)),
            )
        )
        if result.status != "ok":
            self.log.error(
                "final training of %s failed (%s); it gets no export or analog scores", f.name, result.status
            )
            return event, None
        kept = (
            " (no epoch beat the model-selection weights: kept them)"
            if (start is not None and result.best_epoch == 0)
            else ""
        )
        self.log.info(
            "  %s: validation Dice %.3f, test Dice %.3f mIoU %.3f, %s params%s",
            f.name,
            result.dice,
            result.test_dice,
            result.test_miou,
            f"{result.params:,}",
            kept,
        )
        return event, model

    # ------------------------------------------------------------------ (d) export
    def export(self, f: _Finalist, model: Any) -> dict[str, Any]:
        """ONNX + torch export with the equivalence checks (analog/export.py); also stores digital predictions
        of sample images."""
        from popnas_seg.analog.export import export_checked, save_npz_atomic

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

    def drift(self, f: _Finalist, samples: bool = False) -> DriftReport:
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

    # ------------------------------------------------------------------ rows, tables, plots
    def _row(
        self, f: _Finalist, trained: dict[str, Any], exported: dict[str, Any] | None, drift: DriftReport | None
    ) -> dict[str, Any]:
        result = TrainingResult.from_dict(trained["result"])
        row: dict[str, Any] = {
            "network": f.name,
            "network_id": f.network_id,
            "encoding": f.encoding,
            "filters": f.arch.filters,
            "motifs": f.arch.motifs,
            "status": result.status,
            "epochs": result.epochs,
            "val_dice": result.dice,
            "test_dice": trained.get("test_dice"),
            "test_miou": trained.get("test_miou"),
            "params": result.params,
            "flops": result.flops,
            "latency_ms": result.inference_time_ms,
            "onnxruntime_latency_ms": (exported or {}).get("onnxruntime_latency_ms"),
            "export_equivalent": (exported or {}).get("equivalent"),
            "torch_max_abs_diff": (exported or {}).get("torch_max_abs_diff"),
        }
        if drift is not None:
            row["analog_coverage"] = drift.weights_analog_fraction()
            for r in drift.rows(f.name):
                kind = {"after": "hwa", "control": "control"}.get(r["hwa"], "nohwa")
                key = f"analog_dice_{kind}_{_time_key(r['time'])}"
                row[key] = r["mean"]
                row[key + "_std"] = r["std"]
            row["analog_mac_fraction"] = drift.coverage.get("macs_analog_fraction")
            row["drift_eval_s"] = drift.seconds_per_eval()
            row["hwa_train_s"] = drift.timings.get("hwa_train_s")
            row["hwa_best_epoch"] = drift.hwa_best_epoch
            row["control_best_epoch"] = drift.control_best_epoch
        return row

    def _write_tables(self, rows: list[dict[str, Any]], reports: dict[str, DriftReport]) -> None:
        from popnas_seg.runlog.tables import write_csv

        write_csv(self.final_dir / "finalists.csv", rows)
        drift_table = [r for name, report in reports.items() for r in report.rows(name)]
        write_csv(self.final_dir / "drift.csv", drift_table, ["network", "hwa", "time", "mean", "std"])
        from popnas_seg import plots

        try:
            digital = {r["network"]: r["test_dice"] for r in rows if r.get("test_dice") is not None}
            plots.plot_drift_curves(drift_table, Path(self.run.plots_dir) / "drift_curves.png", digital=digital)
            plots.plot_learning_curves(
                learning_histories(self.final_dir, [r["network"] for r in rows]),
                Path(self.run.plots_dir) / "learning_curves.png",
            )
            self._sample_plot(reports)
        except Exception as exc:  # a figure must not fail the stage; the report can redraw it
            self.log.warning("finalist plots failed: %s", exc)

    def _sample_plot(self, reports: dict[str, DriftReport]) -> None:
        """Sample grid of the first finalist: analog prediction at 1 month when the drift step saved one."""
        from popnas_seg import plots

        for name in reports:
            samples = self.final_dir / name / "samples.npz"
            if not samples.exists():
                continue
            with np.load(samples) as npz:
                images, truth, digital = npz["images"], npz["truth"], npz["digital"]
            analog = _analog_samples(self.final_dir / name, len(images))
            label = "analog prediction (1 month" + (
                ", HWA)" if (self.final_dir / name / "analog_hwa.pt").exists() else ")"
            )
            plots.plot_sample_predictions(
                images,
                truth,
                digital,
                analog,
                Path(self.run.plots_dir) / "sample_predictions.png",
                analog_label=label,
                title=f"finalist {name}: test images",
            )
            return

    # ------------------------------------------------------------------ the whole stage
    def run_stage(self) -> list[dict[str, Any]]:
        a = self.config.analog
        self.final_dir.mkdir(parents=True, exist_ok=True)
        candidates = self.select()
        finalists = self.model_selection(candidates) if candidates else []
        if a.unet_baseline:
            finalists.append(self.unet_selection())
            self._write_selection_table(finalists)
        rows: list[dict[str, Any]] = []
        reports: dict[str, DriftReport] = {}
        for f in finalists:
            done = self._last(FinalistDone, name=f.name)
            if done is not None and (
                (self.final_dir / f.name / "model.keras").exists() or done["row"].get("status") != "ok"
            ):  # a failed training is final too
                self.log.info("finalist %s already done; skipping", f.name)
                rows.append(done["row"])
                report = self._drift_done(f.name)
                if report is not None:
                    reports[f.name] = report
                continue
            trained, model = self.final_training(f)
            exported = drift = None
            if trained.get("test_dice") is not None:
                exported = self.export(f, model)
                drift = reports[f.name] = self.drift(f, samples=f is finalists[0])
            row = self._row(f, trained, exported, drift)
            self.run.journal.append(FinalistDone(name=f.name, row=row))
            rows.append(row)
            self._write_tables(rows, reports)
        self._write_tables(rows, reports)
        self._recommend()
        self.run.journal.append(FinalistsFinished(finalists=[r["network"] for r in rows]))
        return rows

    def _recommend(self) -> None:
        """final/recommendation.json, and the network to use on the terminal."""
        from popnas_seg.finalists.recommendation import write_recommendation

        rec = write_recommendation(self.run.path)
        if rec is None:
            return
        for use, e in (("digital use", rec["digital"]), (f"analog use at {rec['horizon']}", rec["analog"])):
            if e is not None:
                self.log.info("recommended for %s: %s", use, e["network"])
        for warning in rec["warnings"]:
            self.log.warning("%s", warning)


def run_finalists(
    run: RunFolder, config: RunConfig, data: SegmentationData, logger: logging.Logger | None = None
) -> list[dict[str, Any]]:
    """Run or resume the finalists stage of `run`; returns the rows of final/finalists.csv."""
    return FinalistsStage(run, config, data, logger).run_stage()


# ---------------------------------------------------------------------------------------------------- helpers
def _time_key(seconds: float) -> str:
    """Column-friendly time label: 1s, 1h, 1d, 30d, 365d ..."""
    if seconds < 3600:
        return f"{seconds:g}s"
    if seconds < 86400:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 86400:g}d"


def _analog_samples(folder: Path, n: int) -> np.ndarray | None:
    """Analog label maps of the sample images at 1 month, if the drift step saved them (analog_samples.npz)."""
    path = folder / "analog_samples.npz"
    if not path.exists():
        return None
    with np.load(path) as npz:
        return np.asarray(npz["predictions"])[:n] if "predictions" in npz.files else None


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
