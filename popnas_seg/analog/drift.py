"""Finalists on analog hardware: hardware-aware training (HWA) and Dice under conductance drift over time.

Client half, run in the parent: `hwa_and_drift` and `score_checkpoint` send one job to the analog worker
(worker.py) and read back a `DriftReport` / `DriftCurve`; the job itself is hwa.py, which says what it does.
`hwa_and_drift` also writes the report to `out_dir/drift_report.json`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from popnas_seg.atomic import atomic_write_json
from popnas_seg.config import AnalogConfig

if TYPE_CHECKING:
    from popnas_seg.imaging.tiling import Tiling


PHASES = (("before", "before_hwa"), ("control", "digital_control"), ("after", "after_hwa"))
"""(drift-table label, DriftReport field) of the three scored variants, in table order: no HWA, digital
control, HWA."""


@dataclass
class DriftCurve:
    """Analog Dice of one network variant at each drift time: mean and std over the programmings, and each
    programming's Dice (`dice[time][repetition]`)."""

    times: list[float]
    mean: list[float]
    std: list[float]
    dice: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not len(self.times) == len(self.mean) == len(self.std):
            raise ValueError(f"drift curve: {len(self.times)} times, {len(self.mean)} means, {len(self.std)} stds")

    @classmethod
    def from_dict(cls, data: dict[str, Any], times: list[float] | None = None) -> DriftCurve:
        """The layout `scoring.drift_curve` writes; `times` fills in for curves of early reports that kept them only at
        the report's top level."""
        return cls(
            times=[float(t) for t in (data.get("times") or times or [])],
            mean=[float(m) for m in data["mean"]],
            std=[float(v) for v in data["std"]],
            dice=[[float(v) for v in d] for d in data.get("dice") or []],
        )

    def at(self, t: float) -> tuple[float, float] | None:
        """(mean, std) at drift time `t` seconds, or None when `t` was not scored."""
        for time_, mean, std in zip(self.times, self.mean, self.std):
            if math.isclose(time_, t, rel_tol=1e-6):
                return mean, std
        return None


@dataclass
class DriftReport:
    """Dice over time on analog tiles with no HWA (`before_hwa`), after the digital control and after HWA
    (None when `hwa_epochs` is 0 or the control is off). The one object the finalists stage, the report,
    `predict` and the benchmarks read: drift_report.json and the journal hold its `to_dict()`."""

    times: list[float]
    repetitions: int
    before_hwa: DriftCurve
    after_hwa: DriftCurve | None
    digital_dice: float
    """Dice of the converted, still digital torch network on the test images."""
    coverage: dict[str, Any]
    timings: dict[str, float]
    hwa_epochs: int = 0
    hwa_loss: list[float] = field(default_factory=list)
    checkpoints: dict[str, str] = field(default_factory=dict)
    digital_control: DriftCurve | None = None
    """The control of HWA: the same epochs, schedule and batches as digital SGD, then the inference tiles."""
    hwa_val_dice: list[float] = field(default_factory=list)
    """Analog validation Dice at t_inference after each HWA epoch; the best epoch is the kept checkpoint."""
    hwa_best_epoch: int = 0
    control_loss: list[float] = field(default_factory=list)
    control_val_dice: list[float] = field(default_factory=list)
    control_best_epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in names}
        times = [float(t) for t in data.get("times") or []]
        for _, key in PHASES:
            curve = fields.get(key)
            if isinstance(curve, dict):
                fields[key] = DriftCurve.from_dict(curve, times)
        return cls(**fields)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DriftReport:
        """Read a drift_report.json."""
        import json

        return cls.from_dict(json.loads(Path(path).read_text()))

    def curves(self) -> list[tuple[str, DriftCurve]]:
        """(label, curve) of the variants that were scored, in PHASES order."""
        return [(label, getattr(self, key)) for label, key in PHASES if getattr(self, key) is not None]

    def rows(self, network: str) -> list[dict[str, Any]]:
        """Drift-table rows (network, hwa, time, mean, std): per variant, one row per drift time."""
        return [
            {"network": network, "hwa": label, "time": t, "mean": m, "std": s}
            for label, curve in self.curves()
            for t, m, s in sorted(zip(curve.times, curve.mean, curve.std))
        ]

    def weights_analog_fraction(self) -> float | None:
        value = self.coverage.get("weights_analog_fraction")
        return None if value is None else float(value)

    def seconds_per_eval(self) -> float | None:
        """Mean seconds of one drift evaluation (one programming scored at one time on the test images)."""
        keys = ("score_before_s", "score_control_s", "score_after_s")
        scoring = [float(self.timings[k]) for k in keys if self.timings.get(k) is not None]
        evaluations = sum(len(c.times) for _, c in self.curves()) * max(int(self.repetitions), 1)
        if not scoring or not evaluations:
            return None
        return sum(scoring) / evaluations


def _tile_param(tile: tuple[int, int] | Tiling) -> Any:
    """How a tiling travels in a worker job's JSON: a Tiling's dict, or the bare [h, w] of crop-sized tiles."""
    from popnas_seg.imaging.tiling import Tiling

    return tile.to_dict() if isinstance(tile, Tiling) else [int(tile[0]), int(tile[1])]


def hwa_and_drift(
    onnx_path: str | os.PathLike[str],
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    cfg: AnalogConfig,
    classes_count: int,
    ignore_class: int | None,
    out_dir: str | os.PathLike[str],
    seed: int,
    batch_size: int,
    *,
    class_weights: np.ndarray | None = None,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    timeout_s: float | None = 6 * 3600.0,
    tile: tuple[int, int] | Tiling | None = None,
    test_sizes: np.ndarray | None = None,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    steps_per_epoch: int | None = None,
) -> DriftReport:
    """HWA + drift scoring of one exported network in a worker process; raises AnalogWorkerError on failure.

    HWA trains on the (crop-sized) train arrays; with `tile` (a `Tiling`, or a bare crop-sized tile) and
    `test_sizes`, test_x/test_y are whole images packed by `popnas_seg.imaging.tiling.pack_images` and every
    Dice is a whole-image, tiled Dice.
    """
    from popnas_seg.analog.worker import run_job

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    params = {
        "onnx_path": str(Path(onnx_path).resolve()),
        "cfg": cfg.model_dump(mode="json"),
        "classes_count": int(classes_count),
        "ignore_class": None if ignore_class is None else int(ignore_class),
        "out_dir": str(out),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "class_weights": None if class_weights is None else [float(w) for w in np.asarray(class_weights).ravel()],
        "dice_weight": float(dice_weight),
        "ce_weight": float(ce_weight),
        "steps_per_epoch": None if steps_per_epoch is None else int(steps_per_epoch),
    }
    arrays = {
        "train_x": np.asarray(train_x, np.float32),
        "train_y": np.asarray(train_y),
        "test_x": np.asarray(test_x, np.float32),
        "test_y": np.asarray(test_y),
    }
    if tile is not None and test_sizes is not None:
        params["tile"] = _tile_param(tile)
        arrays["test_sizes"] = np.asarray(test_sizes, np.int64)
    if val_x is not None and val_y is not None:  # checkpoint selection of HWA and of its control
        arrays["val_x"], arrays["val_y"] = np.asarray(val_x, np.float32), np.asarray(val_y)
    report = DriftReport.from_dict(run_job("hwa_and_drift", params, arrays, timeout_s=timeout_s))
    atomic_write_json(out / "drift_report.json", report.to_dict())
    return report


def score_checkpoint(
    onnx_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    test_x: np.ndarray,
    test_y: np.ndarray,
    classes_count: int,
    ignore_class: int | None,
    seed: int,
    *,
    eval_times: list[float] | None = None,
    repetitions: int | None = None,
    batch_size: int = 32,
    timeout_s: float | None = 3600.0,
    tile: tuple[int, int] | Tiling | None = None,
    test_sizes: np.ndarray | None = None,
) -> DriftCurve:
    """Re-score a saved analog checkpoint (no training), in a worker.

    Times and repetitions default to those of the analog config stored in the checkpoint.
    """
    from popnas_seg.analog.worker import run_job

    params = {
        "onnx_path": str(Path(onnx_path).resolve()),
        "checkpoint": str(Path(checkpoint).resolve()),
        "classes_count": int(classes_count),
        "ignore_class": None if ignore_class is None else int(ignore_class),
        "seed": int(seed),
        "eval_times": None if eval_times is None else [float(t) for t in eval_times],
        "repetitions": None if repetitions is None else int(repetitions),
        "batch_size": int(batch_size),
    }
    arrays = {"test_x": np.asarray(test_x, np.float32), "test_y": np.asarray(test_y)}
    if tile is not None and test_sizes is not None:  # whole images (pack_images), tiled Dice
        params["tile"] = _tile_param(tile)
        arrays["test_sizes"] = np.asarray(test_sizes, np.int64)
    return DriftCurve.from_dict(run_job("score_checkpoint", params, arrays, timeout_s=timeout_s))
