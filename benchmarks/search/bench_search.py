"""Progressive Pareto search (POPNAS) vs random search vs multi-objective evolution, equal budget, over seeds.

For every task (`default` = synthetic_nuclei, `hard` = synthetic_nuclei_hard) and seed: the progressive search
runs first (`run.py` with `others.pipeline: ["search"]`); the number of networks it trained, N, becomes
`search_strategy.max_networks` of a random and an evolution run with otherwise identical settings. Every run is
a run folder `<logs-dir>/<task>_<strategy>_s<seed>`: a finished one is skipped, an interrupted one is resumed
with `run.py -r`, so the whole benchmark resumes by running the same command again (`--workers` runs several
task/seed chains at once). Every run of a task searches the same data (`dataset.seed` = `--data-seed`) and
trains and probes every network with the same seed (`search_strategy.network_seed` = `--network-seed`): a cell
scores the same in every run of the task (training is deterministic, the probe runs on seeded torch tiles), the
seeds vary the search alone, and the union front of all runs of the task is the best known front of ONE fixed
problem, as in a tabular NAS benchmark. (`--vary-data` gives each seed its own images and split, `--vary-networks`
its own network seed, as the benchmark did before 2026-12-05; the task-wide front then holds cells measured on
data, or with an initialisation, that no run of another seed saw, a floor no run can close.) Everything below
is computed from the run folders' CSVs, with ONE reference point per task shared by all its runs
(`search.reference.run_reference_point`: scores 0, params 1.1 x the largest network of the space), and hypervolume
normalised to [0, 1] by the box up to the ideal (`search.pareto.normalised_hypervolume`):

- hypervolume of the measured front vs networks trained (every prefix of the networks in training order);
- per seed and the median over seeds: final hypervolume, regret to the union front of all runs of that task
  and to the union front of that seed's runs, networks needed to reach random's final hypervolume, failed
  analog probes (csv/probe_integrity.csv);
- one-sided Mann-Whitney U p-value that progressive's final hypervolume is larger than each baseline's, and
  the paired view (the runs of one seed share its data): seeds won and a one-sided Wilcoxon signed-rank p;
- the predictors' Spearman rank correlation per step (csv/predictor_quality.csv of the progressive runs);
- the issue-12 targets, each stated as met or not.

These tables score single trainings on the old hypervolume convention (the search's own seed-A values, linear
params up to 1.1 x the largest cell): the view of the search's inputs. What a user gets (re-evaluated fronts, the
user-region hypervolume, gap closure with CIs, confirmation seeds) is `bench_search_study.py`, which runs its
searches through this file.

It prints markdown tables, saves one plot per task (median and min-max band over seeds) and, unless
`--no-doc`, replaces its own section of docs/benchmarks_log.md.

    python -m benchmarks.search.bench_search --seeds 1 2 3 4 5 --workers 2   # the full benchmark (hours)
    python -m benchmarks.search.bench_search --quick --no-doc                 # tiny settings: checks that it runs
    python -m benchmarks.search.bench_search --analyse-only --logs-dir DIR    # recompute tables from finished runs
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402

from benchmarks._common import RESULTS_LOG, ROOT, command_line, machine, write_section  # noqa: E402
from popnas_seg.atomic import atomic_write_text  # noqa: E402
from popnas_seg.config import AnalogConfig, RunConfig, SearchStrategyConfig  # noqa: E402
from popnas_seg.results import TrainingResult  # noqa: E402
from popnas_seg.runlog.tables import read_csv, write_csv  # noqa: E402
from popnas_seg.search.anytime import (  # noqa: E402
    front_hypervolume,
    hypervolume_curve,
    networks_to_reach,
    usable_results,
)
from popnas_seg.search.pareto import (  # noqa: E402
    maximise_flags,
    normalised_hypervolume,
    objective_matrix,
    pareto_mask,
)
from popnas_seg.search.reference import run_reference_point  # noqa: E402
from popnas_seg.search.strategies import progressive_budget  # noqa: E402

STRATEGIES = ("progressive", "random", "evolution")
BASELINES = ("random", "evolution")
# task -> (data set: a built-in name, or FOLDER_TASK for the generated folder; classes)
FOLDER_TASK = "folder"
TASKS = {
    "default": ("synthetic_nuclei", 2),
    "hard": ("synthetic_nuclei_hard", 3),
    "default256": ("synthetic_nuclei", 2),
    FOLDER_TASK: (FOLDER_TASK, 2),
}
# Images per task when --samples is not given. `default` (64) is the smoke task of the search study (its regret
# floor is single trainings' luck); `default256` is the same data with 4x the images (within-cell sd 0.014 ->
# 0.009, bench_rank_noise); `folder` is a real-like folder of the artefact generator (hot pixels, saturated debris,
# 10 % empty tiles; popnas_seg/data/synthetic.py), read through dataset.path as a user's folder is.
TASK_SAMPLES = {"default": 64, "hard": 64, "default256": 256, FOLDER_TASK: 128}
# Training epochs per network when --epochs is not given: the shortest budget at which one training ranks the
# task's cells (benchmarks/search/bench_rank_noise.py, docs/benchmarks_log.md). At 8 epochs the default task's
# cells explain none of their Dice variance (its tiny cells are near their ceiling while the larger ones are still
# learning); at 24 they explain half, as the hard task's do at 8.
TASK_EPOCHS = {"default": 24, "hard": 8, "default256": 24, FOLDER_TASK: 24}  # default256 / folder: as default
SECTION = "## Search: progressive vs random vs evolution"
# issue 12 targets
TARGET_REGRET_VS_RANDOM = 0.5  # progressive's median regret <= this x random's (and <= evolution's)
TARGET_FRACTION = 0.5  # progressive reaches random's final hypervolume with <= this share of N ...
TARGET_SEEDS_FRACTION = 0.8  # ... in at least this share of the seeds (4 of 5)
TARGET_SPEARMAN = 0.5  # median Dice-predictor Spearman on steps >= 3


# ------------------------------------------------------------------------------------------------------- configs
def task_epochs(args: argparse.Namespace, task: str) -> int:
    """Epochs per network on `task`: `--epochs` if given, else the task's own budget (`TASK_EPOCHS`)."""
    return TASK_EPOCHS[task] if args.epochs is None else args.epochs


def task_samples(args: argparse.Namespace, task: str) -> int:
    """Images of `task`: `--samples` if given, else the task's own (`TASK_SAMPLES`)."""
    return TASK_SAMPLES[task] if args.samples is None else args.samples


def ensure_folder_task(path: Path, size: int, count: int) -> Path:
    """The folder task's images, generated once (seed 0, artefacts, 10 % empty tiles) and written atomically
    (a folder renamed into place), so that every run of the study reads the same files."""
    if path.exists():
        return path
    from popnas_seg.data.synthetic import generate_nuclei, write_folder

    side = size + size // 2
    images, masks = generate_nuclei(count, size=(side, side), seed=0, artefacts=True, empty_fraction=0.1)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    write_folder(tmp, images, masks).replace(path)
    return path


def prepare_folder_task(args: argparse.Namespace, logs_dir: Path) -> None:
    """Point `--folder-data` at `<logs-dir>/folder_task_data` unless given, and generate it when the folder task
    is asked for."""
    if args.folder_data is None:
        args.folder_data = logs_dir / "folder_task_data"
    if FOLDER_TASK in args.tasks:
        ensure_folder_task(Path(args.folder_data), args.size, task_samples(args, FOLDER_TASK))


def build_config(
    args: argparse.Namespace, task: str, strategy: str, seed: int, max_networks: int | None
) -> dict[str, Any]:
    """One config per task for all strategies; only `strategy`, `max_networks` and the seed differ (and, with
    `--vary-data`, the data; with `--vary-networks`, the networks' seeds)."""
    size = args.size
    name, classes = TASKS[task]
    objectives = ["params", "analog_dice"] if args.probe else ["params"]
    cfg: dict[str, Any] = {
        "search_space": {"blocks": args.blocks, "lookback_depth": 2, "operators": args.operators},
        "search_strategy": {
            "strategy": strategy,
            "max_children": args.max_children,
            "max_exploration_children": args.exploration,
            "b1_max_networks": args.b1,
            "max_networks": max_networks,
            "population_size": args.population,
            "tournament_size": args.tournament,
            "predictor_epochs": args.predictor_epochs,
            "accuracy_predictor_ensemble_units": args.ensemble,
            "additional_pareto_objectives": objectives,
            "selection": args.selection,
            "network_seeding": args.network_seeding,
            "network_seed": None if args.vary_networks else args.network_seed,
        },
        "training_hyperparameters": {"epochs": task_epochs(args, task)},
        "architecture_hyperparameters": {"filters": args.filters, "motifs": 2, "normal_cells_per_motif": 0},
        "dataset": {
            "name": name,
            "classes_count": classes,
            "samples": task_samples(args, task),
            "generated_size": [size + size // 2] * 2,
            "crop": [size, size],
            "batch_size": args.batch_size,
            "validation_size": 0.25,
            "test_size": 0.1,
            "seed": seed if args.vary_data else args.data_seed,
        },
        "analog": {
            "probe": bool(args.probe),
            "probe_images": args.probe_images,
            "probe_repetitions": args.probe_repetitions,
        },
        "others": {"seed": seed, "pipeline": ["search"]},
    }
    if args.rung_epochs:  # multi-fidelity as configured (default: the default config's flat search)
        cfg["search_strategy"].update(rung_epochs=list(args.rung_epochs), promotion_eta=args.promotion_eta)
    if name == FOLDER_TASK:  # a user's folder: read through dataset.path, every image used
        if args.folder_data is None:
            raise SystemExit("[bench] the folder task needs --folder-data (bench_search's main sets it)")
        cfg["dataset"] = {k: v for k, v in cfg["dataset"].items() if k != "generated_size"}
        cfg["dataset"].update(name=None, path=str(Path(args.folder_data).resolve()))
    return cfg


# predictor_quality.csv objective -> the TrainingResult field it predicts
QUALITY_FIELDS = {"dice": "dice", "analog_dice": "analog_dice", "time": "train_time_s"}


def run_name(task: str, strategy: str, seed: int) -> str:
    return f"{task}_{strategy}_s{seed}"


def search_finished(folder: Path) -> bool:
    journal = folder / "restore" / "journal.jsonl"
    if not journal.exists():
        return False
    for line in journal.read_text().splitlines():
        try:
            if json.loads(line).get("event") == "search_finished":
                return True
        except json.JSONDecodeError:
            continue
    return False


def run_search(cfg: dict[str, Any], logs_dir: Path, name: str) -> None:
    """Run one search through the real CLI, or resume its run folder; a finished one is skipped.

    The wall time of every session adds up in `<name>.wall_s`. A failing run stops the benchmark."""
    folder = logs_dir / name
    if search_finished(folder):
        print(f"[bench] {name}: already finished, skipped", flush=True)
        return
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    if folder.exists():
        cmd = [sys.executable, str(ROOT / "run.py"), "-r", str(folder)]
        what = "resuming"
    else:
        cfg_path = logs_dir / f"{name}.json"
        atomic_write_text(cfg_path, json.dumps(cfg, indent=1))
        cmd = [sys.executable, str(ROOT / "run.py"), "-j", str(cfg_path), "--name", name, "--logs-dir", str(logs_dir)]
        what = "running"
    print(f"[bench] {time.strftime('%H:%M:%S')} {what} {name} ...", flush=True)
    start = time.perf_counter()
    with (logs_dir / f"{name}.log").open("a") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    wall_file = logs_dir / f"{name}.wall_s"
    before = float(wall_file.read_text()) if wall_file.exists() else 0.0
    atomic_write_text(wall_file, f"{before + wall:.3f}\n")
    if proc.returncode != 0:
        raise SystemExit(f"[bench] {name} failed with exit code {proc.returncode}; see {logs_dir / (name + '.log')}")
    print(f"[bench] {time.strftime('%H:%M:%S')} {name} done in {wall:.0f} s", flush=True)


def run_chain(args: argparse.Namespace, logs_dir: Path, task: str, seed: int) -> None:
    """Progressive first (it sets N), then the baselines at budget N.

    With `--strategies` leaving progressive out, the baselines run at the progressive search's planned budget
    (or at the N of a progressive run folder already there), so that they can run beside a progressive change
    that keeps the budget."""
    name = run_name(task, "progressive", seed)
    results_csv = logs_dir / name / "csv" / "training_results.csv"
    if "progressive" in args.strategies:
        run_search(build_config(args, task, "progressive", seed, None), logs_dir, name)
    if "progressive" in args.strategies or search_finished(logs_dir / name):
        n = len(read_csv(results_csv))
        print(f"[bench] {task} seed {seed}: progressive trained N = {n} networks", flush=True)
    else:
        n = progressive_budget(RunConfig.model_validate(build_config(args, task, "progressive", seed, None)))
        print(f"[bench] {task} seed {seed}: baselines at the planned progressive budget N = {n}", flush=True)
    for strategy in BASELINES:
        if strategy in args.strategies:
            run_search(build_config(args, task, strategy, seed, n), logs_dir, run_name(task, strategy, seed))


# ------------------------------------------------------------------------------------------------------ analysis
@dataclass
class RunData:
    """The trained networks of one run in training order, plus what the analysis derives from them."""

    task: str
    strategy: str
    seed: int
    path: Path
    results: list[TrainingResult]
    wall_s: float | None
    failed_probes: int
    hv_curve: list[float] = field(default_factory=list)  # normalised hypervolume after k = 1..N networks

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def final_hv(self) -> float:
        return self.hv_curve[-1] if self.hv_curve else 0.0


def load_run(logs_dir: Path, task: str, strategy: str, seed: int) -> RunData:
    path = logs_dir / run_name(task, strategy, seed)
    rows = read_csv(path / "csv" / "training_results.csv")
    if not rows:
        raise SystemExit(f"[bench] no csv/training_results.csv in {path}: did the search run?")
    results = sorted((TrainingResult.from_dict(r) for r in rows), key=lambda r: r.network_id)
    wall_file = logs_dir / f"{path.name}.wall_s"
    wall = float(wall_file.read_text()) if wall_file.exists() else None
    failed = sum(r.get("status") == "failed" for r in read_csv(path / "csv" / "probe_integrity.csv"))
    return RunData(task, strategy, seed, path, results, wall, failed)


FIXTURE_COLUMNS = (
    "task",
    "strategy",
    "seed",
    "network_id",
    "encoding",
    "blocks",
    "params",
    "flops",
    "dice",
    "analog_dice",
    "epochs",
    "status",
    "origin",
    "step",
)


def write_fixture(path: Path, logs_dir: Path, tasks: list[str], seeds: list[int]) -> Path:
    """Every network of every run (one row each, run order), so that a test can fit predictors on real results."""
    rows = []
    for task in tasks:
        for seed in seeds:
            for strategy in STRATEGIES:
                name = run_name(task, strategy, seed)
                for row in read_csv(logs_dir / name / "csv" / "training_results.csv"):
                    rows.append({"task": task, "strategy": strategy, "seed": seed, **row})
    return write_csv(path, rows, FIXTURE_COLUMNS)


def one_sided_mwu(a: list[float], b: list[float]) -> float | None:
    """p-value of Mann-Whitney U that `a` tends to be larger than `b` (None with fewer than 2 values each)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="greater").pvalue)


def one_sided_paired(a: list[float], b: list[float]) -> tuple[int, float | None]:
    """Wins of `a` over `b` pair by pair, and the p-value of a one-sided Wilcoxon signed-rank test.

    Why paired: with `--vary-networks` (or `--vary-data`) the runs of one seed share network seeds (or data) that
    move every strategy's hypervolume by more than the strategies differ (the seed-to-seed spread hides a
    consistent win from Mann-Whitney U); with both fixed, a seed pairs the runs of one search seed."""
    diffs = [x - y for x, y in zip(a, b)]
    wins = sum(d > 0 for d in diffs)
    if len(diffs) < 2 or all(d == 0 for d in diffs):
        return wins, None
    from scipy.stats import wilcoxon

    return wins, float(wilcoxon(diffs, alternative="greater").pvalue)


def _median(values: list[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.median(vals)) if vals else None


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def analyse_task(args: argparse.Namespace, logs_dir: Path, task: str, seeds: list[int]) -> dict[str, Any]:
    """Every table and number of one task, from the run folders' CSVs."""
    objectives = ["dice", "params", "analog_dice"] if args.probe else ["dice", "params"]
    cfg = RunConfig.model_validate(build_config(args, task, "progressive", seeds[0], None))
    input_shape = (args.size, args.size, cfg.dataset.generated_channels)
    runs = {seed: {s: load_run(logs_dir, task, s, seed) for s in STRATEGIES} for seed in seeds}
    everything = [r for by in runs.values() for run in by.values() for r in usable_results(run.results, objectives)]
    values, _ = objective_matrix(everything, objectives)
    # ONE reference point for every run of the task: the params bound comes from the search space, not from
    # what a strategy happened to train
    reference = run_reference_point(objectives, cfg, values, input_shape, cfg.dataset.classes_count)
    union_hv = front_hypervolume(everything, objectives, reference)
    union_front = int(pareto_mask(values, maximise_flags(objectives)).sum()) if everything else 0
    for by in runs.values():
        for run in by.values():
            run.hv_curve = hypervolume_curve(run.results, objectives, reference)

    per_seed = []
    for seed, by in runs.items():
        rand = by["random"]
        # the runs of one seed share its data and network seeds, so a cell scores the same in each: their union
        # front is the best known front of what this seed's runs could measure
        seed_union = front_hypervolume([r for run in by.values() for r in run.results], objectives, reference)
        row: dict[str, Any] = {"seed": seed, "N": by["progressive"].n, "seed_union_hv": seed_union}
        for s in STRATEGIES:
            run = by[s]
            row[s] = {
                "hv": run.final_hv,
                "regret": union_hv - run.final_hv,
                "seed_regret": seed_union - run.final_hv,
                "networks": run.n,
                "ok": sum(r.status == "ok" for r in run.results),
                "failed_probes": run.failed_probes,
                "reach": networks_to_reach(run.hv_curve, rand.final_hv) if s != "random" else rand.n,
                "wall_s": run.wall_s,
            }
        per_seed.append(row)

    medians = {
        s: {
            "hv": _median([p[s]["hv"] for p in per_seed]),
            "regret": _median([p[s]["regret"] for p in per_seed]),
            "seed_regret": _median([p[s]["seed_regret"] for p in per_seed]),
            "failed_probes": sum(p[s]["failed_probes"] for p in per_seed),
        }
        for s in STRATEGIES
    }
    pvalues = {
        b: one_sided_mwu([p["progressive"]["hv"] for p in per_seed], [p[b]["hv"] for p in per_seed]) for b in BASELINES
    }
    paired = {
        b: one_sided_paired([p["progressive"]["hv"] for p in per_seed], [p[b]["hv"] for p in per_seed])
        for b in BASELINES
    }

    quality = []
    for seed, by in runs.items():
        for row in read_csv(by["progressive"].path / "csv" / "predictor_quality.csv"):
            field_name = QUALITY_FIELDS.get(str(row.get("objective")))
            step = _num(row.get("step"))
            measured = (
                []
                if field_name is None
                else [
                    v
                    for r in by["progressive"].results
                    if r.status == "ok" and r.step == step
                    if (v := _num(getattr(r, field_name))) is not None
                ]
            )
            quality.append(
                {"seed": seed, **row, "measured_range": max(measured) - min(measured) if len(measured) >= 2 else None}
            )
    late = [
        _num(q.get("spearman"))
        for q in quality
        if q.get("objective") == cfg.search_strategy.score_metric and (_num(q.get("step")) or 0) >= 3
    ]
    spearman_late = _median(late)

    reach_ok = [
        p["progressive"]["reach"] is not None and p["progressive"]["reach"] <= TARGET_FRACTION * p["N"]
        for p in per_seed
    ]
    prog, rand, evo = (medians[s]["regret"] for s in STRATEGIES)
    sprog, srand, sevo = (medians[s]["seed_regret"] for s in STRATEGIES)
    targets = {
        f"progressive median regret <= {TARGET_REGRET_VS_RANDOM} x random's": (
            prog is not None and rand is not None and prog <= TARGET_REGRET_VS_RANDOM * rand
        ),
        "progressive median regret <= evolution's": prog is not None and evo is not None and prog <= evo,
        f"the same, regret to each seed's own union front: progressive <= {TARGET_REGRET_VS_RANDOM} x random's": (
            sprog is not None and srand is not None and sprog <= TARGET_REGRET_VS_RANDOM * srand
        ),
        "the same, regret to each seed's own union front: progressive <= evolution's": (
            sprog is not None and sevo is not None and sprog <= sevo
        ),
        f"progressive reaches random's final HV with <= {TARGET_FRACTION:.0%} of N in >= "
        f"{TARGET_SEEDS_FRACTION:.0%} of seeds": sum(reach_ok) >= TARGET_SEEDS_FRACTION * len(per_seed),
        f"median Dice-predictor Spearman on steps >= 3 >= {TARGET_SPEARMAN}": (
            spearman_late is not None and spearman_late >= TARGET_SPEARMAN
        ),
    }
    return {
        "task": task,
        "objectives": objectives,
        "reference": reference,
        "union_hv": union_hv,
        "union_front": union_front,
        "runs": runs,
        "per_seed": per_seed,
        "medians": medians,
        "pvalues": pvalues,
        "paired": paired,
        "quality": quality,
        "spearman_late": spearman_late,
        "targets": targets,
        "reach_ok": reach_ok,
        "regret_sources": regret_sources(runs, objectives, reference),
    }


def regret_sources(
    runs: dict[int, dict[str, RunData]], objectives: list[str], reference: np.ndarray
) -> list[dict[str, Any]]:
    """Every network of the task's union front, the runs that trained it, and the hypervolume each strategy's run
    would gain by adding it (median over seeds): where a strategy's regret comes from (a corner it never drew,
    or the top of the front at some size)."""
    trained = [
        (s, seed, r)
        for seed, by in runs.items()
        for s, run in by.items()
        for r in usable_results(run.results, objectives)
    ]
    if not trained:
        return []
    values, maximise = objective_matrix([r for _, _, r in trained], objectives)
    on_front = pareto_mask(values, maximise)
    points: dict[tuple[float, ...], dict[str, Any]] = {}
    for (s, seed, r), v, front in zip(trained, values, on_front):
        if front:
            row = points.setdefault(tuple(float(x) for x in v), {"values": v, "encoding": r.encoding, "by": set()})
            row["by"].add(f"{s} s{seed}")
    # each run's own front, read once: (objective matrix, its hypervolume) per strategy, one per seed
    own: dict[str, list[tuple[np.ndarray, float]]] = {s: [] for s in STRATEGIES}
    for by in runs.values():
        for s in STRATEGIES:
            mine, _ = objective_matrix(usable_results(by[s].results, objectives), objectives)
            own[s].append((mine, normalised_hypervolume(mine, objectives, reference)))
    rows = []
    for key in sorted(points, key=lambda k: (k[objectives.index("params")] if "params" in objectives else 0, k)):
        point = points[key]
        gains = {
            s: float(
                np.median(
                    [
                        normalised_hypervolume(np.vstack([mine, point["values"][None]]), objectives, reference) - hv
                        for mine, hv in own[s]
                    ]
                )
            )
            for s in STRATEGIES
        }
        rows.append(
            {
                **{o: float(point["values"][j]) for j, o in enumerate(objectives)},
                "encoding": point["encoding"],
                "trained_by": sorted(point["by"]),
                "gain": gains,
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------------- report
def markdown_tables(res: dict[str, Any]) -> str:
    task = res["task"]
    lines = [
        f"#### Task `{task}` ({TASKS[task][0]})",
        "",
        f"Union front of all runs: {res['union_front']} networks, normalised hypervolume "
        f"{_fmt(res['union_hv'])}. Regret = union hypervolume - the run's final hypervolume. Seed regret = "
        "the hypervolume of the union front of that seed's three runs (same data and network seeds, so every "
        "cell scores alike in each) - the run's final hypervolume.",
        "",
        "| seed | N | strategy | networks (ok) | final HV | regret | seed regret | reaches random's final HV "
        "after | failed probes | run wall (s) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in res["per_seed"]:
        for s in STRATEGIES:
            r = p[s]
            reach = (
                "-"
                if s == "random"
                else ("never" if r["reach"] is None else f"{r['reach']} ({r['reach'] / p['N']:.0%} of N)")
            )
            lines.append(
                f"| {p['seed']} | {p['N']} | {s} | {r['networks']} ({r['ok']}) | {_fmt(r['hv'])} "
                f"| {_fmt(r['regret'])} | {_fmt(r['seed_regret'])} | {reach} | {r['failed_probes']} "
                f"| {_fmt(r['wall_s'], 0)} |"
            )
    lines += [
        "",
        "| strategy | median final HV | median regret | median seed regret | failed probes (all seeds) "
        "| Mann-Whitney U p (progressive HV > this, one-sided) | seeds progressive wins (same seed) "
        "| paired Wilcoxon p (one-sided) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in STRATEGIES:
        m = res["medians"][s]
        if s == "progressive":
            p = wins = wp = "-"
        else:
            p = _fmt(res["pvalues"][s], 3)
            wins = f"{res['paired'][s][0]} of {len(res['per_seed'])}"
            wp = _fmt(res["paired"][s][1], 3)
        lines.append(
            f"| {s} | {_fmt(m['hv'])} | {_fmt(m['regret'])} | {_fmt(m['seed_regret'])} | {m['failed_probes']} "
            f"| {p} | {wins} | {wp} |"
        )
    if res["regret_sources"]:
        lines += [
            "",
            "Where the regret comes from: each network of the union front, and the hypervolume a run would "
            "gain by adding it to its own front (median over seeds, x 1000).",
            "",
            "| params | "
            + " | ".join(o for o in res["objectives"] if o != "params")
            + " | trained by | "
            + " | ".join(STRATEGIES)
            + " |",
            "|---:|" + "---:|" * (len(res["objectives"]) - 1) + "---|" + "---:|" * len(STRATEGIES),
        ]
        for row in res["regret_sources"]:
            lines.append(
                f"| {row.get('params', 0):,.0f} | "
                + " | ".join(f"{row[o]:.4f}" for o in res["objectives"] if o != "params")
                + f" | {', '.join(row['trained_by'])} | "
                + " | ".join(f"{1000 * row['gain'][s]:.1f}" for s in STRATEGIES)
                + " |"
            )
    lines += [
        "",
        "Predictor quality on the networks each step trained (progressive runs, csv/predictor_quality.csv); "
        f"median Dice Spearman on steps >= 3: {_fmt(res['spearman_late'], 3)}. Measured range: the largest "
        "minus the smallest measured value of those n networks (Dice, analog Dice, seconds); ranks among "
        "values closer than one training's noise are mostly noise.",
        "",
        "| seed | step | objective | n | Spearman | Kendall | MAPE | measured range |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    if not res["quality"]:
        lines.append("| - | - | (no rows: no step with >= 2 predicted-and-trained networks) | | | | | |")
    for q in res["quality"]:
        lines.append(
            f"| {q['seed']} | {q['step']} | {q['objective']} | {q['n']} | {_fmt(_num(q.get('spearman')), 3)} "
            f"| {_fmt(_num(q.get('kendall')), 3)} | {_fmt(_num(q.get('mape')), 3)} "
            f"| {_fmt(q.get('measured_range'), 3)} |"
        )
    lines += ["", "Targets (issue 12):", ""]
    lines += [f"- {name}: **{'met' if ok else 'NOT met'}**" for name, ok in res["targets"].items()]
    return "\n".join(lines)


def draw_plot(res: dict[str, Any], path: Path) -> Path:
    """Hypervolume vs networks trained per strategy: median and min-max band over the seeds."""
    from popnas_seg.plots import plot_hypervolume_spread

    curves = {s: [res["runs"][seed][s].hv_curve for seed in res["runs"]] for s in STRATEGIES}
    path.parent.mkdir(parents=True, exist_ok=True)
    return plot_hypervolume_spread(curves, path, f"Hypervolume vs networks trained, task {res['task']}")


def settings_text(args: argparse.Namespace) -> str:
    probe = (
        f"dice (max) + params (min) + analog_dice (max: the default config's risk-aware probe score, mean - "
        f"{AnalogConfig().risk_k:g} x std of the analog Dice after {AnalogConfig().t_inference / 86400:g} days of "
        f"PCM drift, on {args.probe_images} validation images x {args.probe_repetitions} programmings)"
        if args.probe
        else "dice (max) + params (min) only (--no-probe)"
    )
    data = (
        "each seed its own images and split (--vary-data)"
        if args.vary_data
        else f"one set of images and one split per task (data seed {args.data_seed})"
    )
    nets = (
        "each seed its own network seed (--vary-networks)"
        if args.vary_networks
        else f"one network seed per task ({args.network_seed}): a cell scores the same in every run of the task"
    )
    varied = [
        what for what, on in (("the weight initialisation", args.vary_networks), ("the data", args.vary_data)) if on
    ]
    varies = ", ".join(["the search", *varied]) if varied else "the search alone"
    budgets = ", ".join(f"{task_epochs(args, t)} epoch(s) per network ({t})" for t in args.tasks)
    if args.rung_epochs:
        budgets += (
            f", then rungs at {', '.join(map(str, args.rung_epochs))} cumulative epochs for ceil(n / "
            f"{args.promotion_eta}) of each rung"
        )
    images = ", ".join(f"{task_samples(args, t)} ({t})" for t in args.tasks)
    return (
        f"images per task {images} cropped to {args.size}x{args.size}, {budgets}, "
        f"B = {args.blocks} blocks, operators {', '.join(args.operators)}, K = {args.max_children} "
        f"({args.selection} selection), {args.exploration} exploration child(ren), step 1: "
        f"{'every one-block cell' if args.b1 is None else f'{args.b1} cells (params-stratified)'}, predictor "
        f"{args.predictor_epochs} epochs x {args.ensemble} GIN members, evolution population {args.population} / "
        f"tournament {args.tournament}, network seeding {args.network_seeding}. Data: {data}; networks: {nets}; "
        f"the seeds vary {varies}. "
        f"Objectives: {probe}."
    )


def section_text(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    plots: list[Path],
    command: str,
    when: str,
    logs_dir: Path,
    total_s: float | None,
) -> str:
    parts = [
        SECTION,
        "",
        f"Date: {when}. Machine: {machine()}. Workers: {args.workers}.",
        f"Benchmark wall time of this invocation: {_fmt(total_s, 0)} s (per-run wall times in the tables)."
        if total_s is not None
        else "",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        f"Settings: {settings_text(args)} Seeds: {', '.join(map(str, args.seeds))}.",
        "",
        "Per task and seed the progressive search runs first; the number of networks it trained, N, is the budget "
        "of the random and the evolution run. Hypervolume: ONE reference point per task (scores 0, params 1.1 x "
        "the largest network of the space), normalised by the box up to the ideal (scores 1, 0 params).",
    ]
    for res, plot in zip(results, plots):
        ref = ", ".join(f"{o} {v:,.4g}" for o, v in zip(res["objectives"], res["reference"]))
        parts += [
            "",
            f"Reference point ({res['task']}): {ref}.",
            "",
            f"![hypervolume vs networks trained, {res['task']}]({os.path.relpath(plot, ROOT / 'docs')})",
            "",
            markdown_tables(res),
        ]
    parts += ["", f"Run folders (CSVs, logs): `{logs_dir}`."]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="seeds (each: 3 searches per task)")
    p.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["default", "hard"])
    p.add_argument(
        "--strategies",
        nargs="+",
        choices=STRATEGIES,
        default=list(STRATEGIES),
        help="searches to run (the analysis needs all three run folders of every task and seed)",
    )
    p.add_argument("--workers", type=int, default=1, help="task/seed chains run at the same time")
    p.add_argument("--size", type=int, default=32, help="image side the networks see (divisible by 4)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs per network on every task (default: the task's own, "
        + ", ".join(f"{t} {e}" for t, e in TASK_EPOCHS.items())
        + ": the shortest at which one training ranks the task's cells)",
    )
    p.add_argument("--blocks", type=int, default=3, help="B: maximum blocks per cell")
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="images per task (default: the task's own, "
        + ", ".join(f"{t} {n}" for t, n in TASK_SAMPLES.items())
        + ")",
    )
    p.add_argument(
        "--folder-data",
        type=Path,
        default=None,
        help="the folder task's images/ and masks/ (default: <logs-dir>/folder_task_data, generated once)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--filters", type=int, default=8)
    p.add_argument(
        "--max-children",
        type=int,
        default=7,
        help="K of the progressive search (7 with b1 10: N = 25, and step 2's predicted picks start at "
        "network 11; docs/benchmarks_log.md)",
    )
    p.add_argument("--exploration", type=int, default=1, help="exploration children per step")
    p.add_argument("--b1", type=int, default=10, help="networks of step 1 (N = b1 + (B-1) K + (B-2) exploration)")
    p.add_argument("--selection", choices=["hypervolume", "score"], default="hypervolume")
    p.add_argument(
        "--data-seed",
        type=int,
        default=1,
        help="dataset.seed of every run: all seeds of a task search the same images and split",
    )
    p.add_argument(
        "--vary-data",
        action="store_true",
        help="each seed also draws its own images and split (dataset.seed = the seed)",
    )
    p.add_argument(
        "--network-seed",
        type=int,
        default=1,
        help="search_strategy.network_seed of every run: all seeds of a task train and probe a cell alike",
    )
    p.add_argument(
        "--vary-networks",
        action="store_true",
        help="each seed trains its networks under its own seed (network_seed = the seed)",
    )
    p.add_argument(
        "--network-seeding",
        choices=["common", "per_network"],
        default="common",
        help="search_strategy.network_seeding of every run (common: one seed for all networks of a run)",
    )
    p.add_argument(
        "--rung-epochs",
        type=int,
        nargs="*",
        default=list(SearchStrategyConfig().rung_epochs),
        help="search_strategy.rung_epochs of every run (cumulative epochs of the rungs above --epochs; default: "
        "the default config's, so the benchmark searches as a user's default run does)",
    )
    p.add_argument(
        "--promotion-eta",
        type=int,
        default=SearchStrategyConfig().promotion_eta,
        help="search_strategy.promotion_eta with --rung-epochs",
    )
    p.add_argument("--population", type=int, default=8, help="evolution population size")
    p.add_argument("--tournament", type=int, default=3, help="evolution tournament size")
    p.add_argument("--predictor-epochs", type=int, default=40)
    p.add_argument("--ensemble", type=int, default=2, help="GIN accuracy-predictor ensemble members")
    p.add_argument(
        "--operators", nargs="+", default=["identity", "3x3 conv", "3x3:2dr conv", "1x3-3x1 conv", "2x2 maxpool"]
    )
    p.add_argument("--no-probe", dest="probe", action="store_false", help="objectives dice + params only")
    p.add_argument("--probe-images", type=int, default=16, help="validation images the probe scores (16: all)")
    p.add_argument(
        "--probe-repetitions",
        type=int,
        default=8,
        help="programmings per probe: at 2, one hard-task probe moved by 0.02-0.07 Dice between two "
        "programming draws, more than the front's cells differ (docs/benchmarks_log.md)",
    )
    p.add_argument("--quick", action="store_true", help="tiny settings that only check the benchmark runs")
    p.add_argument("--logs-dir", type=Path, default=None, help="run folders (default: a new temp dir); reuse to resume")
    p.add_argument("--analyse-only", action="store_true", help="only recompute the report from --logs-dir")
    p.add_argument("--doc", type=Path, default=RESULTS_LOG)
    p.add_argument(
        "--plot-prefix", type=Path, default=ROOT / "docs" / "bench_search_hv", help="plots go to <prefix>_<task>.png"
    )
    p.add_argument(
        "--fixture",
        type=Path,
        default=None,
        help="also write every run's trained networks (task, strategy, seed + training_results columns) "
        "to this CSV: the recorded data tests/test_predictor_fixture.py ranks",
    )
    p.add_argument("--no-doc", action="store_true", help="print the tables, do not touch docs/ (plots: logs dir)")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.epochs, args.blocks, args.samples, args.batch_size = 16, 1, 2, 24, 8
        args.filters, args.max_children, args.exploration, args.b1 = 4, 2, 1, 3
        args.predictor_epochs, args.probe_images, args.population, args.ensemble = 8, 4, 3, 1
        args.operators = ["identity", "3x3 conv", "2x2 maxpool"]
    if args.analyse_only and args.logs_dir is None:
        p.error("--analyse-only needs --logs-dir")
    if args.workers < 1:
        p.error("--workers must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("benchmarks.search.bench_search")
    logs_dir = (args.logs_dir or Path(tempfile.mkdtemp(prefix="bench_search_"))).resolve()
    logs_dir.mkdir(parents=True, exist_ok=True)
    prepare_folder_task(args, logs_dir)
    start = time.perf_counter()
    if not args.analyse_only:
        print(f"[bench] run folders and logs: {logs_dir}", flush=True)
        chains = [(task, seed) for task in args.tasks for seed in args.seeds]  # task-major: --tasks orders the work
        pool = ThreadPoolExecutor(max_workers=args.workers)
        try:
            for future in [pool.submit(run_chain, args, logs_dir, task, seed) for task, seed in chains]:
                future.result()
        finally:  # a failed run stops the benchmark: queued chains never start, running ones finish
            pool.shutdown(wait=True, cancel_futures=True)
    total = None if args.analyse_only else time.perf_counter() - start
    missing = [
        run_name(t, s, seed)
        for t in args.tasks
        for seed in args.seeds
        for s in STRATEGIES
        if not search_finished(logs_dir / run_name(t, s, seed))
    ]
    if missing and args.analyse_only:
        raise SystemExit(f"[bench] {len(missing)} searches in {logs_dir} have not finished: {', '.join(missing)}")
    if missing:
        print(
            f"[bench] not analysed: {len(missing)} searches have not finished yet ({', '.join(missing)}); run "
            f"the other strategies into {logs_dir}, then --analyse-only",
            flush=True,
        )
        return 0
    results = [analyse_task(args, logs_dir, task, args.seeds) for task in args.tasks]
    for res in results:
        print(markdown_tables(res), "\n")
    if args.fixture is not None:
        print(f"[bench] fixture: {write_fixture(args.fixture, logs_dir, args.tasks, args.seeds)}")
    prefix = logs_dir / "bench_search_hv" if args.no_doc else args.plot_prefix
    plots = [draw_plot(res, Path(f"{prefix}_{res['task']}.png")) for res in results]
    print(f"[bench] plots: {', '.join(map(str, plots))}")
    if not args.no_doc:
        when = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
        write_section(args.doc, section_text(args, results, plots, command, when, logs_dir, total), SECTION)
        print(f"[bench] wrote the '{SECTION[3:]}' section of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
