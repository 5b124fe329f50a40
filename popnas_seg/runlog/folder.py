"""The run folder: one `logs/<name>/` per run, holding everything needed to understand and resume it.

Layout (docs/ARCHITECTURE.md): restore/config.json (frozen validated config, written once),
restore/state.json (progress, rewritten atomically), restore/journal.jsonl (append-only events),
restore/lock (pid of the process writing the folder), restore/data_fingerprint.json (the data it started
on), run.log, csv/ plots/ predictors/ sampled_models/ best_model/ final/, and superseded/<time>/ where
`--accept-changed-data` set earlier results aside.

A folder is built under a hidden temporary name and renamed into place only once it is complete, so
a crash during creation never leaves a half-made folder under the real name. An exclusive `flock` on
restore/lock (runlog/lock.py) keeps two processes from writing one folder; the kernel drops it when its
process dies, so a lock left by a killed run is taken over without any manual clean-up.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from popnas_seg.atomic import atomic_write_json, atomic_write_text, fsync_dir
from popnas_seg.command import tool_command
from popnas_seg.config import RunConfig, config_from_dict, dump_config, load_config
from popnas_seg.errors import UserError
from popnas_seg.pathcheck import not_a_folder_reason
from popnas_seg.runlog.events import RUN_EVENTS, DataChanged, NetworkFinished
from popnas_seg.runlog.journal import Journal
from popnas_seg.runlog.lock import FolderLock

STATE_VERSION = 1
FINGERPRINT_FILE = "data_fingerprint.json"
SUBFOLDERS = ("restore", "csv", "plots", "predictors", "sampled_models", "best_model", "final")
_NAME_FORMAT = "%Y-%m-%d_%H-%M-%S"


class RunFolder:
    """A run folder held (locked) by this process. Build it with `create` or `open`, never directly."""

    def __init__(self, path: Path, config: RunConfig, lock: FolderLock) -> None:
        self._path = path
        self._config = config
        self._lock = lock
        self._journal = Journal(path / "restore" / "journal.jsonl", schema=RUN_EVENTS)

    # ------------------------------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        logs_dir: str | os.PathLike[str],
        name: str | None,
        config: RunConfig,
        data_fingerprint: dict[str, Any] | None = None,
    ) -> RunFolder:
        """Make a new run folder `logs_dir/name` (name None: the current date-time) and lock it.

        `data_fingerprint` (popnas_seg.data.fingerprint) is stored with the frozen config, so that a resume
        can tell whether the data is still what the run started on.
        """
        logs = Path(logs_dir)
        target = cls.new_path(logs, name)
        try:
            logs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f'cannot create the logs folder "{logs}": {exc.strerror or exc}') from None
        frozen = dump_config(config)
        # Re-validating what is written guarantees that a resume can read the frozen config back.
        frozen_config = config_from_dict(frozen, source="the config to freeze")
        tmp = logs / f".{target.name}.creating-{os.getpid()}"
        lock: FolderLock | None = None
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            for sub in SUBFOLDERS:
                (tmp / sub).mkdir(parents=True)
            lock = FolderLock.acquire(tmp / "restore" / "lock", shown=target)
            _write_strict_json(tmp / "restore" / "config.json", frozen)
            if data_fingerprint is not None:
                _write_strict_json(tmp / "restore" / FINGERPRINT_FILE, data_fingerprint)
            now = _now_iso()
            atomic_write_json(
                tmp / "restore" / "state.json",
                {
                    "version": STATE_VERSION,
                    "stage": "created",
                    "step": 0,
                    "name": target.name,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            if target.exists():  # appeared while we were building (a concurrent run with the same name)
                raise UserError(_exists_message(target))
            os.rename(tmp, target)
            fsync_dir(logs)
            lock.moved_to(target / "restore" / "lock")
        except BaseException as exc:
            if lock is not None:
                lock.release()
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise UserError(_exists_message(target)) from None
                raise UserError(f'cannot create the run folder "{target}": {exc.strerror or exc}') from None
            raise
        return cls(target, frozen_config, lock)

    @staticmethod
    def new_path(logs_dir: str | os.PathLike[str], name: str | None) -> Path:
        """Where `create` would put the run; UserError if `name` is invalid or already taken.

        The CLI calls this before loading data so a name clash fails in a second, not after minutes.
        """
        logs = Path(logs_dir)
        if name is None:
            stamp = _dt.datetime.now().strftime(_NAME_FORMAT)
            candidate, n = stamp, 1
            while (logs / candidate).exists():  # two runs started in the same second
                n += 1
                candidate = f"{stamp}_{n}"
            return logs / candidate
        _check_name(name)
        target = logs / name
        if target.exists():
            raise UserError(_exists_message(target))
        return target

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunFolder:
        """Open an existing run folder for resuming: lock it and reload its frozen config."""
        folder = Path(path)
        reason = not_a_folder_reason(folder)
        if reason is not None:
            raise UserError(f'run folder "{folder}" {reason}')
        restore = folder / "restore"
        for needed in ("config.json", "state.json"):
            if not (restore / needed).is_file():
                raise UserError(
                    f'"{folder}" is not a run folder (no restore/{needed}); '
                    "resume only folders made by `python run.py`, or start a new run with -j"
                )
        lock = FolderLock.acquire(restore / "lock", shown=folder)
        try:
            try:
                config = load_config(restore / "config.json")
            except UserError as exc:
                raise UserError(f'cannot resume "{folder}": its frozen config no longer validates: {exc}') from None
            run = cls(folder, config, lock)
            state = run.read_state()
            if state.get("version") != STATE_VERSION:
                raise UserError(
                    f'cannot resume "{folder}": restore/state.json has version {state.get("version")!r}, '
                    f"this popnas-seg writes version {STATE_VERSION}"
                )
            run._check_journal_accounts_for_results(state)
            for sub in SUBFOLDERS:  # a user may have deleted e.g. plots/ by hand; recreate quietly
                (folder / sub).mkdir(exist_ok=True)
        except BaseException:
            lock.release()
            raise
        return run

    # ------------------------------------------------------------------------------------------ paths

    @property
    def path(self) -> Path:
        return self._path

    @property
    def name(self) -> str:
        return self._path.name

    @property
    def config(self) -> RunConfig:
        """The frozen config (exactly what restore/config.json holds)."""
        return self._config

    @property
    def restore_dir(self) -> Path:
        return self._path / "restore"

    @property
    def csv_dir(self) -> Path:
        return self._path / "csv"

    @property
    def plots_dir(self) -> Path:
        return self._path / "plots"

    @property
    def predictors_dir(self) -> Path:
        return self._path / "predictors"

    @property
    def models_dir(self) -> Path:
        """sampled_models/: one sub-folder per trained child network."""
        return self._path / "sampled_models"

    @property
    def best_model_dir(self) -> Path:
        return self._path / "best_model"

    @property
    def final_dir(self) -> Path:
        return self._path / "final"

    @property
    def log_path(self) -> Path:
        return self._path / "run.log"

    @property
    def journal(self) -> Journal:
        return self._journal

    # ------------------------------------------------------------------------------------------ state

    def read_state(self) -> dict[str, Any]:
        """restore/state.json as a dict (always complete: it is only ever replaced atomically)."""
        file = self.restore_dir / "state.json"
        try:
            state = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f'"{self._path}" has lost restore/state.json; it cannot be resumed') from None
        except (OSError, ValueError, RecursionError) as exc:
            raise UserError(f'"{file}" is unreadable ({exc}); the run folder is damaged') from None
        if not isinstance(state, dict):
            raise UserError(f'"{file}" does not hold a JSON object; the run folder is damaged')
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace restore/state.json atomically (version and updated_at are filled in)."""
        self._check_held()
        data = dict(state)
        data["version"] = STATE_VERSION
        data["updated_at"] = _now_iso()
        atomic_write_json(self.restore_dir / "state.json", data)

    def update_state(self, **changes: Any) -> dict[str, Any]:
        """Read-modify-write of a few state keys; returns the new state."""
        state = self.read_state()
        state.update(changes)
        self.write_state(state)
        return self.read_state()

    def resume_warnings(self) -> list[str]:
        """What a resume should log before it writes: a cut journal tail (the event being written when the run
        died is dropped) and trained networks whose sampled_models/<id>/ is gone (a resume went on silently)."""
        warnings = []
        torn = self._journal.torn_tail()
        if torn:
            warnings.append(
                f"the last line of {self._journal.path} is incomplete ({torn} bytes, written when the "
                "run stopped); it is cut, and what it recorded is done again"
            )
        missing = sorted(
            {
                int(e["network_id"])
                for e in self._journal.events(NetworkFinished)
                if (e.get("result") or {}).get("status", "ok") == "ok"
                and not (self.models_dir / str(e["network_id"])).is_dir()
            }
        )
        if missing:
            shown = ", ".join(str(i) for i in missing[:10]) + (
                f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            )
            warnings.append(
                f"sampled_models/ has no folder for {len(missing)} trained network(s) ({shown}): their "
                "results stay in the journal and the CSVs, their training histories and weights are gone"
            )
        return warnings

    def _check_journal_accounts_for_results(self, state: dict[str, Any]) -> None:
        """Refuse to resume a folder whose journal lost the history its state or result files imply.

        Replay starts from the journal: with a missing or empty journal a resume would start the search over
        and overwrite sampled_models/ and the CSVs of a search that is under way. Also reads (and so checks)
        every event now, before anything is written, so a damaged line fails the resume at once.
        """
        events = self._journal.events()
        if events:
            return
        stage = state.get("stage")
        results = [sub for sub in SUBFOLDERS if sub != "restore" and _non_empty(self._path / sub)]
        if stage in (None, "created") and not results:
            return  # killed between creating the folder and its first event: nothing to lose
        what = "is missing" if not self._journal.path.exists() else "holds no events"
        held = f"restore/state.json says stage {stage!r}" if stage not in (None, "created") else ""
        if results:
            held += (" and " if held else "") + f"{', '.join(f'{r}/' for r in results)} hold results"
        raise UserError(
            f'cannot resume "{self._path}": restore/journal.jsonl {what}, but {held}; resuming would overwrite '
            "results the journal does not account for (restore the journal from a backup, or start a new run with -j)"
        )

    # ------------------------------------------------------------------------------------------ data

    @property
    def fingerprint_path(self) -> Path:
        return self.restore_dir / FINGERPRINT_FILE

    def stored_fingerprint(self) -> dict[str, Any] | None:
        """restore/data_fingerprint.json (None for folders made before fingerprints were kept)."""
        try:
            value = json.loads(self.fingerprint_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            raise UserError(f'"{self.fingerprint_path}" is unreadable ({exc}); the run folder is damaged') from None
        if not isinstance(value, dict):
            raise UserError(f'"{self.fingerprint_path}" does not hold a JSON object; the run folder is damaged')
        return value

    def store_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        self._check_held()
        _write_strict_json(self.fingerprint_path, fingerprint)

    def set_aside_for_new_data(self, fingerprint: dict[str, Any], change: str) -> Path:
        """`--accept-changed-data`: move every result, the journal and the old fingerprint to superseded/<time>/
        (same layout as the run folder), then start over.

        Nothing is deleted: the old search stays readable next to the new one. The state is reset first and the
        new fingerprint written last, so a crash in between leaves a folder that still reports changed data
        and can be set aside again.
        """
        self._check_held()
        stamp = _dt.datetime.now().strftime(_NAME_FORMAT)
        target, n = self._path / "superseded" / stamp, 1
        while target.exists():
            n += 1
            target = self._path / "superseded" / f"{stamp}_{n}"
        target.mkdir(parents=True)
        self.write_state({**self.read_state(), "stage": "created", "step": 0})
        for sub in SUBFOLDERS:
            if sub != "restore" and (self._path / sub).exists():
                os.rename(self._path / sub, target / sub)
            (self._path / sub).mkdir(exist_ok=True)
        if (self._path / "report.md").exists():  # run.log stays: it tells the whole story, this included
            os.rename(self._path / "report.md", target / "report.md")
        (target / "restore").mkdir()
        if self._journal.path.exists():
            os.rename(self._journal.path, target / "restore" / self._journal.path.name)
        if self.fingerprint_path.exists():
            os.replace(self.fingerprint_path, target / "restore" / FINGERPRINT_FILE)
        fsync_dir(self.restore_dir)
        self.store_fingerprint(fingerprint)
        self._journal.append(DataChanged(change=change, superseded=os.path.relpath(target, self._path)))
        return target

    # ------------------------------------------------------------------------------------------ lock

    @property
    def locked(self) -> bool:
        return self._lock.held

    def close(self) -> None:
        """Release the lock (idempotent); the folder can then be opened by another process."""
        self._lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_held(self) -> None:
        if not self._lock.held:
            raise RuntimeError(f"run folder {self._path} was closed; open it again before writing")

    def __repr__(self) -> str:
        return f"RunFolder({str(self._path)!r})"


def _write_strict_json(path: Path, obj: Any) -> None:
    """Standard JSON only (no NaN / Infinity, which other readers reject); atomic like every state write."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _non_empty(folder: Path) -> bool:
    try:
        return any(not p.name.startswith(".") for p in folder.iterdir())
    except OSError:
        return False


def _exists_message(target: Path) -> str:
    return (
        f'run folder "{target}" already exists: resume it with `{tool_command("-r", target)}` or choose another --name'
    )


def _check_name(name: str) -> None:
    bad = (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or name != name.strip()
    )
    if bad:
        raise UserError(
            f'invalid run name "{name}": use a plain folder name (letters, digits, "-", "_"; '
            'no slashes, not starting with ".")'
        )


def _now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")
