"""Command line: parse, validate, then call the pipeline. Thin on purpose.

Order matters: the config is validated and the data loaded *before* a run folder is created, so a
typo or a broken data folder never leaves (or damages) a folder under logs/. Heavy libraries
(TensorFlow, torch) are imported only when data is loaded, so `python run.py -j bad.json` fails in
about a second.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from popnas_seg.command import tool_command
from popnas_seg.config import DEFAULT_CONFIG, RunConfig, load_config
from popnas_seg.data.fingerprint import describe_change
from popnas_seg.errors import UserError
from popnas_seg.pathcheck import not_a_folder_reason
from popnas_seg.quiet import show_third_party
from popnas_seg.runlog.events import RunResumed, RunStarted
from popnas_seg.termination import SigtermGuard, Terminated

RESUME_HINT = "{what}; resume with: {command}"
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), the shell convention 128 + 2
EXIT_TERMINATED = 143  # SIGTERM (kill, timeout, docker stop, Slurm, Kubernetes), 128 + 15
# Failed writes that are the user's to fix (exit 2): full disk or quota, read-only file system, permissions.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py",
        description="POPNAS-style progressive Pareto search for small, analog-robust segmentation networks.",
        epilog="A bare `python run.py` runs configs/run.json (built-in synthetic nuclei data). "
        "Segment new images with a finished run: `python run.py predict -h`; which network a run "
        "recommends: `python run.py summary -r FOLDER`.",
    )
    parser.add_argument("--version", action="version", version=f"popnas-seg {_version()}")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-j", "--config", metavar="CONFIG", help=f"run config JSON (default: {_shown_default()})")
    source.add_argument("-r", "--resume", metavar="FOLDER", help="resume the run in this run folder")
    parser.add_argument("--name", help="run folder name under --logs-dir (default: date-time)")
    parser.add_argument("--logs-dir", default="logs", help="where run folders are created (default: logs)")
    parser.add_argument(
        "--preview-data",
        metavar="PNG",
        help="only load the data, save a preview grid of training pairs to PNG, and exit (no run folder)",
    )
    parser.add_argument(
        "--accept-changed-data",
        action="store_true",
        help="with -r: if the data differs from what the run started on, move the run's results to "
        "superseded/<time>/ and start it over on the new data (without it such a resume is refused)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug output on the terminal, and the TensorFlow C++ log and third-party warnings that "
        "are hidden by default (the environment variable POPNAS_SEG_VERBOSE=1 shows those too)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 unexpected error, 2 user error, 130 Ctrl-C, 143 SIGTERM)."""
    if list(sys.argv[1:] if argv is None else argv)[:1] == ["predict"]:  # segment new images with a finalist
        from popnas_seg.inference.cli import main as predict_main

        return predict_main(list(sys.argv[1:] if argv is None else argv)[1:])
    if list(sys.argv[1:] if argv is None else argv)[:1] == ["summary"]:  # the recommendation and the front
        from popnas_seg.summary import main as summary_main

        return summary_main(list(sys.argv[1:] if argv is None else argv)[1:])
    # The pipeline feeds tf.data and exports with tf2onnx, so this process needs Keras's TensorFlow backend
    # whatever the environment says (the model code itself is backend-agnostic; analog workers use torch).
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage / help
        return int(exc.code or 0)
    if args.verbose:  # TensorFlow's C++ log and third-party warnings too (popnas_seg/quiet.py), also in workers
        show_third_party()

    run = None
    logger: logging.Logger | None = None
    sigterm = SigtermGuard().install()
    # A full disk makes every log line fail too: the failed write is reported once (exit 2), not as one
    # "--- Logging error ---" traceback per line.
    raise_logging_errors, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        from popnas_seg.logging_setup import setup_logging
        from popnas_seg.runlog.folder import RunFolder

        if args.resume is not None and args.name is not None:
            raise UserError("--name names a new run; it cannot be combined with -r (the folder has its name)")
        if args.accept_changed_data and args.resume is None:
            raise UserError("--accept-changed-data only applies to a resume (-r FOLDER)")

        if args.preview_data is not None:
            config = _config_for_preview(args)
            _check_preview_target(args.preview_data)
            logger = setup_logging(None, args.verbose)
            data = _load_data(config)
            from popnas_seg.data.preview import save_preview

            written = save_preview(data, args.preview_data)
            logger.info("data preview written to %s", written)
            return 0

        if args.resume is not None:
            # Every check (config, state, journal, data) comes before the first write to the folder.
            run = RunFolder.open(args.resume)  # locks it, revalidates its frozen config, reads the journal
            warnings = run.resume_warnings()  # before the first append cuts a torn journal tail
            config = run.config
            fingerprint = _fingerprint(config)
            stored = run.stored_fingerprint()
            change = describe_change(stored, fingerprint) if stored is not None else None
            if change is not None and not args.accept_changed_data:
                raise UserError(
                    f'cannot resume "{run.path}": the data changed since the run started: {change}. Restore '
                    "the data, or pass --accept-changed-data to set the results aside and start the run over"
                )
            logger = setup_logging(None, args.verbose)
            _check_cluster(config, logger)
            data = _load_data(config)
            logger = setup_logging(run.path, args.verbose)
            logger.info("resuming %s (stage %s)", run.path, run.read_state().get("stage"))
            for warning in warnings:
                logger.warning(warning)
            if change is not None:
                moved = run.set_aside_for_new_data(fingerprint, change)
                logger.warning("the data changed (%s); earlier results moved to %s, the run starts over", change, moved)
            elif stored is None:
                run.store_fingerprint(fingerprint)  # a folder from before fingerprints: guard from now on
            run.journal.append(RunResumed(argv=list(argv if argv is not None else sys.argv[1:])))
        else:
            config = load_config(args.config)
            RunFolder.new_path(args.logs_dir, args.name)  # a taken --name fails now, not after loading data
            logger = setup_logging(None, args.verbose)
            logger.info("config %s is valid", args.config or _shown_default())
            _check_cluster(config, logger)
            fingerprint = _fingerprint(config)
            data = _load_data(config)
            run = RunFolder.create(args.logs_dir, args.name, config, data_fingerprint=fingerprint)
            logger = setup_logging(run.path, args.verbose)
            logger.info("new run in %s", run.path)
            run.journal.append(RunStarted(argv=list(argv if argv is not None else sys.argv[1:])))

        from popnas_seg.pipeline import run_pipeline

        run_pipeline(run, config, data, logger)
        return 0
    except UserError as exc:
        if logger is not None and run is not None:
            logger.debug("stopped by a user error: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        sigterm.acknowledge()
        terminated = isinstance(exc, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        message = RESUME_HINT.format(what=what, command=tool_command("-r", run.path)) if run is not None else what
        print(message, file=sys.stderr, flush=True)
        if logger is not None and run is not None:
            logger.debug(message)  # the file handler keeps DEBUG: the hint lands in run.log
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            return _unexpected(run, logger)
        # A full disk, a read-only or foreign folder: the user's to fix. Atomic writes and the journal leave
        # the run folder as it was before the failed write, so the run resumes once the cause is gone.
        where = f"; resume with: {tool_command('-r', run.path)}" if run is not None else ""
        message = f"cannot write {exc.filename or 'to the disk'}: {exc.strerror or exc}{where}"
        if logger is not None and run is not None:
            logger.debug("stopped by a failed write: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except Exception:
        return _unexpected(run, logger)
    finally:
        sigterm.acknowledge()  # a SIGTERM during the clean-up below must not break it
        if run is not None:
            run.close()
        from popnas_seg.logging_setup import close_logging

        close_logging()
        logging.raiseExceptions = raise_logging_errors
        sigterm.restore()


def _unexpected(run: Any, logger: logging.Logger | None) -> int:
    """A bug: the traceback goes to run.log (or stderr before there is one), exit code 1."""
    where = f"; resume with: {tool_command('-r', run.path)}" if run is not None else ""
    if logger is not None:
        logger.exception("unexpected error%s", where)
    else:
        import traceback

        traceback.print_exc()
    return 1


def _fingerprint(config: RunConfig) -> dict[str, Any]:
    from popnas_seg.data.fingerprint import data_fingerprint

    return data_fingerprint(config.dataset, config.data_seed)


def _check_cluster(config: RunConfig, logger: logging.Logger) -> None:
    """A Ray cluster the search would join answers within others.ray_connect_timeout_s, or exit 2 now."""
    others = config.others
    if others.workers == 1 or others.ray_address is None or "search" not in others.pipeline:
        return
    from popnas_seg.evaluation.ray_connect import check_cluster

    logger.info("checking the Ray cluster at %s (up to %g s)", others.ray_address, others.ray_connect_timeout_s)
    cpus = check_cluster(others.ray_address, others.ray_connect_timeout_s)
    logger.info("the Ray cluster at %s answers (%g CPUs)", others.ray_address, cpus)


def _check_preview_target(target: str) -> None:
    """Fail with a message, not an IsADirectoryError after loading the data, when PNG cannot be written."""
    path = Path(target).expanduser()
    if path.is_dir():
        raise UserError(f'--preview-data "{target}" is a folder; give the name of a .png file to write')
    reason = not_a_folder_reason(path.parent if str(path.parent) else ".")
    if reason is not None:
        raise UserError(f'--preview-data "{target}": the folder "{path.parent}" {reason}')


def _load_data(config: RunConfig) -> Any:
    """The data pipeline imports TensorFlow: import it only here, after the config is known good."""
    from popnas_seg.data.pipeline import load_data

    return load_data(config.dataset, seed=config.data_seed)


def _config_for_preview(args: argparse.Namespace) -> RunConfig:
    if args.resume is not None:
        restore = Path(args.resume) / "restore" / "config.json"
        if not restore.is_file():
            raise UserError(f'"{args.resume}" is not a run folder (no restore/config.json)')
        return load_config(restore)
    return load_config(args.config)


def _version() -> str:
    from popnas_seg import __version__

    return __version__


def _shown_default() -> str:
    try:
        return os.path.relpath(DEFAULT_CONFIG)
    except ValueError:  # other drive on Windows
        return str(DEFAULT_CONFIG)
