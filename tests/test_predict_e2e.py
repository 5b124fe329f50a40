"""The held-out-style check: the quick pipeline on a folder of 256x256 real-like images, then `predict`.

The report's test Dice must be a whole-image Dice: `predict` on the test images writes full-size masks whose
Dice against the masks equals the finalist's test Dice in final/finalists.csv. Slow (a whole run, minutes).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_pipeline_on_256px_folder_then_predict(tmp_path: Path) -> None:
    from popnas_seg.config import load_config
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.data.synthetic import generate_nuclei
    from popnas_seg.imaging.scores import dice_score

    data_dir = tmp_path / "data"
    (data_dir / "images").mkdir(parents=True)
    (data_dir / "masks").mkdir()
    images, masks = generate_nuclei(20, (256, 256), 1, seed=3)
    for i, (im, m) in enumerate(zip(images, masks)):
        Image.fromarray((np.clip(im[..., 0], 0, 1) * 65535).astype(np.uint16)).save(
            data_dir / "images" / f"c{i:02d}.png"
        )
        Image.fromarray((m > 0).astype(np.uint8) * 255).save(data_dir / "masks" / f"c{i:02d}.png")
    quick = json.loads((ROOT / "configs" / "quick.json").read_text())
    quick["dataset"] = {
        "name": None,
        "path": str(data_dir),
        "samples": None,
        "crop": [32, 32],
        "class_labels_remapping": {"255": 1},
        "validation_size": 0.2,
        "test_size": 0.2,
    }
    quick["analog"].update({"eval_times": [86400.0, 2592000.0], "unet_baseline": False})
    config_file = tmp_path / "e2e.json"
    config_file.write_text(json.dumps(quick))
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "-j",
            str(config_file),
            "--logs-dir",
            str(tmp_path / "logs"),
            "--name",
            "e2e",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "logs" / "e2e"
    assert "on whole images" in (run / "report.md").read_text()
    with open(run / "final" / "finalists.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["network"] != "unet")
    config = load_config(run / "restore" / "config.json")
    test_names = load_data(config.dataset, seed=config.others.seed).split_names()["test"]
    out = tmp_path / "masks"
    inputs = [str(data_dir / "images" / f"{n}.png") for n in test_names]
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "predict",
            "-r",
            str(run),
            "--network",
            row["network"],
            "--input",
            *inputs,
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds, trues = [], []
    for n in test_names:
        pred = np.asarray(Image.open(out / f"{n}.png"))
        truth = (np.asarray(Image.open(data_dir / "masks" / f"{n}.png")) > 0).astype(np.uint8)
        assert pred.shape == truth.shape == (256, 256)
        preds.append(pred.ravel())
        trues.append(truth.ravel())
    whole = dice_score(np.concatenate(preds), np.concatenate(trues), 2)
    assert whole == pytest.approx(float(row["test_dice"]), abs=1e-4), (whole, row["test_dice"])
    # The analog predict of the same finalist runs at a chosen drift time.
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "predict",
            "-r",
            str(run),
            "--network",
            row["network"],
            "--input",
            inputs[0],
            "--output",
            str(tmp_path / "analog"),
            "--analog",
            "--drift-time",
            "1month",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.asarray(Image.open(tmp_path / "analog" / f"{test_names[0]}.png")).shape == (256, 256)
