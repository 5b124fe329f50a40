"""The measured record of one trained network: the row every CSV, predictor and plot reads."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "nan", "failed"]


@dataclass(frozen=True)
class RungScore:
    """What one rung of multi-fidelity training measured (search/promotion.py): the network's validation Dice and
    mIoU after `epochs` cumulative epochs, its risk-aware analog score (None: not probed) and the training seconds
    of that rung alone (not cumulative: what a child costs at rung 0 is what the time predictor learns)."""

    rung: int
    epochs: int
    dice: float
    miou: float
    analog_score: float | None
    train_time_s: float

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RungScore:
        score = data.get("analog_score")
        return cls(
            rung=int(data["rung"]),
            epochs=int(data["epochs"]),
            dice=float(data["dice"]),
            miou=float(data["miou"]),
            analog_score=None if score is None else float(score),
            train_time_s=float(data.get("train_time_s", 0.0)),
        )


@dataclass
class TrainingResult:
    """One trained network. `robustness` is analog_dice / dice as measured (never clipped).

    `analog_dice` / `analog_dice_std` are the probe's mean and std of Dice over programmings at the horizon;
    `analog_score` is the risk-aware objective the search ranks on (mean - analog.risk_k x std). Rows of runs
    from before the risk-aware probe have no score: `analog_objective` falls back to their mean.

    Multi-fidelity search (`search_strategy.rung_epochs`): `rung` is the highest rung the network reached and the
    scores are that rung's; `rungs` holds every rung's scores, lowest first (empty for a single-rung run);
    `epochs` and `train_time_s` then count every rung together.

    The fields after `step` (`DIAGNOSTICS`) say how the row came about; None where not measured. They are kept
    in the journal (under its `extra` key, as runs have always written them), never in the CSVs.
    """

    network_id: int
    encoding: str
    blocks: int
    dice: float
    miou: float
    params: int
    flops: int
    train_time_s: float
    inference_time_ms: float
    epochs: int
    status: Status = "ok"
    analog_dice: float | None = None
    analog_dice_std: float | None = None
    robustness: float | None = None
    analog_score: float | None = None
    analog_coverage: float | None = None
    origin: str = ""
    step: int = 0
    rung: int = 0
    rungs: list[RungScore] = field(default_factory=list)
    # training (training/trainer.py); `error` also for a network whose worker died (evaluation/parallel.py)
    error: str | None = None
    traceback: str | None = None
    epoch_times_s: list[float] | None = None
    best_epoch: int | None = None  # 1-based; 0: no epoch beat the weights training started from
    start_val_dice: float | None = None  # validation Dice of the weights training started from (if kept)
    nan_at_epoch: int | None = None  # a NaN loss after a kept start: the best weights so far stay
    failed_fold: int | None = None
    folds: int | None = None  # k-fold: the per-fold values behind the means
    fold_dice: list[float] | None = None
    fold_miou: list[float] | None = None
    fold_epochs: list[int] | None = None
    # a trial with `test` (evaluation/evaluator.py): whole test images, tiled like `predict`
    test_dice: float | None = None
    test_miou: float | None = None
    # the analog probe (evaluation/evaluator.py)
    probe_digital_dice: float | None = None  # Keras Dice on the probe's images
    probe_digital_dice_torch: float | None = None  # the converted torch network's Dice on the same images
    probe_error: str | None = None  # why the probe left the analog columns empty
    probe_time_s: float | None = None
    digital_layers: list[str] | None = None
    # multi-fidelity (search/promotion.py): a continuation that failed leaves the network at its rung below
    failed_rung: int | None = None
    rung_error: str | None = None

    COLUMNS = (
        "network_id",
        "encoding",
        "blocks",
        "dice",
        "miou",
        "params",
        "flops",
        "train_time_s",
        "inference_time_ms",
        "epochs",
        "status",
        "analog_dice",
        "analog_dice_std",
        "robustness",
        "analog_coverage",
        "origin",
        "step",
        "analog_score",
        "rung",
    )

    @property
    def analog_objective(self) -> float | None:
        """The search's analog objective: the risk-aware score, else (older rows) the mean analog Dice."""
        return self.analog_dice if self.analog_score is None else self.analog_score

    DIAGNOSTICS = (
        "error",
        "traceback",
        "epoch_times_s",
        "best_epoch",
        "start_val_dice",
        "nan_at_epoch",
        "failed_fold",
        "folds",
        "fold_dice",
        "fold_miou",
        "fold_epochs",
        "test_dice",
        "test_miou",
        "probe_digital_dice",
        "probe_digital_dice_torch",
        "probe_error",
        "probe_time_s",
        "digital_layers",
        "failed_rung",
        "rung_error",
    )

    @staticmethod
    def rung_columns(count: int) -> list[str]:
        """CSV columns of the per-rung Dice of a run with `count` rungs (none for a single rung)."""
        return [f"dice_rung{k}" for k in range(count)] if count > 1 else []

    def rung_score(self, rung: int) -> RungScore | None:
        """The scores this network had at `rung` (None when it never reached it or the run has one rung)."""
        return next((s for s in self.rungs if s.rung == rung), None)

    def to_row(self) -> dict[str, Any]:
        """Flat dict for CSV / JSON (the diagnostics are dropped from CSVs, kept in the journal); with several
        rungs also each rung's Dice as `dice_rung<k>`."""
        row = {k: getattr(self, k) for k in self.COLUMNS}
        row.update({f"dice_rung{s.rung}": s.dice for s in self.rungs})
        return row

    def to_dict(self) -> dict[str, Any]:
        """The journal's form: the row plus origin/step (and rung/rungs with several rungs), and the diagnostics
        that were set under `extra`."""
        skip = {*self.DIAGNOSTICS, "rung", "rungs"}
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        if self.rungs or self.rung:  # multi-fidelity only: a single-rung run's journal is as it always was
            out["rung"] = self.rung
            out["rungs"] = [dataclasses.asdict(s) for s in self.rungs]
        out["extra"] = {k: getattr(self, k) for k in self.DIAGNOSTICS if getattr(self, k) is not None}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingResult:
        """Inverse of `to_dict`/`to_row`; tolerant of CSV strings and empty cells. Diagnostics are read from
        `extra`; keys there that no field holds (none were ever written) are dropped."""

        def num(v: Any, kind: type) -> Any:
            if v is None or v == "" or (isinstance(v, float) and math.isnan(v) and kind is not float):
                return None
            return kind(float(v)) if kind is int else kind(v)

        return cls(
            network_id=num(data["network_id"], int),
            encoding=str(data["encoding"]),
            blocks=num(data["blocks"], int),
            dice=num(data["dice"], float),
            miou=num(data["miou"], float),
            params=num(data["params"], int),
            flops=num(data["flops"], int),
            train_time_s=num(data["train_time_s"], float),
            inference_time_ms=num(data["inference_time_ms"], float),
            epochs=num(data["epochs"], int),
            status=str(data.get("status", "ok")),  # type: ignore[arg-type]
            analog_dice=num(data.get("analog_dice"), float),
            analog_dice_std=num(data.get("analog_dice_std"), float),
            robustness=num(data.get("robustness"), float),
            analog_coverage=num(data.get("analog_coverage"), float),
            analog_score=num(data.get("analog_score"), float),
            origin=str(data.get("origin", "") or ""),
            step=num(data.get("step", 0), int) or 0,
            rung=num(data.get("rung", 0), int) or 0,
            rungs=[RungScore.from_dict(r) for r in data.get("rungs") or []],
            **{k: v for k, v in (data.get("extra") or {}).items() if k in cls.DIAGNOSTICS},
        )


def backfill_analog_scores(results: list[TrainingResult], risk_k: float) -> list[TrainingResult]:
    """Give probed rows of an older run (mean and std recorded, no risk-aware score) the score
    mean - risk_k x std, so a resumed run ranks old and new rows alike; returns `results` (changed in place)."""
    for r in results:
        if r.analog_score is None and r.analog_dice is not None and r.analog_dice_std is not None:
            r.analog_score = float(r.analog_dice) - float(risk_k) * float(r.analog_dice_std)
    return results
