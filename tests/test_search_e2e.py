"""Real searches on tiny data: every output file, and kill-at-any-moment resume equal to an uninterrupted run."""

from __future__ import annotations

import csv
import re
import signal
from pathlib import Path

import pytest
from search_helpers import journal_events, run_cli, start_cli, tiny_config, wait_for


def _results(folder: Path) -> list[dict]:
    with (folder / "csv" / "training_results.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_progressive_search_with_probe_writes_every_output(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, probe=True, pipeline=["search"], others__save_children_weights=True)
    proc = run_cli(["-j", str(cfg), "--name", "s", "--logs-dir", str(tmp_path / "logs")], default_logging=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # A readable terminal: no TensorFlow C++ log lines (E0000 ... use_unbounded_threadpool, absl, cpu_feature_guard)
    # and no known-harmless third-party warnings (popnas_seg/quiet.py).
    noise = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if re.match(r"[EWI]\d{4} ", line)
        or "absl::InitializeLog" in line
        or "cpu_feature_guard" in line
        or "UserWarning" in line
    ]
    assert not noise, noise[:5]
    folder = tmp_path / "logs" / "s"
    rows = _results(folder)
    steps = {int(r["step"]) for r in rows}
    assert steps == {1, 2}, "two expansion steps must run"
    assert len({r["network_id"] for r in rows}) == len(rows)
    assert len({r["encoding"] for r in rows}) == len(rows), "no cell is trained twice"
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(0.0 <= float(r["dice"]) <= 1.0 for r in ok)
    probe_errors = [
        e["result"]["extra"].get("probe_error") for e in journal_events(folder) if e["event"] == "network_finished"
    ]
    assert all(r["analog_dice"] != "" for r in ok), f"every trained network is analog-probed: {probe_errors}"
    for r in ok:  # the CSV records mean, std and the risk-aware score the search ranked on (risk_k 1)
        assert float(r["analog_score"]) == pytest.approx(float(r["analog_dice"]) - float(r["analog_dice_std"]))
    for name in ("predictions_b2.csv", "pareto_front_b2.csv", "predictor_quality.csv", "search_progress.csv"):
        assert (folder / "csv" / name).exists(), name
    with (folder / "csv" / "probe_integrity.csv").open() as handle:  # torch vs Keras digital Dice per probe
        integrity = list(csv.DictReader(handle))
    assert {int(r["network_id"]) for r in integrity} == {int(r["network_id"]) for r in ok}
    assert all(r["status"] != "failed" and r["torch_dice"] != "" for r in integrity)
    with (folder / "csv" / "search_progress.csv").open() as handle:
        progress = list(csv.DictReader(handle))
    assert all(0.0 <= float(r["hypervolume"]) <= 1.0 and r["failed_probes"] == "0" for r in progress)
    assert (folder / "best_model" / "model.keras").exists()
    kept = {p.parent.name for p in (folder / "sampled_models").glob("*/model.weights.h5")}
    assert kept == {r["network_id"] for r in ok}, "save_children_weights keeps every network's weights"
    assert any((folder / "predictors").rglob("*")), "predictors are saved per step"
    assert list((folder / "plots").glob("*.png")), "plots are drawn"
    assert "step 2" in (proc.stdout + proc.stderr)


@pytest.mark.parametrize("strategy", ["random", pytest.param("evolution", marks=pytest.mark.slow)])
def test_baselines_share_the_loop(tmp_path: Path, strategy: str) -> None:
    cfg = tiny_config(tmp_path, probe=False, pipeline=["search"], strategy=strategy, search_strategy__max_networks=4)
    proc = run_cli(["-j", str(cfg), "--name", "b", "--logs-dir", str(tmp_path / "logs")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _results(tmp_path / "logs" / "b")
    assert len(rows) == 4
    assert {r["origin"] for r in rows} <= {"random", "evolution"}


def _encodings(folder: Path) -> list[str]:
    return sorted(r["encoding"] for r in _results(folder))


def _kill_and_resume(tmp_path: Path, cfg: Path, name: str, predicate) -> Path:
    logs = tmp_path / "logs"
    folder = logs / name
    proc = start_cli(["-j", str(cfg), "--name", name, "--logs-dir", str(logs)], tmp_path / f"{name}.log")
    reached = wait_for(folder, predicate, proc)
    assert reached, (tmp_path / f"{name}.log").read_text()[-3000:]
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_cli(["-r", str(folder)])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return folder


def _started(n: int):
    """Killed while the n-th network trains."""
    return lambda ev: sum(e["event"] == "network_started" for e in ev) >= n


def _step_done(ev: list[dict]) -> bool:
    """Killed between steps (step 1 logged finished, step 2 not yet trained)."""
    return any(e["event"] == "step_finished" for e in ev)


def _step_two_training(ev: list[dict]) -> bool:
    """Killed while a network of the second step trains (step 2 was planned from predictors)."""
    return any(e["event"] == "network_started" and e.get("step") == 2 for e in ev)


KILL_POINTS = {"mid_training": _started(2), "between_steps": _step_done, "in_step_two": _step_two_training}


@pytest.mark.parametrize(
    "points",
    [
        ["in_step_two"],
        pytest.param(["mid_training", "between_steps", "in_step_two"], marks=pytest.mark.slow, id="all-points"),
    ],
)
def test_kill_then_resume_equals_uninterrupted(tmp_path: Path, points: list[str]) -> None:
    cfg = tiny_config(tmp_path, probe=False, pipeline=["search"])
    logs = tmp_path / "logs"
    full = run_cli(["-j", str(cfg), "--name", "full", "--logs-dir", str(logs)])
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    reference = _encodings(logs / "full")
    for name in points:
        folder = _kill_and_resume(tmp_path, cfg, name, KILL_POINTS[name])
        assert _encodings(folder) == reference, name
        finished_ids = [e["network_id"] for e in journal_events(folder) if e["event"] == "network_finished"]
        assert len(finished_ids) == len(set(finished_ids)), f"{name}: a finished network was trained again"
        if name != "between_steps":
            started_ids = [e["network_id"] for e in journal_events(folder) if e["event"] == "network_started"]
            assert len(started_ids) > len(set(started_ids)), f"{name}: the interrupted network is trained again"
