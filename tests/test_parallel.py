"""others.workers > 1: the networks of a step run as Ray tasks on a local instance; the driver alone writes."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from search_helpers import journal_events, run_cli, tiny_config

from popnas_seg.results import TrainingResult

pytest.importorskip("ray")


def _run(tmp_path: Path, name: str, workers: int, networks: int = 4) -> tuple[Path, str]:
    (tmp_path / name).mkdir()
    cfg = tiny_config(
        tmp_path / name,
        probe=False,
        pipeline=["search"],
        strategy="random",
        search_strategy__max_networks=networks,
        search_strategy__b1_max_networks=min(networks, 3),
        others__workers=workers,
    )
    proc = run_cli(["-j", str(cfg), "--name", name, "--logs-dir", str(tmp_path / "logs")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp_path / "logs" / name, proc.stdout + proc.stderr


def _table(folder: Path) -> tuple[list[str], list[dict]]:
    with (folder / "csv" / "training_results.csv").open() as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_two_ray_workers_train_every_planned_network_once(tmp_path: Path) -> None:
    """Two networks, one step, both in flight at once: the cheapest run that exercises the Ray path."""
    folder, output = _run(tmp_path, "w2", 2, networks=2)
    assert "2 Ray workers" in output
    # after the first result the ETA is measured ("≥": the other network may be a bigger cell), never "?"
    assert re.search(r"finished \| 1/2 done \| ETA step ≥?[0-9hms]+, search ≥?[0-9hms]+", output), output[-2000:]
    columns, rows = _table(folder)
    assert columns == list(TrainingResult.COLUMNS)
    events = journal_events(folder)
    planned = {(n["network_id"], n["encoding"]) for e in events if e["event"] == "step_planned" for n in e["networks"]}
    assert {(int(r["network_id"]), r["encoding"]) for r in rows} == planned and len(rows) == len(planned) == 2
    assert all(r["status"] == "ok" for r in rows), rows
    finished = [e["network_id"] for e in events if e["event"] == "network_finished"]
    assert sorted(finished) == sorted(i for i, _ in planned), "one result per network, journaled by the driver"
    assert all((folder / "sampled_models" / r["network_id"] / "history.csv").exists() for r in rows)
    assert (folder / "best_model" / "model.keras").exists()


@pytest.mark.slow
def test_a_ray_worker_killed_mid_task_is_retried_and_the_run_finishes(tmp_path: Path) -> None:
    """SIGKILL of the worker process running a network: Ray retries the task (max_retries=1) in a new worker."""
    import os
    import signal
    import time

    from search_helpers import start_cli

    from popnas_seg.evaluation.parallel import TASK_PID_DIR_ENV

    cfg = tiny_config(
        tmp_path,
        probe=False,
        pipeline=["search"],
        strategy="random",
        search_strategy__max_networks=2,
        search_strategy__b1_max_networks=2,
        others__workers=2,
    )
    pids = tmp_path / "pids"
    os.environ[TASK_PID_DIR_ENV] = str(pids)  # start_cli copies os.environ; the Ray workers inherit it
    try:
        proc = start_cli(["-j", str(cfg), "--name", "kill", "--logs-dir", str(tmp_path / "logs")], tmp_path / "out")
    finally:
        del os.environ[TASK_PID_DIR_ENV]
    try:
        deadline = time.monotonic() + 600
        while not (pids.is_dir() and any(pids.iterdir())):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "out").read_text()[-3000:]
            time.sleep(0.05)
        victim = sorted(pids.iterdir())[0].name
        network_id, pid = (int(part) for part in victim.split("-"))
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=900) == 0, (tmp_path / "out").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    folder = tmp_path / "logs" / "kill"
    _, rows = _table(folder)
    assert sorted(int(r["network_id"]) for r in rows) == [1, 2], rows
    assert all(r["status"] == "ok" for r in rows), rows
    attempts = [p.name for p in pids.iterdir() if p.name.startswith(f"{network_id}-")]
    assert len(attempts) == 2 and f"{network_id}-{pid}" in attempts, f"one retry in another process: {attempts}"
    finished = [e["network_id"] for e in journal_events(folder) if e["event"] == "network_finished"]
    assert sorted(finished) == [1, 2]


@pytest.mark.slow
def test_two_workers_train_the_same_encodings_as_one_and_the_same_folder_structure(tmp_path: Path) -> None:
    one, _ = _run(tmp_path, "w1", 1)
    two, _ = _run(tmp_path, "w2", 2)
    (cols1, rows1), (cols2, rows2) = _table(one), _table(two)
    assert cols1 == cols2
    assert sorted(r["encoding"] for r in rows1) == sorted(r["encoding"] for r in rows2)

    def layout(f: Path) -> list[str]:
        return sorted(
            str(p.relative_to(f)) for p in f.rglob("*") if "tensorboard" not in p.parts and p.suffix != ".log"
        )

    assert layout(one) == layout(two)


@pytest.mark.parametrize(
    "others, expected",
    [
        ({"workers": 0}, 'others.workers: must be an integer >= 1 or "auto", got 0'),
        ({"workers": True}, 'others.workers: must be an integer >= 1 or "auto", got true'),
        ({"workers": "2"}, 'others.workers: must be an integer >= 1 or "auto", got "2"'),
        ({"ray_address": "headnode"}, 'others.ray_address: must be null, "auto" or "host:port"'),
        ({"ray_address": "10.0.0.1:99999"}, 'others.ray_address: must be null, "auto" or "host:port"'),
    ],
)
def test_bad_workers_and_ray_addresses_are_one_line_config_errors(others: dict, expected: str) -> None:
    from popnas_seg.config import config_from_dict
    from popnas_seg.errors import UserError

    with pytest.raises(UserError) as err:
        config_from_dict({"others": others})
    assert expected in str(err.value) and "literal" not in str(err.value)


def test_a_task_that_never_returns_is_a_failed_row_with_exact_params() -> None:
    from popnas_seg.config import ArchitectureConfig
    from popnas_seg.evaluation.evaluator import Trial
    from popnas_seg.evaluation.parallel import failed_result
    from popnas_seg.models.cost import count_params
    from popnas_seg.search_space.encoding import Cell

    arch = ArchitectureConfig(filters=2, motifs=1)
    job = Trial(
        network_id=5,
        encoding="[(-1,3x3 conv,-1,identity)]",
        architecture=arch.model_dump(mode="json"),
        seed=1,
        out_dir="unused",
        origin="random",
        step=3,
    )
    row = failed_result(job, "WorkerCrashedError: killed", 1, 2)
    assert (row.status, row.network_id, row.step, row.origin, row.blocks) == ("failed", 5, 3, "random", 1)
    assert row.params == count_params(Cell.from_string(job.encoding), arch, 1, 2)
    assert row.error == "WorkerCrashedError: killed"


def test_the_in_process_path_imports_no_ray() -> None:
    """workers 1 (the default) never starts or even imports Ray: the search runner imports it lazily."""
    import subprocess
    import sys

    code = (
        "import sys\nimport popnas_seg.search.runner, popnas_seg.evaluation.evaluator\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in ('ray', 'keras', 'tensorflow')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout[:300] + done.stderr[-2000:]


def _process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, start time, command line) of every live process (no zombie), from /proc (Linux)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
        if fields[0] == "Z":
            continue  # dead, waiting for its (adoptive) parent to reap it: holds no memory or CPU
        table[int(entry.name)] = (int(fields[1]), fields[19], cmdline or stat[stat.index("(") + 1 : stat.rindex(")")])
    return table


def _descendants(root: int) -> dict[int, tuple[str, str]]:
    """pid -> (start time, command line) of every process below `root`."""
    table = _process_table()
    out, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started, cmdline) in table.items():
            if ppid == parent and pid not in out:
                out[pid] = (started, cmdline)
                frontier.append(pid)
    return out


@pytest.mark.slow
def test_kill_9_of_a_ray_driver_then_resume_loses_and_repeats_nothing_and_leaves_no_ray_processes(
    tmp_path: Path,
) -> None:
    """kill -9 of the driver mid-step: its Ray processes go within 10 s; -r trains only what never finished."""
    import os
    import re
    import signal
    import time

    from search_helpers import start_cli, wait_for

    cfg = tiny_config(
        tmp_path,
        probe=False,
        pipeline=["search"],
        strategy="random",
        search_strategy__max_networks=3,
        search_strategy__b1_max_networks=3,
        others__workers=2,
    )
    folder = tmp_path / "logs" / "k9"
    proc = start_cli(["-j", str(cfg), "--name", "k9", "--logs-dir", str(tmp_path / "logs")], tmp_path / "out1")
    try:
        assert wait_for(folder, lambda ev: any(e["event"] == "network_finished" for e in ev), proc), (
            tmp_path / "out1"
        ).read_text()[-3000:]
        ray_processes = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed_at = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = [e for e in journal_events(folder) if e["event"] == "network_finished"]
    assert 1 <= len(before) < 3, "killed with a network still in flight"
    assert any("raylet" in cmd for _, cmd in ray_processes.values()), ray_processes

    gone_after: dict[int, float] = {}

    def check() -> None:
        table = _process_table()
        for pid, (started, _) in ray_processes.items():
            if pid not in gone_after and (pid not in table or table[pid][1] != started):
                gone_after[pid] = round(time.monotonic() - killed_at, 1)

    check()
    # The resume starts at once, while the killed run's Ray processes may still be there, and with RAY_ADDRESS
    # naming the dead instance's GCS: it must start an instance of its own, never join (or wait for) that one.
    gcs_port = next(
        re.search(r"--gcs_server_port=(\d+)", cmd).group(1)
        for _, cmd in ray_processes.values()
        if "gcs_server_port" in cmd
    )
    os.environ["RAY_ADDRESS"] = f"127.0.0.1:{gcs_port}"
    try:
        resumed = start_cli(["-r", str(folder)], tmp_path / "out2")
    finally:
        del os.environ["RAY_ADDRESS"]
    try:
        while len(gone_after) < len(ray_processes) and time.monotonic() - killed_at < 120:
            check()
            time.sleep(0.1)
        assert resumed.wait(timeout=900) == 0, (tmp_path / "out2").read_text()[-3000:]
    finally:
        if resumed.poll() is None:
            resumed.kill()
    lingering = {
        f"{pid} {cmd[:70]}": gone_after.get(pid, "still alive after 120 s") for pid, (_, cmd) in ray_processes.items()
    }
    print("seconds each Ray process of the killed driver outlived it:", json.dumps(lingering, indent=1))
    assert all(isinstance(s, float) and s <= 10 for s in lingering.values()), lingering

    events = journal_events(folder)
    finished = [e["network_id"] for e in events if e["event"] == "network_finished"]
    assert sorted(finished) == [1, 2, 3], "each network finished once: none lost, none retrained"
    _, rows = _table(folder)
    assert sorted(int(r["network_id"]) for r in rows) == [1, 2, 3] and all(r["status"] == "ok" for r in rows), rows
    assert "search_finished" in [e["event"] for e in events]


_TASK_SCRIPT = """
import json, pickle, sys
from pathlib import Path
from popnas_seg.config import load_config
from popnas_seg.evaluation.evaluator import Trial
from popnas_seg.evaluation.parallel import evaluate_task

config = load_config(sys.argv[1])
job = Trial(network_id=7, encoding="[(-1,3x3 conv,-1,identity)]",
                 architecture=config.architecture_hyperparameters.model_dump(mode="json"), seed=1,
                 out_dir=sys.argv[2], probe=True, probe_seed=1)
Path(sys.argv[3]).write_bytes(pickle.dumps(evaluate_task(config.model_dump_json(), job)))
"""


def test_a_task_returns_its_network_files_and_writes_nothing_under_the_driver_folder(tmp_path: Path) -> None:
    """Clusters without a shared disk: the task (the body of every Ray task, run here in its own process as a
    worker would) never touches the driver's network folder; the driver writes the returned files there and
    the folder is complete (history, model.keras, model.onnx, TensorBoard events)."""
    import os
    import pickle
    import subprocess
    import sys

    import keras

    from popnas_seg.evaluation.parallel import write_artefacts

    cfg = tiny_config(tmp_path, probe=True, pipeline=["search"])
    driver = tmp_path / "driver_run"
    out_dir = driver / "sampled_models" / "7"
    payload_file = tmp_path / "payload.pkl"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run(
        [sys.executable, "-c", _TASK_SCRIPT, str(cfg), str(out_dir), str(payload_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not driver.exists(), "the worker wrote under the driver's run folder"
    payload = pickle.loads(payload_file.read_bytes())
    assert TrainingResult.from_dict(payload["result"]).status == "ok"
    files = payload["artefacts"]
    assert {"history.csv", "model.keras", "model.onnx"} <= set(files)
    assert any(name.startswith("tensorboard/") for name in files), sorted(files)
    write_artefacts(out_dir, files)
    written = {p.relative_to(out_dir).as_posix(): p.read_bytes() for p in out_dir.rglob("*") if p.is_file()}
    assert written == files
    assert keras.saving.load_model(out_dir / "model.keras", compile=False).count_params() > 0
    with pytest.raises(ValueError, match="leaves the network folder"):
        write_artefacts(tmp_path / "other", {"../escape.txt": b"x"})
