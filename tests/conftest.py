"""Shared test set-up: quiet TensorFlow, the repository on sys.path, tiny configs written to tmp folders."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import popnas_seg  # noqa: E402,F401  (sets TF_ENABLE_ONEDNN_OPTS before any test imports TensorFlow)

PYTHON = sys.executable


def tiny_config() -> dict[str, Any]:
    """A config that loads in well under a second of data work: 8 synthetic 32 px images, 16 px crops.

    `others.pipeline` is empty, so a CLI run stops after the foundation (config, data, run folder).
    """
    return {
        "search_space": {"blocks": 1, "operators": ["identity", "3x3 conv"]},
        "training_hyperparameters": {"epochs": 1},
        "dataset": {
            "name": "synthetic_nuclei",
            "samples": 8,
            "generated_size": [32, 32],
            "crop": [16, 16],
            "batch_size": 4,
        },
        "others": {"pipeline": []},
    }


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def tiny_config_dict() -> dict[str, Any]:
    return tiny_config()


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[Any, str], Path]:
    """write_json(obj_or_text, name) -> path in tmp_path (a str is written verbatim, e.g. broken JSON)."""

    def write(content: Any, name: str = "config.json") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return path

    return write
