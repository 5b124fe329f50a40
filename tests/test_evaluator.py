"""NetworkEvaluator: plain-data jobs in, TrainingResults out; trainer before build; clean folder; save rules."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from popnas_seg.config import ArchitectureConfig, RunConfig
from popnas_seg.evaluation.evaluator import UNET_ENCODING, NetworkEvaluator, Trial
from popnas_seg.results import TrainingResult

ARCH = ArchitectureConfig(filters=2, motifs=1, normal_cells_per_motif=0)
ENCODING = "[(-1,3x3 conv,-1,identity);(0,2x2 maxpool,-2,identity)]"


class FakeTrainer:
    """Records the calls; returns the model untouched and the status it is told to."""

    def __init__(self, order: list[str], status: str = "ok") -> None:
        self.order, self.status, self.calls = order, status, []

    def train(self, model: Any, **kw: Any) -> tuple[TrainingResult, Any]:
        self.order.append("train")
        self.calls.append(kw)
        return TrainingResult(
            network_id=kw["network_id"],
            encoding=kw["encoding"],
            blocks=kw["blocks"],
            dice=0.5,
            miou=0.5,
            params=model.count_params(),
            flops=kw["flops"],
            train_time_s=1.0,
            inference_time_ms=1.0,
            epochs=kw["epochs"] or 1,
            status=self.status,
        ), model


def _evaluator(tmp_path: Path, status: str = "ok") -> tuple[NetworkEvaluator, list[str], FakeTrainer]:
    order: list[str] = []
    trainer = FakeTrainer(order, status)
    data = SimpleNamespace(input_shape=(8, 8, 1), classes_count=2, ignore_class=None)

    def factory() -> FakeTrainer:
        order.append("trainer")
        return trainer

    evaluator = NetworkEvaluator(RunConfig(), data, trainer_factory=factory)
    original = evaluator.build

    def build(encoding: str, arch: ArchitectureConfig) -> tuple[Any, int]:
        order.append("build")
        return original(encoding, arch)

    evaluator.build = build  # type: ignore[method-assign]
    return evaluator, order, trainer


def _job(tmp_path: Path, **kw: Any) -> Trial:
    fields = dict(
        network_id=7,
        encoding=ENCODING,
        architecture=ARCH.model_dump(mode="json"),
        seed=11,
        out_dir=str(tmp_path / "net7"),
        origin="exploration",
        step=2,
    )
    fields.update(kw)
    return Trial(**fields)


def test_a_job_is_plain_picklable_data(tmp_path: Path) -> None:
    job = _job(tmp_path)
    assert pickle.loads(pickle.dumps(job)) == job
    assert ArchitectureConfig.model_validate(job.architecture) == ARCH


def test_evaluate_builds_after_the_trainer_counts_flops_trains_and_saves(tmp_path: Path) -> None:
    from popnas_seg.models.cost import count_flops, count_params
    from popnas_seg.search_space.encoding import Cell

    evaluator, order, trainer = _evaluator(tmp_path)
    out = tmp_path / "net7"
    out.mkdir()
    (out / "leftover.txt").write_text("an interrupted attempt")
    result = evaluator.evaluate(_job(tmp_path, epochs=3))
    assert order == ["trainer", "build", "train"], "the trainer sets the precision policy before the build"
    cell = Cell.from_string(ENCODING)
    assert result.flops == count_flops(cell, ARCH, (8, 8, 1), 2)
    assert result.params == count_params(cell, ARCH, 1, 2)
    assert (result.origin, result.step, result.blocks) == ("exploration", 2, 2)
    assert trainer.calls[0]["seed"] == 11 and trainer.calls[0]["epochs"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["model.keras"], "leftovers removed, model saved atomically"
    evaluator.evaluate(_job(tmp_path, network_id=8, out_dir=str(tmp_path / "net8")))
    assert order.count("trainer") == 1, "one trainer for every job of the evaluator"


@pytest.mark.parametrize("status, save", [("failed", True), ("ok", False)])
def test_nothing_is_saved_for_a_failed_network_or_when_not_asked(tmp_path: Path, status: str, save: bool) -> None:
    evaluator, _, _ = _evaluator(tmp_path, status)
    # probe=True on a failed network: the fake data has no validation arrays, so a probe would raise here
    result = evaluator.evaluate(_job(tmp_path, save=save, probe=status == "failed"))
    assert result.status == status
    assert not (tmp_path / "net7" / "model.keras").exists()
    assert result.probe_digital_dice is None


def test_the_unet_encoding_builds_the_baseline(tmp_path: Path) -> None:
    from popnas_seg.models.cost import unet_flops, unet_params

    evaluator, _, _ = _evaluator(tmp_path)
    result = evaluator.evaluate(_job(tmp_path, encoding=UNET_ENCODING, save=False))
    assert result.params == unet_params(ARCH, 1, 2) and result.flops == unet_flops(ARCH, (8, 8, 1), 2)
    assert result.blocks == 0


def test_final_training_is_a_trial_warm_started_tested_and_saved_where_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finalists' final training through the same unit of work: weights loaded before training, no fresh
    draw, the start counted as epoch 0, whole test images scored, the any-size model saved at `model_path`."""
    from popnas_seg.analog import export as export_module

    evaluator, order, trainer = _evaluator(tmp_path)
    trainer.evaluate = lambda model, split="val": order.append(f"evaluate {split}") or {"dice": 0.8, "miou": 0.7}
    saved: list[str] = []
    monkeypatch.setattr(export_module, "save_keras", lambda model, path: saved.append(str(path)))
    original = evaluator.build

    def build(encoding: str, arch: ArchitectureConfig) -> tuple[Any, int]:
        model, flops = original(encoding, arch)
        model.load_weights = lambda path: order.append(f"load {Path(path).name}")
        return model, flops

    evaluator.build = build  # type: ignore[method-assign]
    start = tmp_path / "selection" / "model.keras"
    trial = _job(
        tmp_path,
        out_dir=str(tmp_path / "final" / "training"),
        epochs=5,
        early_stopping_patience=2,
        warm_start=str(start),
        keep_initial=True,
        test=True,
        model_path=str(tmp_path / "final" / "model.keras"),
    )
    result = evaluator.evaluate(trial)
    assert order == ["trainer", "build", "load model.keras", "train", "evaluate test"]
    call = trainer.calls[0]
    assert (call["reinitialize"], call["keep_initial"], call["early_stopping_patience"]) == (False, True, 2)
    assert (result.test_dice, result.test_miou) == (0.8, 0.7)
    assert saved == [trial.model_path] and not (tmp_path / "final" / "training" / "model.keras").exists()
    fresh = evaluator.evaluate(_job(tmp_path, network_id=8, out_dir=str(tmp_path / "net8")))
    assert trainer.calls[1]["reinitialize"] and not trainer.calls[1]["keep_initial"]
    assert fresh.test_dice is None and "test_dice" not in fresh.to_dict()["extra"]
