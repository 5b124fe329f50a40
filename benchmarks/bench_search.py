"""Progressive Pareto search (POPNAS) vs random search vs regularised evolution, at the same network budget.

For every seed: the progressive search runs first (synthetic nuclei, `run.py` with `others.pipeline: ["search"]`);
the number of networks it trained, N, becomes `search_strategy.max_networks` of a random and an evolution run
with otherwise identical settings. Everything below is computed from the run folders' CSVs, with ONE reference
point shared by the three strategies (`search.pareto.reference_point`, params bound from the search space):

- hypervolume of the measured front vs networks trained, recomputed on each prefix of networks in training order
  (network id), normalised by the reference box (so 1.0 = a perfect network with 0 params);
- final hypervolume and the ratio progressive / random;
- the number of networks progressive needs to reach random's final hypervolume;
- the best Dice among networks with at most a params budget;
- the predictors' Spearman rank correlation per step (csv/predictor_quality.csv of the progressive run).

It prints markdown tables, saves a plot under docs/ and replaces its own section of docs/BENCHMARKS.md.

    python benchmarks/bench_search.py                       # 32x32, 3 epochs, B=3 (about half an hour on 2 cores)
    python benchmarks/bench_search.py --quick               # tiny settings: checks that it runs (minutes)
    python benchmarks/bench_search.py --analyse-only --logs-dir DIR   # recompute tables from finished runs
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from popnas_seg.atomic import atomic_write_text  # noqa: E402
from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.results import TrainingResult  # noqa: E402
from popnas_seg.runlog.tables import read_csv  # noqa: E402
from popnas_seg.search.pareto import hypervolume, objective_matrix, reference_point  # noqa: E402

STRATEGIES = ("progressive", "random", "evolution")
SECTION = "## Search: progressive vs random vs evolution"
TARGET_FRACTION = 0.5  # progressive must reach random's final hypervolume with at most this share of the budget
TARGET_RATIO = 1.2  # and end with at least this multiple of random's final hypervolume


# ------------------------------------------------------------------------------------------------------- configs
def build_config(args: argparse.Namespace, strategy: str, seed: int, max_networks: int | None) -> dict[str, Any]:
    """One config for all strategies; only `strategy`, `max_networks` and the seed differ between runs."""
    size = args.size
    objectives = ["params", "analog_robustness"] if args.probe else ["params"]
    return {
        "search_space": {"blocks": args.blocks, "lookback_depth": 2, "operators": args.operators},
        "search_strategy": {
            "strategy": strategy, "max_children": args.max_children,
            "max_exploration_children": args.exploration, "b1_max_networks": args.b1,
            "max_networks": max_networks, "population_size": args.population, "tournament_size": args.tournament,
            "predictor_epochs": args.predictor_epochs, "accuracy_predictor_ensemble_units": args.ensemble,
            "additional_pareto_objectives": objectives,
        },
        "training_hyperparameters": {"epochs": args.epochs},
        "architecture_hyperparameters": {"filters": args.filters, "motifs": 2, "normal_cells_per_motif": 0},
        "dataset": {"name": "synthetic_nuclei", "samples": args.samples, "generated_size": [size + size // 2] * 2,
                    "resize": [size, size], "batch_size": args.batch_size, "validation_size": 0.25,
                    "test_size": 0.1},
        "analog": {"probe": bool(args.probe), "probe_images": args.probe_images,
                   "probe_repetitions": args.probe_repetitions},
        "others": {"seed": seed, "pipeline": ["search"]},
    }


def run_search(cfg: dict[str, Any], logs_dir: Path, name: str, log_file: Path) -> float:
    """Run one search through the real CLI; returns its wall time. A failing run stops the benchmark."""
    cfg_path = logs_dir / f"{name}.json"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(ROOT / "run.py"), "-j", str(cfg_path), "--name", name, "--logs-dir", str(logs_dir)]
    print(f"[bench] {time.strftime('%H:%M:%S')} running {name} ({cfg['search_strategy']['strategy']}) ...", flush=True)
    start = time.perf_counter()
    with log_file.open("a") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"[bench] {name} failed with exit code {proc.returncode}; see {log_file}")
    print(f"[bench] {time.strftime('%H:%M:%S')} {name} done in {wall:.0f} s", flush=True)
    (logs_dir / f"{name}.wall_s").write_text(f"{wall:.3f}\n")
    return wall


# ------------------------------------------------------------------------------------------------------ analysis
@dataclass
class RunData:
    """The trained networks of one run in training order, plus what the analysis derives from them."""

    strategy: str
    seed: int
    path: Path
    results: list[TrainingResult]
    wall_s: float | None
    hv_curve: list[float] = field(default_factory=list)  # normalised hypervolume after k = 1..N networks

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def final_hv(self) -> float:
        return self.hv_curve[-1] if self.hv_curve else 0.0


def load_run(path: Path, strategy: str, seed: int) -> RunData:
    rows = read_csv(path / "csv" / "training_results.csv")
    if not rows:
        raise SystemExit(f"[bench] no csv/training_results.csv in {path}: did the search run?")
    results = sorted((TrainingResult.from_dict(r) for r in rows), key=lambda r: r.network_id)
    wall_file = path.parent / f"{path.name}.wall_s"
    wall = float(wall_file.read_text()) if wall_file.exists() else None
    return RunData(strategy, seed, path, results, wall)


def _usable(results: list[TrainingResult], objectives: list[str]) -> list[TrainingResult]:
    """Networks that count for the front: trained fine, and probed when analog Dice is an objective."""
    ok = [r for r in results if r.status == "ok"]
    if "analog_robustness" in objectives:
        ok = [r for r in ok if r.analog_dice is not None]
    return ok


def box_volume(objectives: list[str], reference: np.ndarray) -> float:
    """Volume between the ideal point (score 1, params 0) and the reference: hypervolume / this is in [0, 1]."""
    volume = 1.0
    for name, ref in zip(objectives, reference):
        volume *= abs(float(ref)) if name == "params" else abs(1.0 - float(ref))
    return volume


def hv_curve(results: list[TrainingResult], objectives: list[str], reference: np.ndarray, box: float) -> list[float]:
    """Normalised hypervolume of the measured front over the first k networks, k = 1..len(results)."""
    curve = []
    for k in range(1, len(results) + 1):
        usable = _usable(results[:k], objectives)
        if not usable:
            curve.append(0.0)
            continue
        values, maximise = objective_matrix(usable, objectives)
        curve.append(float(hypervolume(values, maximise, reference)) / box)
    return curve


def networks_to_reach(curve: list[float], target: float) -> int | None:
    """Smallest k whose prefix hypervolume reaches `target` (None: never)."""
    for k, hv in enumerate(curve, start=1):
        if hv >= target - 1e-12:
            return k
    return None


def best_dice_within(results: list[TrainingResult], budget: float) -> float | None:
    dices = [r.dice for r in results if r.status == "ok" and r.params <= budget and r.dice is not None]
    return max(dices) if dices else None


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def analyse(args: argparse.Namespace, logs_dir: Path, seeds: list[int]) -> dict[str, Any]:
    """Every table and number of the report, from the run folders' CSVs."""
    objectives = ["dice", "params", "analog_robustness"] if args.probe else ["dice", "params"]
    cfg = RunConfig.model_validate(build_config(args, "progressive", seeds[0], None))
    input_shape = (args.size, args.size, cfg.dataset.generated_channels)
    classes = cfg.dataset.classes_count
    runs: dict[int, dict[str, RunData]] = {}
    for seed in seeds:
        runs[seed] = {s: load_run(logs_dir / f"{s}_s{seed}", s, seed) for s in STRATEGIES}
    # ONE reference point for every strategy and seed: score 0, params 1.1 x the largest network of the space
    # (the same search space for all runs, so the bound does not depend on what any strategy happened to train)
    all_usable = [r for by in runs.values() for run in by.values() for r in _usable(run.results, objectives)]
    values, _ = objective_matrix(all_usable, objectives)
    reference = reference_point(objectives, cfg, values, input_shape, classes)
    box = box_volume(objectives, reference)
    for by in runs.values():
        for run in by.values():
            run.hv_curve = hv_curve(run.results, objectives, reference, box)

    if args.params_budget is not None:
        budget = float(args.params_budget)
        budget_rule = f"{budget:,.0f} params (--params-budget)"
    else:
        all_params = [r.params for by in runs.values() for run in by.values() for r in run.results
                      if r.status == "ok"]
        budget = float(np.median(all_params))
        budget_rule = f"{budget:,.0f} params (median params of all networks of all runs)"

    summary_rows, per_seed = [], []
    for seed, by in runs.items():
        prog, rand = by["progressive"], by["random"]
        reach = networks_to_reach(prog.hv_curve, rand.final_hv)
        ratio = prog.final_hv / rand.final_hv if rand.final_hv > 0 else math.inf
        met_reach = reach is not None and reach <= TARGET_FRACTION * rand.n
        met_ratio = ratio >= TARGET_RATIO
        per_seed.append({"seed": seed, "N": prog.n, "reach": reach, "ratio": ratio,
                         "met_reach": met_reach, "met_ratio": met_ratio})
        for s in STRATEGIES:
            run = by[s]
            ok = [r for r in run.results if r.status == "ok"]
            summary_rows.append({
                "seed": seed, "strategy": s, "networks": run.n, "ok": len(ok),
                "final_hv": run.final_hv, "best_dice": max((r.dice for r in ok), default=None),
                "best_analog": max((r.analog_dice for r in ok if r.analog_dice is not None), default=None),
                "best_dice_budget": best_dice_within(run.results, budget),
                "min_params": min((r.params for r in ok), default=None),
                "train_s": sum(r.train_time_s for r in run.results), "wall_s": run.wall_s,
            })

    quality = []
    for seed, by in runs.items():
        for row in read_csv(by["progressive"].path / "csv" / "predictor_quality.csv"):
            quality.append({"seed": seed, **row})
    return {"objectives": objectives, "reference": reference, "box": box, "runs": runs, "budget": budget,
            "budget_rule": budget_rule, "summary": summary_rows, "per_seed": per_seed, "quality": quality}


# ------------------------------------------------------------------------------------------------------- report
def markdown_tables(res: dict[str, Any]) -> str:
    lines = ["| seed | strategy | networks (ok) | final HV | best Dice | best analog Dice | best Dice <= budget "
             "| smallest net (params) | train time (s) | run wall (s) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["summary"]:
        lines.append(
            f"| {r['seed']} | {r['strategy']} | {r['networks']} ({r['ok']}) | {_fmt(r['final_hv'])} "
            f"| {_fmt(r['best_dice'])} | {_fmt(r['best_analog'])} | {_fmt(r['best_dice_budget'])} "
            f"| {r['min_params'] if r['min_params'] is not None else 'n/a'} | {r['train_s']:.0f} "
            f"| {_fmt(r['wall_s'], 0)} |")
    lines += ["", "| seed | N (budget) | progressive reaches random's final HV after | needed <= "
              f"{TARGET_FRACTION:.0%} of N? | HV ratio progressive / random | ratio >= {TARGET_RATIO}? "
              "| evolution final HV / random |",
              "|---:|---:|---:|---|---:|---|---:|"]
    for p in res["per_seed"]:
        by = res["runs"][p["seed"]]
        evo = by["evolution"].final_hv / by["random"].final_hv if by["random"].final_hv > 0 else math.inf
        reach = "never" if p["reach"] is None else f"{p['reach']} networks ({p['reach'] / by['random'].n:.0%})"
        lines.append(f"| {p['seed']} | {p['N']} | {reach} | {'yes' if p['met_reach'] else 'no'} "
                     f"| {_fmt(p['ratio'], 3)} | {'yes' if p['met_ratio'] else 'no'} | {_fmt(evo, 3)} |")
    lines += ["", "Hypervolume after k networks (normalised; progressive / random / evolution):", "",
              "| seed | k | progressive | random | evolution |", "|---:|---:|---:|---:|---:|"]
    for seed, by in res["runs"].items():
        n = max(run.n for run in by.values())
        for k in range(1, n + 1):
            cells = [_fmt(by[s].hv_curve[k - 1]) if k <= by[s].n else "" for s in STRATEGIES]
            lines.append(f"| {seed} | {k} | " + " | ".join(cells) + " |")
    lines += ["", "Predictor quality on the networks each step trained (progressive run, csv/predictor_quality.csv):",
              "", "| seed | step | objective | n | Spearman | Kendall | MAPE |", "|---:|---:|---|---:|---:|---:|---:|"]
    if not res["quality"]:
        lines.append("| - | - | (no rows: no step with >= 2 predicted-and-trained networks) | | | | |")
    for q in res["quality"]:
        lines.append(f"| {q['seed']} | {q['step']} | {q['objective']} | {q['n']} | {_fmt(_num(q.get('spearman')), 3)} "
                     f"| {_fmt(_num(q.get('kendall')), 3)} | {_fmt(_num(q.get('mape')), 3)} |")
    return "\n".join(lines)


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def draw_plot(res: dict[str, Any], path: Path) -> Path:
    """Hypervolume vs networks trained, one line per strategy (the mean over seeds where there are several)."""
    from popnas_seg.plots import plot_hypervolume

    series: dict[str, list[tuple[float, float]]] = {}
    seeds = list(res["runs"])
    for s in STRATEGIES:
        curves = [res["runs"][seed][s].hv_curve for seed in seeds]
        n = min(len(c) for c in curves)
        label = s if len(seeds) == 1 else f"{s} (mean of {len(seeds)} seeds)"
        series[label] = [(k, float(np.mean([c[k - 1] for c in curves]))) for k in range(1, n + 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    return plot_hypervolume(series, path)


def machine() -> str:
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    model = ""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            model = line.split(":", 1)[1].strip()
    return f"{cores}-core CPU ({model or 'unknown model'}), shared with other jobs while the benchmark ran"


def write_section(doc: Path, body: str) -> None:
    """Replace this benchmark's section of BENCHMARKS.md (up to the next `## ` heading), keeping the others."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    try:
        start = lines.index(SECTION)
    except ValueError:
        new = text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rest = "\n".join(lines[end:])
        new = "\n".join(lines[:start]).rstrip("\n") + ("\n\n" if start else "") + body.rstrip("\n") + "\n"
        if rest:
            new += "\n" + rest.rstrip("\n") + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(doc, new)


def section_text(args: argparse.Namespace, res: dict[str, Any], command: str, when: str, plot: Path,
                 logs_dir: Path, total_s: float | None) -> str:
    objectives = res["objectives"]
    ref = ", ".join(f"{o} {v:,.4g}" for o, v in zip(objectives, res["reference"]))
    all_reach = all(p["met_reach"] for p in res["per_seed"])
    all_ratio = all(p["met_ratio"] for p in res["per_seed"])
    verdict = "MET" if all_reach and all_ratio else "NOT MET"
    details = []
    for p in res["per_seed"]:
        reach = "never reached" if p["reach"] is None else f"reached after {p['reach']} of {p['N']} networks"
        details.append(f"seed {p['seed']}: random's final hypervolume {reach} "
                       f"({'meets' if p['met_reach'] else 'misses'} the <= {TARGET_FRACTION:.0%} target); "
                       f"final ratio {_fmt(p['ratio'], 3)} ({'meets' if p['met_ratio'] else 'misses'} "
                       f"the >= {TARGET_RATIO} target)")
    probe_note = ("dice (max) + params (min) + analog_robustness (max: analog Dice after 1 day of PCM drift, "
                  f"probe on {args.probe_images} validation images x {args.probe_repetitions} programmings)"
                  if args.probe else "dice (max) + params (min) only: the analog probe was off (--no-probe)")
    rel_plot = os.path.relpath(plot, ROOT / "docs")
    parts = [
        SECTION, "",
        f"Date: {when}. Machine: {machine()}.",
        f"Total benchmark wall time: {_fmt(total_s, 0)} s." if total_s is not None else "",
        "", "Command:", "", "```", command, "```", "",
        "What runs: for each seed the progressive search (POPNAS: predictors pick K children per step from the "
        "predicted Pareto front, plus exploration) runs first through `run.py` with `others.pipeline: [\"search\"]`; "
        "the number of networks it trained, N, becomes `search_strategy.max_networks` of a random-search and a "
        "regularised-evolution run with otherwise identical settings "
        f"(synthetic nuclei, {args.samples} images resized to {args.size}x{args.size}, {args.epochs} epochs per "
        f"network, B = {args.blocks} blocks, operators {', '.join(args.operators)}, K = {args.max_children}, "
        f"{args.exploration} exploration child(ren), {args.b1} step-1 networks, evolution population "
        f"{args.population} / tournament {args.tournament}).",
        "",
        f"Objectives: {probe_note}. Hypervolume uses ONE reference point for all strategies ({ref}; params bound "
        "= 1.1 x the largest network of the search space) and is normalised by the box between that point and the "
        "ideal (score 1, 0 params), so 1.0 would be a perfect network with no parameters. The curve is recomputed "
        "on every prefix of the networks in training order (network id). \"Best Dice <= budget\": best digital "
        f"validation Dice among networks with at most {res['budget_rule']}.",
        "",
        f"![hypervolume vs networks trained]({rel_plot})",
        "",
        markdown_tables(res),
        "",
        f"**Verdict: targets {verdict}.** Targets: progressive reaches random's final hypervolume with at most "
        f"{TARGET_FRACTION:.0%} of the networks, and ends with >= {TARGET_RATIO}x random's hypervolume.",
        "",
        *[f"- {d}" for d in details],
        "",
        f"Caveats: {len(res['per_seed'])} seed(s) and N = {', '.join(str(p['N']) for p in res['per_seed'])} networks "
        "per strategy are far too few for a statistically solid comparison (one lucky random network can dominate "
        "the front); networks trained for a few epochs on tiny images are noisy; a predictor Spearman is computed "
        "on the handful of networks one step trained (column n), so +-1 values on n = 2-5 say little. The numbers "
        "were not tuned: the "
        "benchmark ran once with the settings above. Run folders (CSVs, logs): "
        f"`{logs_dir}` (temporary, not kept in the repository).",
    ]
    return "\n".join(p for p in parts if p is not None)


# --------------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1], help="seeds (each: 3 searches)")
    p.add_argument("--size", type=int, default=32, help="image side the networks see (divisible by 4)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per network")
    p.add_argument("--blocks", type=int, default=3, help="B: maximum blocks per cell")
    p.add_argument("--samples", type=int, default=96, help="synthetic images generated")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--max-children", type=int, default=3, help="K of the progressive search")
    p.add_argument("--exploration", type=int, default=1, help="exploration children per step")
    p.add_argument("--b1", type=int, default=6, help="networks of step 1")
    p.add_argument("--population", type=int, default=8, help="evolution population size")
    p.add_argument("--tournament", type=int, default=3, help="evolution tournament size")
    p.add_argument("--predictor-epochs", type=int, default=40)
    p.add_argument("--ensemble", type=int, default=2, help="GIN accuracy-predictor ensemble members")
    p.add_argument("--operators", nargs="+",
                   default=["identity", "3x3 conv", "3x3:2dr conv", "1x3-3x1 conv", "2x2 maxpool"])
    p.add_argument("--no-probe", dest="probe", action="store_false", help="objectives dice + params only")
    p.add_argument("--probe-images", type=int, default=8)
    p.add_argument("--probe-repetitions", type=int, default=2)
    p.add_argument("--params-budget", type=float, default=None, help="default: median params of all networks")
    p.add_argument("--quick", action="store_true", help="tiny settings that only check the benchmark runs")
    p.add_argument("--logs-dir", type=Path, default=None, help="where run folders go (default: a new temp dir)")
    p.add_argument("--analyse-only", action="store_true", help="only recompute the report from --logs-dir")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "bench_search_hypervolume.png")
    p.add_argument("--no-doc", action="store_true", help="print the tables, do not touch docs/")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.epochs, args.blocks, args.samples, args.batch_size = 16, 1, 2, 24, 8
        args.filters, args.max_children, args.exploration, args.b1 = 4, 2, 1, 3
        args.predictor_epochs, args.probe_images, args.population = 8, 4, 4
        args.operators = ["identity", "3x3 conv", "2x2 maxpool"]
    if args.analyse_only and args.logs_dir is None:
        p.error("--analyse-only needs --logs-dir")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    logs_dir = args.logs_dir or Path(tempfile.mkdtemp(prefix="bench_search_"))
    logs_dir = logs_dir.resolve()
    logs_dir.mkdir(parents=True, exist_ok=True)
    log_file = logs_dir / "runs.log"
    start = time.perf_counter()
    if not args.analyse_only:
        print(f"[bench] run folders and run log: {logs_dir}", flush=True)
        for seed in args.seeds:
            run_search(build_config(args, "progressive", seed, None), logs_dir, f"progressive_s{seed}", log_file)
            n = len(read_csv(logs_dir / f"progressive_s{seed}" / "csv" / "training_results.csv"))
            print(f"[bench] seed {seed}: progressive trained N = {n} networks", flush=True)
            for strategy in ("random", "evolution"):
                run_search(build_config(args, strategy, seed, n), logs_dir, f"{strategy}_s{seed}", log_file)
    total = None if args.analyse_only else time.perf_counter() - start
    res = analyse(args, logs_dir, args.seeds)
    tables = markdown_tables(res)
    print(tables)
    for p in res["per_seed"]:
        print(f"[bench] seed {p['seed']}: reach={p['reach']} (target <= {TARGET_FRACTION * p['N']:.1f}), "
              f"ratio={_fmt(p['ratio'], 3)} (target >= {TARGET_RATIO})")
    if not args.no_doc:
        plot = draw_plot(res, args.plot)
        when = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
        write_section(args.doc, section_text(args, res, command, when, plot, logs_dir, total))
        print(f"[bench] wrote {plot} and the '{SECTION[3:]}' section of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
