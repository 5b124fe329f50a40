"""report.md from the run folder alone: config, search summary, final front, finalists, drift, digital leftovers.

It reads only files (restore/config.json, restore/state.json, restore/journal.jsonl, csv/*.csv, final/*), so it
can be re-run at any time on an old, finished or still-running run. Every section degrades on its own: a
stage that did not run yet is stated in its section instead of failing the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from popnas_seg.atomic import atomic_write_text
from popnas_seg.report.figures import redraw_figures
from popnas_seg.report.sections import Report

__all__ = ["write_report"]


def write_report(run: Any, logger: logging.Logger | None = None) -> Path:
    """Write report.md in the run folder (a RunFolder or its path) from its files alone; returns its path."""
    log = logger or logging.getLogger("popnas_seg")
    run_path = Path(getattr(run, "path", run))
    redraw_figures(run_path, log)
    report = Report(run_path, log)
    sections: list[Callable[[], str]] = [
        report.header,
        report.recommendation_section,
        report.search_section,
        report.front_section,
        report.finalists_section,
        report.plots_section,
        report.digital_section,
        report.config_section,
    ]
    parts = []
    for section in sections:
        try:
            parts.append(section())
        except Exception as exc:  # one broken file must not cost the whole report
            log.warning("report section %s failed: %s", section.__name__, exc)
            parts.append(f"*(section {section.__name__} could not be written: {type(exc).__name__}: {exc})*")
    path = atomic_write_text(run_path / "report.md", "\n\n".join(parts) + "\n")
    log.info("report written: %s", path)
    return path
