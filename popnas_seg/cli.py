"""Command line: parse, validate, then call the pipeline. Thin on purpose.

Order matters: the config is validated and the data loaded *before* a run folder is created, so a
typo or a broken data folder never leaves (or damages) a folder under logs/. Heavy libraries
(TensorFlow, torch) are imported only when data is loaded, so `python run.py -j bad.json` fails in
about a second.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from popnas_seg.config import DEFAULT_CONFIG, RunConfig, load_config
from popnas_seg.errors import UserError

RESUME_HINT = "interrupted; resume with: python run.py -r {folder}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py",
        description="POPNAS-style progressive Pareto search for small, analog-robust segmentation networks.",
        epilog="A bare `python run.py` runs configs/run.json (built-in synthetic nuclei data).",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-j", "--config", metavar="CONFIG", help=f"run config JSON (default: {_shown_default()})")
    source.add_argument("-r", "--resume", metavar="FOLDER", help="resume the run in this run folder")
    parser.add_argument("--name", help="run folder name under --logs-dir (default: date-time)")
    parser.add_argument("--logs-dir", default="logs", help="where run folders are created (default: logs)")
    parser.add_argument(
        "--preview-data", metavar="PNG",
        help="only load the data, save a preview grid of training pairs to PNG, and exit (no run folder)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output on the terminal")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 unexpected error, 2 user error, 130 interrupted)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The pipeline feeds tf.data and exports with tf2onnx, so this process needs Keras's TensorFlow backend
    # whatever the environment says (the model code itself is backend-agnostic; analog workers use torch).
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage / help
        return int(exc.code or 0)

    run = None
    logger: logging.Logger | None = None
    try:
        from popnas_seg.logging_setup import setup_logging
        from popnas_seg.runlog.folder import RunFolder

        if args.resume is not None and args.name is not None:
            raise UserError("--name names a new run; it cannot be combined with -r (the folder has its name)")

        if args.preview_data is not None:
            config = _config_for_preview(args)
            logger = setup_logging(None, args.verbose)
            data = _load_data(config)
            from popnas_seg.data.pipeline import save_preview

            written = save_preview(data, args.preview_data)
            logger.info("data preview written to %s", written)
            return 0

        if args.resume is not None:
            run = RunFolder.open(args.resume)  # locks the folder and revalidates its frozen config
            config = run.config
            logger = setup_logging(run.path, args.verbose)
            logger.info("resuming %s (stage %s)", run.path, run.read_state().get("stage"))
            data = _load_data(config)
            run.journal.append("run_resumed", argv=list(argv if argv is not None else sys.argv[1:]))
        else:
            config = load_config(args.config)
            RunFolder.new_path(args.logs_dir, args.name)  # a taken --name fails now, not after loading data
            logger = setup_logging(None, args.verbose)
            logger.info("config %s is valid", args.config or _shown_default())
            data = _load_data(config)
            run = RunFolder.create(args.logs_dir, args.name, config)
            logger = setup_logging(run.path, args.verbose)
            logger.info("new run in %s", run.path)
            run.journal.append("run_started", argv=list(argv if argv is not None else sys.argv[1:]))

        from popnas_seg.pipeline import run_pipeline

        run_pipeline(run, config, data, logger)
        return 0
    except UserError as exc:
        if logger is not None and run is not None:
            logger.debug("stopped by a user error: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        message = RESUME_HINT.format(folder=run.path) if run is not None else "interrupted"
        print(message, file=sys.stderr)
        if logger is not None and run is not None:
            logger.debug(message)
        return 130
    except Exception:
        where = f"; resume with: python run.py -r {run.path}" if run is not None else ""
        if logger is not None:
            logger.exception("unexpected error%s", where)
        else:
            import traceback

            traceback.print_exc()
        return 1
    finally:
        if run is not None:
            run.close()
        from popnas_seg.logging_setup import close_logging

        close_logging()


def _load_data(config: RunConfig) -> Any:
    """The data pipeline imports TensorFlow: import it only here, after the config is known good."""
    from popnas_seg.data.pipeline import load_data

    return load_data(config.dataset, seed=config.others.seed)


def _config_for_preview(args: argparse.Namespace) -> RunConfig:
    if args.resume is not None:
        restore = Path(args.resume) / "restore" / "config.json"
        if not restore.is_file():
            raise UserError(f'"{args.resume}" is not a run folder (no restore/config.json)')
        return load_config(restore)
    return load_config(args.config)


def _shown_default() -> str:
    try:
        return os.path.relpath(DEFAULT_CONFIG)
    except ValueError:  # other drive on Windows
        return str(DEFAULT_CONFIG)
