"""report.md from a synthetic run folder: expected sections and numbers; degrades when stages did not run."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import pytest

from popnas_seg.analog.drift import DriftCurve, DriftReport
from popnas_seg.config import RunConfig, dump_config
from popnas_seg.report import write_report
from popnas_seg.results import TrainingResult
from popnas_seg.runlog.events import FinalistsSelected, Result, SearchFinished
from popnas_seg.runlog.journal import Journal
from popnas_seg.runlog.tables import write_csv


def _restore(run: Path) -> None:
    (run / "restore").mkdir(parents=True)
    (run / "restore" / "config.json").write_text(json.dumps(dump_config(RunConfig())))
    (run / "restore" / "state.json").write_text(json.dumps({"version": 1, "stage": "finalists_done", "step": 2}))


def _synthetic_run(run: Path) -> None:
    _restore(run)
    results = [
        TrainingResult(
            1,
            "[(-1,3x3 conv,-1,identity)]",
            1,
            0.812,
            0.70,
            12_345,
            99_000,
            10.0,
            1.5,
            1,
            analog_dice=0.771,
            analog_dice_std=0.012,
            robustness=0.95,
            analog_coverage=0.9,
            origin="b1",
            step=1,
        ),
        TrainingResult(
            2,
            "[(-1,identity,-2,2x2 maxpool)]",
            1,
            0.55,
            0.45,
            2_000,
            10_000,
            20.0,
            1.0,
            1,
            analog_dice=0.60,
            analog_dice_std=0.02,
            robustness=1.09,
            analog_coverage=1.0,
            origin="b1",
            step=1,
        ),
        TrainingResult(
            3,
            "[(-1,3x3 conv,-1,3x3 conv)]",
            1,
            0.50,
            0.40,
            50_000,
            10_000,
            30.5,
            1.0,
            1,
            analog_dice=0.40,
            analog_dice_std=0.02,
            robustness=0.8,
            analog_coverage=1.0,
            origin="pareto",
            step=2,
        ),
        # segments nothing: its stored ratio (from a run before the digital-Dice floor) must not be shown
        TrainingResult(
            4,
            "[(-2,2x2 maxpool,-2,2x2 maxpool)]",
            1,
            0.007,
            0.06,
            122,
            1_000,
            2.0,
            1.0,
            1,
            analog_dice=0.0105,
            analog_dice_std=0.003,
            robustness=1.5,
            analog_coverage=1.0,
            origin="b1",
            step=1,
        ),
    ]
    write_csv(run / "csv" / "training_results.csv", [r.to_row() for r in results], TrainingResult.COLUMNS)
    write_csv(
        run / "csv" / "measured_front.csv", [r.to_row() for r in (*results[:2], results[3])], TrainingResult.COLUMNS
    )
    write_csv(
        run / "csv" / "search_progress.csv",
        [
            {"step": 1, "networks_trained": 2, "hypervolume": 0.4321, "best_dice": 0.812, "front_size": 2},
            {"step": 2, "networks_trained": 3, "hypervolume": 0.4567, "best_dice": 0.812, "front_size": 2},
        ],
    )
    write_csv(
        run / "csv" / "predictor_quality.csv",
        [
            {"step": 2, "objective": "dice", "n": 5, "spearman": 0.875, "kendall": 0.667, "mape": ""},
            {"step": 2, "objective": "analog_dice", "n": 2, "spearman": -1.0, "kendall": -1.0, "mape": ""},
        ],
    )
    journal = Journal(run / "restore" / "journal.jsonl")
    journal.append(SearchFinished(networks=3))
    journal.append(
        FinalistsSelected(
            rule="best_analog",
            objectives=["dice", "params", "analog_robustness"],
            candidates=[Result.of(results[0])],
        )
    )
    write_csv(
        run / "final" / "model_selection.csv",
        [
            {
                "variant": "1",
                "network_id": 1,
                "filters": 8,
                "motifs": 2,
                "dice": 0.83,
                "params": 12345,
                "epochs": 4,
                "train_time_s": 40.0,
                "chosen": True,
            }
        ],
    )
    write_csv(
        run / "final" / "finalists.csv",
        [
            {
                "network": "1",
                "test_dice": 0.8234,
                "test_miou": 0.7011,
                "params": 12345,
                "flops": 99000,
                "analog_coverage": 0.9,
                "latency_ms": 1.25,
                "export_equivalent": True,
            },
            {
                "network": "unet",
                "test_dice": 0.7777,
                "test_miou": 0.66,
                "params": 95000,
                "flops": 0,
                "analog_coverage": 0.97,
                "latency_ms": 2.5,
                "export_equivalent": False,
            },
        ],
    )
    drift = [
        {"network": n, "hwa": h, "time": t, "mean": m, "std": 0.0123}
        for n, base in (("1", 0.79), ("unet", 0.70))
        for h in ("before", "after")
        for t, m in ((1.0, base), (2592000.0, base - 0.05))
    ]
    drift[-1]["mean"] = 0.6543  # unet after HWA at 1 month
    write_csv(run / "final" / "drift.csv", drift, ["network", "hwa", "time", "mean", "std"])
    (run / "final" / "1").mkdir(parents=True, exist_ok=True)
    (run / "final" / "1" / "drift_report.json").write_text(
        json.dumps(
            DriftReport(
                times=[1.0],
                repetitions=2,
                before_hwa=DriftCurve([1.0], [0.79], [0.01]),
                after_hwa=None,
                digital_dice=0.8,
                timings={},
                coverage={
                    "weights_analog_fraction": 0.9,
                    "macs_analog_fraction": 0.8,
                    "digital_layers": [
                        {
                            "name": "decoder/tconv",
                            "type": "ConvTranspose2d",
                            "weights": 64,
                            "reason": "no analog transpose conv",
                        }
                    ],
                },
            ).to_dict()
        )
    )


def test_full_report(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _synthetic_run(run)
    path = write_report(run)
    assert path == run / "report.md"
    text = path.read_text()
    for heading in (
        "# popnas-seg run `run`",
        "## Configuration",
        "```json",
        "## Search",
        "### Hypervolume per step",
        "### Predictor quality",
        "## Final measured Pareto front",
        "## Finalists",
        "### Model selection",
        "## Learning curves, drift curves and sample predictions",
        "### Drift: no HWA, digital control, HWA",
        "## What stayed digital",
    ):
        assert heading in text, heading
    assert '"search_space"' in text  # the config JSON block
    assert "networks trained: **4**" in text
    assert "1m 02s" in text  # 10 + 20 + 30.5 + 2 s of training
    assert "too few networks (n < 4)" in text and "-1.000" not in text, "no Spearman from 2 networks"
    assert "n/a (digital < 0.1)" in text and "1.50" not in text, "no analog/digital ratio on a Dice of 0.007"
    assert "ratio of two near-zero Dice values" in text
    assert "0.4567" in text and "0.875" in text  # hypervolume and Spearman tables
    # size buckets (network 4, 122 params, counts in every bucket)
    assert "| 5,000 | 2 | 0.550 | 0.600 |" in text and "| 20,000 | 3 | 0.812 | 0.771 |" in text
    assert "0.771 ± 0.012" in text  # front table: analog Dice of network 1
    assert "best_analog" in text
    assert "0.823" in text and "0.778" in text  # test Dice of the finalist and the U-Net
    assert "analog Dice 1 month (HWA)" in text and "0.654 ± 0.012" in text
    assert "**FAILED**" in text  # the U-Net's failed export check is visible
    assert "`decoder/tconv` (ConvTranspose2d, no analog transpose conv)" in text
    assert (run / "plots" / "drift_curves.png").exists()
    assert "![analog Dice vs time, finalists and U-Net](plots/drift_curves.png)" in text
    assert (run / "plots" / "finalists_size_analog.png").exists()  # size vs analog Dice at the 30-day horizon
    assert "](plots/finalists_size_analog.png)" in text
    assert "![measured front projections](plots/front_projections.png)" in text
    # re-runnable: a second call gives the same text
    assert write_report(run).read_text() == text


def test_report_before_any_stage(tmp_path: Path) -> None:
    run = tmp_path / "fresh"
    _restore(run)
    text = write_report(run).read_text()
    assert "## Configuration" in text
    assert "has not produced results yet" in text
    assert "finalists stage has not run" in text
    assert "No analog evaluation has run yet" in text
    assert "figure not available" in text


def test_report_survives_a_broken_csv(tmp_path: Path) -> None:
    run = tmp_path / "broken"
    _restore(run)
    (run / "final").mkdir()
    (run / "final" / "finalists.csv").write_text("network,test_dice\n1,0.5\n")
    (run / "final" / "drift.csv").write_text("network,hwa,time,mean,std\n1,after,notanumber,0.5,0.1\n")
    text = write_report(run).read_text()
    assert "## What stayed digital" in text  # later sections still written
    assert "could not be written" in text


def test_report_opens_with_the_recommendation_and_ends_with_the_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _synthetic_run(run)
    text = write_report(run).read_text()
    first_screen = text[: text.index("## Search")]
    assert "## Recommendation" in first_screen and "```json" not in first_screen
    assert text.index("## What stayed digital") < text.index("## Configuration (appendix)")
    # finalist 1 beats the U-Net digitally (0.823 vs 0.778) and at 1 month after HWA (0.740 vs 0.654)
    assert "| digital | **finalist 1** | 12,345 | 0.823 |" in first_screen
    assert "| analog, 1 month of drift | **finalist 1** | 12,345 | 0.823 | 0.740 ± 0.012 (HWA) |" in first_screen
    assert "| baseline (for comparison) | unet (U-Net baseline) | 95,000 | 0.778 | 0.654 ± 0.012 (HWA) |" in text
    assert "Warning" not in first_screen
    rec = json.loads((run / "final" / "recommendation.json").read_text())
    assert rec["digital"]["network"] == "1" and rec["analog"]["network"] == "1" and rec["horizon_s"] == 2592000.0
    assert rec["analog"]["analog_dice"] == 0.74 and rec["baseline"]["network"] == "unet"


def test_recommendation_falls_back_to_the_unet_and_warns(tmp_path: Path) -> None:
    from popnas_seg.finalists.recommendation import build_recommendation

    run = tmp_path / "run"
    _synthetic_run(run)
    write_csv(
        run / "final" / "finalists.csv",
        [
            {"network": "4", "status": "ok", "val_dice": 0.56, "test_dice": 0.569, "params": 3000},
            {"network": "7", "status": "nan", "val_dice": 0.0, "test_dice": "", "params": 2000},
            {"network": "unet", "status": "ok", "val_dice": 0.88, "test_dice": 0.882, "params": 95000},
        ],
    )
    write_csv(
        run / "final" / "drift.csv",
        [
            {"network": n, "hwa": "before", "time": t, "mean": m, "std": 0.01}
            for n, ms in (("4", (0.5, 0.45)), ("unet", (0.8, 0.44)))
            for t, m in zip((3600.0, 31536000.0), ms)
        ],
        ["network", "hwa", "time", "mean", "std"],
    )
    rec = build_recommendation(run)
    assert rec is not None and rec["digital"]["network"] == "unet"
    assert rec["horizon_s"] == 31536000.0  # 30 days asked; 1 year is the nearest scored time (log scale)
    assert rec["analog"]["network"] == "4" and rec["analog"]["analog_weights"] == "no HWA"  # 0.45 > 0.44
    assert any(
        "finalist 4 is below the U-Net baseline digitally: test Dice 0.569 vs 0.882" in w for w in rec["warnings"]
    )
    assert any("network 7 failed its final training" in w for w in rec["warnings"])
    text = write_report(run).read_text()
    assert "> **Warning:** finalist 4 is below the U-Net baseline digitally" in text[: text.index("## Search")]
    # a size budget the U-Net exceeds: the finalist is recommended for both uses
    config = json.loads((run / "restore" / "config.json").read_text())
    config["analog"]["recommend_max_params"] = 10000
    (run / "restore" / "config.json").write_text(json.dumps(config))
    rec = build_recommendation(run)
    assert rec["digital"]["network"] == "4" and any(
        "over the size budget" in w and "unet" in w for w in rec["warnings"]
    )
    assert rec["baseline"]["network"] == "unet"  # still shown beside it


def test_analog_recommendation_ranks_by_mean_minus_k_std(tmp_path: Path) -> None:
    """The analog rule is the search's risk-aware objective: a steady network beats a higher but spread mean."""
    from popnas_seg.finalists.recommendation import build_recommendation

    run = tmp_path / "run"
    _synthetic_run(run)
    write_csv(
        run / "final" / "finalists.csv",
        [
            {"network": "4", "status": "ok", "val_dice": 0.9, "test_dice": 0.90, "params": 3000},
            {"network": "9", "status": "ok", "val_dice": 0.9, "test_dice": 0.89, "params": 5000},
        ],
    )
    write_csv(
        run / "final" / "drift.csv",
        [
            {"network": "4", "hwa": "after", "time": 2592000.0, "mean": 0.905, "std": 0.04},
            {"network": "9", "hwa": "after", "time": 2592000.0, "mean": 0.895, "std": 0.005},
        ],
        ["network", "hwa", "time", "mean", "std"],
    )
    config = json.loads((run / "restore" / "config.json").read_text())
    config["analog"]["risk_k"] = 1.0
    (run / "restore" / "config.json").write_text(json.dumps(config))
    rec = build_recommendation(run)
    assert rec is not None and rec["risk_k"] == 1.0
    assert rec["analog"]["network"] == "9" and rec["analog"]["analog_score"] == pytest.approx(0.89)
    assert rec["digital"]["network"] == "4"  # the digital rule is unchanged
    config["analog"]["risk_k"] = 0.0  # k = 0: the mean alone decides
    (run / "restore" / "config.json").write_text(json.dumps(config))
    assert build_recommendation(run)["analog"]["network"] == "4"


def test_no_recommendation_before_final_training(tmp_path: Path) -> None:
    run = tmp_path / "fresh"
    _restore(run)
    text = write_report(run).read_text()
    assert "No recommendation yet" in text and not (run / "final" / "recommendation.json").exists()
