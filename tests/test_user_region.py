"""The hypervolume convention users read (search/user_region.py), on hand-made fronts where the old one misleads."""

from __future__ import annotations

import numpy as np
import pytest

from popnas_seg.search.pareto import hypervolume, maximise_flags
from popnas_seg.search.user_region import (
    DICE_MARGIN,
    UserRegion,
    bucket_bests,
    region_from_unet,
    region_hypervolume,
)

OBJ = ["dice", "params", "analog_dice"]
UNET = region_from_unet(unet_dice=0.93, unet_params=95_000, unet_analog_dice=0.90)


def _old(values: list[list[float]]) -> float:
    """The old convention: scores from 0, params linear up to 1.1 x 85k, normalised by that box."""
    reference = [0.0, 1.1 * 85_000, 0.0]
    return hypervolume(np.array(values), maximise_flags(OBJ), reference) / reference[1]


def test_region_floors_are_the_unet_minus_the_stated_margin() -> None:
    assert UNET.dice_floor == pytest.approx(0.93 - DICE_MARGIN)
    assert UNET.analog_floor == pytest.approx(0.90 - DICE_MARGIN)
    assert UNET.params_ceiling == 95_000
    assert list(UNET.reference(OBJ)) == pytest.approx([0.88, 95_000, 0.85])
    assert region_from_unet(0.02, 1000).dice_floor == 0.0  # never below 0


def test_a_tiny_cell_below_the_floor_no_longer_decides_the_hypervolume() -> None:
    """Old convention: a 122-param cell at Dice 0.80 beats a 60k cell within 0.01 of the U-Net, by its box alone."""
    tiny = [[0.80, 122, 0.75]]
    useful = [[0.92, 60_000, 0.89]]
    assert _old(tiny) > 2 * _old(useful)
    assert region_hypervolume(tiny, OBJ, UNET) == 0.0
    assert region_hypervolume(useful, OBJ, UNET) > 0.0


def test_log_params_axis_values_a_halving_alike_at_any_size() -> None:
    small = region_hypervolume([[0.92, 2_000, 0.89]], OBJ, UNET) - region_hypervolume([[0.92, 4_000, 0.89]], OBJ, UNET)
    large = region_hypervolume([[0.92, 20_000, 0.89]], OBJ, UNET) - region_hypervolume(
        [[0.92, 40_000, 0.89]], OBJ, UNET
    )
    assert small == pytest.approx(large, rel=1e-9) and small > 0
    # on the old linear axis, halving 40k -> 20k is worth 10 x halving 4k -> 2k
    assert (_old([[0.92, 20_000, 0.89]]) - _old([[0.92, 40_000, 0.89]])) == pytest.approx(
        10 * (_old([[0.92, 2_000, 0.89]]) - _old([[0.92, 4_000, 0.89]]))
    )


def test_networks_larger_than_the_unet_add_nothing_and_the_value_is_normalised() -> None:
    assert region_hypervolume([[0.99, 96_000, 0.99]], OBJ, UNET) == 0.0
    ideal = region_hypervolume([[1.0, 1, 1.0]], OBJ, UNET)
    assert ideal == pytest.approx(1.0)
    assert region_hypervolume(np.zeros((0, 3)), OBJ, UNET) == 0.0
    # NaN (never probed) adds nothing
    assert region_hypervolume([[0.95, 1_000, float("nan")]], OBJ, UNET) == 0.0
    two = region_hypervolume([[0.95, 1_000]], ["dice", "params"], UserRegion(95_000, 0.88, 0.85))
    assert two == pytest.approx(0.07 / 0.12 * (np.log10(95_000) - 3) / np.log10(95_000))


def test_bucket_bests_are_cumulative_and_say_when_empty() -> None:
    records = [
        {"params": 900, "dice": 0.7, "analog_dice": 0.6},
        {"params": 4_000, "dice": 0.8, "analog_dice": None},
        {"params": 30_000, "dice": 0.9, "analog_dice": 0.85},
    ]
    rows = {r["bucket"]: r for r in bucket_bests(records)}
    assert rows[1_000] == {"bucket": 1_000, "networks": 1, "best_dice": 0.7, "best_analog_dice": 0.6}
    assert rows[5_000]["best_dice"] == 0.8 and rows[5_000]["best_analog_dice"] == 0.6
    assert rows[20_000]["networks"] == 2 and rows[85_000]["best_analog_dice"] == 0.85
    assert bucket_bests([])[0] == {"bucket": 1_000, "networks": 0, "best_dice": None, "best_analog_dice": None}
