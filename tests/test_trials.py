"""One trial, one executor, one loop (issue 33 item 1): trial states from the journal, the in-process executor,
and `SearchRunner.run_trials` journaling each trial's attempt and result, skipping finished ones."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_extensions import SEARCH, FakeData, FakeEvaluator

from popnas_seg.config import config_from_dict
from popnas_seg.evaluation.evaluator import Trial
from popnas_seg.evaluation.executor import InProcessExecutor
from popnas_seg.results import TrainingResult
from popnas_seg.runlog.events import NetworkStarted, PlannedNetwork, StepPlanned
from popnas_seg.runlog.folder import RunFolder
from popnas_seg.runlog.trials import TrialStatus, trial_attempts, trial_states
from popnas_seg.search.runner import SearchRunner
from popnas_seg.summary import summary_text

CELLS = ["[(-1,3x3 conv,-1,identity)]", "[(-1,identity,-1,identity)]", "[(-1,3x3 conv,-1,3x3 conv)]"]


def _planned(ids: list[int]) -> dict:
    return {
        "event": "step_planned",
        "time": 1.0,
        "step": 1,
        "networks": [{"network_id": i, "encoding": CELLS[0], "origin": "b1", "blocks": 1} for i in ids],
    }


def _finished(nid: int, status: str) -> dict:
    return {"event": "network_finished", "time": 3.0, "network_id": nid, "result": {"status": status}}


def test_trial_states_from_events_old_and_new() -> None:
    """Each state from the events alone; a journal from before `attempt` counts its start lines instead."""
    started = lambda nid, **kw: {"event": "network_started", "time": 2.0, "network_id": nid, "step": 1, **kw}  # noqa: E731
    events = [
        _planned([1, 2, 3, 4, 5, 6]),
        started(1),
        _finished(1, "ok"),
        started(2),
        _finished(2, "nan"),
        started(3),  # interrupted ...
        started(3),  # ... and retried (an old journal: no attempt field)
        started(4),  # interrupted, not retried yet
        started(5, attempt=1),
        started(5, attempt=2),
        _finished(5, "failed"),
    ]
    states = trial_states(events)
    assert states == {
        1: TrialStatus.FINISHED,
        2: TrialStatus.FAILED,
        3: TrialStatus.RETRIED,
        4: TrialStatus.RUNNING,
        5: TrialStatus.FAILED,
        6: TrialStatus.PLANNED,
    }
    assert trial_attempts(events) == {1: 1, 2: 1, 3: 2, 4: 1, 5: 2}


def test_in_process_executor_starts_each_trial_right_before_it_trains(tmp_path: Path) -> None:
    config = config_from_dict(json.loads(json.dumps(SEARCH)))
    order: list[str] = []

    class Recording(FakeEvaluator):
        def evaluate(self, job: Trial) -> TrainingResult:
            order.append(f"train {job.network_id}")
            return super().evaluate(job)

    trials = [Trial(i, c, {}, 0, str(tmp_path / str(i))) for i, c in enumerate(CELLS)]
    executor = InProcessExecutor(Recording(config))
    done = [
        (t.network_id, r.network_id)
        for t, r in executor.map_unordered(trials, lambda t: order.append(f"start {t.network_id}"))
    ]
    assert done == [(0, 0), (1, 1), (2, 2)]
    assert order == ["start 0", "train 0", "start 1", "train 1", "start 2", "train 2"]


def test_run_trials_journals_attempts_and_skips_finished_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed folder: trial 1 finished (not trained again), trial 2 interrupted (attempt 2: retried), trial 3
    new. run_trials returns all three results and leaves every state readable by resume and `summary`."""
    config = config_from_dict(json.loads(json.dumps(SEARCH)))
    run = RunFolder.create(tmp_path / "logs", "x", config)
    trained: list[int] = []

    class Counting(FakeEvaluator):
        def evaluate(self, job: Trial) -> TrainingResult:
            trained.append(job.network_id)
            return super().evaluate(job)

    monkeypatch.setattr(SearchRunner, "_evaluator", lambda self: Counting(self.config))
    try:
        journal = run.journal
        nets = [{"network_id": i + 1, "encoding": c, "origin": "b1", "blocks": 1} for i, c in enumerate(CELLS)]
        journal.append(StepPlanned(step=1, networks=[PlannedNetwork(**n) for n in nets]))
        runner = SearchRunner(run, config, FakeData(), logging.getLogger("test"))
        first = runner.run_trials(1, [runner.search_trial(nets[0], 1)])
        journal.append(NetworkStarted(network_id=2, encoding=CELLS[1], step=1))  # a killed attempt
        assert trial_states(journal.events())[2] is TrialStatus.RUNNING

        resumed = SearchRunner(run, config, FakeData(), logging.getLogger("test"))
        results = resumed.run_trials(1, [resumed.search_trial(n, 1) for n in nets])
        assert trained == [1, 2, 3] and sorted(results) == [1, 2, 3] and results[1] == first[1]
        started = journal.events(NetworkStarted)
        assert [(e["network_id"], e["attempt"]) for e in started] == [(1, 1), (2, 1), (2, 2), (3, 1)]
        assert set(trial_states(journal.events()).values()) == {TrialStatus.FINISHED}
        rows = (run.csv_dir / "training_results.csv").read_text().splitlines()
        assert len(rows) == 1 + 3
        assert "Search networks: 3 finished" in summary_text(run.path)
    finally:
        run.close()


def test_export_check_equivalence_rule() -> None:
    """The export is equivalent only within both max-difference bounds and the Dice tolerance (NaN = NaN)."""
    import math

    import numpy as np

    from popnas_seg.analog.equivalence import EQUIVALENCE_MAX_ABS_DIFF, ExportCheck

    def check(diff: float, ort: float, keras: float, torch: float) -> bool:
        return ExportCheck(diff, ort, keras, torch, 1.0, np.zeros(1)).equivalent

    assert check(0.0, 0.0, 0.5, 0.5) and check(0.0, 0.0, math.nan, math.nan)
    assert not check(2 * EQUIVALENCE_MAX_ABS_DIFF, 0.0, 0.5, 0.5)
    assert not check(0.0, 2 * EQUIVALENCE_MAX_ABS_DIFF, 0.5, 0.5)
    assert not check(0.0, 0.0, 0.5, 0.6) and not check(0.0, 0.0, 0.5, math.nan)
