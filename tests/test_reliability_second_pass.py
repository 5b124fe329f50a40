"""Reliability, second pass (issue 37): SIGTERM under Ray, cluster addresses, resource bombs, unwritable
outputs, data and orders that cannot work. Each test names the hole it closes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from search_helpers import ROOT, journal_events, start_cli, tiny_config

from popnas_seg import cli
from popnas_seg.command import tool_command


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _end(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


# ------------------------------------------------------------------------------ SIGTERM with Ray workers


def test_sigterm_with_two_ray_workers_mid_training_exits_143_with_the_hint(tmp_path: Path) -> None:
    """ray.init replaced the CLI's SIGTERM handler by Ray's C++ one: abort, exit 134, no resume hint."""
    pytest.importorskip("ray")
    from popnas_seg.evaluation.parallel import TASK_PID_DIR_ENV

    cfg = tiny_config(
        tmp_path,
        probe=False,
        pipeline=["search"],
        strategy="random",
        search_strategy__max_networks=2,
        search_strategy__b1_max_networks=2,
        others__workers=2,
        training_hyperparameters__epochs=200,
        training_hyperparameters__steps_per_epoch=1,
    )
    logs, pids = tmp_path / "logs", tmp_path / "pids"
    folder, log = logs / "w2", tmp_path / "out.txt"
    os.environ[TASK_PID_DIR_ENV] = str(pids)  # the Ray workers inherit it and announce their tasks
    try:
        proc = start_cli(["-j", str(cfg), "--logs-dir", str(logs), "--name", "w2"], log)
    finally:
        del os.environ[TASK_PID_DIR_ENV]
    try:
        deadline = time.monotonic() + 300
        while not (pids.is_dir() and any(pids.iterdir())):  # a worker is training a network
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = _end(proc, timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert code == cli.EXIT_TERMINATED == 143, output[-3000:]
    assert f"terminated (SIGTERM); resume with: {tool_command('-r', folder)}" in output
    assert "SIGTERM received" not in output and "Traceback" not in output, output[-3000:]
    assert f"resume with: {tool_command('-r', folder)}" in (folder / "run.log").read_text()
    assert (folder / "restore" / "lock").read_text() == ""
    assert not [e for e in journal_events(folder) if e["event"] == "network_finished"], "stopped mid-training"
    print(f"SIGTERM to exit with two Ray workers: {took:.1f} s")


def test_signal_handlers_survive_a_library_that_replaces_them() -> None:
    """What ray.init does: set its own SIGTERM handler (sys.exit(15)); a SIGTERM inside it becomes Terminated,
    and the handlers in place before are back afterwards."""
    from popnas_seg.termination import SigtermGuard, Terminated, keep_signal_handlers

    def like_ray_init(signum: int, frame: Any) -> None:
        sys.exit(signum)

    guard = SigtermGuard().install()
    try:
        ours = signal.getsignal(signal.SIGTERM)
        with keep_signal_handlers():
            signal.signal(signal.SIGTERM, like_ray_init)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is ours
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(Terminated), keep_signal_handlers():
            signal.signal(signal.SIGTERM, like_ray_init)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        guard.restore()


def test_more_workers_than_cores_is_warned_about() -> None:
    from popnas_seg.evaluation.parallel import oversubscription_warning

    assert oversubscription_warning(2, 2) is None and oversubscription_warning("auto", 1) is None
    warning = oversubscription_warning(1000, 2)
    assert warning is not None and "1000" in warning and "2 CPU core(s)" in warning


# ------------------------------------------------------------------------------------------ others.ray_address


@pytest.fixture
def silent_listener() -> Any:
    """A TCP port that accepts connections and never answers (a firewall's or a wrong service's port)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_ray_client_addresses_are_refused_by_the_config() -> None:
    from popnas_seg.config import config_from_dict
    from popnas_seg.errors import UserError

    with pytest.raises(UserError, match=r"others.ray_address: .*ray://\.\.\.\) are not accepted"):
        config_from_dict({"others": {"workers": 2, "ray_address": "ray://head:10001"}})
    with pytest.raises(UserError, match="ray_connect_timeout_s"):
        config_from_dict({"others": {"ray_connect_timeout_s": 0}})


def test_an_unreachable_cluster_is_exit_2_before_the_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """127.0.0.1:1: the folder was created, then Ray retried for over 200 s without an error line."""
    cfg = tiny_config(tmp_path, probe=False, pipeline=["search"], others__workers=2, others__ray_address="127.0.0.1:1")
    started = time.monotonic()
    assert cli.main(["-j", str(cfg), "--logs-dir", str(tmp_path / "logs")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "cannot join the Ray cluster at others.ray_address = '127.0.0.1:1'" in line
    assert time.monotonic() - started < 10
    assert not (tmp_path / "logs").exists()


def test_a_cluster_that_never_answers_is_exit_2_after_the_connect_timeout(
    tmp_path: Path, silent_listener: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tiny_config(
        tmp_path,
        probe=False,
        pipeline=["search"],
        others__workers=2,
        others__ray_address=silent_listener,
        others__ray_connect_timeout_s=2,
    )
    assert cli.main(["-j", str(cfg), "--logs-dir", str(tmp_path / "logs")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "cannot join the Ray cluster" in line and "no answer within 2 s" in line, line
    assert not (tmp_path / "logs").exists()


def test_sigterm_while_joining_a_cluster_exits_143_within_5_s(tmp_path: Path, silent_listener: str) -> None:
    """SIGTERM while Ray retried the GCS took 17-41 s and exited 15 without a word."""
    cfg = tiny_config(
        tmp_path,
        probe=False,
        pipeline=["search"],
        others__workers=2,
        others__ray_address=silent_listener,
        others__ray_connect_timeout_s=600,
    )
    log = tmp_path / "out.txt"
    proc = start_cli(["-j", str(cfg), "--logs-dir", str(tmp_path / "logs")], log)
    try:
        deadline = time.monotonic() + 120
        while "checking the Ray cluster" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        time.sleep(1.0)  # the probe is importing Ray or connecting
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = _end(proc, timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert code == 143 and took < 5, (code, took, output[-3000:])
    assert "terminated (SIGTERM)" in output and "Traceback" not in output
    assert not (tmp_path / "logs").exists()


# ------------------------------------------------------------------------------------ sizes and resources


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ({"generated_size": [100000, 100000]}, "dataset.generated_size[0]: must be <= 8192"),
        ({"samples": 1_000_000_000}, "dataset.samples: must be <= 1000000"),
    ],
)
def test_generated_data_sizes_are_bounded_by_the_config(dataset: dict, expected: str) -> None:
    """[100000, 100000] or samples 1e9: numpy's "Unable to allocate 894 GiB" traceback, exit 1."""
    from popnas_seg.config import config_from_dict
    from popnas_seg.errors import UserError

    with pytest.raises(UserError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict({"dataset": dataset})


def test_generated_data_is_checked_against_the_available_memory_before_allocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from popnas_seg.data import limits
    from popnas_seg.data.synthetic import generate_nuclei
    from popnas_seg.errors import UserError

    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 2**30)  # 1 GiB free
    with pytest.raises(UserError, match=r"needs about 244\.1 GiB of memory, more than half of the 1\.0 GiB"):
        generate_nuclei(100_000, (512, 512))  # 100000 x 512 x 512 x 5 bytes, twice: 244 GiB
    images, masks = generate_nuclei(4, (16, 16))  # small data is unaffected
    assert images.shape == (4, 16, 16, 1) and masks.shape == (4, 16, 16)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".npy"])
def test_one_pixel_limit_for_every_image_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """A 435 KB zlib TIFF of 20000 x 20000 took 6.7 GB (PIL refused the PNG, NPY had no limit): the header is
    checked against one limit before decoding. Here the limit is lowered so the files stay small."""
    import tifffile
    from PIL import Image

    from popnas_seg.data import limits
    from popnas_seg.data.folder import read_image
    from popnas_seg.errors import UserError

    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", 40 * 40)
    monkeypatch.setattr(limits, "MAX_IMAGE_VALUES", 4 * 40 * 40)
    for side, fits in ((40, True), (41, False)):
        array = np.zeros((side, side), np.uint8)
        file = tmp_path / f"im{side}{suffix}"
        if suffix == ".png":
            Image.fromarray(array).save(file)
        elif suffix == ".tif":
            tifffile.imwrite(file, array, compression="zlib")
        else:
            np.save(file, array)
        if fits:
            assert read_image(file).shape == (side, side, 1)
        else:
            with pytest.raises(UserError, match=r"41 x 41: over the limit of 0 megapixels .* \(PNG, TIFF, NPY\)"):
                read_image(file)


@pytest.mark.timeout(60)
def test_a_fifo_in_images_is_refused_not_read_forever(tmp_path: Path) -> None:
    from PIL import Image

    from popnas_seg.data.folder import read_folder
    from popnas_seg.errors import UserError

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for name in ("im01", "im02"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / "masks" / f"{name}.png")
    os.mkfifo(tmp_path / "images" / "im03.png")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / "masks" / "im03.png")
    with pytest.raises(UserError, match=r"im03\.png in images/ is not a regular file"):
        read_folder(tmp_path, 2)


def test_a_huge_config_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """A 50 MB operator list was refused only after 60 s and 1.27 GB; now the file size is checked first."""
    from popnas_seg.config import MAX_CONFIG_BYTES, config_from_dict, load_config
    from popnas_seg.errors import UserError

    big = {"search_space": {"operators": ["3x3 conv"] * (MAX_CONFIG_BYTES // 10)}}
    file = tmp_path / "big.json"
    file.write_text(json.dumps(big))
    started = time.monotonic()
    with pytest.raises(UserError, match="over the 1,000,000 a config may have"):
        load_config(file)
    with pytest.raises(UserError, match="over the 1,000,000 a config may have"):
        config_from_dict(big)
    assert time.monotonic() - started < 5
    with pytest.raises(UserError, match="search_space.operators: must hold at most 64 items"):
        config_from_dict({"search_space": {"operators": [f"{k}x{k} conv" for k in range(1, 70)]}})


# ------------------------------------------------------------------------------------------ nonsense accepted


@pytest.mark.parametrize(
    "pipeline, expected",
    [
        (["search", "search"], 'lists "search" twice'),
        (["report", "search"], "is out of order"),
        (["finalists", "search", "report"], "is out of order"),
    ],
)
def test_pipeline_orders_that_make_no_sense_are_refused(pipeline: list[str], expected: str) -> None:
    from popnas_seg.config import config_from_dict
    from popnas_seg.errors import UserError

    with pytest.raises(UserError, match=f"others.pipeline: .*{expected}"):
        config_from_dict({"others": {"pipeline": pipeline}})
    for fine in ([], ["search"], ["finalists", "report"], ["search", "report"]):
        config_from_dict({"others": {"pipeline": fine}})


def test_masks_without_foreground_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """All-background masks: the search ran and reported Dice 0.000 for every network."""
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(tmp_path / "data" / "images" / f"{i}.png")
        Image.fromarray(np.zeros((24, 24), np.uint8)).save(tmp_path / "data" / "masks" / f"{i}.png")
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "dataset": {"name": None, "path": str(tmp_path / "data"), "crop": [16, 16]},
                "architecture_hyperparameters": {"motifs": 2},
            }
        )
    )
    assert cli.main(["-j", str(cfg), "--logs-dir", str(tmp_path / "logs")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no training mask holds a foreground pixel" in line and "0 of 8 masks" in line, line
    assert not (tmp_path / "logs").exists()


# ------------------------------------------------------------------------------------------ failed writes, Ctrl-C


def test_ctrl_c_while_the_cli_imports_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """The first second of `python run.py` is imports: a Ctrl-C there printed a KeyboardInterrupt traceback.
    The signal is sent once pydantic's compiled core is mapped, i.e. while popnas_seg.cli imports its config."""
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc to see the import under way")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "-j",
            str(ROOT / "configs" / "quick.json"),
            "--logs-dir",
            str(tmp_path / "logs"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while "pydantic_core" not in Path(f"/proc/{proc.pid}/maps").read_text():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == cli.EXIT_INTERRUPTED == 130, out[-2000:]
    assert "Traceback" not in out and out.strip().splitlines()[-1] == "interrupted", out[-2000:]
    assert not (tmp_path / "logs").exists()


def test_a_full_disk_during_a_run_is_exit_2_naming_the_file_and_the_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ENOSPC (or an immutable csv/) mid-run: exit 1 with a traceback; now one line naming the file, exit 2,
    and `-r` finishes the run once the space is back."""
    import errno

    cfg = tiny_config(
        tmp_path, probe=False, pipeline=["search"], search_space__blocks=1, search_strategy__b1_max_networks=1
    )
    logs = tmp_path / "logs"
    folder = logs / "full"
    real_replace = os.replace

    def full_disk(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if f"{os.sep}csv{os.sep}" in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no file name
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk)
    assert cli.main(["-j", str(cfg), "--logs-dir", str(logs), "--name", "full"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot write {folder / 'csv'}") and "No space left on device" in line, err
    assert line.endswith(f"resume with: {tool_command('-r', folder)}")
    assert not list((folder / "csv").glob(".*.tmp")), "no temp file left behind"
    monkeypatch.undo()
    assert cli.main(["-r", str(folder)]) == 0
    events = [e["event"] for e in journal_events(folder)]
    assert events.count("network_finished") == 1 and "search_finished" in events


def test_a_cut_journal_tail_and_a_missing_network_folder_are_warned_about_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both resumed silently before."""
    import shutil

    cfg = tiny_config(
        tmp_path, probe=False, pipeline=["search"], search_space__blocks=1, search_strategy__b1_max_networks=1
    )
    logs = tmp_path / "logs"
    folder = logs / "w"
    assert cli.main(["-j", str(cfg), "--logs-dir", str(logs), "--name", "w"]) == 0
    assert cli.main(["-r", str(folder)]) == 0
    assert "incomplete" not in (folder / "run.log").read_text()  # nothing to say about a clean folder
    with (folder / "restore" / "journal.jsonl").open("ab") as handle:
        handle.write(b'{"event":"network_started","netw')  # killed mid-append
    shutil.rmtree(folder / "sampled_models" / "1")
    capsys.readouterr()
    assert cli.main(["-r", str(folder)]) == 0
    log = (folder / "run.log").read_text()
    assert "journal.jsonl is incomplete (32 bytes" in log, log[-2000:]
    assert "sampled_models/ has no folder for 1 trained network(s) (1)" in log
    assert (folder / "restore" / "journal.jsonl").read_bytes().endswith(b"}\n"), "the torn tail was cut"
