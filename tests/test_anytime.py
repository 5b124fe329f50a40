"""The anytime hypervolume of a run (search/anytime.py): hand-made fronts whose boxes are computed by hand.

Objectives dice (max) and params (min), reference (0, 1000), ideal (1, 0): a network's box is dice x (1000 -
params) of the 1000 the reference box holds."""

from __future__ import annotations

import numpy as np
import pytest

from popnas_seg.results import TrainingResult
from popnas_seg.search.anytime import front_hypervolume, hypervolume_curve, networks_to_reach, usable_results

OBJECTIVES = ["dice", "params"]
REFERENCE = np.array([0.0, 1000.0])


def _net(i: int, dice: float, params: int, status: str = "ok", analog: float | None = None) -> TrainingResult:
    return TrainingResult(
        network_id=i,
        encoding=f"[(-1,identity,-{i},3x3 conv)]",
        blocks=1,
        dice=dice,
        miou=dice,
        params=params,
        flops=params,
        train_time_s=1.0,
        inference_time_ms=1.0,
        epochs=1,
        status=status,
        analog_dice=analog,
    )


A = _net(1, 0.5, 500)  # box 0.5 x 500 = 250
FAILED = _net(2, 0.9, 100, status="failed")  # would dominate both if it counted
B = _net(3, 0.8, 800)  # box 0.8 x 200 = 160, of which 0.5 x 200 = 100 lies in A's


def test_the_curve_grows_by_what_each_network_adds_and_skips_failed_ones() -> None:
    curve = hypervolume_curve([A, FAILED, B], OBJECTIVES, REFERENCE)
    assert curve == pytest.approx([0.25, 0.25, 0.31])
    assert front_hypervolume([A, FAILED, B], OBJECTIVES, REFERENCE) == pytest.approx(0.31)
    assert front_hypervolume([FAILED], OBJECTIVES, REFERENCE) == 0.0
    assert hypervolume_curve([], OBJECTIVES, REFERENCE) == []


def test_networks_to_reach_is_the_first_prefix_at_the_target() -> None:
    curve = [0.25, 0.25, 0.31]
    assert networks_to_reach(curve, 0.25) == 1
    assert networks_to_reach(curve, 0.31) == 3
    assert networks_to_reach(curve, 0.30) == 3
    assert networks_to_reach(curve, 0.4) is None


def test_unprobed_networks_count_only_when_analog_dice_is_no_objective() -> None:
    probed, unprobed = _net(1, 0.5, 500, analog=0.4), _net(2, 0.8, 800)
    assert usable_results([probed, unprobed], OBJECTIVES) == [probed, unprobed]
    assert usable_results([probed, unprobed], ["dice", "params", "analog_dice"]) == [probed]
    assert usable_results([FAILED], OBJECTIVES) == []
