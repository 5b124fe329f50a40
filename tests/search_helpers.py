"""Tiny real configs and subprocess helpers shared by the end-to-end search tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def tiny_config(
    tmp_path: Path,
    *,
    probe: bool,
    pipeline: list[str],
    strategy: str = "progressive",
    objectives: list[str] | None = None,
    **overrides: Any,
) -> Path:
    """Write a config that trains a handful of 16x16 networks for one epoch each."""
    cfg: dict[str, Any] = {
        "search_space": {"blocks": 2, "lookback_depth": 2, "operators": ["identity", "3x3 conv", "2x2 maxpool"]},
        "search_strategy": {
            "strategy": strategy,
            "max_children": 2,
            "max_exploration_children": 1,
            "b1_max_networks": 3,
            "predictor_epochs": 8,
            "accuracy_predictor_ensemble_units": 2,
            "additional_pareto_objectives": objectives
            if objectives is not None
            else (["params", "analog_robustness"] if probe else ["params"]),
        },
        "training_hyperparameters": {"epochs": 1, "learning_rate": 0.01},
        "architecture_hyperparameters": {"filters": 4, "motifs": 2, "normal_cells_per_motif": 0},
        "dataset": {
            "name": "synthetic_nuclei",
            "samples": 24,
            "generated_size": [24, 24],
            "crop": [16, 16],
            "batch_size": 8,
            "validation_size": 0.25,
            "test_size": 0.25,
        },
        "analog": {
            "probe": probe,
            "probe_images": 4,
            "probe_repetitions": 2,
            "repetitions": 2,
            "finalists": 1,
            "model_selection_epochs": 1,
            "final_epochs": 1,
            "hwa_epochs": 1,
            "early_stopping_patience": 1,
            "eval_times": [1.0, 86400.0, 2592000.0],
        },
        "others": {"seed": 3, "pipeline": pipeline},
    }
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        cfg[section][key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def run_cli(args: list[str], timeout: float = 900, *, default_logging: bool = False) -> subprocess.CompletedProcess:
    """Run run.py; `default_logging` drops TF_CPP_MIN_LOG_LEVEL / POPNAS_SEG_VERBOSE: the terminal a user gets."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    if default_logging:
        for name in ("TF_CPP_MIN_LOG_LEVEL", "POPNAS_SEG_VERBOSE"):
            env.pop(name, None)
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def start_cli(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args], stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT
    )


def journal_events(folder: Path) -> list[dict]:
    path = folder / "restore" / "journal.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return events


def wait_for(folder: Path, predicate, proc: subprocess.Popen, timeout: float = 600) -> bool:
    """Poll the journal until `predicate(events)` holds; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(journal_events(folder)):
            return True
        if proc.poll() is not None:
            return predicate(journal_events(folder))
        time.sleep(0.05)
    raise TimeoutError("the run never reached the awaited point")
