"""The stages of a run, in order: search -> finalists -> report (as listed in `others.pipeline`).

Each stage is idempotent on a run folder: a finished stage is recorded in the journal (`stage_finished`) and
skipped on resume, and an interrupted stage resumes from its own journal events. The CLI only ever calls
`run_pipeline`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from popnas_seg.config import RunConfig
from popnas_seg.runlog.events import StageFinished
from popnas_seg.runlog.folder import RunFolder


def _search(run: RunFolder, config: RunConfig, data: Any, logger: logging.Logger) -> None:
    from popnas_seg.search.runner import run_search

    results = run_search(run, config, data, logger)
    logger.info("search stage done: %d networks trained", len(results))


def _finalists(run: RunFolder, config: RunConfig, data: Any, logger: logging.Logger) -> None:
    from popnas_seg.finalists import run_finalists

    run_finalists(run, config, data, logger)


def _report(run: RunFolder, config: RunConfig, data: Any, logger: logging.Logger) -> None:
    from popnas_seg.report import write_report

    write_report(run, logger)  # logs the path itself


STAGES: dict[str, Callable[[RunFolder, RunConfig, Any, logging.Logger], None]] = {
    "search": _search,
    "finalists": _finalists,
    "report": _report,
}


def _log_devices(config: RunConfig, logger: logging.Logger) -> None:
    """Say where Keras training and the analog simulation run (popnas_seg/devices.py)."""
    from popnas_seg.devices import describe_run_devices

    stages = set(config.others.pipeline)
    analog = "finalists" in stages or ("search" in stages and config.analog.probe)
    for line in describe_run_devices(analog).lines:
        logger.info("devices: %s", line)


def run_pipeline(run: RunFolder, config: RunConfig, data: Any, logger: logging.Logger) -> None:
    """Run every configured stage that has not finished yet, saying clearly which stage is reached."""
    describe = getattr(data, "describe", None)
    logger.info(
        "config validated: %d operators, up to %d blocks, strategy %s",
        len(config.search_space.operators),
        config.search_space.blocks,
        config.search_strategy.strategy,
    )
    logger.info("data: %s", describe() if callable(describe) else data.input_shape)
    logger.info("run folder: %s", run.path)
    _log_devices(config, logger)
    done = {e.get("stage") for e in run.journal.events(StageFinished)}
    for index, stage in enumerate(config.others.pipeline, start=1):
        if stage in done and stage != "report":  # the report is cheap and always redrawn
            logger.info("stage %d/%d %s: already finished, skipped", index, len(config.others.pipeline), stage)
            continue
        logger.info("=== stage %d/%d: %s ===", index, len(config.others.pipeline), stage)
        run.update_state(stage=stage)
        started = time.monotonic()
        STAGES[stage](run, config, data, logger)
        run.journal.append(StageFinished(stage=stage, seconds=round(time.monotonic() - started, 3)))
    run.update_state(stage="done")
    logger.info("all stages done; results in %s", run.path)
