"""The CLI: user errors exit 2 with one line and no folder; data is loaded before a folder exists;
resume, preview, interrupts and unexpected errors behave as documented."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_config
from test_config import CONFIG_ERROR_CASES

from popnas_seg import cli
from popnas_seg.command import tool_command
from popnas_seg.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
RUN_PY = ROOT / "run.py"


class FakeData:
    """Stands in for SegmentationData where a test is about the CLI's order of work, not the data."""

    input_shape = (16, 16, 1)
    classes_count = 2

    def split_sizes(self, fold: int = 0) -> dict[str, int]:
        return {"train": 6, "val": 1, "test": 1}


def _case_file(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def _folders(logs: Path) -> list[str]:
    return sorted(p.name for p in logs.iterdir()) if logs.exists() else []


@pytest.mark.parametrize("case_id,content,expected", CONFIG_ERROR_CASES, ids=[c[0] for c in CONFIG_ERROR_CASES])
def test_config_errors_through_main(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case_id: str,
    content: Any,
    expected: list[str],
) -> None:
    monkeypatch.setattr(cli, "_load_data", lambda config: pytest.fail("data must not load for a bad config"))
    path = _case_file(tmp_path, content)
    logs = tmp_path / "logs"
    code = cli.main(["-j", str(path), "--logs-dir", str(logs)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: config error in {path}: "), err
    for fragment in expected:
        assert fragment in err
    assert _folders(logs) == []


@pytest.mark.parametrize("case_id,content,expected", CONFIG_ERROR_CASES, ids=[c[0] for c in CONFIG_ERROR_CASES])
def test_config_errors_through_a_real_process(tmp_path: Path, case_id: str, content: Any, expected: list[str]) -> None:
    path = _case_file(tmp_path, content)
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "-j", str(path), "--logs-dir", str(logs)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config error in "), proc.stderr
    for fragment in expected:
        assert fragment in proc.stderr
    assert _folders(logs) == []


def test_bad_config_fails_without_importing_heavy_libraries(tmp_path: Path) -> None:
    path = _case_file(tmp_path, {"training_hyperparameters": {"epochs": 0}})
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from popnas_seg.cli import main\n"
        f"code = main(['-j', {str(path)!r}, '--logs-dir', {str(tmp_path / 'logs')!r}])\n"
        "heavy = [m for m in ('tensorflow', 'torch', 'keras', 'aihwkit') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "HEAVY []" in proc.stdout


def test_data_error_creates_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, write_json: Any
) -> None:
    def broken(config: Any) -> Any:
        raise UserError('dataset: image "a.png" has no mask')

    monkeypatch.setattr(cli, "_load_data", broken)
    logs = tmp_path / "logs"
    code = cli.main(["-j", str(write_json(tiny_config())), "--logs-dir", str(logs), "--name", "x"])
    assert code == 2
    assert capsys.readouterr().err.strip() == 'error: dataset: image "a.png" has no mask'
    assert _folders(logs) == []


def test_a_taken_name_fails_before_loading_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, write_json: Any
) -> None:
    (tmp_path / "logs" / "taken").mkdir(parents=True)
    monkeypatch.setattr(cli, "_load_data", lambda config: pytest.fail("data loaded before the name check"))
    code = cli.main(["-j", str(write_json(tiny_config())), "--logs-dir", str(tmp_path / "logs"), "--name", "taken"])
    assert code == 2
    assert (
        f"already exists: resume it with `{tool_command('-r', tmp_path / 'logs' / 'taken')}`" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["-j", "a.json", "-r", "logs/x"], "not allowed with argument"),
        (["-r", "logs/x", "--name", "y"], "cannot be combined with -r"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_argument_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_new_run_then_resume_with_fake_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], write_json: Any
) -> None:
    monkeypatch.setattr(cli, "_load_data", lambda config: FakeData())
    logs = tmp_path / "logs"
    assert cli.main(["-j", str(write_json(tiny_config())), "--logs-dir", str(logs), "--name", "r1"]) == 0
    run_dir = logs / "r1"
    state = json.loads((run_dir / "restore" / "state.json").read_text())
    assert state["stage"] == "done"
    events = [json.loads(line)["event"] for line in (run_dir / "restore" / "journal.jsonl").read_text().splitlines()]
    assert events == ["run_started"]  # empty pipeline: no stage ran
    log = (run_dir / "run.log").read_text()
    assert "run folder: " in log and "all stages done" in log
    assert (run_dir / "restore" / "lock").read_text() == "", "the lock is released at exit"
    out = capsys.readouterr().out
    assert "all stages done" in out

    assert cli.main(["-r", str(run_dir)]) == 0
    events = [json.loads(line)["event"] for line in (run_dir / "restore" / "journal.jsonl").read_text().splitlines()]
    assert events == ["run_started", "run_resumed"]
    assert "resuming" in (run_dir / "run.log").read_text()


def test_resume_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-r", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["-r", str(tmp_path / "empty")]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_interrupt_prints_the_resume_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], write_json: Any
) -> None:
    import popnas_seg.pipeline as pipeline

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_data", lambda config: FakeData())
    monkeypatch.setattr(pipeline, "run_pipeline", interrupted)
    logs = tmp_path / "logs"
    code = cli.main(["-j", str(write_json(tiny_config())), "--logs-dir", str(logs), "--name", "k"])
    assert code == 130
    assert capsys.readouterr().err.strip() == f"interrupted; resume with: {tool_command('-r', logs / 'k')}"
    assert (logs / "k" / "restore" / "state.json").is_file()


def test_unexpected_error_is_logged_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], write_json: Any
) -> None:
    import popnas_seg.pipeline as pipeline

    def bug(*args: Any) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_load_data", lambda config: FakeData())
    monkeypatch.setattr(pipeline, "run_pipeline", bug)
    logs = tmp_path / "logs"
    assert cli.main(["-j", str(write_json(tiny_config())), "--logs-dir", str(logs), "--name", "b"]) == 1
    log = (logs / "b" / "run.log").read_text()
    assert "ZeroDivisionError: a bug" in log and "Traceback" in log
    assert f"resume with: {tool_command('-r', logs / 'b')}" in log


def test_a_run_held_by_another_process_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], write_json: Any
) -> None:
    monkeypatch.setattr(cli, "_load_data", lambda config: FakeData())
    logs = tmp_path / "logs"
    assert cli.main(["-j", str(write_json(tiny_config())), "--logs-dir", str(logs), "--name", "held"]) == 0
    lock = logs / "held" / "restore" / "lock"
    script = (
        "import fcntl, os, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert cli.main(["-r", str(logs / "held")]) == 2
        assert f"is in use by process {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_end_to_end_with_real_data_in_a_real_process(tmp_path: Path, write_json: Any) -> None:
    """The real data pipeline (TensorFlow) on 8 tiny images: preview, new run, resume."""
    config = write_json(tiny_config())
    logs = tmp_path / "logs"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    preview = tmp_path / "preview.png"
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from popnas_seg.cli import main\n"
        f"codes = [main(['-j', {str(config)!r}, '--preview-data', {str(preview)!r}, '--logs-dir', {str(logs)!r}])]\n"
        "assert not __import__('os').path.exists(" + repr(str(logs)) + "), 'preview must not create a run folder'\n"
        f"codes.append(main(['-j', {str(config)!r}, '--logs-dir', {str(logs)!r}, '--name', 'e2e']))\n"
        f"codes.append(main(['-r', {str(logs / 'e2e')!r}]))\n"
        "print('CODES', codes)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CODES [0, 0, 0]" in proc.stdout
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (logs / "e2e" / "run.log").read_text()
    assert "train/val/test" in log and "all stages done" in log
    assert json.loads((logs / "e2e" / "restore" / "state.json").read_text())["stage"] == "done"


def test_install_scripts_are_valid_bash() -> None:
    for script in (ROOT / "scripts" / "install.sh", ROOT / ".ci" / "run"):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "set -euo pipefail" in script.read_text()
        assert os.access(script, os.X_OK)
