"""The search study (issue 35): progressive vs random vs evolution scored by what a user gets.

What is scored, and why it differs from bench_search.py's own tables (which score single trainings):

- **Re-evaluated fronts.** Every run searches one fixed table (bench_search's defaults: one data seed, network seed
  A = `--network-seed`). Its final Pareto set, chosen on those seed-A validation values as a user sees them, is
  re-trained under fresh network seeds B and C (`--reeval-seeds`, default 101 102) and scored on the test split
  (centre crops, as the search's inputs) with fresh analog programmings seeded by B/C; a cell's value is the mean
  over those seeds, cached per (cell, seed) in `<logs-dir>/reeval_<task>_<settings hash>.jsonl`, so a cell
  shared by runs trains once per seed. This is the issue's "cheapest faithful version": search on seed A, score
  picks by the seed-B/C means. The reference front is the front of all re-evaluated means across strategies.
- **The user-region hypervolume** (popnas_seg/search/user_region.py): log-params axis up to the U-Net's params,
  Dice and analog Dice floors = the U-Net's re-evaluated means minus `--dice-margin` (the U-Net is trained at the
  search budget under seeds B/C like any cell); beside it, the best mean Dice and analog Dice per size bucket.
- **Statistics** (search_stats.py): anytime HV-vs-networks curves of re-evaluated fronts with bootstrap bands;
  random's expectation by subsampling all uniform draws already made (random runs' cells); gap closure
  (R_random - R_progressive) / (R_random - R_oracle) with a bootstrap CI, the oracle knowing the re-evaluated
  means (it picks N cells of the re-evaluated pool greedily by mean hypervolume, then, like every run, keeps the
  front of its picks' seed-A values); a paired one-sided Wilcoxon test; the same at equal compute (each seed's
  smallest total training seconds of the three runs).
- **A frozen design**: `--confirm` runs seeds 11-20, never used while tuning, and the section records the commit.

    python -m benchmarks.search.bench_search_study --tasks hard default256 folder --seeds 1 2 3 4 5 6 7 8 9 10 \\
        --workers 2
    python -m benchmarks.search.bench_search_study --tasks hard default256 folder --confirm --workers 2
    python -m benchmarks.search.bench_search_study --quick --no-doc           # tiny settings: checks that it runs
    python -m benchmarks.search.bench_search_study --analyse-only --logs-dir DIR --tasks hard
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import hashlib
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402

from benchmarks._common import ROOT, command_line, machine, write_section  # noqa: E402
from benchmarks.search import bench_search as B  # noqa: E402
from benchmarks.search import bench_search_replay as R  # noqa: E402
from benchmarks.search import search_stats as S  # noqa: E402
from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.results import TrainingResult  # noqa: E402
from popnas_seg.runlog.events import Event  # noqa: E402
from popnas_seg.runlog.journal import Journal  # noqa: E402
from popnas_seg.runlog.tables import read_csv  # noqa: E402
from popnas_seg.search.anytime import usable_results  # noqa: E402
from popnas_seg.search.pareto import (  # noqa: E402
    greedy_hypervolume_selection,
    maximise_flags,
    objective_matrix,
    pareto_mask,
)
from popnas_seg.search.user_region import (  # noqa: E402
    DICE_MARGIN,
    SIZE_BUCKETS,
    UserRegion,
    bucket_bests,
    log_params,
    region_from_unet,
    region_hypervolume,
)

LOG = logging.getLogger("popnas_seg.study")
SECTION = "## Search study: re-evaluated fronts, user-region hypervolume, gap closure (issue 35)"
REEVAL_SEEDS = (101, 102)  # network seeds B and C: never the search's seed A
CONFIRM_SEEDS = tuple(range(11, 21))  # search seeds never used while tuning the design
UNET = "unet"  # evaluation.evaluator.UNET_ENCODING, without importing the evaluator (and Keras) here
TARGET_GAP_CLOSURE = 0.5
Means = dict[str, dict[str, float]]  # encoding -> {"params", "dice", "analog_dice"} (re-evaluated means)
Train = Callable[[str, int], dict[str, Any]]  # (encoding, network seed) -> one re-evaluation row


# -------------------------------------------------------------------------------------------- re-evaluation
class ReEvaluated(Event):
    """One line of the re-evaluation cache: the row `Train` returns, its fields as they are."""

    kind = "reevaluated"


class ReEvalCache:
    """Test-split scores of (cell, network seed), one journal line each: durable, resumable, shared by all runs
    of a task (and by studies run side by side on the same logs dir)."""

    def __init__(self, path: Path) -> None:
        self.journal = Journal(path)
        self.rows: dict[tuple[str, int], dict[str, Any]] = {
            (e["encoding"], int(e["seed"])): e for e in self.journal.events(ReEvaluated)
        }
        self.trained_now = 0

    def ensure(self, encodings: Sequence[str], seeds: Sequence[int], train: Train) -> None:
        """Train every (cell, seed) not measured yet."""
        for encoding in dict.fromkeys(encodings):
            for seed in seeds:
                if (encoding, int(seed)) not in self.rows:
                    row = train(encoding, int(seed))
                    self.journal.append(ReEvaluated(**{k: v for k, v in row.items() if k not in ("event", "time")}))
                    self.rows[(encoding, int(seed))] = row
                    self.trained_now += 1

    def means(self, seeds: Sequence[int]) -> Means:
        """Every cell measured under all `seeds`: params and the mean test Dice / analog Dice over its ok trainings
        (NaN where none trained fine or nothing was probed: such a cell adds no volume)."""
        out: Means = {}
        for encoding in {e for e, _ in self.rows}:
            if any((encoding, int(s)) not in self.rows for s in seeds):
                continue
            rows = [self.rows[(encoding, int(s))] for s in seeds]
            ok = [r for r in rows if r.get("status") == "ok"]
            out[encoding] = {
                "params": float(rows[0]["params"]),
                "dice": _mean([r.get("dice") for r in ok]),
                "analog_dice": _mean([r.get("analog_dice") for r in ok]),
                "seeds": len(ok),
            }
        return out


def _mean(values: Sequence[Any]) -> float:
    vals = [float(v) for v in values if v is not None and v != "" and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else math.nan


def reeval_config(cfg: RunConfig) -> RunConfig:
    """The config re-evaluations train under: the search's, at the budget its ranked scores came from. With
    multi-fidelity rungs that is the top rung's cumulative epochs (trained from scratch in one schedule, the
    cheapest faithful stand-in for a rung-0 run plus continuations); the flat search's epochs otherwise. The
    re-evaluation cache key follows, so flat and multi-fidelity studies never share cached cells."""
    rungs = cfg.search_strategy.rung_epochs
    if not rungs:
        return cfg
    hp = cfg.training_hyperparameters.model_copy(update={"epochs": int(rungs[-1])})
    return cfg.model_copy(update={"training_hyperparameters": hp})


def test_split_trainer(cfg: RunConfig, folder: Path) -> Train:
    """Train a cell (or the U-Net) in-process as the runner would, under network seed `seed`, and score it on the
    test split: digital Dice and, when the config probes, the analog probe's mean over fresh programmings."""
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.evaluation.evaluator import NetworkEvaluator, Trial
    from popnas_seg.search.seeds import search_network_seeds
    from popnas_seg.training.losses import dice_score

    class TestSplitEvaluator(NetworkEvaluator):
        """The probe (and its digital Dice) read the test split instead of the validation images."""

        def probe_arrays(self) -> tuple[np.ndarray, np.ndarray]:
            if self._probe_arrays is None:
                self._probe_arrays = self.data.test_arrays()
            return self._probe_arrays

    state: dict[str, Any] = {}

    def train(encoding: str, seed: int) -> dict[str, Any]:
        if "evaluator" not in state:
            state["evaluator"] = TestSplitEvaluator(cfg, load_data(cfg.dataset, seed=cfg.data_seed), LOG)
        evaluator = state["evaluator"]
        train_seed, probe_seed = search_network_seeds(seed, encoding, "common")
        job = Trial(
            network_id=0,
            encoding=encoding,
            seed=train_seed,
            probe_seed=probe_seed,
            save=False,
            architecture=cfg.architecture_hyperparameters.model_dump(mode="json"),
            out_dir=str(folder / "network"),
            probe=cfg.analog.probe,
        )
        print(f"[study] re-evaluating {encoding} under network seed {seed}", flush=True)
        result, model = evaluator.evaluate_with_model(job)
        dice = None
        if result.status == "ok":
            x, y = evaluator.probe_arrays()
            probs = model.predict(x, verbose=0, batch_size=max(1, cfg.dataset.batch_size))
            dice = float(
                dice_score(np.argmax(probs, axis=-1), y, evaluator.data.classes_count, evaluator.data.ignore_class)
            )
        return {
            "encoding": encoding,
            "seed": int(seed),
            "status": result.status,
            "params": int(result.params),
            "dice": dice,
            "analog_dice": result.analog_dice,
            "train_time_s": result.train_time_s,
            "val_dice": result.dice,
        }

    return train


# ------------------------------------------------------------------------------------------ scoring (pure)
def usable(results: Sequence[TrainingResult], objectives: Sequence[str]) -> list[TrainingResult]:
    return usable_results(list(results), list(objectives))


def front_encodings(results: Sequence[TrainingResult], objectives: Sequence[str]) -> list[str]:
    """The Pareto set a run hands its user: the front of its measured (seed-A) values, as encodings."""
    ok = usable(results, objectives)
    if not ok:
        return []
    values, maximise = objective_matrix(ok, objectives)
    return list(dict.fromkeys(r.encoding for r, on in zip(ok, pareto_mask(values, maximise)) if on))


def prefix_fronts(results: Sequence[TrainingResult], objectives: Sequence[str]) -> list[list[str]]:
    """`front_encodings` after each of the first k = 1..n networks (training order)."""
    return [front_encodings(results[:k], objectives) for k in range(1, len(results) + 1)]


def mean_matrix(encodings: Sequence[str], means: Means, objectives: Sequence[str]) -> np.ndarray:
    """Re-evaluated means of `encodings` as an objective matrix; a cell never re-evaluated is an error."""
    missing = [e for e in encodings if e not in means]
    if missing:
        raise KeyError(f"not re-evaluated: {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    values, _ = objective_matrix([means[e] for e in encodings], objectives)
    return values


def reevaluated_hv(encodings: Sequence[str], means: Means, objectives: Sequence[str], region: UserRegion) -> float:
    """The user-region hypervolume of a Pareto set's re-evaluated means (0 for an empty set)."""
    if not encodings:
        return 0.0
    return region_hypervolume(mean_matrix(encodings, means, objectives), objectives, region)


def reference_hv(means: Means, objectives: Sequence[str], region: UserRegion) -> float:
    """The reference: the front of every re-evaluated mean (all strategies, subsamples, the oracle's pool)."""
    cells = [e for e in means if e != UNET]
    return reevaluated_hv(cells, means, objectives, region)


def oracle_set(
    pool: Sequence[TrainingResult], means: Means, objectives: Sequence[str], region: UserRegion, n: int
) -> list[str]:
    """A true-mean oracle at budget `n`: it trains the `n` cells of the re-evaluated pool that add the most
    user-region hypervolume by their means (greedy), then keeps, like any run, the front of their seed-A values."""
    cells = [r for r in usable(pool, objectives) if r.encoding in means]
    cells = list({r.encoding: r for r in cells}.values())
    if not cells:
        return []
    maximise = maximise_flags(objectives)
    # NaN (never probed, or no training of the cell went fine) adds no volume (search/pareto.py)
    values = log_params(mean_matrix([r.encoding for r in cells], means, objectives), objectives)
    reference = log_params(region.reference(objectives)[None], objectives)[0]
    picks = greedy_hypervolume_selection(values, maximise, reference, min(n, len(cells)))
    return front_encodings([cells[i] for i in picks], objectives)


def regrets(reference: float, hvs: Sequence[float]) -> list[float]:
    return [reference - h for h in hvs]


# ---------------------------------------------------------------------------------------------- the study
def task_objectives(bench: argparse.Namespace) -> list[str]:
    return ["dice", "params", "analog_dice"] if bench.probe else ["dice", "params"]


def run_searches(bench: argparse.Namespace, logs_dir: Path) -> None:
    """bench_search's chains (progressive first, then the baselines at its N), resumable, `--workers` at once."""
    chains = [(task, seed) for task in bench.tasks for seed in bench.seeds]
    pool = ThreadPoolExecutor(max_workers=bench.workers)
    try:
        for future in [pool.submit(B.run_chain, bench, logs_dir, task, seed) for task, seed in chains]:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def study_task(
    args: argparse.Namespace, bench: argparse.Namespace, task: str, train: Train | None = None
) -> dict[str, Any]:
    """Everything of one task: re-evaluations (trained as needed), scores, statistics and targets."""
    objectives = task_objectives(bench)
    seeds = list(bench.seeds)
    base = reeval_config(RunConfig.model_validate(B.build_config(bench, task, "progressive", seeds[0], None)))
    runs = {seed: {s: B.load_run(bench.logs_dir, task, s, seed) for s in B.STRATEGIES} for seed in seeds}
    key = hashlib.sha256(json.dumps(R.measurement(base), sort_keys=True).encode()).hexdigest()[:10]
    cache = ReEvalCache(bench.logs_dir / f"reeval_{task}_{key}.jsonl")
    tmp = tempfile.TemporaryDirectory(prefix="study_")
    train = train or test_split_trainer(base, Path(tmp.name))
    n = int(np.median([by["progressive"].n for by in runs.values()]))
    draws = list({r.encoding: r for by in runs.values() for r in usable(by["random"].results, objectives)}.values())
    subsets = S.subsamples(len(draws), min(n, len(draws)), args.subsamples, seed=0) if draws else []

    wanted = [UNET]
    for by in runs.values():
        for run in by.values():
            wanted += [e for front in prefix_fronts(run.results, objectives) for e in front]
    sub_fronts = [front_encodings([draws[i] for i in idx], objectives) for idx in subsets]
    wanted += [e for front in sub_fronts for e in front]
    cache.ensure(wanted, args.reeval_seeds, train)
    tmp.cleanup()
    means = cache.means(args.reeval_seeds)
    unet = means[UNET]
    region = region_from_unet(unet["dice"], unet["params"], unet["analog_dice"], margin=args.dice_margin)
    ref = reference_hv(means, objectives, region)
    pool = [r for by in runs.values() for run in by.values() for r in run.results]
    oracle = oracle_set(pool, means, objectives, region, n)
    oracle_hv = reevaluated_hv(oracle, means, objectives, region)

    per_seed: list[dict[str, Any]] = []
    curves: dict[str, list[list[float]]] = {s: [] for s in B.STRATEGIES}
    for seed, by in runs.items():
        row: dict[str, Any] = {"seed": seed, "N": by["progressive"].n}
        curve_by = {
            s: [reevaluated_hv(f, means, objectives, region) for f in prefix_fronts(by[s].results, objectives)]
            for s in B.STRATEGIES
        }
        seconds = {s: [r.train_time_s or 0.0 for r in by[s].results] for s in B.STRATEGIES}
        budget = min(sum(v) for v in seconds.values())
        row["budget_s"] = budget
        for s in B.STRATEGIES:
            curves[s].append(curve_by[s])
            final = front_encodings(by[s].results, objectives)
            final_hv = curve_by[s][-1] if curve_by[s] else 0.0
            single = (
                region_hypervolume(
                    objective_matrix(usable(by[s].results, objectives), objectives)[0], objectives, region
                )
                if usable(by[s].results, objectives)
                else 0.0
            )
            row[s] = {
                "hv": final_hv,
                "regret": ref - final_hv,
                "single_hv": single,
                "networks": by[s].n,
                "front": len(final),
                "seconds": sum(seconds[s]),
                "hv_compute": S.value_at_compute(curve_by[s], seconds[s], budget),
                "networks_compute": S.prefix_at_compute(seconds[s], budget),
                "buckets": bucket_bests([means[e] for e in final]),
            }
        per_seed.append(row)

    hv = {s: [p[s]["hv"] for p in per_seed] for s in B.STRATEGIES}
    hv_c = {s: [p[s]["hv_compute"] for p in per_seed] for s in B.STRATEGIES}
    reg = {s: regrets(ref, hv[s]) for s in B.STRATEGIES}
    reg_c = {s: regrets(ref, hv_c[s]) for s in B.STRATEGIES}
    r_oracle = ref - oracle_hv
    sub_hv = [reevaluated_hv(f, means, objectives, region) for f in sub_fronts]
    r_sub = float(np.mean(regrets(ref, sub_hv))) if sub_hv else math.nan
    closure = S.gap_closure_ci(reg["random"], reg["progressive"], r_oracle, args.bootstrap)
    closure_sub = (
        S.gap_closure_ci([r_sub] * len(seeds), reg["progressive"], r_oracle, args.bootstrap)
        if sub_hv
        else (math.nan, math.nan, math.nan)
    )
    closure_c = S.gap_closure_ci(reg_c["random"], reg_c["progressive"], r_oracle, args.bootstrap)
    paired = {b: S.paired_one_sided(hv["progressive"], hv[b]) for b in B.BASELINES}
    paired_c = {b: S.paired_one_sided(hv_c["progressive"], hv_c[b]) for b in B.BASELINES}
    spearman = spearman_late(runs, base.search_strategy.score_metric)
    med = {s: float(np.median(reg[s])) for s in B.STRATEGIES}
    med_c = {s: float(np.median(hv_c[s])) for s in B.STRATEGIES}
    targets = {
        f"gap closure >= {TARGET_GAP_CLOSURE} with the CI's lower end above 0 (vs the paired random runs)": closure[0]
        >= TARGET_GAP_CLOSURE
        and closure[1] > 0,
        "progressive's median re-evaluated regret <= evolution's": med["progressive"] <= med["evolution"],
        "at equal compute progressive's median HV above random's and evolution's": med_c["progressive"]
        > med_c["random"]
        and med_c["progressive"] > med_c["evolution"],
        f"median Dice-predictor Spearman on steps >= 3 >= {B.TARGET_SPEARMAN}": spearman is not None
        and spearman >= B.TARGET_SPEARMAN,
    }
    return {
        "task": task,
        "objectives": objectives,
        "region": region,
        "unet": unet,
        "reference_hv": ref,
        "pool": len([e for e in means if e != UNET]),
        "trained_now": cache.trained_now,
        "n": n,
        "oracle": {"front": len(oracle), "hv": oracle_hv, "regret": r_oracle},
        "random_expectation": {"draws": len(draws), "subsamples": len(sub_hv), "regret": r_sub},
        "per_seed": per_seed,
        "curves": curves,
        "regret": reg,
        "medians": med,
        "medians_compute": med_c,
        "closure": closure,
        "closure_sub": closure_sub,
        "closure_compute": closure_c,
        "paired": paired,
        "paired_compute": paired_c,
        "spearman": spearman,
        "targets": targets,
        "buckets": bucket_bests([m for e, m in means.items() if e != UNET]),
    }


def spearman_late(runs: dict[int, dict[str, Any]], metric: str) -> float | None:
    """Median Dice-predictor Spearman on steps >= 3 of the progressive runs (csv/predictor_quality.csv)."""
    late = [
        B._num(q.get("spearman"))
        for by in runs.values()
        for q in read_csv(by["progressive"].path / "csv" / "predictor_quality.csv")
        if q.get("objective") == metric and (B._num(q.get("step")) or 0) >= 3
    ]
    return B._median(late)


# ------------------------------------------------------------------------------------------------- report
def _f(value: float | None, digits: int = 4) -> str:
    return B._fmt(value, digits)


def markdown(res: dict[str, Any], reeval_seeds: Sequence[int], margin: float) -> str:
    region, unet = res["region"], res["unet"]
    est, lo, hi = res["closure"]
    lines = [
        f"#### Task `{res['task']}`",
        "",
        f"U-Net at the search budget, mean of network seeds {', '.join(map(str, reeval_seeds))} on the test "
        f"split: Dice {_f(unet['dice'], 3)}, analog Dice {_f(unet['analog_dice'], 3)}, {unet['params']:,.0f} "
        f"params. Region: {region.describe()} (floors = the U-Net's minus {margin}). Reference front: "
        f"{res['pool']} re-evaluated cells, HV {_f(res['reference_hv'])}; {res['trained_now']} (cell, seed) "
        "trainings new in this invocation.",
        "",
        f"**Gap closure {_f(est, 2)}** (90 % bootstrap CI {_f(lo, 2)} - {_f(hi, 2)}) against the paired random "
        f"runs; {_f(res['closure_sub'][0], 2)} ({_f(res['closure_sub'][1], 2)} - {_f(res['closure_sub'][2], 2)}) "
        f"against random's expectation from {res['random_expectation']['subsamples']} subsamples of "
        f"{res['random_expectation']['draws']} uniform draws (regret {_f(res['random_expectation']['regret'])}); "
        f"{_f(res['closure_compute'][0], 2)} ({_f(res['closure_compute'][1], 2)} - "
        f"{_f(res['closure_compute'][2], 2)}) at equal compute. Oracle (true re-evaluated means, N = {res['n']}): "
        f"regret {_f(res['oracle']['regret'])}, front of {res['oracle']['front']}.",
        "",
        "| seed | N | strategy | networks | front | re-evaluated HV | regret | single-training HV | training s "
        "| HV at equal compute (networks) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in res["per_seed"]:
        for s in B.STRATEGIES:
            r = p[s]
            lines.append(
                f"| {p['seed']} | {p['N']} | {s} | {r['networks']} | {r['front']} | {_f(r['hv'])} "
                f"| {_f(r['regret'])} | {_f(r['single_hv'])} | {r['seconds']:.0f} "
                f"| {_f(r['hv_compute'])} ({r['networks_compute']}) |"
            )
    lines += [
        "",
        "| strategy | median regret | median HV at equal compute | seeds progressive wins "
        "| paired Wilcoxon p (progressive > this) | the same at equal compute |",
        "|---|---:|---:|---|---:|---|",
    ]
    for s in B.STRATEGIES:
        if s == "progressive":
            extra = "- | - | -"
        else:
            w, p = res["paired"][s]
            wc, pc = res["paired_compute"][s]
            extra = f"{w} of {len(res['per_seed'])} | {_f(p, 3)} | {wc} of {len(res['per_seed'])}, p {_f(pc, 3)}"
        lines.append(f"| {s} | {_f(res['medians'][s])} | {_f(res['medians_compute'][s])} | {extra} |")
    lines += [
        "",
        "Best mean Dice / analog Dice per size bucket (median over seeds of each run's final set; "
        "reference: every re-evaluated cell):",
        "",
        "| params <= | " + " | ".join(B.STRATEGIES) + " | reference |",
        "|---:|" + "---|" * 4,
    ]
    for i, bound in enumerate(SIZE_BUCKETS):
        cells = []
        for s in B.STRATEGIES:
            d = B._median([p[s]["buckets"][i]["best_dice"] for p in res["per_seed"]])
            a = B._median([p[s]["buckets"][i]["best_analog_dice"] for p in res["per_seed"]])
            cells.append(f"{_f(d, 3)} / {_f(a, 3)}")
        ref = res["buckets"][i]
        cells.append(f"{_f(ref['best_dice'], 3)} / {_f(ref['best_analog_dice'], 3)}")
        lines.append(f"| {bound:,} | " + " | ".join(cells) + " |")
    lines += ["", f"Median Dice-predictor Spearman on steps >= 3: {_f(res['spearman'], 3)}.", "", "Targets:", ""]
    lines += [f"- {name}: **{'met' if ok else 'NOT met'}**" for name, ok in res["targets"].items()]
    return "\n".join(lines)


def draw_anytime(res: dict[str, Any], path: Path, resamples: int) -> Path:
    """Re-evaluated HV vs networks trained: mean over seeds and a 90 % bootstrap band per strategy."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    for s, runs in res["curves"].items():
        mean, lo, hi = S.bootstrap_band(runs, resamples)
        if not len(mean):
            continue
        k = np.arange(1, len(mean) + 1)
        (line,) = ax.plot(k, mean, "-", label=f"{s} (mean of {len(runs)} seeds)")
        ax.fill_between(k, lo, hi, color=line.get_color(), alpha=0.2)
    ax.axhline(res["reference_hv"], color="k", ls=":", lw=1, label="reference front (all re-evaluated means)")
    ax.set_xlabel("networks trained (count)")
    ax.set_ylabel("user-region hypervolume of the re-evaluated front\n(log params up to the U-Net, 0-1)")
    ax.set_title(f"Search study, task {res['task']}: band = 90 % bootstrap CI of the mean")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def design_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return (out.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


# --------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, argparse.Namespace]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Every other option is bench_search.py's (--tasks, --seeds, --workers, ...).",
    )
    p.add_argument(
        "--reeval-seeds",
        type=int,
        nargs="+",
        default=list(REEVAL_SEEDS),
        help="fresh network seeds B, C, ... that re-train every scored cell (>= 2)",
    )
    p.add_argument("--subsamples", type=int, default=100, help="subsets of random's uniform draws (its expectation)")
    p.add_argument("--bootstrap", type=int, default=S.BOOTSTRAP, help="bootstrap resamples of every interval")
    p.add_argument("--dice-margin", type=float, default=DICE_MARGIN, help="score floors = the U-Net's minus this")
    p.add_argument(
        "--confirm",
        action="store_true",
        help=f"the frozen design's confirmation: seeds {CONFIRM_SEEDS[0]}-{CONFIRM_SEEDS[-1]} (never "
        "used while tuning), overriding --seeds",
    )
    p.add_argument("--section", default=SECTION, help="the docs/benchmarks_log.md section this invocation replaces")
    args, rest = p.parse_known_args(argv)
    if len(args.reeval_seeds) < 2:
        p.error("--reeval-seeds needs at least 2 seeds (a mean over one training is one training's luck)")
    bench = B.parse_args(rest)
    if args.confirm:
        bench.seeds = list(CONFIRM_SEEDS)
    if set(args.reeval_seeds) & {bench.network_seed}:
        p.error(f"--reeval-seeds must differ from the search's network seed {bench.network_seed}")
    return args, bench


def main(argv: list[str] | None = None) -> int:
    args, bench = parse_args(argv)
    command = command_line("benchmarks.search.bench_search_study")
    bench.logs_dir = (bench.logs_dir or Path(tempfile.mkdtemp(prefix="bench_study_"))).resolve()
    bench.logs_dir.mkdir(parents=True, exist_ok=True)
    B.prepare_folder_task(bench, bench.logs_dir)
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    if not bench.analyse_only:
        print(f"[study] run folders and logs: {bench.logs_dir}", flush=True)
        run_searches(bench, bench.logs_dir)
    missing = [
        B.run_name(t, s, seed)
        for t in bench.tasks
        for seed in bench.seeds
        for s in B.STRATEGIES
        if not B.search_finished(bench.logs_dir / B.run_name(t, s, seed))
    ]
    if missing:
        raise SystemExit(
            f"[study] {len(missing)} searches in {bench.logs_dir} have not finished "
            f"({', '.join(missing)}): run them (without --analyse-only), then score"
        )
    results = [study_task(args, bench, task) for task in bench.tasks]
    prefix = bench.logs_dir / "bench_study_hv" if bench.no_doc else ROOT / "docs" / "bench_study_hv"
    plots = [draw_anytime(res, Path(f"{prefix}_{res['task']}.png"), args.bootstrap) for res in results]
    text = [markdown(res, args.reeval_seeds, args.dice_margin) for res in results]
    for block in text:
        print(block, "\n", flush=True)
    print(f"[study] plots: {', '.join(map(str, plots))}")
    if not bench.no_doc:
        when = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
        kind = "confirmation seeds (design frozen)" if args.confirm else "tuning seeds"
        parts = [
            args.section,
            "",
            f"Date: {when}. Machine: {machine()}. Workers: {bench.workers}. Design commit: "
            f"{design_commit()}. Seeds: {', '.join(map(str, bench.seeds))} ({kind}). Wall time of this "
            f"invocation: {time.perf_counter() - start:.0f} s.",
            "",
            "Command:",
            "",
            "```",
            command,
            "```",
            "",
            f"Settings: {B.settings_text(bench)} Re-evaluation: network seeds "
            f"{', '.join(map(str, args.reeval_seeds))}, test split.",
            "",
        ]
        for res, plot, block in zip(results, plots, text):
            parts += [
                f"![re-evaluated HV vs networks, {res['task']}]({os.path.relpath(plot, ROOT / 'docs')})",
                "",
                block,
                "",
            ]
        parts.append(f"Run folders and the re-evaluation caches: `{bench.logs_dir}`.")
        write_section(bench.doc, "\n".join(parts), args.section)
        print(f"[study] wrote the '{args.section[3:]}' section of {bench.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
