"""Pareto machinery: sorting, crowding and hypervolume on hand-computed cases with mixed directions."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from popnas_seg.config import RunConfig
from popnas_seg.results import TrainingResult
from popnas_seg.search.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    maximise_flags,
    non_dominated_sort,
    objective_matrix,
    pareto_mask,
    weakly_dominates,
)

# dice (max), params (min)
DICE_PARAMS = np.array(
    [
        [0.90, 100.0],  # 0: front
        [0.80, 50.0],  # 1: front
        [0.85, 120.0],  # 2: dominated by 0
        [0.70, 60.0],  # 3: dominated by 1
        [0.90, 100.0],  # 4: duplicate of 0 -> front too
        [0.60, 130.0],  # 5: dominated by 2 (and 0) -> third front
    ]
)


def _sets(fronts: list[np.ndarray]) -> list[set[int]]:
    return [set(int(i) for i in f) for f in fronts]


def test_non_dominated_sort_mixed_directions() -> None:
    fronts = non_dominated_sort(DICE_PARAMS, [True, False])
    assert _sets(fronts) == [{0, 1, 4}, {2, 3}, {5}]
    # flipping the directions flips the meaning: now small dice and large params are good
    flipped = non_dominated_sort(DICE_PARAMS, [False, True])
    assert 5 in _sets(flipped)[0] and 0 not in _sets(flipped)[0]


def test_non_dominated_sort_three_objectives() -> None:
    # dice (max), params (min), analog dice (max)
    values = np.array(
        [
            [0.9, 100, 0.5],
            [0.8, 50, 0.6],
            [0.7, 60, 0.9],  # worse dice/params than 1 but best analog: still on the front
            [0.7, 70, 0.8],  # dominated by 2
        ]
    )
    assert _sets(non_dominated_sort(values, [True, False, True])) == [{0, 1, 2}, {3}]
    assert pareto_mask(values, [True, False, True]).tolist() == [True, True, True, False]


def test_pareto_mask_matches_first_front_and_handles_nan() -> None:
    mask = pareto_mask(DICE_PARAMS, [True, False])
    assert set(np.flatnonzero(mask)) == {0, 1, 4}
    with_nan = np.vstack([DICE_PARAMS, [[np.nan, 1.0]]])  # unknown dice is the worst dice, best params
    mask = pareto_mask(with_nan, [True, False])
    assert mask[-1]  # nothing has fewer params, so it is not dominated
    assert not pareto_mask(np.array([[np.nan, 100.0], [0.5, 100.0]]), [True, False])[0]


def test_dominance_helpers() -> None:
    assert dominates([0.9, 10], [0.8, 10], [True, False])
    assert not dominates([0.9, 10], [0.9, 10], [True, False])
    assert weakly_dominates([0.9, 10], [0.9, 10], [True, False])
    assert not weakly_dominates([0.9, 11], [0.9, 10], [True, False])


def test_crowding_distance_by_hand() -> None:
    values = np.array([[1.0, 5.0], [2.0, 4.0], [3.0, 3.0], [4.0, 1.0]])
    d = crowding_distance(values, [False, False])
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] == pytest.approx((3 - 1) / 3 + (5 - 3) / 4)
    assert d[2] == pytest.approx((4 - 2) / 3 + (4 - 1) / 4)
    # the direction does not change crowding
    np.testing.assert_allclose(crowding_distance(values, [True, False]), d)
    assert np.all(np.isinf(crowding_distance(values[:2], [False, False])))


def test_hypervolume_2d_mixed_directions() -> None:
    # minimisation space: (-0.8, 10), (-0.5, 5), ref (0, 20): 8 + 7.5 - 5 = 10.5
    points = np.array([[0.8, 10.0], [0.5, 5.0]])
    assert hypervolume(points, [True, False], [0.0, 20.0]) == pytest.approx(10.5)
    # a point beyond the reference or with NaN adds nothing; a dominated point adds nothing
    more = np.vstack([points, [[0.9, 25.0], [np.nan, 1.0], [0.4, 12.0]]])
    assert hypervolume(more, [True, False], [0.0, 20.0]) == pytest.approx(10.5)
    assert hypervolume(np.empty((0, 2)), [True, False], [0.0, 20.0]) == 0.0


def test_hypervolume_3d_boxes() -> None:
    # all minimised, ref (3, 3, 3): boxes 2 and 4 overlapping in a unit cube -> 5
    points = np.array([[1.0, 2.0, 2.0], [2.0, 1.0, 1.0]])
    assert hypervolume(points, [False, False, False], [3, 3, 3]) == pytest.approx(5.0)
    # the same geometry with dice / analog dice maximised: negate those columns and the reference
    mixed = points * np.array([-1.0, 1.0, -1.0])
    assert hypervolume(mixed, [True, False, True], [-3, 3, -3]) == pytest.approx(5.0)
    # one point: a plain box, with very different scales per objective
    single = np.array([[0.5, 10_000.0, 0.6]])
    assert hypervolume(single, [True, False, True], [0.0, 20_000.0, 0.0]) == pytest.approx(0.5 * 10_000 * 0.6)


def test_hypervolume_one_objective() -> None:
    assert hypervolume(np.array([[0.3], [0.7]]), [True], [0.0]) == pytest.approx(0.7)


def _result(i: int, dice: float, params: int, analog: float | None, time_s: float) -> TrainingResult:
    return TrainingResult(i, "[]", 1, dice, dice / 2, params, 1000, time_s, 1.0, 1, analog_dice=analog)


def test_objective_matrix_reads_fields_and_marks_missing() -> None:
    records = [_result(1, 0.8, 100, 0.7, 10.0), _result(2, 0.6, 50, None, 20.0)]
    values, maximise = objective_matrix(records, ["dice", "params", "analog_robustness", "time", "mean_iou"])
    assert maximise == [True, False, True, False, True]
    assert values[0].tolist() == [0.8, 100, 0.7, 10.0, 0.4]
    assert math.isnan(values[1, 2])
    with pytest.raises(ValueError, match="unknown objectives"):
        objective_matrix(records, ["accuracy"])


def test_reference_point_rule() -> None:
    from popnas_seg.models.cost import count_params
    from popnas_seg.search.reference import run_reference_point
    from popnas_seg.search_space.encoding import single_block_cells

    config = RunConfig.model_validate(
        {
            "search_space": {"blocks": 2, "operators": ["identity", "3x3 conv", "2x2 maxpool"]},
            "dataset": {"crop": [16, 16]},
        }
    )
    objectives = ["dice", "params", "analog_robustness", "time"]
    values = np.array([[0.8, 1000, 0.7, 12.0], [0.6, 500, 0.5, 30.0]])
    ref = run_reference_point(objectives, config, values, (16, 16, 1), 2)
    assert ref[0] == 0.0 and ref[2] == 0.0
    assert ref[3] == pytest.approx(33.0)
    arch = config.architecture_hyperparameters
    biggest_b1 = max(count_params(c, arch, 1, 2) for c in single_block_cells(config.search_space.operators, 2))
    assert ref[1] > 1.1 * biggest_b1  # two blocks of the heaviest op beat any one-block cell
    # every cell of the space lies inside the reference, so it always adds volume
    assert hypervolume(values, [True, False, True, False], ref) > 0

    config.search_strategy.hypervolume_reference = {"params": 1234.0, "dice": 0.1}
    ref = run_reference_point(objectives, config, values, (16, 16, 1), 2)
    assert ref[1] == 1234.0 and ref[0] == 0.1
    with pytest.raises(ValueError, match="time"):
        run_reference_point(["time"], config)


def test_analog_objective_name_and_its_deprecated_alias() -> None:
    from popnas_seg.objectives import canonical_objective

    assert canonical_objective("analog_robustness") == "analog_dice"
    assert maximise_flags(["analog_dice", "analog_robustness", "params"]) == [True, True, False]
    with pytest.raises(ValueError, match="unknown objectives"):
        maximise_flags(["robustness"])  # the ratio is not an objective


def test_normalised_hypervolume_is_the_share_of_the_reference_box() -> None:
    from popnas_seg.search.pareto import ideal_point, normalised_hypervolume

    objectives = ["dice", "params", "analog_dice"]
    assert ideal_point(objectives).tolist() == [1.0, 0.0, 1.0]
    reference = [0.0, 1000.0, 0.0]
    assert normalised_hypervolume([[1.0, 0.0, 1.0]], objectives, reference) == pytest.approx(1.0)
    assert normalised_hypervolume([[0.5, 500.0, 0.5]], objectives, reference) == pytest.approx(0.5 * 0.5 * 0.5)
    raw = hypervolume([[0.5, 500.0, 0.5]], [True, False, True], reference)
    assert raw == pytest.approx(0.125 * 1000)
