"""Every figure renders from synthetic plain data into a valid PNG, and plot_search re-draws a run's CSVs."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from popnas_seg import plots
from popnas_seg.results import TrainingResult
from popnas_seg.runlog.tables import write_csv


def _png(path: Path) -> tuple[int, int]:
    assert path.exists() and path.stat().st_size > 1000
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    with Image.open(path) as img:
        return img.size


def _results(n: int = 12, seed: int = 0) -> list[TrainingResult]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        dice = float(rng.uniform(0.3, 0.9))
        out.append(
            TrainingResult(
                network_id=i + 1,
                encoding=f"[(-1,3x3 conv,-{1 + i % 2},{'identity' if i % 3 else '2x2 maxpool'})]",
                blocks=1,
                dice=dice,
                miou=dice * 0.8,
                params=int(rng.integers(1_000, 200_000)),
                flops=10_000,
                train_time_s=float(rng.uniform(1, 5)),
                inference_time_ms=1.0,
                epochs=1,
                analog_dice=None if i == 0 else dice - float(rng.uniform(0, 0.2)),
                analog_dice_std=0.01,
                origin="b1",
                step=1 + i // 6,
            )
        )
    out.append(
        TrainingResult(
            network_id=99,
            encoding="[(-1,identity,-1,identity)]",
            blocks=1,
            dice=0.0,
            miou=0.0,
            params=10,
            flops=0,
            train_time_s=0.1,
            inference_time_ms=0.0,
            epochs=0,
            status="failed",
        )
    )
    return out


def test_front_projections_and_coloured_scatter(tmp_path: Path) -> None:
    res = _results()
    p1 = plots.plot_front_projections(res, [2, 5, 7], tmp_path / "a" / "front.png")
    p2 = plots.plot_dice_params_analog(res, tmp_path / "scatter.png")
    w1, h1 = _png(p1)
    assert w1 > 2 * h1  # three panels side by side
    _png(p2)
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files


def test_plots_handle_empty_inputs(tmp_path: Path) -> None:
    _png(plots.plot_front_projections([], [], tmp_path / "f.png"))
    _png(plots.plot_predicted_vs_measured({}, tmp_path / "p.png", step=1))
    _png(plots.plot_operator_frequency({}, tmp_path / "o.png"))
    _png(plots.plot_drift_curves([], tmp_path / "d.png"))
    _png(plots.plot_hypervolume({}, tmp_path / "h.png"))


def test_predicted_vs_measured_and_spearman(tmp_path: Path) -> None:
    pred = [0.1, 0.2, 0.3, 0.4]
    assert plots.spearman(pred, [1, 2, 3, 4]) == pytest.approx(1.0)
    assert plots.spearman(pred, [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(plots.spearman([1.0], [2.0]))
    _png(
        plots.plot_predicted_vs_measured(
            {"Dice": (pred, [0.2, 0.1, 0.5, 0.45]), "analog Dice": (pred, [0.3, 0.3, 0.2, 0.6])},
            tmp_path / "pm.png",
            step=2,
        )
    )


def test_hypervolume_operator_drift_and_samples(tmp_path: Path) -> None:
    _png(
        plots.plot_hypervolume(
            {"progressive": [(4, 0.2), (8, 0.35)], "random": [(4, 0.1), (8, 0.2)]}, tmp_path / "hv.png"
        )
    )
    counts = plots.operator_counts(["[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-1,3x3 conv)]"])
    assert counts == {"3x3 conv": 2, "identity": 1, "2x2 maxpool": 1}
    _png(plots.plot_operator_frequency(counts, tmp_path / "ops.png"))
    rows = [
        {"network": net, "hwa": hwa, "time": t, "mean": m - (0.1 if hwa == "before" else 0) - 0.01 * k, "std": 0.02}
        for net, m in (("12", 0.8), ("unet", 0.7))
        for hwa in ("before", "after")
        for k, t in enumerate((1.0, 3600.0, 86400.0, 2592000.0, 31536000.0))
    ]
    _png(plots.plot_drift_curves(rows, tmp_path / "drift.png", digital={"12": 0.82, "unet": 0.75}))
    rng = np.random.default_rng(1)
    images = rng.random((3, 16, 16, 1)).astype(np.float32)
    masks = rng.integers(0, 2, (3, 16, 16))
    w, h = _png(plots.plot_sample_predictions(images, masks, masks, 1 - masks, tmp_path / "s.png", title="x"))
    assert h > w * 0.5  # three rows of four panels
    _png(plots.plot_sample_predictions(images[:1], masks[:1], masks[:1], None, tmp_path / "s1.png"))
    assert plots.time_label(86400.0) == "1 day" and plots.time_label(5.0) == "5 s"


def test_plot_search_from_csvs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = _results()
    write_csv(run / "csv" / "training_results.csv", [r.to_row() for r in res], TrainingResult.COLUMNS)
    write_csv(
        run / "csv" / "search_progress.csv",
        [
            {"step": 1, "networks_trained": 6, "hypervolume": 0.3, "best_dice": 0.8},
            {"step": 2, "networks_trained": 13, "hypervolume": 0.4, "best_dice": 0.85},
        ],
    )
    write_csv(
        run / "csv" / "predictions_b2.csv",
        [
            {"encoding": r.encoding, "predicted_dice": r.dice + 0.05, "predicted_analog_dice": 0.5}
            for r in res
            if r.step == 2
        ],
    )
    written = {p.name for p in plots.plot_search(run)}
    assert {
        "front_projections.png",
        "dice_params_analog.png",
        "front_operators.png",
        "hypervolume.png",
        "predicted_vs_measured_b2.png",
    } <= written
    for name in written:
        _png(run / "plots" / name)
    # without measured_front.csv the front is recomputed: the best-Dice ok network is on it
    ids = plots.measured_front_ids(run, res)
    best = max((r for r in res if r.status == "ok" and r.analog_dice is not None), key=lambda r: r.dice)
    assert best.network_id in ids and 99 not in ids
    # an empty run folder gives no figures and no error
    assert plots.plot_search(tmp_path / "empty") == []


def test_hypervolume_spread_over_seeds(tmp_path: Path) -> None:
    curves = {"progressive": [[0.1, 0.2, 0.3], [0.2, 0.25, 0.4, 0.5]], "random": [[0.05, 0.1], [0.1, 0.2]], "empty": []}
    width, _ = _png(plots.plot_hypervolume_spread(curves, tmp_path / "spread.png", "task x"))
    assert width > 100


def test_finalists_size_vs_analog_dice_at_the_horizon(tmp_path: Path) -> None:
    finalists = [
        {"network": "7", "params": "13000"},
        {"network": "unet", "params": "110194"},
        {"network": "9", "params": ""},
    ]  # no params: left out
    drift = [
        {"network": n, "hwa": h, "time": t, "mean": m, "std": 0.01}
        for n, m in (("7", 0.90), ("unet", 0.92))
        for h in ("before", "after")
        for t in (86400.0, 2592000.0)
    ]
    _png(plots.plot_finalists_size_analog(finalists, drift, 30 * 86400.0, tmp_path / "size.png"))
    # nearest drift time to a 20-day horizon is 30 days; empty inputs still give a figure
    _png(plots.plot_finalists_size_analog(finalists, drift, 20 * 86400.0, tmp_path / "size20.png"))
    _png(plots.plot_finalists_size_analog([], [], 86400.0, tmp_path / "empty.png"))


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every Figure the plot functions save (after it was rendered, so ticks and texts are final)."""
    from popnas_seg.plots import finalists, search, style

    saved: list = []

    def keep(fig, path):  # type: ignore[no-untyped-def]
        written = style.save(fig, path)
        saved.append(fig)
        return written

    for module in (search, finalists):  # each figure module calls the `save` it imported
        monkeypatch.setattr(module, "save", keep)
    return saved


def _integer_ticks(ax) -> bool:  # type: ignore[no-untyped-def]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


def test_counts_get_integer_ticks(tmp_path: Path, figures: list) -> None:
    """Networks and epochs are counts: a 3-point hypervolume curve must not show 4.25 networks."""
    plots.plot_hypervolume({"progressive": [(4, 0.2), (5, 0.3), (6, 0.35)]}, tmp_path / "hv.png")
    plots.plot_hypervolume_spread({"random": [[0.1, 0.2, 0.25], [0.1, 0.15, 0.3]]}, tmp_path / "hvs.png")
    history = [{"epoch": e, "dice": 0.1 * e, "val_dice": 0.1 * e + 0.05} for e in range(2)]
    plots.plot_learning_curves({"4": history, "unet": history}, tmp_path / "lc.png")
    assert len(figures) == 3
    for fig in figures:
        assert _integer_ticks(fig.axes[0]), [t for t in fig.axes[0].get_xticks()]


def test_front_and_scatter_points_carry_network_ids(tmp_path: Path, figures: list) -> None:
    res = _results()
    plots.plot_front_projections(res, [2, 5, 7], tmp_path / "front.png")
    plots.plot_dice_params_analog(res, tmp_path / "scatter.png", front_ids=[2, 5, 7])
    ok_ids = {str(r.network_id) for r in res if r.status == "ok"}
    probed_ids = {str(r.network_id) for r in res if r.status == "ok" and r.analog_dice is not None}
    front_panels, scatter = figures
    assert {t.get_text() for t in front_panels.axes[0].texts} == ok_ids
    assert {t.get_text() for t in front_panels.axes[1].texts} == probed_ids
    assert {t.get_text() for t in scatter.axes[0].texts} == ok_ids
    # many networks: only the front is labelled, or the figure becomes unreadable
    many = _results(plots.LABEL_ALL_MAX + 5)
    plots.plot_dice_params_analog(many, tmp_path / "many.png", front_ids=[3, 8])
    assert {t.get_text() for t in figures[-1].axes[0].texts} == {"3", "8"}


def test_rank_correlation_needs_four_networks(tmp_path: Path, figures: list) -> None:
    assert np.isnan(plots.spearman([0.1, 0.2, 0.3], [3, 2, 1])), "n = 3: one swap decides it, not reported"
    plots.plot_predicted_vs_measured({"Dice": ([0.1, 0.2], [0.5, 0.4])}, tmp_path / "pm.png", step=2)
    title = figures[-1].axes[0].get_title()
    assert "too few networks" in title and "-1.000" not in title
