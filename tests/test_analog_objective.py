"""The risk-aware analog objective (issue 34): the score from hand-made programmings, its record in the result
row and journal, the fallback and backfill for rows of older runs, and the search's Pareto objective reading it."""

from __future__ import annotations

import numpy as np
import pytest

from popnas_seg.analog.probe import risk_aware_score
from popnas_seg.config import AnalogConfig, RunConfig
from popnas_seg.results import TrainingResult, backfill_analog_scores
from popnas_seg.runlog.events import NetworkFinished, Result
from popnas_seg.search.pareto import objective_matrix, pareto_mask


def _r(i: int, mean: float | None, std: float | None = None, score: float | None = None) -> TrainingResult:
    return TrainingResult(
        i,
        "[(-1,3x3 conv,-1,identity)]",
        1,
        0.8,
        0.7,
        1000,
        1,
        1.0,
        1.0,
        1,
        analog_dice=mean,
        analog_dice_std=std,
        analog_score=score,
    )


def test_risk_aware_score_is_mean_minus_k_std_over_programmings() -> None:
    programmings = [0.90, 0.80, 0.85, 0.95]  # mean 0.875, population std sqrt(0.003125) = 0.0559
    std = float(np.sqrt(np.mean((np.array(programmings) - 0.875) ** 2)))
    assert risk_aware_score(programmings, 1.0) == pytest.approx(0.875 - std)
    assert risk_aware_score(programmings, 2.0) == pytest.approx(0.875 - 2 * std)
    assert risk_aware_score(programmings, 0.0) == pytest.approx(0.875)
    assert risk_aware_score([0.7], 1.0) == pytest.approx(0.7)  # one programming: no spread
    # a tight chip beats a wide one of higher mean at k = 1, not at k = 0
    tight, wide = [0.84, 0.85, 0.86], [0.95, 0.70, 0.95]
    assert risk_aware_score(tight, 1.0) > risk_aware_score(wide, 1.0)
    assert risk_aware_score(tight, 0.0) < risk_aware_score(wide, 0.0)
    for bad in ([], [0.8, float("nan")]):
        with pytest.raises(ValueError):
            risk_aware_score(bad, 1.0)


def test_result_rows_record_mean_std_and_score_and_read_older_rows() -> None:
    r = _r(1, 0.85, 0.04, 0.81)
    row = r.to_row()
    assert (row["analog_dice"], row["analog_dice_std"], row["analog_score"]) == (0.85, 0.04, 0.81)
    assert TrainingResult.from_dict(r.to_dict()).analog_score == 0.81
    as_csv = {k: "" if v is None else str(v) for k, v in row.items()}  # what read_csv gives back
    assert TrainingResult.from_dict(as_csv).analog_score == pytest.approx(0.81)
    old = {k: v for k, v in row.items() if k != "analog_score"}  # a CSV row or journal line of an older run
    loaded = TrainingResult.from_dict(old)
    assert loaded.analog_score is None and loaded.analog_objective == 0.85  # falls back to the mean
    backfill_analog_scores([loaded, unprobed := _r(2, None)], risk_k=2.0)
    assert loaded.analog_score == pytest.approx(0.85 - 2 * 0.04) and unprobed.analog_score is None
    assert _r(3, 0.9, 0.0, 0.5).analog_objective == 0.5  # a recorded score wins


def test_the_search_objective_ranks_on_the_risk_aware_score() -> None:
    """Two networks of equal Dice and params: A has the higher mean, B the tighter spread. On the mean A
    dominates B; on the risk-aware score B dominates A (the old objective kept A only)."""
    a, b = _r(1, 0.86, 0.05, 0.81), _r(2, 0.84, 0.005, 0.835)
    values, maximise = objective_matrix([a, b], ["dice", "params", "analog_dice"])
    assert values[:, 2].tolist() == [0.81, 0.835]
    assert pareto_mask(values, maximise).tolist() == [False, True]
    # CSV rows (mappings) read the same score, else the mean
    rows = [a.to_row(), {k: v for k, v in b.to_row().items() if k != "analog_score"}]
    assert objective_matrix(rows, ["analog_dice"])[0][:, 0].tolist() == [0.81, 0.84]


def test_config_keys_of_the_analog_objective_and_the_size_aware_selection() -> None:
    a = RunConfig().analog
    assert a.t_inference == 30 * 86400.0 and a.risk_k == 1.0 and a.probe_repetitions >= 5
    assert a.selection_rule == "size_buckets" and a.max_params is None
    assert AnalogConfig(risk_k=0, max_params=20_000).max_params == 20_000
    for bad in ({"risk_k": -1}, {"max_params": 0}, {"selection_rule": "smallest"}):
        with pytest.raises(ValueError):
            AnalogConfig(**bad)


def test_an_older_run_folder_resumes_and_its_rows_get_the_risk_aware_score(tmp_path) -> None:
    """A folder frozen before issue 34 (no risk_k / probe_whole_images / max_params, rows without analog_score)
    reopens, and the search runner's replay gives its probed rows mean - risk_k x std."""
    import json

    from popnas_seg.runlog.folder import RunFolder
    from popnas_seg.search.runner import SearchRunner

    run = RunFolder.create(tmp_path / "logs", "old", RunConfig())
    path = run.path
    row = _r(1, 0.85, 0.03).to_dict()
    del row["analog_score"]
    run.journal.append(NetworkFinished(network_id=1, result=Result.model_validate(row)))
    run.close()
    config_file = path / "restore" / "config.json"
    frozen = json.loads(config_file.read_text())
    for key in ("risk_k", "probe_whole_images", "max_params"):
        del frozen["analog"][key]
    frozen["analog"].update(t_inference=86400.0, probe_repetitions=3, selection_rule="best_analog")
    config_file.write_text(json.dumps(frozen))
    resumed = RunFolder.open(path)
    try:
        assert resumed.config.analog.risk_k == 1.0 and resumed.config.analog.t_inference == 86400.0
        finished = SearchRunner(resumed, resumed.config, data=None).finished_results()
        assert finished[1].analog_score == pytest.approx(0.85 - 0.03)
    finally:
        resumed.close()


@pytest.mark.slow
def test_the_evaluator_probes_whole_images_or_crops_and_records_the_score(tmp_path) -> None:
    """Both probe inputs end to end through the analog worker, on an untrained tiny network (slow: worker start)."""
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.evaluation.evaluator import NetworkEvaluator
    from popnas_seg.models.builder import build_model
    from popnas_seg.search_space.encoding import Cell

    scores = {}
    for whole in (False, True):
        config = RunConfig.model_validate(
            {
                "dataset": {
                    "samples": 16,
                    "generated_size": [24, 24],
                    "crop": [16, 16],
                    "validation_size": 0.25,
                    "test_size": 0.25,
                },
                "architecture_hyperparameters": {"filters": 2, "motifs": 1, "normal_cells_per_motif": 0},
                "analog": {"probe_images": 2, "probe_repetitions": 3, "probe_whole_images": whole, "risk_k": 2.0},
            }
        )
        data = load_data(config.dataset, 1)
        evaluator = NetworkEvaluator(config, data)
        x, y, sizes = evaluator.probe_arrays()
        assert (sizes is not None) == whole and x.shape[1:3] == ((24, 24) if whole else (16, 16))
        model = build_model(
            Cell.from_string("[(-1,3x3 conv,-1,identity)]"),
            config.architecture_hyperparameters,
            data.input_shape,
            data.classes_count,
        )
        result = TrainingResult(0, "cell", 1, 0.5, 0.5, 1, 1, 1.0, 1.0, 1)
        evaluator._probe(model, result, tmp_path / str(whole), seed=3)
        assert result.probe_error is None, result.probe_error
        assert result.analog_score == pytest.approx(result.analog_dice - 2.0 * result.analog_dice_std)
        scores[whole] = result.probe_digital_dice
    assert scores[True] != scores[False]  # whole 24x24 images are not the 16x16 centre crops
