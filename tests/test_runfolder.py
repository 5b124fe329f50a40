"""Run folder mechanics: atomic writes, the journal under crashes, create/open/resume, the folder lock."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from popnas_seg import atomic
from popnas_seg.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from popnas_seg.config import RunConfig, config_from_dict, dump_config
from popnas_seg.errors import UserError
from popnas_seg.runlog import Journal, RunFolder
from popnas_seg.runlog.events import Event, NetworkStarted
from popnas_seg.runlog.folder import SUBFOLDERS

SMALL = {"others": {"pipeline": []}, "dataset": {"samples": 8, "crop": [16, 16]}}


@pytest.fixture
def config() -> RunConfig:
    return config_from_dict(SMALL)


# ---------------------------------------------------------------------------------------------------- atomic


def test_atomic_writes_replace_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"], "no temp file may be left behind"


def test_failure_between_temp_write_and_rename_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    atomic_write_json(target, {"step": 1})

    def crash(src: str, dst: str) -> None:
        assert Path(src).read_text().startswith("{"), "the new content is complete in the temp file"
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_json(target, {"step": 2})
    assert json.loads(target.read_text()) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_process_killed_between_temp_write_and_rename_keeps_the_old_file(tmp_path: Path) -> None:
    """A real kill (os._exit, no clean-up): the target still holds the old, complete content."""
    target = tmp_path / "state.json"
    atomic_write_json(target, {"step": 1})
    script = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
        "from popnas_seg import atomic\n"
        "atomic.os.replace = lambda src, dst: os._exit(9)\n"
        f"atomic.atomic_write_json({str(target)!r}, {{'step': 2, 'pad': 'x' * 100000}})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()
    assert json.loads(target.read_text()) == {"step": 1}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "state.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".state.json.") and leftovers[0].endswith(".tmp")


# ---------------------------------------------------------------------------------------------------- journal


class _Note(Event):
    """A test's own kind: the journal writes any model; its fields, and fields beyond them, become JSON keys."""

    kind = "note"
    n: int = 0


class _Measured(Event):
    kind = "measured"
    network_id: int


def test_journal_appends_and_filters(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "restore" / "journal.jsonl")
    assert journal.events() == []
    journal.append(_Note(n=1))
    journal.append(_Measured(network_id=1, dice=np.float32(0.5), shape=np.array([2, 3]), nan=float("nan")))
    journal.append(_Note(n=2))
    events = journal.events()
    assert [e["event"] for e in events] == ["note", "measured", "note"]
    assert all(isinstance(e["time"], float) for e in events)
    finished = journal.events(_Measured)
    assert len(finished) == 1 and finished[0]["dice"] == 0.5 and finished[0]["shape"] == [2, 3]
    assert finished[0]["network_id"] == 1 and np.isnan(finished[0]["nan"])
    assert [e["n"] for e in journal.events(_Note)] == [1, 2]
    assert len(journal.path.read_text().splitlines()) == 3


def test_journal_rejects_reserved_and_unserialisable_fields_and_models_without_a_kind(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    with pytest.raises(ValueError, match="reserved"):
        journal.append(_Note(event="y"))
    with pytest.raises(ValueError, match="reserved"):
        journal.append(_Note(time=3))
    with pytest.raises(TypeError):
        journal.append(_Note(thing=object()))
    with pytest.raises(ValueError, match="no event kind"):
        journal.append(Event())
    assert journal.events() == []


def test_torn_last_line_is_ignored_then_cut_on_next_append(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append(_Note(n=1))
    journal.append(_Note(n=2))
    with journal.path.open("ab") as fh:  # a kill in the middle of writing the third line
        fh.write(b'{"event":"note","n":3,"resu')
    assert [e["n"] for e in journal.events()] == [1, 2]
    journal.append(_Note(n=4))
    lines = journal.path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    assert [e["n"] for e in journal.events()] == [1, 2, 4]


def test_garbled_last_line_with_newline_is_ignored_and_cut(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append(_Note(n=1))
    with journal.path.open("ab") as fh:
        fh.write(b"\x00\x00\x00garbage\n")
    assert [e["n"] for e in journal.events()] == [1]
    journal.append(_Note(n=2))
    assert [e["n"] for e in journal.events()] == [1, 2]
    assert b"garbage" not in journal.path.read_bytes()


def test_journal_made_only_of_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"event":"a"')
    journal = Journal(path)
    assert journal.events() == []
    journal.append(_Note(n=2))
    assert [e["n"] for e in journal.events()] == [2]


def test_damaged_middle_line_is_an_error_not_silent_data_loss(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"event":"a"}\nnot json\n{"event":"b"}\n')
    with pytest.raises(UserError, match="damaged at line 2"):
        Journal(path).events()


# ---------------------------------------------------------------------------------------------------- folder


def test_create_makes_the_layout_and_freezes_the_config(tmp_path: Path, config: RunConfig) -> None:
    with RunFolder.create(tmp_path / "logs", "exp1", config) as run:
        assert run.path == tmp_path / "logs" / "exp1"
        for sub in SUBFOLDERS:
            assert (run.path / sub).is_dir()
        assert run.csv_dir.name == "csv" and run.plots_dir.name == "plots"
        assert run.predictors_dir.name == "predictors" and run.models_dir.name == "sampled_models"
        assert run.best_model_dir.name == "best_model" and run.final_dir.name == "final"
        frozen = json.loads((run.path / "restore" / "config.json").read_text())
        assert frozen == dump_config(config)
        assert run.config == config
        state = run.read_state()
        assert state["version"] == 1 and state["stage"] == "created" and state["step"] == 0
        assert (run.path / "restore" / "lock").read_text().strip() == str(os.getpid())
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["exp1"], "no temp folder left behind"


def test_default_name_is_the_date_time_and_never_collides(tmp_path: Path, config: RunConfig) -> None:
    first = RunFolder.create(tmp_path, None, config)
    second = RunFolder.create(tmp_path, None, config)
    try:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}", first.name)
        assert second.name != first.name and second.name.startswith(first.name[:10])
    finally:
        first.close()
        second.close()


def test_existing_folder_is_refused_with_the_fix(tmp_path: Path, config: RunConfig) -> None:
    RunFolder.create(tmp_path, "exp", config).close()
    before = (tmp_path / "exp" / "restore" / "config.json").read_bytes()
    with pytest.raises(
        UserError, match=r"already exists: resume it with `\S*python\S* \S*run\.py -r .*exp` or choose another --name"
    ):
        RunFolder.create(tmp_path, "exp", config_from_dict({**SMALL, "others": {"seed": 7, "pipeline": []}}))
    assert (tmp_path / "exp" / "restore" / "config.json").read_bytes() == before
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="already exists"):
        RunFolder.create(tmp_path, "plain", config)


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", " padded"])
def test_invalid_names(tmp_path: Path, config: RunConfig, name: str) -> None:
    with pytest.raises(UserError, match="invalid run name"):
        RunFolder.create(tmp_path, name, config)
    assert list(tmp_path.iterdir()) == []


def test_open_resumes_state_journal_and_config(tmp_path: Path, config: RunConfig) -> None:
    run = RunFolder.create(tmp_path, "exp", config)
    run.journal.append(NetworkStarted(network_id=3, step=2))
    new_state = run.update_state(stage="search", step=2)
    assert new_state["stage"] == "search" and new_state["step"] == 2
    run.close()
    with pytest.raises(RuntimeError, match="closed"):
        run.write_state({"stage": "x"})

    again = RunFolder.open(tmp_path / "exp")
    try:
        assert again.config == config
        assert again.read_state()["stage"] == "search" and again.read_state()["step"] == 2
        assert again.read_state()["name"] == "exp"
        assert [e["network_id"] for e in again.journal.events(NetworkStarted)] == [3]
        again.write_state({"stage": "finalists"})
        state = json.loads((tmp_path / "exp" / "restore" / "state.json").read_text())
        assert state["stage"] == "finalists" and state["version"] == 1
    finally:
        again.close()


def test_open_recreates_subfolders_deleted_by_hand(tmp_path: Path, config: RunConfig) -> None:
    RunFolder.create(tmp_path, "exp", config).close()
    (tmp_path / "exp" / "plots").rmdir()
    with RunFolder.open(tmp_path / "exp") as run:
        assert run.plots_dir.is_dir()


def test_open_refuses_what_is_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        RunFolder.open(tmp_path / "missing")
    (tmp_path / "other" / "restore").mkdir(parents=True)
    with pytest.raises(UserError, match=r"is not a run folder \(no restore/config.json\)"):
        RunFolder.open(tmp_path / "other")
    assert not (tmp_path / "other" / "restore" / "lock").exists()


def test_open_refuses_a_frozen_config_that_no_longer_validates(tmp_path: Path, config: RunConfig) -> None:
    RunFolder.create(tmp_path, "exp", config).close()
    frozen = tmp_path / "exp" / "restore" / "config.json"
    data = json.loads(frozen.read_text())
    data["training_hyperparameters"]["epochs"] = 0
    frozen.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"frozen config no longer validates: .*epochs: must be >= 1 \(got 0\)"):
        RunFolder.open(tmp_path / "exp")
    # the lock was released: after fixing the file the run opens
    data["training_hyperparameters"]["epochs"] = 1
    frozen.write_text(json.dumps(data))
    RunFolder.open(tmp_path / "exp").close()


def test_open_refuses_another_state_version(tmp_path: Path, config: RunConfig) -> None:
    RunFolder.create(tmp_path, "exp", config).close()
    state = tmp_path / "exp" / "restore" / "state.json"
    state.write_text(json.dumps({"version": 99, "stage": "x"}))
    with pytest.raises(UserError, match="version 99"):
        RunFolder.open(tmp_path / "exp")


# ---------------------------------------------------------------------------------------------------- lock


def _hold_lock(lock: Path) -> subprocess.Popen[str]:
    """Another process that holds the run folder lock the way a running popnas-seg does."""
    script = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "os.ftruncate(fd, 0); os.write(fd, f'{os.getpid()}\\n'.encode())\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_folder_held_by_a_live_process_is_refused(tmp_path: Path, config: RunConfig) -> None:
    RunFolder.create(tmp_path, "exp", config).close()
    holder = _hold_lock(tmp_path / "exp" / "restore" / "lock")
    try:
        with pytest.raises(UserError, match=rf"is in use by process {holder.pid}"):
            RunFolder.open(tmp_path / "exp")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # the kernel dropped the dead holder's lock: the pid left in the file is stale and taken over
    assert (tmp_path / "exp" / "restore" / "lock").read_text().strip() == str(holder.pid)
    with RunFolder.open(tmp_path / "exp") as run:
        assert (run.path / "restore" / "lock").read_text().strip() == str(os.getpid())


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path: Path, config: RunConfig) -> None:
    RunFolder.create(tmp_path, "exp", config).close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    (tmp_path / "exp" / "restore" / "lock").write_text(f"{dead.pid}\n")
    with RunFolder.open(tmp_path / "exp") as run:
        assert run.locked
        assert (run.path / "restore" / "lock").read_text().strip() == str(os.getpid())
    assert (tmp_path / "exp" / "restore" / "lock").read_text() == "", "a released lock reads as free"


def test_lock_is_reentrant_within_one_process(tmp_path: Path, config: RunConfig) -> None:
    created = RunFolder.create(tmp_path, "exp", config)
    opened = RunFolder.open(tmp_path / "exp")
    opened.close()
    assert created.locked, "closing the second handle keeps the first one's lock"
    created.update_state(step=1)
    created.close()
    assert not created.locked
    holder = _hold_lock(tmp_path / "exp" / "restore" / "lock")  # free for another process now
    holder.kill()
    holder.wait(timeout=30)


def test_two_processes_cannot_both_create_and_open(tmp_path: Path, config: RunConfig) -> None:
    """A second real popnas-seg process opening a held folder gets the UserError (not a hang)."""
    run = RunFolder.create(tmp_path, "exp", config)
    try:
        script = (
            "import sys\n"
            f"sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
            "from popnas_seg.errors import UserError\n"
            "from popnas_seg.runlog import RunFolder\n"
            "try:\n"
            f"    RunFolder.open({str(run.path)!r})\n"
            "except UserError as exc:\n"
            "    print(exc); sys.exit(2)\n"
        )
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert f"in use by process {os.getpid()}" in proc.stdout
        assert time.monotonic() - start < 30
    finally:
        run.close()


def test_a_forked_child_does_not_keep_a_dead_runs_lock(tmp_path: Path) -> None:
    """Parent killed while a forked worker lives on: the folder can be resumed at once."""
    script = (
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
        "from popnas_seg.config import config_from_dict\n"
        "from popnas_seg.runlog import RunFolder\n"
        f"run = RunFolder.create({str(tmp_path)!r}, 'f', config_from_dict({SMALL!r}))\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    null = os.open(os.devnull, os.O_RDWR)\n"
        "    os.dup2(null, 1); os.dup2(null, 2)  # let the test's pipe reach EOF\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "print(child, flush=True)\n"
        "os._exit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    orphan = int(proc.stdout.strip())
    try:
        with RunFolder.open(tmp_path / "f") as run:
            assert run.locked
    finally:
        os.kill(orphan, 9)
