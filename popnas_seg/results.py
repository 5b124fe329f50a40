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
    extra: dict[str, Any] = field(default_factory=dict)

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

    @staticmethod
    def rung_columns(count: int) -> list[str]:
        """CSV columns of the per-rung Dice of a run with `count` rungs (none for a single rung)."""
        return [f"dice_rung{k}" for k in range(count)] if count > 1 else []

    def rung_score(self, rung: int) -> RungScore | None:
        """The scores this network had at `rung` (None when it never reached it or the run has one rung)."""
        return next((s for s in self.rungs if s.rung == rung), None)

    def to_row(self) -> dict[str, Any]:
        """Flat dict for CSV / JSON (the `extra` dict is dropped from CSVs, kept in the journal); with several
        rungs also each rung's Dice as `dice_rung<k>`."""
        row = {k: getattr(self, k) for k in self.COLUMNS}
        row.update({f"dice_rung{s.rung}": s.dice for s in self.rungs})
        return row

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingResult:
        """Inverse of `to_dict`/`to_row`; tolerant of CSV strings and empty cells."""

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
            extra=dict(data.get("extra") or {}),
        )


def backfill_analog_scores(results: list[TrainingResult], risk_k: float) -> list[TrainingResult]:
    """Give probed rows of an older run (mean and std recorded, no risk-aware score) the score
    mean - risk_k x std, so a resumed run ranks old and new rows alike; returns `results` (changed in place)."""
    for r in results:
        if r.analog_score is None and r.analog_dice is not None and r.analog_dice_std is not None:
            r.analog_score = float(r.analog_dice) - float(risk_k) * float(r.analog_dice_std)
    return results
