"""The search-time analog probe, client half: `probe_analog` sends one job to the analog worker (worker.py) and
reads back a `ProbeResult`; the scoring itself (per-repetition programming and drift, Dice) runs in scoring.py.

`robustness = analog / digital` is reported as measured, never clipped (a poorly fitted network can score
higher analog than digital, see DESIGN.md).

The search ranks on `risk_aware_score`: mean - k x std of Dice over independent programmings at the deployment
horizon (`analog.t_inference`, `analog.risk_k`). A network whose chips spread widely after drift is a worse
product than one with the same mean and a tight spread; the mean alone tracked digital Dice (issue 34).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.config import AnalogConfig


@dataclass
class ProbeResult:
    """Analog Dice over repetitions, its ratio to the digital Dice, and the analog coverage."""

    analog_dice_mean: float
    analog_dice_std: float
    analog_score: float
    """The risk-aware analog objective: mean - analog.risk_k x std over programmings."""
    robustness: float | None
    coverage: dict[str, Any]
    time_s: float
    dice_per_repetition: list[float] = field(default_factory=list)
    digital_dice_torch: float | None = None
    """Dice of the converted (still digital) torch network on the same images: an export sanity check."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Below this digital Dice a network segments (almost) nothing and analog / digital is a ratio of two noise values
# (the smoke run showed 1.50 for a digital Dice of 0.007): no ratio is computed, and the report says why.
ROBUSTNESS_MIN_DIGITAL_DICE = 0.1


def robustness_ratio(analog_dice: float, digital_dice: float | None) -> float | None:
    """analog / digital as measured (never clipped); None when the digital Dice is unknown or below
    ROBUSTNESS_MIN_DIGITAL_DICE."""
    if digital_dice is None or not digital_dice >= ROBUSTNESS_MIN_DIGITAL_DICE:
        return None
    return float(analog_dice) / float(digital_dice)


def risk_aware_score(dice_per_programming: Sequence[float], k: float) -> float:
    """mean - k x std of Dice over independent programmings (population std, as `analog_dice_std` records).

    With one programming the std is 0 and the score is that Dice.
    """
    scores = np.asarray(dice_per_programming, dtype=float)
    if scores.size == 0 or not np.all(np.isfinite(scores)):
        raise ValueError(f"risk-aware score needs finite Dice values, got {scores.tolist()}")
    return float(scores.mean() - float(k) * scores.std())


def probe_analog(
    onnx_path: str | os.PathLike[str],
    x: np.ndarray,
    y: np.ndarray,
    cfg: AnalogConfig,
    classes_count: int,
    ignore_class: int | None,
    digital_dice: float | None,
    seed: int,
    *,
    batch_size: int = 32,
    timeout_s: float | None = 1800.0,
    tile: tuple[int, int] | None = None,
    sizes: np.ndarray | None = None,
) -> ProbeResult:
    """Probe the exported network in a worker process (scoring.probe_in_process); raises AnalogWorkerError on failure.

    With `tile` and `sizes`, x/y are whole images packed by `popnas_seg.imaging.tiling.pack_images` and
    are scored by sliding-window tiling (whole-image Dice).
    """
    from popnas_seg.analog.worker import run_job

    start = time.perf_counter()
    params = {
        "onnx_path": str(Path(onnx_path).resolve()),
        "cfg": cfg.model_dump(mode="json"),
        "classes_count": int(classes_count),
        "ignore_class": None if ignore_class is None else int(ignore_class),
        "seed": int(seed),
        "batch_size": int(batch_size),
    }
    arrays = {"x": np.asarray(x, np.float32), "y": np.asarray(y)}
    if tile is not None and sizes is not None:
        params["tile"] = [int(tile[0]), int(tile[1])]
        arrays["sizes"] = np.asarray(sizes, np.int64)
    out = run_job("probe", params, arrays, timeout_s=timeout_s)
    per_programming = [float(d) for d in out["dice_per_repetition"]]
    return ProbeResult(
        analog_dice_mean=float(out["analog_dice_mean"]),
        analog_dice_std=float(out["analog_dice_std"]),
        analog_score=risk_aware_score(per_programming, cfg.risk_k),
        robustness=robustness_ratio(out["analog_dice_mean"], digital_dice),
        coverage=out["coverage"],
        time_s=time.perf_counter() - start,
        dice_per_repetition=per_programming,
        digital_dice_torch=out.get("digital_dice_torch"),
    )
