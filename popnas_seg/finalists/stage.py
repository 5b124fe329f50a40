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

The selection rules are in selection.py; the steps' shared state in context.py; export and HWA + drift
(steps 4-5) in analog_steps.py; the rows, tables and figures in tables.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from popnas_seg.analog.drift import DriftReport
from popnas_seg.config import ArchitectureConfig, RunConfig
from popnas_seg.evaluation.evaluator import UNET_ENCODING, NetworkEvaluator, Trial
from popnas_seg.finalists.analog_steps import ExportAndDrift
from popnas_seg.finalists.context import Finalist
from popnas_seg.finalists.selection import macro_variants, select_finalists
from popnas_seg.finalists.tables import finalist_row, write_tables
from popnas_seg.results import TrainingResult, backfill_analog_scores
from popnas_seg.runlog.events import (
    FinalistDone,
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

UNET = "unet"


# ---------------------------------------------------------------------------------------------------- the stage
class FinalistsStage(ExportAndDrift):
    """Runs or resumes the finalists stage of one run folder (see the module docstring for the sub-steps)."""

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
    def model_selection(self, candidates: Sequence[TrainingResult]) -> list[Finalist]:
        """Short retraining of every candidate variant; the best variant (validation Dice) of each cell wins."""
        a = self.config.analog
        shape = tuple(self.data.input_shape)
        chosen: list[Finalist] = []
        for cand in candidates:
            best: tuple[float, Finalist] | None = None
            for suffix, arch in macro_variants(self.config.architecture_hyperparameters, shape, a.macro_variants):
                variant = f"{cand.network_id}{suffix}"
                done = self._last(ModelSelectionDone, variant=variant)
                if done is None:
                    done = self._train_selection_variant(cand, variant, arch)
                finalist = Finalist(
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

    def _write_selection_table(self, chosen: Sequence[Finalist]) -> None:
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

    def unet_selection(self) -> Finalist:
        """The U-Net baseline after its model-selection training (the finalists' budget: same epochs, same rule)."""
        arch = self.config.architecture_hyperparameters
        unet = Finalist(UNET, -1, UNET_ENCODING, 0, arch, UNET, UNET)
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
    def _start_weights(self, f: Finalist) -> Path | None:
        """The model-selection weights `f` starts final training from (None: a run from before they were kept,
        or a failed model-selection training: final training then starts from fresh weights)."""
        if not f.variant:
            return None
        done = self._last(ModelSelectionDone, variant=f.variant)
        path = self._selection_dir(f.variant) / "model.keras"
        return path if done is not None and done.get("status") == "ok" and path.is_file() else None

    def final_training(self, f: Finalist) -> tuple[dict[str, Any], Any]:
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
            row = finalist_row(f, trained, exported, drift)
            self.run.journal.append(FinalistDone(name=f.name, row=row))
            rows.append(row)
            write_tables(self.final_dir, Path(self.run.plots_dir), rows, reports, self.log)
        write_tables(self.final_dir, Path(self.run.plots_dir), rows, reports, self.log)
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
