"""Multi-fidelity search (issue 34 item 1): promotion by measured Pareto front, the record across rungs, the
calibration of lower-rung scores, and the runner's rungs with resume at any rung (no network really trains)."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from popnas_seg.config import RunConfig, config_from_dict
from popnas_seg.models.cost import count_params
from popnas_seg.results import RungScore, TrainingResult
from popnas_seg.runlog.events import NetworkFinished, RungPromoted, StepPlanned
from popnas_seg.runlog.folder import RunFolder
from popnas_seg.search.calibration import fit_rung_map, on_top_scale, top_rung_values
from popnas_seg.search.promotion import promotion_count, rung_record, rung_seed, select_promoted
from popnas_seg.search.runner import SearchRunner
from popnas_seg.search_space.encoding import Cell, single_block_cells


def _result(network_id: int, dice: float, params: int, analog: float | None = None, **kw: Any) -> TrainingResult:
    return TrainingResult(
        network_id=network_id,
        encoding="[(-1,identity,-1,identity)]",
        blocks=1,
        dice=dice,
        miou=dice,
        params=params,
        flops=1,
        train_time_s=2.0,
        inference_time_ms=1.0,
        epochs=2,
        analog_score=analog,
        **kw,
    )


# ------------------------------------------------------------------------------------------ promotion


def test_promotion_count_is_ceil_n_over_eta() -> None:
    assert [promotion_count(n, 3) for n in (0, 1, 3, 4, 10)] == [0, 1, 1, 2, 4]


def test_select_promoted_takes_whole_fronts_then_crowding() -> None:
    """Front 0 = {1 (best Dice), 2 (smallest), 3 (between)}; 4 and 5 are dominated. Two places: the front's
    extremes (largest crowding), not its middle; four places: the whole front, then the better of front 1."""
    results = [
        _result(1, 0.90, 1000),
        _result(2, 0.70, 100),
        _result(3, 0.80, 500),
        _result(4, 0.75, 900),
        _result(5, 0.60, 950),
    ]
    assert select_promoted(results, ["dice", "params"], 3) == [1, 2]
    assert select_promoted(results, ["dice", "params"], 2) == [1, 3, 2]
    assert set(select_promoted(results, ["dice", "params"], 1)) == {1, 2, 3, 4, 5}
    four = select_promoted(results[:4] + [_result(5, 0.60, 950)], ["dice", "params"], 5 / 4)
    assert four[:3] == [1, 3, 2] and four[3] == 4


def test_select_promoted_skips_failed_networks_and_ranks_a_missing_analog_score_worst() -> None:
    results = [
        _result(1, 0.9, 1000, analog=None),
        _result(2, 0.9, 1000, analog=0.8),
        _result(3, 0.95, 10, status="failed"),
        _result(4, 0.5, 2000, analog=0.5),
    ]
    assert select_promoted(results, ["dice", "params", "analog_dice"], 3) == [2]
    assert select_promoted([_result(1, 0.9, 10, status="nan")], ["dice"], 3) == []


def test_rung_record_keeps_every_rung_and_adds_up_epochs_and_time() -> None:
    rung0 = rung_record(None, _result(7, 0.80, 100, analog=0.7, origin="pareto", step=2), 2)
    assert rung0.rungs == [RungScore(0, 2, 0.80, 0.80, 0.7, 2.0)]
    continued = _result(7, 0.86, 100, analog=0.75, rung=1)
    continued.epochs, continued.train_time_s = 6, 5.0
    rung1 = rung_record(rung0, continued, 8)
    assert (rung1.rung, rung1.dice, rung1.epochs, rung1.train_time_s) == (1, 0.86, 8, 7.0)
    assert (rung1.origin, rung1.step) == ("pareto", 2)
    assert [s.dice for s in rung1.rungs] == [0.80, 0.86]
    assert rung1.to_row()["dice_rung0"] == 0.80 and rung1.to_row()["dice_rung1"] == 0.86
    assert TrainingResult.from_dict(json.loads(json.dumps(rung1.to_dict()))) == rung1


def test_a_failed_continuation_leaves_the_network_at_its_previous_rung() -> None:
    rung0 = rung_record(None, _result(7, 0.80, 100), 2)
    failed = _result(7, 0.0, 100, rung=1, status="nan", error="loss became NaN")
    record = rung_record(rung0, failed, 8)
    assert (record.rung, record.dice, record.status, record.rungs) == (0, 0.80, "ok", rung0.rungs)
    assert record.failed_rung == 1 and "NaN" in (record.rung_error or "")


def test_rung_seed_differs_by_rung_and_is_shared_by_every_network() -> None:
    assert rung_seed(11, 0) == 11
    assert len({rung_seed(11, r) for r in range(4)}) == 4


# ------------------------------------------------------------------------------------------ calibration


def test_fit_rung_map_line_shift_or_identity() -> None:
    line = fit_rung_map([(0.80, 0.86), (0.82, 0.90), (0.84, 0.94)])
    assert line.slope == pytest.approx(2.0) and line(0.83) == pytest.approx(0.92)
    assert fit_rung_map([(0.8, 0.9)])(0.7) == pytest.approx(0.8)  # one pair: the mean shift
    falling = fit_rung_map([(0.80, 0.94), (0.82, 0.90), (0.84, 0.86)])  # no positive slope: shift, still monotone
    assert falling.slope == 1.0 and falling(0.8) < falling(0.81)
    assert fit_rung_map([])(0.5) == 0.5


def _two_rungs(network_id: int, low: float, high: float | None) -> TrainingResult:
    record = rung_record(None, _result(network_id, low, 100), 2)
    if high is None:
        return record
    return rung_record(record, _result(network_id, high, 100, rung=1), 8)


def test_top_rung_values_map_stopped_networks_and_keep_their_order() -> None:
    records = [
        _two_rungs(1, 0.80, 0.86),
        _two_rungs(2, 0.82, 0.90),
        _two_rungs(3, 0.84, 0.94),
        _two_rungs(4, 0.79, None),
        _two_rungs(5, 0.81, None),
    ]
    values = top_rung_values(records, 1, lambda s: s.dice, lambda r: r.dice)
    assert values[:3] == [0.86, 0.90, 0.94]  # measured at the top: as measured
    assert values[3] == pytest.approx(0.84) and values[4] == pytest.approx(0.88)
    calibrated = on_top_scale(records, 1)
    assert [r.dice for r in calibrated] == pytest.approx(values)
    assert all(r.train_time_s == 2.0 for r in calibrated)  # rung 0's time: what a new child costs
    assert records[3].dice == 0.79  # the journal's records are not changed


def test_single_rung_records_are_unchanged() -> None:
    records = [_result(1, 0.8, 100), _result(2, 0.9, 200)]
    assert on_top_scale(records, 0) == records
    assert on_top_scale(records, 1) == records  # no rungs recorded: nothing to map


def test_config_rungs_are_cumulative_and_above_rung_0() -> None:
    config = RunConfig.model_validate(
        {"training_hyperparameters": {"epochs": 2}, "search_strategy": {"rung_epochs": [5, 9]}}
    )
    assert config.rung_budgets == [2, 5, 9]
    assert RunConfig().rung_budgets == [3]
    for bad in ({"rung_epochs": [3]}, {"rung_epochs": [6, 5]}, {"promotion_eta": 1}):
        with pytest.raises(ValueError):
            RunConfig.model_validate({"search_strategy": bad})


# ------------------------------------------------------------------------------------------ the runner

SEARCH = {
    "search_space": {"blocks": 2, "lookback_depth": 1, "operators": ["identity", "3x3 conv"]},
    "search_strategy": {
        "max_children": 3,
        "max_exploration_children": 0,
        "additional_pareto_objectives": ["params"],
        "rung_epochs": [3],
        "promotion_eta": 2,
    },
    "training_hyperparameters": {"epochs": 1},
    "architecture_hyperparameters": {"filters": 4, "motifs": 1, "normal_cells_per_motif": 0},
    "dataset": {"crop": [16, 16]},
    "analog": {"probe": False},
    "others": {"seed": 5},
}


class FakeData:
    input_shape = (16, 16, 1)
    classes_count = 2


class Stop(Exception):
    """Stands for a kill in the middle of a rung."""


class FakeEvaluator:
    """Trains nothing: Dice grows with params and epochs; writes the model file a continuation must start from."""

    calls: list[Any] = []
    stop_at_call: int | None = None

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    def evaluate(self, job: Any) -> TrainingResult:
        FakeEvaluator.calls.append(job)
        if FakeEvaluator.stop_at_call is not None and len(FakeEvaluator.calls) == FakeEvaluator.stop_at_call:
            raise Stop
        cell = Cell.from_string(job.encoding)
        params = int(count_params(cell, self.config.architecture_hyperparameters, 1, 2))
        out = Path(job.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.keras").write_bytes(f"{job.network_id}@{job.rung}".encode())  # as `save` does
        start = 0.0 if job.warm_start is None else 0.05
        dice = params / (params + 2000.0) + start + 0.01 * (job.epochs or 1)
        return TrainingResult(
            network_id=job.network_id,
            encoding=job.encoding,
            blocks=len(cell.blocks),
            dice=dice,
            miou=dice,
            params=params,
            flops=params,
            train_time_s=float(job.epochs or 1),
            inference_time_ms=1.0,
            epochs=int(job.epochs or 1),
            origin=job.origin,
            step=job.step,
            rung=job.rung,
        )


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeEvaluator.calls = []
    FakeEvaluator.stop_at_call = None
    monkeypatch.setattr(SearchRunner, "_evaluator", lambda self: FakeEvaluator(self.config))
    monkeypatch.setattr(SearchRunner, "_plots", lambda self: None)


def _step1_networks() -> int:
    """Rung 0 of step 1: every distinct single-block cell of the space."""
    space = SEARCH["search_space"]
    return len(single_block_cells(space["operators"], space["lookback_depth"]))


def _search(run: RunFolder, config: RunConfig) -> list[TrainingResult]:
    return SearchRunner(run, config, FakeData(), logging.getLogger("test")).run_search()


def test_each_step_promotes_its_front_and_continues_from_its_own_weights(tmp_path: Path, fake_runner: None) -> None:
    config = config_from_dict(SEARCH)
    run = RunFolder.create(tmp_path / "logs", "x", config)
    try:
        results = _search(run, config)
    finally:
        run.close()
    promoted = run.journal.events(RungPromoted)
    planned = {int(e["step"]): e["networks"] for e in run.journal.events(StepPlanned)}
    assert [(e["step"], e["rung"]) for e in promoted] == [(s, 1) for s in sorted(planned)]
    for event in promoted:
        assert len(event["network_ids"]) == math.ceil(len(planned[event["step"]]) / 2)
    continuations = [j for j in FakeEvaluator.calls if j.rung == 1]
    assert sorted(j.network_id for j in continuations) == sorted(i for e in promoted for i in e["network_ids"])
    for job in continuations:
        assert Path(job.warm_start).read_bytes() == f"{job.network_id}@0".encode()  # its own rung-0 model
        assert job.keep_initial and job.epochs == 2 and Path(job.out_dir).name == "rung1"
        assert job.seed == rung_seed(FakeEvaluator.calls[0].seed, 1)
    by_id = {r.network_id: r for r in results}
    for job in continuations:
        record = by_id[job.network_id]
        assert (record.rung, record.epochs, len(record.rungs)) == (1, 3, 2)
        assert record.dice == record.rungs[1].dice > record.rungs[0].dice
    stopped = [r for r in results if r.network_id not in {j.network_id for j in continuations}]
    assert stopped and all(r.rung == 0 and len(r.rungs) == 1 for r in stopped)
    with (run.csv_dir / "training_results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"rung", "dice_rung0", "dice_rung1"} <= set(rows[0])
    assert sorted(int(r["network_id"]) for r in rows if r["rung"] == "1") == sorted(j.network_id for j in continuations)


@pytest.mark.parametrize("stop_at", ["first", "second"])
def test_resume_at_a_rung_trains_only_what_is_missing(tmp_path: Path, fake_runner: None, stop_at: str) -> None:
    """Killed at the first continuation (promotion journaled, nothing of rung 1 done) or the second (one done):
    the resume trains no rung-0 network again, keeps the journaled promotion and trains only the missing rungs."""
    config = config_from_dict(SEARCH)
    run = RunFolder.create(tmp_path / "logs", "x", config)
    step1 = _step1_networks()
    FakeEvaluator.stop_at_call = step1 + (1 if stop_at == "first" else 2)
    with pytest.raises(Stop):
        _search(run, config)
    run.close()
    promoted = run.journal.events(RungPromoted)
    assert [(e["step"], e["rung"]) for e in promoted] == [(1, 1)]
    ids = promoted[0]["network_ids"]
    done_before = [j.network_id for j in FakeEvaluator.calls[:-1] if j.rung == 1]
    FakeEvaluator.calls, FakeEvaluator.stop_at_call = [], None
    again = RunFolder.open(tmp_path / "logs" / "x")
    try:
        results = _search(again, config)
    finally:
        again.close()
    first = [j for j in FakeEvaluator.calls if j.step == 1]
    assert all(j.rung == 1 for j in first)  # no rung-0 network of step 1 trained again
    assert sorted(j.network_id for j in first) == sorted(set(ids) - set(done_before))
    assert [e["network_ids"] for e in again.journal.events(RungPromoted) if e["step"] == 1] == [ids]
    assert {r.network_id for r in results if r.step == 1 and r.rung == 1} == set(ids)


def test_a_missing_rung_model_leaves_the_network_at_rung_0(tmp_path: Path, fake_runner: None) -> None:
    config = config_from_dict(SEARCH)
    run = RunFolder.create(tmp_path / "logs", "x", config)
    FakeEvaluator.stop_at_call = _step1_networks() + 1  # the first continuation: step 1's models are written
    with pytest.raises(Stop):
        _search(run, config)
    run.close()
    ids = run.journal.events(RungPromoted)[0]["network_ids"]
    (run.models_dir / str(ids[0]) / "model.keras").unlink()
    FakeEvaluator.calls, FakeEvaluator.stop_at_call = [], None
    again = RunFolder.open(tmp_path / "logs" / "x")
    try:
        results = _search(again, config)
    finally:
        again.close()
    record = next(r for r in results if r.network_id == ids[0])
    assert (record.rung, record.status, record.failed_rung) == (0, "ok", 1)
    assert "no rung 0 model" in (record.rung_error or "")


def test_a_ray_task_gets_its_warm_start_as_bytes_written_on_its_own_node(tmp_path: Path) -> None:
    """No shared disk: the driver sends the rung below's model.keras as bytes; the task writes them beside its
    temporary network folder and trains from that copy, never from the driver's path."""
    import hashlib

    from popnas_seg.evaluation import parallel
    from popnas_seg.evaluation.evaluator import Trial

    seen: dict[str, Any] = {}

    class Recorder:
        def evaluate(self, trial: Trial) -> TrainingResult:
            seen["path"], seen["bytes"] = trial.warm_start, Path(trial.warm_start or "").read_bytes()
            Path(trial.out_dir).mkdir(parents=True)
            return _result(trial.network_id, 0.5, 10)

    config_json = "{}"
    key = hashlib.sha256(config_json.encode()).hexdigest()
    parallel._WORKER_EVALUATORS[key] = Recorder()  # type: ignore[assignment]
    try:
        trial = Trial(
            network_id=4,
            encoding="[(-1,identity,-1,identity)]",
            architecture={},
            seed=1,
            out_dir=str(tmp_path / "driver" / "4" / "rung1"),
            warm_start=str(tmp_path / "driver" / "4" / "model.keras"),  # does not exist on this "node"
            keep_initial=True,
            rung=1,
        )
        payload = parallel.evaluate_task(config_json, trial, b"rung 0 weights")
    finally:
        del parallel._WORKER_EVALUATORS[key]
    assert seen["bytes"] == b"rung 0 weights" and Path(seen["path"]).name == "model.keras"
    assert not str(seen["path"]).startswith(str(tmp_path)) and payload["result"]["network_id"] == 4


@pytest.mark.slow
def test_two_ray_workers_train_the_rungs_from_each_networks_own_model(tmp_path: Path) -> None:
    """The real CLI with others.workers 2: rung 0 and the continuations run as Ray tasks; each continuation gets
    the rung-0 model.keras as bytes and writes sampled_models/<id>/rung1/; the CSV holds the rung columns."""
    pytest.importorskip("ray")
    from search_helpers import run_cli, tiny_config

    cfg = tiny_config(
        tmp_path,
        probe=False,
        pipeline=["search"],
        strategy="random",
        search_strategy__max_networks=3,
        search_strategy__b1_max_networks=3,
        search_strategy__rung_epochs=[2],
        others__workers=2,
    )
    proc = run_cli(["-j", str(cfg), "--name", "r", "--logs-dir", str(tmp_path / "logs")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = tmp_path / "logs" / "r"
    run = RunFolder.open(folder)
    try:
        promoted = run.journal.events(RungPromoted)
        rung1 = [e for e in run.journal.events(NetworkFinished) if e.get("rung") == 1]
    finally:
        run.close()
    assert [(e["step"], e["rung"], len(e["network_ids"])) for e in promoted] == [(1, 1, 1)]
    assert [e["network_id"] for e in rung1] == promoted[0]["network_ids"]
    assert rung1[0]["result"]["rung"] == 1 and rung1[0]["result"]["epochs"] == 2
    assert (folder / "sampled_models" / str(rung1[0]["network_id"]) / "rung1" / "history.csv").is_file()
    with (folder / "csv" / "training_results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["rung"] for r in rows) == ["0", "0", "1"] and all(r["dice_rung0"] for r in rows)
