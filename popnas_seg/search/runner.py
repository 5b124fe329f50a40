"""The search loop: ask the strategy what to train, train and probe it, log it; resume by replaying the journal.

The strategy decides *what* (search/strategies.py); evaluation/evaluator.py knows *how* (build, train, save,
analog probe: one `Trial` -> one `TrainingResult`); this module orders the work and keeps the run folder
consistent. The journal (restore/journal.jsonl) is the source of truth:

- ``step_planned``    the networks of a step with their ids, written before any of them trains, so a resumed run
                      never re-plans a step (re-planning could pick other cells if a score changed);
- ``network_started`` / ``network_finished``  one trial's attempt and its result (states: runlog/trials.py);
                      a network that started but never finished is trained again from scratch (its next
                      `attempt`: retried); a finished one, ok or failed, is never trained again;
- ``rung_promoted``    multi-fidelity (search/promotion.py): after every network of a step finished rung r - 1, the
                      ones that train on to rung r; their continuations are trials with ``rung`` r
                      (``network_started`` / ``network_finished`` carry it; the result is the network's whole record
                      after that rung), so a resume trains exactly the rungs that never finished, each from the rung
                      below's model;
- ``step_finished`` / ``search_finished``.

CSVs and plots are derived from the journal and rewritten atomically, so a kill at any moment leaves a folder
that ``python run.py -r`` continues.

The runner is three layers: this module (the step loop: plan, train, promote rung by rung, finish the step),
search/trial_runner.py (`run_trials`: every trial through the executor and the journal, the ETA, the trial
descriptions) and search/bookkeeping.py (the CSVs, log lines, measured front, figures and best_model/).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from popnas_seg.config import RunConfig
from popnas_seg.evaluation.evaluator import Trial
from popnas_seg.results import TrainingResult
from popnas_seg.runlog.events import (
    NetworkStarted,
    RungPromoted,
    SearchFinished,
    StepFinished,
    StepPlanned,
)
from popnas_seg.runlog.folder import RunFolder
from popnas_seg.search.eta import Progress
from popnas_seg.search.promotion import rung_seed, select_promoted
from popnas_seg.search.trial_runner import TrialRunner

if TYPE_CHECKING:
    from popnas_seg.data.pipeline import SegmentationData


class SearchRunner(TrialRunner):
    """Runs (or resumes) the search of one run folder."""

    def _planned_steps(self) -> dict[int, dict]:
        return {int(e["step"]): e for e in self.run.journal.events(StepPlanned)}

    # ------------------------------------------------------------------ the loop
    def run_search(self) -> list[TrainingResult]:
        from popnas_seg.search.strategies import make_strategy

        journal = self.run.journal
        if journal.events(SearchFinished):
            self.log.info("search already finished in %s; skipping to the next stage", self.run.path)
            return sorted(self.finished_results().values(), key=lambda r: r.network_id)

        strategy = make_strategy(
            self.config, self.data.input_shape, self.data.classes_count, self.run.predictors_dir, self.log
        )
        finished = self.finished_results()
        planned = self._planned_steps()
        finished_steps = {int(e["step"]) for e in journal.events(StepFinished)}
        progress = Progress(planned_total=max(strategy.planned_total(), len(finished)))
        if finished:
            self.log.info(
                "resuming: %d networks already trained, %d steps planned, %d finished",
                len(finished),
                len(planned),
                len(finished_steps),
            )
        self.run.update_state(stage="search")
        self._finished, self._planned, self._progress = finished, planned, progress

        step = 1
        while True:
            if step in planned:
                networks = planned[step]["networks"]
            else:
                history = sorted(finished.values(), key=lambda r: r.network_id)
                self.log.info("step %d: planning (%d networks trained so far)", step, len(history))
                plan = strategy.plan_step(step, history)
                if plan is None:
                    break
                first_id = 1 + max([n["network_id"] for e in planned.values() for n in e["networks"]] + [0])
                networks = [
                    {
                        "network_id": first_id + i,
                        "encoding": str(p.cell),
                        "origin": p.origin,
                        "blocks": len(p.cell.blocks),
                    }
                    for i, p in enumerate(plan.networks)
                ]
                predicted_times = self._predicted_times(plan.predictions, networks)
                self._write_plan_tables(step, plan)
                journal.append(StepPlanned(step=step, networks=networks, predicted_times=predicted_times))
                planned[step] = {"step": step, "networks": networks, "predicted_times": predicted_times}
                progress.planned_total = max(progress.planned_total, sum(len(e["networks"]) for e in planned.values()))

            self.run.update_state(stage="search", step=step)
            self.run_trials(step, [self.search_trial(net, step) for net in networks])
            if step not in finished_steps:
                self._run_rungs(step, networks)
                self._finish_step(step, planned[step], finished)
                journal.append(StepFinished(step=step))
                finished_steps.add(step)
            step += 1

        self._finish_search(finished)
        journal.append(SearchFinished(networks=len(finished)))
        self.run.update_state(stage="search_done")
        return sorted(finished.values(), key=lambda r: r.network_id)

    # ------------------------------------------------------------------ rungs (multi-fidelity)

    def _run_rungs(self, step: int, networks: list[dict]) -> None:
        """Successive halving within `step`: promote and continue, rung by rung, what the journal lacks."""
        budgets = self.config.rung_budgets
        if len(budgets) == 1:
            return
        finished = self._finished_so_far()
        journal = self.run.journal
        decided = {(int(e["step"]), int(e["rung"])): e["network_ids"] for e in journal.events(RungPromoted)}
        by_id = {int(n["network_id"]): n for n in networks}
        for rung in range(1, len(budgets)):
            chosen = decided.get((step, rung))
            if chosen is None:
                level = [finished[i] for i in by_id if i in finished and finished[i].rung == rung - 1]
                chosen = select_promoted(level, self.objectives, self.config.search_strategy.promotion_eta)
                journal.append(RungPromoted(step=step, rung=rung, network_ids=chosen))
                self.log.info(
                    "step %d: %d of %d networks promoted to rung %d (%d epochs): ids %s",
                    step,
                    len(chosen),
                    len(level),
                    rung,
                    budgets[rung],
                    chosen,
                )
            reached = self._rungs_reached()
            trials = [self.continuation_trial(by_id[i], step, rung) for i in chosen if reached.get(i, 0) < rung]
            ready = [t for t in trials if t.warm_start is not None and Path(t.warm_start).is_file()]
            for trial in trials:
                if trial not in ready:  # its rung-below model is gone (sampled_models/ edited)
                    self.run.journal.append(
                        NetworkStarted(network_id=trial.network_id, encoding=trial.encoding, step=step, rung=rung)
                    )
                    gone = dataclasses.replace(
                        finished[trial.network_id],
                        status="failed",
                        train_time_s=0.0,
                        error=f"no rung {rung - 1} model to continue from ({trial.warm_start})",
                    )
                    self._journal_result(trial, gone)
            self.run_trials(step, ready)

    def continuation_trial(self, net: dict, step: int, rung: int) -> Trial:
        """Network `net`'s training from its rung `rung - 1` model up to rung `rung`'s budget: its own weights
        (a continuation), a fresh cosine schedule over the extra epochs, the start kept unless an epoch beats it."""
        budgets = self.config.rung_budgets
        base = self.search_trial(net, step)
        net_id = int(net["network_id"])
        return dataclasses.replace(
            base,
            rung=rung,
            epochs=budgets[rung] - budgets[rung - 1],
            seed=rung_seed(base.seed, rung),
            out_dir=str(self.network_dir(net_id, rung).absolute()),
            warm_start=str((self.network_dir(net_id, rung - 1) / "model.keras").absolute()),
            keep_initial=True,
        )


def run_search(
    run: RunFolder, config: RunConfig, data: SegmentationData, logger: logging.Logger | None = None
) -> list[TrainingResult]:
    """Run or resume the search stage of `run`; returns every trained network's result."""
    runner = SearchRunner(run, config, data, logger)
    try:
        return runner.run_search()
    finally:
        runner.close()
