"""Reliability (issue 13): signals, impossible values, data that changes under a resumed run, damaged folders.

Each test names the hole it closes; the slow-looking ones run real processes on tiny data because signals,
kill -9 and child processes cannot be faked in-process.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import tiny_config as cli_tiny_config
from search_helpers import ROOT, journal_events, start_cli, tiny_config, wait_for

from popnas_seg import cli
from popnas_seg.command import tool_command
from popnas_seg.config import config_from_dict, load_config, parse_config_text
from popnas_seg.data.fingerprint import data_fingerprint, describe_change
from popnas_seg.errors import UserError
from popnas_seg.runlog.folder import RunFolder
from popnas_seg.termination import REDELIVERY_S, SigtermGuard, Terminated


class FakeData:
    input_shape = (16, 16, 1)
    classes_count = 2


def _write_pairs(folder: Path, names: list[str], size: int = 24) -> None:
    """PNG image/mask pairs, as a user's data folder holds them."""
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(names))
    for name in names:
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(4, size - 8, 2)
        mask[y : y + 6, x : x + 6] = 1
        image = (mask * 150 + rng.integers(0, 60, (size, size))).astype(np.uint8)
        Image.fromarray(image).save(folder / "images" / f"{name}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{name}.png")


def _strict_json(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a run folder (but the lock, rewritten by every open) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


# ------------------------------------------------------------------------------------------ 1. SIGTERM


def _wait_for_process_end(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(tmp_path: Path) -> None:
    """kill / timeout / docker stop send SIGTERM: exit 143, the resume hint on stderr and in run.log."""
    cfg = tiny_config(
        tmp_path,
        probe=False,
        pipeline=["search"],
        search_space__blocks=1,
        search_strategy__b1_max_networks=1,
        training_hyperparameters__steps_per_epoch=2,
        training_hyperparameters__epochs=3,
    )  # a few seconds of training: the signal lands in it
    logs = tmp_path / "logs"
    folder = logs / "term"
    log = tmp_path / "out.txt"
    proc = start_cli(["-j", str(cfg), "--logs-dir", str(logs), "--name", "term"], log)
    try:
        assert wait_for(folder, lambda ev: any(e["event"] == "network_started" for e in ev), proc), log.read_text()
        proc.send_signal(signal.SIGTERM)
        code = _wait_for_process_end(proc, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert code == cli.EXIT_TERMINATED == 143, output[-3000:]
    hint = f"terminated (SIGTERM); resume with: {shlex.join([sys.executable, str(ROOT / 'run.py'), '-r', str(folder)])}"
    assert hint in output, "the hint names this interpreter and this run.py, not a `python` from PATH"
    assert "Traceback" not in output
    assert hint.split("; ")[1] in (folder / "run.log").read_text()
    assert (folder / "restore" / "lock").read_text() == "", "the lock is released on SIGTERM"

    # The hint works as printed: from another folder, with no virtual environment on PATH.
    command = shlex.split(hint.split("resume with: ", 1)[1])
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PATH="/usr/bin:/bin"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [e["event"] for e in journal_events(folder)]
    assert events.count("network_finished") == 1 and "search_finished" in events


def test_a_sigterm_swallowed_by_a_finaliser_is_raised_again(capsys: pytest.CaptureFixture[str]) -> None:
    """Python ignores an exception raised in __del__ / weakref callbacks: the guard must send the signal again."""

    class Finaliser:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGTERM)  # the handler raises here, where Python prints and drops it

    guard = SigtermGuard().install()
    try:
        with pytest.raises(Terminated):
            Finaliser()  # collected at once
            deadline = time.monotonic() + 10 * REDELIVERY_S
            while time.monotonic() < deadline:
                time.sleep(0.01)
        guard.acknowledge()
        signal.raise_signal(signal.SIGTERM)  # after the acknowledgement a SIGTERM no longer breaks the clean-up
    finally:
        guard.restore()
    assert signal.getsignal(signal.SIGTERM) is not guard._on_sigterm
    assert "Exception ignored" not in capsys.readouterr().err


def test_a_sigterm_during_the_pipeline_exits_143_with_the_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], write_json: Any
) -> None:
    import popnas_seg.pipeline as pipeline

    def terminated(*args: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises out of the sleep
        pytest.fail("SIGTERM was not handled")

    monkeypatch.setattr(cli, "_load_data", lambda config: FakeData())
    monkeypatch.setattr(pipeline, "run_pipeline", terminated)
    logs = tmp_path / "logs"

    def unhandled(signum: int, frame: Any) -> None:  # what runs if main() installed no handler of its own
        raise RuntimeError("SIGTERM reached the caller's handler")

    previous = signal.signal(signal.SIGTERM, unhandled)  # a broken handler must fail this test, not kill pytest
    try:
        before = signal.getsignal(signal.SIGTERM)
        code = cli.main(["-j", str(write_json(cli_tiny_config())), "--logs-dir", str(logs), "--name", "t"])
        restored = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 143
    assert restored is before, "main() restores the caller's SIGTERM handler"
    assert capsys.readouterr().err.strip() == f"terminated (SIGTERM); resume with: {tool_command('-r', logs / 't')}"
    assert "terminated (SIGTERM); resume with" in (logs / "t" / "run.log").read_text()


def test_an_analog_worker_dies_with_its_parent(tmp_path: Path) -> None:
    """kill -9 of the search must not leave a worker burning CPU (and holding memory) without a parent."""
    script = (
        "import os, subprocess, sys\n"
        "env = dict(os.environ, POPNAS_WORKER_PARENT_PID=str(os.getpid()))\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; from popnas_seg.analog.worker_process import "
        '_die_with_parent; _die_with_parent(); print("ready", flush=True); time.sleep(120)\'], env=env, '
        "stdout=subprocess.PIPE, text=True)\n"
        "assert child.stdout.readline().strip() == 'ready'\n"
        "print(child.pid, flush=True)\n"
        "import time; time.sleep(120)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline().strip())
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        alive = True
        while alive and time.monotonic() < deadline:
            try:
                os.kill(child_pid, 0)
                with open(f"/proc/{child_pid}/stat") as stat:  # a zombie awaiting its reaper counts as dead
                    alive = stat.read().split(")")[-1].split()[0] != "Z"
            except (ProcessLookupError, FileNotFoundError):
                alive = False
            time.sleep(0.1)
        assert not alive, "the worker outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()


# ------------------------------------------------------------------------------------------ 2 + 7. config


@pytest.mark.parametrize(
    "data,expected",
    [
        ({"analog": {"g_max": float("inf")}}, "analog.g_max: must be a finite number (got Infinity)"),
        ({"analog": {"g_max": 1e308}}, "analog.g_max: must be <= 1000"),
        ({"analog": {"eval_times": [1.0, float("nan")]}}, "analog.eval_times[1]: must be a finite number (got NaN)"),
        ({"analog": {"eval_times": [-5.0]}}, "analog.eval_times[0]: must be > 0"),
        ({"analog": {"eval_times": [1e12]}}, "analog.eval_times[0]: must be <= 3155760000"),
        ({"analog": {"eval_times": []}}, "analog.eval_times: must hold at least 1 items"),
        ({"analog": {"t_inference": float("-inf")}}, "analog.t_inference: must be a finite number"),
        ({"analog": {"out_noise": 1e9}}, "analog.out_noise: must be <= 1"),
        (
            {"training_hyperparameters": {"learning_rate": float("nan")}},
            "training_hyperparameters.learning_rate: must be a finite number (got NaN)",
        ),
        (
            {"training_hyperparameters": {"weight_decay": float("inf")}},
            "training_hyperparameters.weight_decay: must be a finite number",
        ),
        (
            {"training_hyperparameters": {"epochs": "2"}},
            'training_hyperparameters.epochs: must be an integer (got "2")',
        ),
        (
            {"training_hyperparameters": {"epochs": True}},
            "training_hyperparameters.epochs: must be an integer (got true)",
        ),
        (
            {"training_hyperparameters": {"learning_rate": True}},
            "training_hyperparameters.learning_rate: must be a number (got true)",
        ),
        ({"search_space": {"blocks": 2.0}}, "search_space.blocks: must be an integer (got 2.0)"),
        ({"others": {"seed": -1}}, "others.seed: must be >= 0 (got -1)"),
        ({"analog": {"tile_size": 10**9}}, "analog.tile_size: must be <= 4096"),
        ({"dataset": {"augmentation": {"gaussian_noise": 1e308}}}, "dataset.augmentation.gaussian_noise: must be <= 1"),
    ],
)
def test_impossible_and_loosely_typed_values_are_refused(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(UserError) as info:
        config_from_dict(data, source="x.json")
    assert str(info.value).startswith("config error in x.json: ") and expected in str(info.value), str(info.value)


def test_nan_and_infinity_in_the_file_are_refused_and_the_frozen_config_is_strict_json(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"analog": {"g_max": Infinity}}')
    with pytest.raises(UserError, match=r"analog\.g_max: must be a finite number \(got Infinity\)"):
        load_config(path)
    # strict types, yet JSON as users write it still fills tuples, integer-keyed maps and float lists
    cfg = config_from_dict(
        {
            "dataset": {"generated_size": [32, 48], "class_labels_remapping": {"255": 1}},
            "analog": {"eval_times": [1, 60.5]},
        }
    )
    assert cfg.dataset.generated_size == (32, 48) and cfg.dataset.class_labels_remapping == {255: 1}
    assert cfg.analog.eval_times == [1.0, 60.5]
    run = RunFolder.create(tmp_path / "logs", "s", config_from_dict(cli_tiny_config()))
    run.close()
    frozen = _strict_json((tmp_path / "logs" / "s" / "restore" / "config.json").read_text())
    assert frozen["analog"]["eval_times"]


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            '{"training_hyperparameters": {"epochs": 1, "epochs": 2}}',
            'key "epochs" appears twice in training_hyperparameters',
        ),
        (
            '{"dataset": {"augmentation": {"flips": true, "flips": false}}}',
            'key "flips" appears twice in dataset.augmentation',
        ),
        ('{"others": {}, "others": {}}', 'key "others" appears twice at the top level'),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        ('{"a": ' * 50000 + "1" + "}" * 50000, "nested too deeply"),
    ],
)
def test_file_level_messages_name_the_place(text: str, expected: str) -> None:
    with pytest.raises(UserError) as info:
        parse_config_text(text, "c.json")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_paths_that_are_files_or_looping_links_are_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_json: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    cfg = cli_tiny_config()
    cfg["dataset"] = {"name": None, "path": str(a_file)}
    with pytest.raises(UserError, match="is a file, not a folder"):
        load_config(write_json(cfg))
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    cfg["dataset"]["path"] = str(loop)
    with pytest.raises(UserError, match="symbolic link that loops back on itself"):
        load_config(write_json(cfg))

    assert cli.main(["-r", str(a_file)]) == 2
    assert "is a file, not a folder" in _one_error_line(capsys.readouterr().err)

    from popnas_seg.data.folder import read_folder

    data = tmp_path / "d"
    _write_pairs(data, ["a"])
    os.symlink(data / "images" / "x", data / "images" / "x")
    with pytest.raises(UserError, match=r"images/x in images/ is a symbolic link that loops back on itself"):
        read_folder(data, classes_count=2)


def test_preview_into_a_folder_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_json: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_load_data", lambda config: pytest.fail("data must not load for a bad target"))
    assert cli.main(["-j", str(write_json(cli_tiny_config())), "--preview-data", str(tmp_path)]) == 2
    assert "is a folder; give the name of a .png file" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["-j", str(write_json(cli_tiny_config())), "--preview-data", str(tmp_path / "no" / "p.png")]) == 2
    assert "does not exist" in _one_error_line(capsys.readouterr().err)


def test_deep_json_through_main_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200000 + "]" * 200000)
    assert cli.main(["-j", str(path), "--logs-dir", str(tmp_path / "logs")]) == 2
    assert "nested too deeply" in _one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------ 3. data changes


def test_fingerprint_names_what_changed(tmp_path: Path) -> None:
    _write_pairs(tmp_path / "d", ["a", "b"])
    cfg = config_from_dict({"dataset": {"name": None, "path": str(tmp_path / "d")}})
    before = data_fingerprint(cfg.dataset, 1)
    assert describe_change(before, data_fingerprint(cfg.dataset, 1)) is None
    _write_pairs(tmp_path / "d", ["c"])
    (tmp_path / "d" / "masks" / "a.png").write_bytes(b"changed")
    (tmp_path / "d" / "images" / "b.png").unlink()
    change = describe_change(before, data_fingerprint(cfg.dataset, 1))
    assert change is not None
    assert "2 file(s) added (images/c.png, masks/c.png)" in change
    assert "1 file(s) removed (images/b.png)" in change and "1 file(s) modified (masks/a.png)" in change
    generated = config_from_dict({})
    assert (
        describe_change(data_fingerprint(generated.dataset, 1), data_fingerprint(generated.dataset, 2))
        == "the generated data's parameters changed: seed"
    )


def test_dataset_seed_keeps_old_fingerprints_and_is_the_seed_recorded() -> None:
    """A run folder made before dataset.seed existed still resumes: the key is not in the generator's
    parameters (its value is the recorded seed); a run on dataset.seed 2 records seed 2 whatever others.seed."""
    from popnas_seg.cli import _fingerprint

    old = config_from_dict({"others": {"seed": 1}})
    stored = data_fingerprint(old.dataset, 1)
    assert "seed" not in stored["generator"] and stored["seed"] == 1
    assert (
        describe_change(stored, _fingerprint(config_from_dict({"others": {"seed": 1}, "dataset": {"seed": 1}}))) is None
    )
    assert _fingerprint(config_from_dict({"others": {"seed": 9}, "dataset": {"seed": 2}}))["seed"] == 2


def test_resume_after_kill_9_refuses_changed_data(tmp_path: Path) -> None:
    """8 -> 16 images between a kill and -r: exit 2 naming the change, the folder untouched."""
    data = tmp_path / "data"
    _write_pairs(data, [f"img{i:02d}" for i in range(8)])
    cfg = tiny_config(
        tmp_path,
        probe=False,
        pipeline=["search"],
        search_space__blocks=1,
        search_strategy__b1_max_networks=2,
        training_hyperparameters__steps_per_epoch=2,
        dataset__name=None,
        dataset__path=str(data),
        dataset__samples=None,
    )
    logs = tmp_path / "logs"
    folder = logs / "k9"
    proc = start_cli(["-j", str(cfg), "--logs-dir", str(logs), "--name", "k9"], tmp_path / "out.txt")
    try:
        assert wait_for(folder, lambda ev: any(e["event"] == "network_started" for e in ev), proc), (
            tmp_path / "out.txt"
        ).read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    _write_pairs(data, [f"img{i:02d}" for i in range(8, 16)])
    before = _snapshot(folder)
    res = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-r", str(folder)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_error_line(res.stderr)
    assert "the data changed since the run started" in line
    assert "16 file(s) added (images/img08.png, images/img09.png, images/img10.png and 13 more)" in line
    assert "--accept-changed-data" in line
    assert _snapshot(folder) == before, "a refused resume must not write to the folder"


def test_accept_changed_data_sets_results_aside_and_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], write_json: Any
) -> None:
    data = tmp_path / "data"
    _write_pairs(data, ["a", "b"])
    cfg = cli_tiny_config()
    cfg["dataset"] = {"name": None, "path": str(data), "batch_size": 2}
    monkeypatch.setattr(cli, "_load_data", lambda config: FakeData())
    logs = tmp_path / "logs"
    assert cli.main(["-j", str(write_json(cfg)), "--logs-dir", str(logs), "--name", "acc"]) == 0
    folder = logs / "acc"
    stored = _strict_json((folder / "restore" / "data_fingerprint.json").read_text())
    assert sorted(stored["files"]) == ["images/a.png", "images/b.png", "masks/a.png", "masks/b.png"]
    (folder / "csv" / "results.csv").write_text("network_id\n1\n")
    (folder / "report.md").write_text("# old report\n")
    _write_pairs(data, ["c"])
    capsys.readouterr()
    assert cli.main(["-r", str(folder)]) == 2
    assert "2 file(s) added (images/c.png, masks/c.png)" in _one_error_line(capsys.readouterr().err)

    assert cli.main(["-r", str(folder), "--accept-changed-data"]) == 0
    superseded = list((folder / "superseded").iterdir())
    assert len(superseded) == 1
    assert (superseded[0] / "csv" / "results.csv").read_text() == "network_id\n1\n"
    assert [e["event"] for e in journal_events(superseded[0])] == ["run_started"]
    assert [e["event"] for e in journal_events(folder)] == ["data_changed", "run_resumed"]
    assert not (folder / "csv" / "results.csv").exists() and not (folder / "report.md").exists()
    assert (superseded[0] / "report.md").read_text() == "# old report\n"
    assert (superseded[0] / "restore" / "data_fingerprint.json").is_file()
    assert len(_strict_json((folder / "restore" / "data_fingerprint.json").read_text())["files"]) == 6
    assert cli.main(["-r", str(folder)]) == 0, "after accepting, the new data is the run's data"
    assert cli.main(["-j", str(write_json(cfg)), "--accept-changed-data"]) == 2


# ------------------------------------------------------------------------------------------ 4-6. damaged folders


def _made_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_json: Any) -> Path:
    monkeypatch.setattr(cli, "_load_data", lambda config: FakeData())
    logs = tmp_path / "logs"
    assert cli.main(["-j", str(write_json(cli_tiny_config())), "--logs-dir", str(logs), "--name", "d"]) == 0
    return logs / "d"


@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_a_lost_journal_of_a_search_under_way_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], write_json: Any, damage: str
) -> None:
    folder = _made_run(tmp_path, monkeypatch, write_json)
    state = json.loads((folder / "restore" / "state.json").read_text())
    (folder / "restore" / "state.json").write_text(json.dumps({**state, "stage": "search", "step": 2}))
    (folder / "sampled_models" / "net_0001").mkdir()
    journal = folder / "restore" / "journal.jsonl"
    if damage == "missing":
        journal.unlink()
    else:
        journal.write_text("")
    before = _snapshot(folder)
    capsys.readouterr()
    assert cli.main(["-r", str(folder)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"restore/journal.jsonl {'is missing' if damage == 'missing' else 'holds no events'}" in line
    assert "stage 'search'" in line and "sampled_models/ hold results" in line
    assert _snapshot(folder) == before
    # a folder killed between its creation and its first event has nothing to lose: it resumes
    (folder / "restore" / "state.json").write_text(json.dumps({**state, "stage": "created"}))
    (folder / "sampled_models" / "net_0001").rmdir()
    assert cli.main(["-r", str(folder)]) == 0


@pytest.mark.parametrize(
    "line,expected",
    [
        (
            '{"event": "network_finished", "time": 1.0, "network_id": 1}',
            'event "network_finished" lacks the field "result"',
        ),
        (
            '{"event": "step_planned", "time": 1.0, "step": "one", "networks": []}',
            'event "step_planned": field "step" must be an integer (got "one")',
        ),
        (
            '{"event": "network_finished", "time": 1.0, "network_id": 1, "result": {"network_id": 1}}',
            'event "network_finished", field "result" lacks the field "encoding"',
        ),
        ('{"time": 1.0}', 'no "event" name'),
        ('{"event": "run_started"}', 'event "run_started" has no numeric "time"'),
    ],
)
def test_a_well_formed_json_line_that_is_not_an_event_is_one_error_and_nothing_is_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    write_json: Any,
    line: str,
    expected: str,
) -> None:
    folder = _made_run(tmp_path, monkeypatch, write_json)
    journal = folder / "restore" / "journal.jsonl"
    journal.write_text(journal.read_text() + line + "\n" + journal.read_text())
    before = _snapshot(folder)
    capsys.readouterr()
    assert cli.main(["-r", str(folder)]) == 2
    message = _one_error_line(capsys.readouterr().err)
    assert "is damaged at line 2" in message and expected in message, message
    assert "resume with" not in message, "the hint must not suggest a resume that fails the same way"
    assert _snapshot(folder) == before, "no run_resumed event, no run.log line before the checks pass"


# ------------------------------------------------------------------------------------------ 8-9. image test


def _mirror(tmp_path: Path, files: dict[str, str], **env: str) -> subprocess.CompletedProcess:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (apt / name).write_text(text)
    clean = {k: v for k, v in os.environ.items() if k != "DEBIAN_MIRROR"}
    return subprocess.run(
        ["bash", str(ROOT / "docker" / "debian_mirror.sh")],
        capture_output=True,
        text=True,
        env={**clean, "APT_DIR": str(apt), **env},
        timeout=30,
    )


def test_the_debian_mirror_comes_only_from_apt_sources_or_debian_mirror(tmp_path: Path) -> None:
    deb822 = (
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
    )
    got = _mirror(tmp_path / "a", {"sources.list.d/debian.sources": deb822})
    assert got.returncode == 0 and got.stdout.strip() == "http://mirror.example/debian", got.stderr
    got = _mirror(tmp_path / "b", {"sources.list": "deb [arch=amd64] http://other.example/debian bookworm main\n"})
    assert got.stdout.strip() == "http://other.example/debian"
    got = _mirror(
        tmp_path / "c",
        {"sources.list": "deb http://other.example/debian bookworm main\n"},
        DEBIAN_MIRROR="http://chosen.example/debian",
    )
    assert got.stdout.strip() == "http://chosen.example/debian"
    got = _mirror(tmp_path / "d", {"sources.list": "deb http://ubuntu.example/ubuntu jammy main\n"})
    assert got.returncode == 1 and got.stdout == ""
    assert "set DEBIAN_MIRROR" in got.stderr


def test_the_image_test_script_is_valid_and_checks_what_it_promises() -> None:
    script = ROOT / "docker" / "test_image.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    assert "deb.debian.org" not in text and "debian_mirror.sh" in text
    assert 'chmod 0755 "$WORK"' in text, "the scratch folder must be traversable for the host user"
    assert "trap 'on_error" in text and "set -Eeuo pipefail" in text, "a failing command must print FAIL: why"
    assert "stop -t" in text and "-eq 143" in text, "podman stop must end a run, exit 143"
    assert "STOPSIGNAL SIGINT" not in (ROOT / "docker" / "Dockerfile").read_text()
