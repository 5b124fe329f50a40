"""The search study's scoring and statistics on hand-made cases where the old convention gives the other verdict:
re-evaluated fronts (bench_search_study.py), gap closure and its CI, the paired test (search_stats.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.search import bench_search as B  # noqa: E402
from benchmarks.search import bench_search_study as T  # noqa: E402
from benchmarks.search import search_stats as S  # noqa: E402
from popnas_seg.results import TrainingResult  # noqa: E402
from popnas_seg.runlog.tables import write_csv  # noqa: E402


# ----------------------------------------------------------------------------------------------- statistics
def test_gap_closure_meets_what_the_old_ratio_of_medians_missed() -> None:
    """Random's regret 0.10, progressive's 0.06, an oracle knowing the means 0.05: the old target (median regret
    <= 0.5 x random's) says missed (0.6x), though progressive closes 80 % of what is closable at all."""
    r_random = [0.10, 0.12, 0.08, 0.11, 0.09, 0.10, 0.105, 0.095, 0.10, 0.10]
    r_prog = [x - 0.04 for x in r_random]
    old_met = np.median(r_prog) <= B.TARGET_REGRET_VS_RANDOM * np.median(r_random)
    assert not old_met
    est, lo, hi = S.gap_closure_ci(r_random, r_prog, 0.05, resamples=2000)
    assert est == pytest.approx(0.04 / 0.05)
    assert 0 < lo <= est <= hi  # paired: the same 0.04 gain on every seed, the CI stays above 0
    assert S.gap_closure(r_random, r_prog, 0.10) != S.gap_closure(r_random, r_prog, 0.10)  # nothing closable: NaN


def test_gap_closure_ci_straddles_zero_when_the_seeds_cannot_tell() -> None:
    r_random = [0.10] * 10
    r_prog = [0.05, 0.15, 0.04, 0.16, 0.06, 0.14, 0.05, 0.15, 0.09, 0.11]  # mean 0.10: no gain, large spread
    est, lo, hi = S.gap_closure_ci(r_random, r_prog, 0.0, resamples=2000)
    assert est == pytest.approx(0.0, abs=1e-12) and lo < 0 < hi
    # per-seed oracle regrets are resampled with their seeds
    est2, lo2, hi2 = S.gap_closure_ci(r_random, [0.05] * 10, [0.0, 0.02] * 5, resamples=2000)
    assert est2 == pytest.approx(0.05 / 0.09) and lo2 < est2 < hi2
    with pytest.raises(ValueError):
        S.gap_closure_ci([0.1, 0.2], [0.1], 0.0)


def test_paired_test_sees_a_consistent_gain_that_an_unpaired_one_drowns() -> None:
    """Seeds move both strategies by far more than they differ: Mann-Whitney U (the old headline p) sees nothing,
    the paired Wilcoxon signed-rank test sees 10 wins of 10."""
    base = np.linspace(0.2, 0.6, 10)
    prog, rand = list(base + 0.01), list(base)
    assert B.one_sided_mwu(prog, rand) > 0.3
    wins, p = S.paired_one_sided(prog, rand)
    assert wins == 10 and p < 0.01
    assert S.paired_one_sided([0.3, 0.3], [0.3, 0.3]) == (0, None)


def test_anytime_band_equal_compute_and_subsamples() -> None:
    mean, lo, hi = S.bootstrap_band([[0.1, 0.2, 0.3], [0.3, 0.4, 0.5, 0.9]], resamples=500)
    assert mean == pytest.approx([0.2, 0.3, 0.4]) and np.all(lo <= mean) and np.all(mean <= hi)
    assert lo[0] == pytest.approx(0.1) and hi[0] == pytest.approx(0.3)
    seconds = [10.0, 5.0, 20.0]
    assert S.prefix_at_compute(seconds, 15.0) == 2 and S.prefix_at_compute(seconds, 9.0) == 0
    assert S.value_at_compute([0.1, 0.2, 0.5], seconds, 34.0) == 0.2
    assert S.value_at_compute([0.1, 0.2, 0.5], seconds, 5.0) == 0.0
    draws = S.subsamples(10, 4, 50, seed=1)
    assert len(draws) == 50 and all(len(set(d)) == 4 and d.max() < 10 for d in draws)
    assert len({tuple(d) for d in draws}) > 10
    with pytest.raises(ValueError):
        S.subsamples(3, 4, 1)


# ------------------------------------------------------------------------------------------- re-evaluation
# encoding -> (seed-A validation Dice, params, means under seeds B/C on the test split)
CELLS = {
    "lucky": (0.95, 2_000, (0.79, 0.81)),  # one lucky training: its mean is below the U-Net's floor
    "solid": (0.90, 3_000, (0.90, 0.90)),
    "big": (0.93, 50_000, (0.93, 0.93)),
    "junk": (0.50, 1_000, (0.50, 0.50)),
    "unet": (0.0, 95_000, (0.91, 0.93)),
}
RUNS = {"progressive": ["solid", "big"], "random": ["lucky", "junk"], "evolution": ["junk", "solid"]}


def _write_runs(logs: Path, seeds: list[int]) -> None:
    for seed in seeds:
        for strategy, cells in RUNS.items():
            rows = [
                TrainingResult(
                    network_id=i + 1,
                    encoding=c,
                    blocks=1,
                    dice=CELLS[c][0],
                    miou=CELLS[c][0],
                    params=CELLS[c][1],
                    flops=1,
                    train_time_s=10.0 * (i + 1),
                    inference_time_ms=1.0,
                    epochs=1,
                    status="ok",
                    step=1,
                ).to_row()
                for i, c in enumerate(cells)
            ]
            write_csv(
                logs / B.run_name("default", strategy, seed) / "csv" / "training_results.csv",
                rows,
                TrainingResult.COLUMNS,
            )


def test_reevaluated_scoring_reverses_a_verdict_won_by_one_lucky_training(tmp_path: Path) -> None:
    seeds = [1, 2]
    _write_runs(tmp_path, seeds)
    calls: list[tuple[str, int]] = []

    def fake_train(encoding: str, seed: int) -> dict:
        calls.append((encoding, seed))
        dice = CELLS[encoding][2][[101, 102].index(seed)]
        return {
            "encoding": encoding,
            "seed": seed,
            "status": "ok",
            "params": CELLS[encoding][1],
            "dice": dice,
            "analog_dice": None,
            "train_time_s": 1.0,
        }

    args, bench = T.parse_args(
        [
            "--no-probe",
            "--tasks",
            "default",
            "--seeds",
            *map(str, seeds),
            "--logs-dir",
            str(tmp_path),
            "--subsamples",
            "5",
            "--bootstrap",
            "200",
        ]
    )
    res = T.study_task(args, bench, "default", fake_train)
    # every scored cell trained once per fresh seed, shared by the runs and seeds that hold it
    assert sorted(calls) == sorted((c, s) for c in CELLS for s in (101, 102))
    assert res["region"].dice_floor == pytest.approx(0.92 - 0.05) and res["region"].params_ceiling == 95_000
    for p in res["per_seed"]:
        # single trainings (the old scoring): random's lucky cell wins; re-evaluated: it is below the floor
        assert p["random"]["single_hv"] > p["progressive"]["single_hv"] > 0
        assert p["random"]["hv"] == 0.0 < p["evolution"]["hv"] < p["progressive"]["hv"]
        assert p["progressive"]["regret"] == pytest.approx(0.0, abs=1e-12)  # its front is the reference front
    assert res["oracle"]["regret"] == pytest.approx(0.0, abs=1e-12)
    assert res["closure"][0] == pytest.approx(1.0)
    assert res["targets"]["progressive's median re-evaluated regret <= evolution's"]
    assert res["paired"]["random"][0] == 2
    # the cache is durable: a second study trains nothing
    calls.clear()
    again = T.study_task(args, bench, "default", fake_train)
    assert calls == [] and again["reference_hv"] == pytest.approx(res["reference_hv"])
    text = T.markdown(res, args.reeval_seeds, args.dice_margin)
    assert "Gap closure 1.00" in text and "| 5,000 |" in text


def test_oracle_knows_the_means_and_the_cache_averages_ok_trainings(tmp_path: Path) -> None:
    cache = T.ReEvalCache(tmp_path / "cache.jsonl")
    outcome = {("a", 1): ("ok", 0.9), ("a", 2): ("failed", None), ("b", 1): ("ok", 0.6), ("b", 2): ("ok", 0.8)}
    cache.ensure(
        ["a", "b", "a"],
        [1, 2],
        lambda e, s: {"encoding": e, "seed": s, "status": outcome[(e, s)][0], "params": 10, "dice": outcome[(e, s)][1]},
    )
    means = T.ReEvalCache(tmp_path / "cache.jsonl").means([1, 2])
    assert means["a"]["dice"] == pytest.approx(0.9) and means["b"]["dice"] == pytest.approx(0.7)
    assert math.isnan(means["a"]["analog_dice"]) and "c" not in means
    pool = [
        TrainingResult(
            network_id=i,
            encoding=e,
            blocks=1,
            dice=d,
            miou=d,
            params=1000,
            flops=1,
            train_time_s=1.0,
            inference_time_ms=1.0,
            epochs=1,
            status="ok",
        )
        for i, (e, d) in enumerate((("a", 0.7), ("b", 0.95)))
    ]
    region = T.UserRegion(params_ceiling=95_000, dice_floor=0.5)
    for e in ("a", "b"):
        means[e]["params"] = 1000.0
    # seed A says b (0.95), the means say a (0.9 vs 0.7): the oracle trains a
    assert T.oracle_set(pool, means, ["dice", "params"], region, 1) == ["a"]


def test_the_study_scores_only_finished_searches(tmp_path: Path) -> None:
    _write_runs(tmp_path, [1])  # results but no search_finished event: a run still going
    with pytest.raises(SystemExit, match="3 searches .* have not finished"):
        T.main(["--analyse-only", "--no-doc", "--tasks", "default", "--seeds", "1", "--logs-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        T.parse_args(["--reeval-seeds", "101"])  # one fresh seed is one training's luck again
    _, bench = T.parse_args(["--confirm", "--seeds", "1", "2"])
    assert bench.seeds == list(range(11, 21))


def test_reevaluations_train_at_the_budget_the_search_ranked_on() -> None:
    """Flat search: its epochs; with rungs: the top rung's cumulative epochs, and the cache key differs."""
    import hashlib
    import json

    from benchmarks.search import bench_search_replay as R
    from popnas_seg.config import RunConfig

    flat = RunConfig.model_validate(B.build_config(B.parse_args([]), "hard", "progressive", 1, None))
    assert T.reeval_config(flat) is flat
    rungs = RunConfig.model_validate(
        B.build_config(B.parse_args(["--rung-epochs", "24", "--promotion-eta", "8"]), "hard", "progressive", 1, None)
    )
    assert rungs.training_hyperparameters.epochs == 8
    assert T.reeval_config(rungs).training_hyperparameters.epochs == 24

    def key(cfg: RunConfig) -> str:
        return hashlib.sha256(json.dumps(R.measurement(cfg), sort_keys=True).encode()).hexdigest()

    assert key(T.reeval_config(rungs)) != key(T.reeval_config(flat))
