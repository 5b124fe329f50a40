"""One logger for the whole tool: concise lines on the terminal and the same lines in <run folder>/run.log.

Progress goes to stdout (it is the tool's output); stderr is kept for the one-line `error: ...` of a
UserError, so a failed run shows exactly one message there. Calling `setup_logging` again (the CLI does
once the run folder exists) replaces the previous handlers instead of duplicating every line.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LOGGER_NAME = "popnas_seg"
_MARK = "_popnas_seg_handler"


def setup_logging(run_folder_path: str | os.PathLike[str] | None, verbose: bool = False) -> logging.Logger:
    """Configure and return the "popnas_seg" logger (child loggers `popnas_seg.x` inherit it)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, _MARK, False):
            logger.removeHandler(handler)
            handler.close()
    level = logging.DEBUG if verbose else logging.INFO
    logger.setLevel(level)
    logger.propagate = False  # TF/absl configure the root logger; do not print every line twice

    terminal = logging.StreamHandler(sys.stdout)
    terminal.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    terminal.setLevel(level)
    setattr(terminal, _MARK, True)
    logger.addHandler(terminal)

    if run_folder_path is not None:
        log_file = Path(run_folder_path) / "run.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
        )
        file_handler.setLevel(logging.DEBUG)  # the file keeps details even without -v
        setattr(file_handler, _MARK, True)
        logger.addHandler(file_handler)
        logger.setLevel(logging.DEBUG)
    return logger


def close_logging() -> None:
    """Detach and close our handlers (releases run.log; used by tests and at the end of `main`)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, _MARK, False):
            logger.removeHandler(handler)
            handler.close()
