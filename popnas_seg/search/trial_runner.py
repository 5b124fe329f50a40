"""The one loop every trained network of the search goes through: a step's trials on this run's executor (in
process or Ray), each journaled as started and finished with its attempt number and rung, logged with the ETA.

The trial descriptions (`search_trial`) and the journal replay of finished results live here too; the step loop
and the rung promotions that call `run_trials` are search/runner.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from popnas_seg.config import RunConfig
from popnas_seg.evaluation.evaluator import NetworkEvaluator, Trial, trial_blocks
from popnas_seg.evaluation.executor import Executor, InProcessExecutor
from popnas_seg.results import TrainingResult, backfill_analog_scores
from popnas_seg.runlog.events import (
    NetworkFinished,
    NetworkStarted,
    Result,
)
from popnas_seg.runlog.folder import RunFolder
from popnas_seg.runlog.trials import trial_attempts
from popnas_seg.search.bookkeeping import SearchBookkeeping
from popnas_seg.search.eta import Progress
from popnas_seg.search.promotion import rung_record
from popnas_seg.search.seeds import search_network_seeds
from popnas_seg.search.strategy_base import strategy_objectives

if TYPE_CHECKING:
    from popnas_seg.data.pipeline import SegmentationData


class TrialRunner(SearchBookkeeping):
    """Trains the trials of one run folder and keeps their results (the runner's trial half)."""

    def __init__(
        self, run: RunFolder, config: RunConfig, data: SegmentationData, logger: logging.Logger | None = None
    ) -> None:
        self.run = run
        self.config = config
        self.data = data
        self.log = logger or logging.getLogger("popnas_seg")
        self.objectives = strategy_objectives(config)
        self._network_evaluator: NetworkEvaluator | None = None
        self._executor: Executor | None = None  # started by the first trial, stopped by `close`
        # The search's bookkeeping, shared by `run_search` and `run_trials`: results by network id (None: not
        # read from the journal yet), the planned steps, the ETA model.
        self._finished: dict[int, TrainingResult] | None = None
        self._planned: dict[int, dict] = {}
        self._progress = Progress(planned_total=0)

    # ------------------------------------------------------------------ journal replay
    def finished_results(self) -> dict[int, TrainingResult]:
        out: dict[int, TrainingResult] = {}
        for event in self.run.journal.events(NetworkFinished):
            result = TrainingResult.from_dict(event["result"])
            out[result.network_id] = result
        backfill_analog_scores(list(out.values()), self.config.analog.risk_k)  # journals from before issue 34
        return out

    # ------------------------------------------------------------------ trials
    def run_trials(self, step: int, trials: Sequence[Trial]) -> dict[int, TrainingResult]:
        """Train `trials` of `step` on this run's executor; returns their results by network id.

        The one loop every trained network of the search goes through: each trial is journaled as running
        (`network_started`, with its attempt number: a trial interrupted before is retried from scratch) when
        the executor starts it, and as finished (`network_finished`, status ok / nan / failed) as soon as its
        result arrives, in completion order; the ETA, training_results.csv and the log follow each result.
        Trials already finished in the journal are not trained again. A trial of `rung` > 0 (multi-fidelity) is
        the network's continuation: it is done once the journal holds that rung's result, and its result is
        journaled as the network's record across rungs (`rung_record`).
        """
        finished = self._finished_so_far()
        reached = self._rungs_reached()
        todo = [
            t
            for t in trials
            if (t.network_id not in finished if t.rung == 0 else reached.get(t.network_id, 0) < t.rung)
        ]
        if todo:
            executor = self._executor_()
            started_events = self.run.journal.events(NetworkStarted)
            attempts = {rung: trial_attempts(started_events, rung) for rung in {t.rung for t in todo}}
            running: set[int] = set()
            pool = not isinstance(executor, InProcessExecutor)  # several at once: a line per result too
            if pool:
                self.log.info(
                    "step %d | %d networks on %d Ray workers | %d/%d done",
                    step,
                    len(todo),
                    executor.slots,
                    len(finished),
                    self._progress.planned_total,
                )

            def started(trial: Trial) -> None:
                attempt = attempts[trial.rung].get(trial.network_id, 0) + 1
                if trial.rung == 0:
                    running.add(trial.network_id)
                    self._log_start(step, trial, len(finished) + len(running), attempt)
                else:
                    self._log_continuation(step, trial, attempt)
                self.run.journal.append(
                    NetworkStarted(
                        network_id=trial.network_id,
                        encoding=trial.encoding,
                        step=step,
                        attempt=attempt,
                        rung=trial.rung,
                    )
                )

            for trial, result in executor.map_unordered(todo, on_start=started):
                result = self._journal_result(trial, result)
                running.discard(trial.network_id)
                if trial.rung > 0:  # logged by _journal_result; the ETA model counts networks from scratch
                    continue
                self._progress.network_done(trial_blocks(trial.encoding))  # with workers: the pool's pace
                if pool:
                    eta_step, eta_search = self._etas(step)
                    self.log.info(
                        "step %d | network id %d (%s) %s finished | %d/%d done | ETA step %s, search %s",
                        step,
                        trial.network_id,
                        trial.origin,
                        trial.encoding,
                        len(finished),
                        self._progress.planned_total,
                        eta_step,
                        eta_search,
                    )
                self._write_results_csv(finished)
                self._log_result(result, finished)
        return {t.network_id: finished[t.network_id] for t in trials}

    def _journal_result(self, trial: Trial, result: TrainingResult) -> TrainingResult:
        """Journal `trial`'s result as its network's record (with several rungs: across rungs), keep it as the
        network's result and, for a continuation, refresh the CSV and log it; returns the record."""
        finished = self._finished_so_far()
        budgets = self.config.rung_budgets
        result.network_id, result.rung = trial.network_id, trial.rung  # a Ray task's failure row lacks the rung
        record = result
        if len(budgets) > 1:
            record = rung_record(finished.get(trial.network_id) if trial.rung else None, result, budgets[trial.rung])
        self.run.journal.append(NetworkFinished(network_id=trial.network_id, result=Result.of(record), rung=trial.rung))
        finished[trial.network_id] = record
        if trial.rung > 0:
            self._write_results_csv(finished)
            if record.rung == trial.rung:
                self._log_result(record, finished)
            else:
                self.log.warning(
                    "network %d: its rung %d training failed (%s); it keeps its rung %d scores",
                    trial.network_id,
                    trial.rung,
                    record.rung_error,
                    record.rung,
                )
        return record

    def _rungs_reached(self) -> dict[int, int]:
        """Network id -> the highest rung whose training finished (successfully or not), from the journal."""
        reached: dict[int, int] = {}
        for event in self.run.journal.events(NetworkFinished):
            i = int(event["network_id"])
            reached[i] = max(reached.get(i, 0), int(event.get("rung", 0)))
        return reached

    def _log_continuation(self, step: int, trial: Trial, attempt: int) -> None:
        self.log.info(
            "step %d | rung %d: network id %d (%s) %s, %d more epochs from its rung %d model%s",
            step,
            trial.rung,
            trial.network_id,
            trial.origin,
            trial.encoding,
            trial.epochs or 0,
            trial.rung - 1,
            _attempt_note(attempt),
        )

    def _finished_so_far(self) -> dict[int, TrainingResult]:
        """The results the journal holds (read once; `run_trials` adds each new one)."""
        if self._finished is None:
            self._finished = self.finished_results()
        return self._finished

    def _etas(self, step: int) -> tuple[str, str]:
        """(this step, whole search) remaining time as text; "?" for trials outside a planned step."""
        if step not in self._planned:
            return "?", "?"
        return self._progress.etas(self.config, step, self._planned, self._finished_so_far())

    def _log_start(self, step: int, trial: Trial, position: int, attempt: int) -> None:
        eta_step, eta_search = self._etas(step)
        self.log.info(
            "step %d | network %d/%d (id %d, %s, %d blocks) %s | ETA step %s, search %s%s",
            step,
            position,
            max(self._progress.planned_total, position),
            trial.network_id,
            trial.origin,
            trial_blocks(trial.encoding),
            trial.encoding,
            eta_step,
            eta_search,
            _attempt_note(attempt),
        )

    def _evaluator(self) -> NetworkEvaluator:
        if self._network_evaluator is None:
            self._network_evaluator = NetworkEvaluator(self.config, self.data, self.log)
        return self._network_evaluator

    def _executor_(self) -> Executor:
        """In process for `others.workers` = 1, else a Ray pool (started on first use, stopped by `close`)."""
        if self._executor is None:
            if self.config.others.workers == 1:
                self._executor = InProcessExecutor(self._evaluator())
            else:
                from popnas_seg.evaluation.parallel import RayExecutor

                height, width, channels = self.data.input_shape
                shape = (int(height), int(width), int(channels))
                self._executor = RayExecutor(self.config, shape, self.data.classes_count, self.log)
        return self._executor

    def search_trial(self, net: dict, step: int) -> Trial:
        """The plain-data description of planned network `net` (journal `step_planned` entry) of `step`."""
        cfg = self.config
        seed, probe_seed = search_network_seeds(cfg.network_seed, net["encoding"], cfg.search_strategy.network_seeding)
        # Absolute: a Ray worker's working folder is its node's `ray start` folder, not the driver's (-> README).
        out_dir = self.run.models_dir.absolute() / str(net["network_id"])
        return Trial(
            network_id=int(net["network_id"]),
            encoding=net["encoding"],
            architecture=cfg.architecture_hyperparameters.model_dump(mode="json"),
            seed=seed,
            out_dir=str(out_dir),
            origin=net["origin"],
            step=step,
            save=True,
            probe=cfg.analog.probe,
            probe_seed=probe_seed,
        )

    def close(self) -> None:
        """Stop this run's executor (a Ray instance of its own; a joined cluster is only disconnected)."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None


def _attempt_note(attempt: int) -> str:
    """The start line's suffix for a retried trial (empty for a first attempt)."""
    return "" if attempt == 1 else f" | attempt {attempt} (the last one was interrupted)"
