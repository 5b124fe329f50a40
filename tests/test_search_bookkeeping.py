"""Runner bookkeeping: the run's hypervolume is normalised to [0, 1]; probe integrity rows count failed probes."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from popnas_seg.config import RunConfig
from popnas_seg.evaluation.evaluator import PROBE_DICE_TOLERANCE
from popnas_seg.models.cost import unet_params
from popnas_seg.results import TrainingResult
from popnas_seg.search.bookkeeping import probe_integrity_rows
from popnas_seg.search.pareto import hypervolume, maximise_flags, objective_matrix
from popnas_seg.search.reference import run_reference_point
from popnas_seg.search.runner import SearchRunner
from popnas_seg.search.strategies import make_strategy
from popnas_seg.search.user_region import region_hypervolume, run_region


def _result(network_id: int, dice: float, params: int, analog: float | None, **diagnostics) -> TrainingResult:
    return TrainingResult(
        network_id=network_id,
        encoding="[(-1,identity,-1,identity)]",
        blocks=1,
        dice=dice,
        miou=dice,
        params=params,
        flops=1,
        train_time_s=1.0,
        inference_time_ms=1.0,
        epochs=1,
        status="ok",
        analog_dice=analog,
        origin="b1",
        step=1,
        **diagnostics,
    )


def test_measured_front_hypervolume_is_the_user_region_convention() -> None:
    """The run's hypervolume is search/user_region.py's: log-params axis up to the run's U-Net, normalised."""
    config = RunConfig.model_validate({"dataset": {"crop": [16, 16]}})
    data = SimpleNamespace(input_shape=(16, 16, 1), classes_count=2)
    runner = SearchRunner(None, config, data)  # measured_front reads no run folder
    results = [_result(1, 0.8, 122, 0.7), _result(2, 0.9, 30_000, 0.6), _result(3, 0.5, 40_000, 0.4)]
    front, hv = runner.measured_front(results)
    assert [r.network_id for r in front] == [1, 2]
    objectives = ["dice", "params", "analog_dice"]
    values, _ = objective_matrix(results, objectives)
    region = run_region(config, data.input_shape, data.classes_count)
    assert region.params_ceiling == unet_params(config.architecture_hyperparameters, 1, 2)
    assert hv == pytest.approx(region_hypervolume(values, objectives, region)) and 0 < hv < 1
    # the old convention (linear params up to 1.1 x the largest cell, scores from 0) gives another number
    reference = run_reference_point(objectives, config, values, data.input_shape, data.classes_count)
    assert abs(hv - hypervolume(values, maximise_flags(objectives), reference) / reference[1]) > 0.05


def test_probe_integrity_rows_flag_failures_and_mismatches() -> None:
    results = [
        _result(1, 0.8, 100, 0.7, probe_digital_dice=0.80, probe_digital_dice_torch=0.805),
        _result(2, 0.8, 100, None, probe_digital_dice=0.80, probe_error="onnx export failed"),
        _result(3, 0.8, 100, 0.7, probe_digital_dice=0.80, probe_digital_dice_torch=0.80 + 2 * PROBE_DICE_TOLERANCE),
    ]
    rows = probe_integrity_rows(reversed(results))
    assert [(r["network_id"], r["status"]) for r in rows] == [(1, "ok"), (2, "failed"), (3, "mismatch")]
    assert rows[0]["difference"] == pytest.approx(0.005) and rows[1]["probe_error"] == "onnx export failed"
    assert rows[1]["torch_dice"] is None and rows[1]["keras_dice"] == 0.80


def test_deprecated_objective_name_is_logged_when_the_search_starts(caplog) -> None:
    config = RunConfig.model_validate(
        {"search_strategy": {"additional_pareto_objectives": ["analog_robustness"]}, "dataset": {"crop": [16, 16]}}
    )
    with caplog.at_level(logging.WARNING, logger="popnas_seg"):
        make_strategy(config, (16, 16, 1), 2, None, logging.getLogger("popnas_seg"))
    assert 'objective "analog_robustness" is deprecated, read as "analog_dice"' in caplog.text


@pytest.mark.parametrize("seeding", ["common", "per_network"])
def test_network_seeding_common_gives_every_network_the_same_seeds(seeding: str, tmp_path) -> None:
    """Common random numbers: with "common" all networks of a run share training and probe seeds (so their
    Dice differ by cell only); "per_network" keeps a seed per cell. Either way a resumed run gets the same."""
    config = RunConfig.model_validate(
        {"dataset": {"crop": [16, 16]}, "others": {"seed": 7}, "search_strategy": {"network_seeding": seeding}}
    )
    runner = SearchRunner(SimpleNamespace(models_dir=tmp_path), config, None)
    cells = ["[(-2,identity,-1,3x3 conv)]", "[(-1,3x3 conv,-2,identity)]", "[(-1,2x2 maxpool,-1,identity)]"]
    jobs = [runner.search_trial({"network_id": i, "encoding": c, "origin": "b1"}, 1) for i, c in enumerate(cells)]
    again = [runner.search_trial({"network_id": i, "encoding": c, "origin": "b1"}, 1) for i, c in enumerate(cells)]
    assert [(j.seed, j.probe_seed) for j in jobs] == [(j.seed, j.probe_seed) for j in again]
    seeds = {j.seed for j in jobs}
    if seeding == "common":
        assert len(seeds) == 1 and {j.probe_seed for j in jobs} == seeds
    else:
        assert len({jobs[0].seed, jobs[2].seed}) == 2  # different cells, different seeds
        assert jobs[0].seed == jobs[1].seed  # the same cell written in another order: one canonical key
    other = RunConfig.model_validate(
        {"dataset": {"crop": [16, 16]}, "others": {"seed": 8}, "search_strategy": {"network_seeding": seeding}}
    )
    assert (
        SearchRunner(SimpleNamespace(models_dir=tmp_path), other, None)
        .search_trial({"network_id": 0, "encoding": cells[0], "origin": "b1"}, 1)
        .seed
        != jobs[0].seed
    )


@pytest.mark.parametrize("seeding", ["common", "per_network"])
def test_network_seed_fixes_the_networks_seeds_apart_from_the_search_seed(seeding: str, tmp_path) -> None:
    """search_strategy.network_seed set: two runs whose others.seed differs train and probe every cell with the
    same seeds (a cell scores alike in both); null: the networks' seeds follow others.seed, as before the key."""

    def job(others_seed: int, network_seed: int | None) -> tuple[int, int]:
        config = RunConfig.model_validate(
            {
                "dataset": {"crop": [16, 16]},
                "others": {"seed": others_seed},
                "search_strategy": {"network_seeding": seeding, "network_seed": network_seed},
            }
        )
        net = SearchRunner(SimpleNamespace(models_dir=tmp_path), config, None).search_trial(
            {"network_id": 3, "encoding": "[(-2,identity,-1,3x3 conv)]", "origin": "b1"}, 1
        )
        return net.seed, net.probe_seed

    assert job(1, 5) == job(2, 5) == job(5, None)
    assert job(1, None) != job(2, None)
    assert job(1, 5) != job(1, 6)
    assert RunConfig.model_validate({"others": {"seed": 4}, "dataset": {"crop": [16, 16]}}).network_seed == 4
