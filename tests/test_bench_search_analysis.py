"""The search benchmark's regrets: to the task-wide union front and to each seed's own union front.

Hand-made run folders (two seeds, three strategies, dice + params only): seed 2's split is easier, so its cells
dominate the task-wide front and every seed-1 run carries that gap as a floor; the seed regret removes it."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.search import bench_search as B  # noqa: E402
from popnas_seg.results import TrainingResult  # noqa: E402
from popnas_seg.runlog.tables import write_csv  # noqa: E402
from popnas_seg.search.anytime import front_hypervolume  # noqa: E402

# (dice, params) per strategy and seed; encodings only need to be distinct within a run
RUNS = {
    1: {
        "progressive": [(0.50, 200), (0.60, 5000)],
        "random": [(0.45, 200), (0.55, 5000)],
        "evolution": [(0.40, 200), (0.50, 5000)],
    },
    2: {
        "progressive": [(0.70, 200), (0.80, 5000)],
        "random": [(0.70, 200), (0.75, 5000)],
        "evolution": [(0.65, 200), (0.80, 5000)],
    },
}


def _results(nets: list[tuple[float, int]], origin: str = "") -> list[TrainingResult]:
    return [
        TrainingResult(
            network_id=i + 1,
            encoding=f"[(-1,identity,-{1 + i % 2},3x3 conv)]",
            blocks=1,
            dice=d,
            miou=d,
            params=p,
            flops=p,
            train_time_s=1.0,
            inference_time_ms=1.0,
            epochs=1,
            origin=origin,
            step=1,
        )
        for i, (d, p) in enumerate(nets)
    ]


def _write_runs(logs: Path) -> None:
    for seed, by in RUNS.items():
        for strategy, nets in by.items():
            folder = logs / B.run_name("default", strategy, seed)
            rows = [r.to_row() for r in _results(nets, strategy)]
            write_csv(folder / "csv" / "training_results.csv", rows)
            (folder / "restore").mkdir(parents=True)
            (folder / "restore" / "journal.jsonl").write_text(json.dumps({"event": "search_finished"}) + "\n")


def test_seed_regret_removes_the_floor_of_a_harder_split(tmp_path) -> None:
    _write_runs(tmp_path)
    args = B.parse_args(
        ["--tasks", "default", "--seeds", "1", "2", "--no-probe", "--analyse-only", "--logs-dir", str(tmp_path)]
    )
    res = B.analyse_task(args, tmp_path, "default", [1, 2])
    seed1, seed2 = res["per_seed"]
    floor1 = res["union_hv"] - seed1["seed_union_hv"]
    assert floor1 > 0.05  # seed 2's easier split holds the task-wide front
    progressive_hv = front_hypervolume(_results(RUNS[1]["progressive"]), ["dice", "params"], res["reference"])
    assert abs(seed1["seed_union_hv"] - progressive_hv) < 1e-12  # progressive dominates seed 1
    assert seed1["progressive"]["seed_regret"] == 0.0
    for row in (seed1, seed2):
        for s in B.STRATEGIES:
            assert abs(row[s]["regret"] - row[s]["seed_regret"] - (res["union_hv"] - row["seed_union_hv"])) < 1e-12
            assert row[s]["seed_regret"] >= 0.0
    # seed 2: random and evolution each hold one corner of the seed's front, progressive both
    assert seed2["progressive"]["seed_regret"] == 0.0
    assert seed2["random"]["seed_regret"] > 0 and seed2["evolution"]["seed_regret"] > 0
    seed_targets = [ok for name, ok in res["targets"].items() if "each seed's own union front" in name]
    assert seed_targets == [True, True]  # both seed-regret targets hold here
    assert "seed regret" in B.markdown_tables(res)


def test_regret_sources_name_the_union_points_a_strategy_misses(tmp_path) -> None:
    """The union front is seed 2's (0.70, 200) and (0.80, 5000). Evolution's seed-2 run lacks the first, random's
    the second; every seed-1 run lacks both. Each row names who trained the point and the median gain."""
    _write_runs(tmp_path)
    args = B.parse_args(
        ["--tasks", "default", "--seeds", "1", "2", "--no-probe", "--analyse-only", "--logs-dir", str(tmp_path)]
    )
    res = B.analyse_task(args, tmp_path, "default", [1, 2])
    rows = res["regret_sources"]
    assert [(r["params"], r["dice"]) for r in rows] == [(200, 0.70), (5000, 0.80)]
    assert rows[0]["trained_by"] == ["progressive s2", "random s2"]
    assert rows[1]["trained_by"] == ["evolution s2", "progressive s2"]
    reference = res["reference"]

    def gain(nets: list[tuple[float, int]], point: tuple[float, int]) -> float:
        return front_hypervolume(_results(nets + [point]), ["dice", "params"], reference) - front_hypervolume(
            _results(nets), ["dice", "params"], reference
        )

    for row, point in zip(rows, [(0.70, 200), (0.80, 5000)]):
        for s in B.STRATEGIES:
            expected = sorted(gain(RUNS[seed][s], point) for seed in (1, 2))
            assert abs(row["gain"][s] - (expected[0] + expected[1]) / 2) < 1e-12
    assert rows[0]["gain"]["evolution"] > rows[0]["gain"]["random"]  # random s2 holds it, evolution s2 does not
    assert "Where the regret comes from" in B.markdown_tables(res)
    assert "| 5,000 | 0.8000 | evolution s2, progressive s2 |" in B.markdown_tables(res)


def test_every_seed_of_a_task_searches_the_same_data_unless_asked_otherwise() -> None:
    """The task-wide union front is a front of one problem only if every run of the task sees the same data."""
    args = B.parse_args([])
    configs = [B.build_config(args, "hard", s, seed, 25) for s in B.STRATEGIES for seed in (1, 2, 3)]
    assert {c["dataset"]["seed"] for c in configs} == {args.data_seed}
    assert {c["others"]["seed"] for c in configs} == {1, 2, 3}
    varied = B.parse_args(["--vary-data"])
    assert [B.build_config(varied, "hard", "random", seed, 25)["dataset"]["seed"] for seed in (1, 2)] == [1, 2]


def test_predictor_quality_rows_carry_the_measured_range_of_their_step(tmp_path) -> None:
    """Beside each Spearman, how far apart the step's measured values were (ranks within noise mean little)."""
    _write_runs(tmp_path)
    folder = tmp_path / B.run_name("default", "progressive", 1)
    write_csv(
        folder / "csv" / "predictor_quality.csv",
        [
            {"step": 1, "objective": "dice", "n": 2, "spearman": 1.0, "kendall": 1.0, "mape": ""},
            {"step": 1, "objective": "time", "n": 2, "spearman": 1.0, "kendall": 1.0, "mape": 3.0},
        ],
    )
    args = B.parse_args(
        ["--tasks", "default", "--seeds", "1", "2", "--no-probe", "--analyse-only", "--logs-dir", str(tmp_path)]
    )
    res = B.analyse_task(args, tmp_path, "default", [1, 2])
    dice, time = res["quality"]
    assert abs(dice["measured_range"] - 0.10) < 1e-9  # RUNS[1]["progressive"]: Dice 0.50 and 0.60
    assert time["measured_range"] == 0.0  # both trained in 1.0 s
    assert "| 1 | 1 | dice | 2 | 1.000 | 1.000 | n/a | 0.100 |" in B.markdown_tables(res)


def test_every_seed_of_a_task_trains_its_networks_alike_unless_asked_otherwise() -> None:
    """One network seed per task: a cell scores the same in every run, so no run carries another seed's luck."""
    args = B.parse_args([])
    configs = [B.build_config(args, "default", s, seed, 25) for s in B.STRATEGIES for seed in (1, 2, 3)]
    assert {c["search_strategy"]["network_seed"] for c in configs} == {args.network_seed}
    assert "the search alone" in B.settings_text(args)
    varied = B.parse_args(["--vary-networks"])
    assert B.build_config(varied, "hard", "random", 2, 25)["search_strategy"]["network_seed"] is None
    assert "the weight initialisation" in B.settings_text(varied)


def test_each_task_trains_for_its_own_budget_unless_epochs_is_given() -> None:
    """The default task's cells are told apart only at 24 epochs, the hard task's already at 8; --epochs sets both,
    and the settings line says which budget each task used."""
    args = B.parse_args([])
    assert B.build_config(args, "default", "random", 1, 25)["training_hyperparameters"]["epochs"] == 24
    assert B.build_config(args, "hard", "random", 1, 25)["training_hyperparameters"]["epochs"] == 8
    assert "24 epoch(s) per network (default), 8 epoch(s) per network (hard)" in B.settings_text(args)
    fixed = B.parse_args(["--epochs", "5", "--tasks", "hard", "--folder-data", "folder_task_data"])
    assert {B.build_config(fixed, t, "random", 1, 25)["training_hyperparameters"]["epochs"] for t in B.TASKS} == {5}
    assert "5 epoch(s) per network (hard)" in B.settings_text(fixed)


def test_study_tasks_the_smoke_the_256_image_and_the_folder_task(tmp_path: Path) -> None:
    """The tasks of the search study: 64 images is the smoke task, default256 the same data with 4x the images,
    folder the artefact generator's folder read through dataset.path (generated once, then reused)."""
    from popnas_seg.config import RunConfig

    args = B.parse_args(["--tasks", "folder", "default256", "--size", "16", "--samples", "12"])
    B.prepare_folder_task(args, tmp_path)
    folder = tmp_path / "folder_task_data"
    assert len(list((folder / "images").glob("*.npy"))) == 12 and len(list((folder / "masks").glob("*.npy"))) == 12
    stamp = (folder / "images" / "img_0000.npy").stat().st_mtime_ns
    B.prepare_folder_task(args, tmp_path)
    assert (folder / "images" / "img_0000.npy").stat().st_mtime_ns == stamp  # not regenerated
    cfg = B.build_config(args, "folder", "random", 3, 10)
    assert cfg["dataset"]["name"] is None and cfg["dataset"]["path"] == str(folder.resolve())
    assert "generated_size" not in cfg["dataset"]
    RunConfig.model_validate(cfg)
    own = B.parse_args([])
    assert B.build_config(own, "default256", "random", 1, 10)["dataset"]["samples"] == 256
    assert B.build_config(own, "default", "random", 1, 10)["dataset"]["samples"] == 64


def test_the_benchmark_searches_as_the_default_config_unless_rungs_are_given() -> None:
    """Issue 35 item 5: the benchmark's search is the default config's (flat unless the default has rungs);
    --rung-epochs runs the multi-fidelity search and the settings line says so."""
    from popnas_seg.config import SearchStrategyConfig

    args = B.parse_args([])
    cfg = B.build_config(args, "hard", "progressive", 1, 25)["search_strategy"]
    assert cfg.get("rung_epochs", []) == SearchStrategyConfig().rung_epochs
    rungs = B.parse_args(["--rung-epochs", "24", "--promotion-eta", "8"])
    cfg = B.build_config(rungs, "hard", "progressive", 1, 25)["search_strategy"]
    assert cfg["rung_epochs"] == [24] and cfg["promotion_eta"] == 8
    assert "rungs at 24 cumulative epochs for ceil(n / 8)" in B.settings_text(rungs)
    assert "rungs at" not in B.settings_text(args)
