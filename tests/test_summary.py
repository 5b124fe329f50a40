"""`run.py summary` and `--version`: the recommendation and the measured front printed from a run folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_report import _restore, _synthetic_run

from popnas_seg.cli import main
from popnas_seg.command import tool_command

ROOT = Path(__file__).resolve().parent.parent


def test_summary_prints_the_recommendation_and_the_front(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    _synthetic_run(run)
    assert main(["summary", "-r", str(run)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"run {run}: stage finalists_done")
    digital = next(line for line in lines if line.startswith("digital "))
    assert "finalist 1" in digital and "12,345" in digital and "0.823" in digital
    assert "0.740 ± 0.012 (HWA)" in next(line for line in lines if line.startswith("analog, 1 month of drift"))
    assert "unet (U-Net baseline)" in next(line for line in lines if line.startswith("baseline"))
    assert "Measured Pareto front of the search: 3 non-dominated networks of 4 trained" in out
    front = lines[lines.index(next(line for line in lines if line.startswith("Measured Pareto"))) + 3 :]
    assert front[0].split()[:4] == ["1", "0.812", "0.771", "±"] and front[1].split()[0] == "2"
    assert f"{tool_command('predict', '-r', run)} --input IMAGES/ --output MASKS/ [--analog]" in out


def test_summary_before_final_training_and_on_a_wrong_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "fresh"
    _restore(run)
    assert main(["summary", "-r", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Recommendation: none yet" in out and "the search has no results yet" in out
    assert main(["summary", "-r", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert main(["summary"]) == 2  # -r is required


def test_version_in_a_real_process() -> None:
    from popnas_seg import __version__

    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--version"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"popnas-seg {__version__}"
