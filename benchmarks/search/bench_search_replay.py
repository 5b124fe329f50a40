"""Replay the progressive search against the measured cells of a bench_search benchmark: a change of the search,
measured against the recorded baselines in minutes.

Why a replay is exact: under bench_search's defaults every run of a task searches one data set
(`dataset.seed`) and trains and probes every network under one seed (`search_strategy.network_seed`); training is
deterministic on a CPU and the probe runs on seeded torch tiles. A cell's result is then a fixed value of the
task, as in a tabular NAS benchmark, and a progressive run is a pure function of its code, its config and that
table (its plan never reads a measured time unless time is an objective). The replay calls
`ProgressiveStrategy.plan_step` step by step as the runner does, looks every planned cell up among the networks
the task's run folders trained, and trains in-process, with the runner's seeds, only the cells no run has
measured; those join `replay_cache_<task>_<settings hash>.jsonl` in the logs dir, so each is trained once for
those measurement settings (runs measured with other settings are refused, naming what differs).

Exactness is checked, not assumed: with the code the runs were made with, the "same as recorded" column must
say yes for every seed (the same cells, in the same order, with the same scores, as the recorded progressive
run). A search changed in a worktree is replayed by running this file from that worktree.

Per seed and the median: the replayed run's final hypervolume, its regret to the task's union front (every run
and every replayed or cached network of the task), the recorded baselines' regret, the networks it needs to reach
random's final hypervolume, and its Dice-predictor Spearman on steps >= 3; then the issue-12 targets.

    python -m benchmarks.search.bench_search_replay --logs-dir /work/bench_runs/search_e8_table --tasks hard
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np  # noqa: E402

from benchmarks.search import bench_search as B  # noqa: E402
from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.results import TrainingResult  # noqa: E402
from popnas_seg.runlog.events import NetworkFinished, Result  # noqa: E402
from popnas_seg.runlog.journal import Journal  # noqa: E402
from popnas_seg.search.anytime import front_hypervolume, hypervolume_curve, networks_to_reach  # noqa: E402
from popnas_seg.search.strategies import ProgressiveStrategy  # noqa: E402

LOG = logging.getLogger("popnas_seg.replay")


Train = Callable[[str], TrainingResult]


def journal_results(folder: Path) -> list[TrainingResult]:
    """A run's networks in training order, at full precision (the journal's, not the CSV's rounded values: the
    predictors fitted on them must see what the search saw); a run still going may end in a torn line."""
    found = {
        e["network_id"]: TrainingResult.from_dict(e["result"])
        for e in Journal(folder / "restore" / "journal.jsonl").events(NetworkFinished)
    }
    return [found[k] for k in sorted(found)]


class Table:
    """Every network the task's runs measured, by encoding, plus the replay's own cache of newly trained ones."""

    def __init__(self, logs_dir: Path, task: str, folders: list[Path], measurement: str = "") -> None:
        # one cache per measurement (the settings that fix a cell's result): replays of other settings never mix
        # the run journal's format: appends are durable and a line cut by a kill is dropped (that cell trains again)
        self.cache = Journal(logs_dir / f"replay_cache_{task}{'_' + measurement if measurement else ''}.jsonl")
        self.known: dict[str, TrainingResult] = {}
        for folder in folders:
            for r in journal_results(folder):
                self.known.setdefault(r.encoding, r)
        self.cached = [TrainingResult.from_dict(e["result"]) for e in self.cache.events(NetworkFinished)]
        for r in self.cached:
            self.known.setdefault(r.encoding, r)
        self.trained_now = 0

    def lookup(self, encoding: str, train: Train) -> TrainingResult:
        if encoding not in self.known:
            result = train(encoding)
            self.known[encoding] = result
            self.cached.append(result)
            self.trained_now += 1
            # one appended line per cell: replays running side by side (other worktrees) add to one cache
            self.cache.append(NetworkFinished(network_id=result.network_id, result=Result.of(result)))
        return self.known[encoding]


def replay(strategy: ProgressiveStrategy, table: Table, train: Train) -> tuple[list[TrainingResult], list[float]]:
    """The networks the progressive search trains, in order, with their table results; and its Dice Spearman per
    step >= 3 on the networks each step trained (as csv/predictor_quality.csv)."""
    from popnas_seg.predictors.quality import rank_quality

    history: list[TrainingResult] = []
    spearman: list[float] = []
    step = 1
    while (plan := strategy.plan_step(step, history)) is not None:
        predicted = {row["encoding"]: row["predicted_dice"] for row in plan.predictions}
        pairs = []
        for p in plan.networks:
            found = table.lookup(str(p.cell), train)
            result = replace(found, network_id=len(history) + 1, origin=p.origin, step=step)
            history.append(result)
            if result.status == "ok" and str(p.cell) in predicted:
                pairs.append((float(predicted[str(p.cell)]), float(result.dice)))
        if step >= 3 and len(pairs) >= 2:
            predicted_dice, measured_dice = np.array(pairs).T
            spearman.append(float(rank_quality(predicted_dice, measured_dice)["spearman"]))
        step += 1
    return history, spearman


def same_as_recorded(replayed: list[TrainingResult], recorded: list[TrainingResult]) -> str:
    """The word "yes", or where the replayed run first leaves the recorded one."""
    for k, (a, b) in enumerate(zip(replayed, recorded), start=1):
        if (a.encoding, a.origin, a.step, a.dice, a.analog_dice) != (
            b.encoding,
            b.origin,
            b.step,
            b.dice,
            b.analog_dice,
        ):
            return f"no (from network {k})"
    return "yes" if len(replayed) == len(recorded) else f"no ({len(replayed)} vs {len(recorded)} networks)"


def trainer_for(cfg: RunConfig, folder: Path) -> Train:
    """Train one cell in-process exactly as the runner would (its seeds, its budget, its probe)."""
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.evaluation.evaluator import NetworkEvaluator, Trial
    from popnas_seg.search.seeds import search_network_seeds

    state: dict = {}

    def train(encoding: str) -> TrainingResult:
        if "evaluator" not in state:
            state["evaluator"] = NetworkEvaluator(cfg, load_data(cfg.dataset, seed=cfg.data_seed), LOG)
        seed, probe_seed = search_network_seeds(cfg.network_seed, encoding, cfg.search_strategy.network_seeding)
        job = Trial(
            network_id=0,
            encoding=encoding,
            seed=seed,
            probe_seed=probe_seed,
            save=False,
            architecture=cfg.architecture_hyperparameters.model_dump(mode="json"),
            out_dir=str(folder / "network"),
            probe=cfg.analog.probe,
        )
        print(f"[replay] training {encoding}", flush=True)
        return state["evaluator"].evaluate(job)

    return train


def verify(table: Table, train: Train, count: int) -> str:
    """Retrain `count` recorded cells in-process (spread over the table) and compare with what the runs recorded:
    the premise of the replay is that both give the same numbers."""
    cached = {r.encoding for r in table.cached}
    recorded = sorted(
        (r for r in table.known.values() if r.encoding not in cached and r.status == "ok"), key=lambda r: r.encoding
    )
    picks = [recorded[int(i)] for i in np.linspace(0, len(recorded) - 1, count)] if recorded and count else []
    diffs = []
    for r in picks:
        again = train(r.encoding)
        diffs.append((abs(again.dice - r.dice), abs((again.analog_dice or 0.0) - (r.analog_dice or 0.0))))
    if not diffs:
        return "not verified"
    dice, analog = np.max(np.array(diffs), axis=0)
    return f"{len(picks)} recorded cells retrained: largest difference Dice {dice:.2e}, analog Dice {analog:.2e}"


def measurement(cfg: RunConfig) -> dict:
    """What fixes a searched cell's result: its data, training, macro-architecture, probe and seeds."""
    dump = cfg.model_dump(mode="json")
    dump["dataset"].pop("seed")  # its effective value is data_seed below (null means others.seed)
    return {
        "dataset": dump["dataset"],
        "training": dump["training_hyperparameters"],
        "architecture": dump["architecture_hyperparameters"],
        "analog": dump["analog"],
        "data_seed": cfg.data_seed,
        "network_seed": cfg.network_seed,
        "network_seeding": cfg.search_strategy.network_seeding,
    }


def measured_table(logs_dir: Path, task: str, seeds: list[int], cfg: RunConfig) -> Table:
    """The task's table: every network its run folders (all strategies, `seeds`) measured, plus the cache of cells
    replays trained under `cfg`'s measurement settings."""
    key = hashlib.sha256(json.dumps(measurement(cfg), sort_keys=True).encode()).hexdigest()[:10]
    folders = [logs_dir / B.run_name(task, s, seed) for seed in seeds for s in B.STRATEGIES]
    return Table(logs_dir, task, [p for p in folders if (p / "restore" / "journal.jsonl").exists()], key)


def replay_task(args: argparse.Namespace, bench: argparse.Namespace, task: str, folder: Path) -> dict:
    """Replay every seed of `task`; runs still going (or missing) add their cells so far but are no baseline."""
    objectives = ["dice", "params", "analog_dice"] if bench.probe else ["dice", "params"]
    base = RunConfig.model_validate(B.build_config(bench, task, "progressive", args.seeds[0], None))
    wanted = measurement(base)
    folders = [args.logs_dir / B.run_name(task, s, seed) for seed in args.seeds for s in B.STRATEGIES]
    for path in folders:
        config_file = args.logs_dir / f"{path.name}.json"
        if not config_file.exists():
            continue
        found = measurement(RunConfig.model_validate_json(config_file.read_text()))
        if found != wanted:
            differ = sorted(k for k in wanted if found[k] != wanted[k])
            raise SystemExit(
                f"[replay] {path.name} measured its cells with other {', '.join(differ)} than these "
                f"settings ({', '.join(f'{k} {found[k]} vs {wanted[k]}' for k in differ)}): pass the "
                "bench_search options the runs were made with; runs made with --vary-data or "
                "--vary-networks are no single table"
            )
    table = measured_table(args.logs_dir, task, args.seeds, base)
    finished = {
        (seed, s): B.load_run(args.logs_dir, task, s, seed)
        for seed in args.seeds
        for s in B.STRATEGIES
        if B.search_finished(args.logs_dir / B.run_name(task, s, seed))
    }
    shape = (bench.size, bench.size, base.dataset.generated_channels)
    train = trainer_for(base, folder)
    reference = B.run_reference_point(
        objectives, base, np.zeros((0, len(objectives))), shape, base.dataset.classes_count
    )
    checked = verify(table, train, args.verify)
    rows = []
    for seed in args.seeds:
        cfg = RunConfig.model_validate(B.build_config(bench, task, "progressive", seed, None))
        strategy = ProgressiveStrategy(cfg, shape, cfg.dataset.classes_count, None, LOG)
        history, spearman = replay(strategy, table, train)
        recorded = finished.get((seed, "progressive"))
        rows.append(
            {
                "seed": seed,
                "history": history,
                "spearman": spearman,
                "same": "no recorded run"
                if recorded is None
                else same_as_recorded(history, journal_results(recorded.path)),
            }
        )
    union = front_hypervolume(list(table.known.values()), objectives, reference)
    out = []
    for row in rows:
        curve = hypervolume_curve(row["history"], objectives, reference)
        final = {
            s: front_hypervolume(run.results, objectives, reference)
            for (seed, s), run in finished.items()
            if seed == row["seed"]
        }
        rand = finished.get((row["seed"], "random"))
        out.append(
            {
                "seed": row["seed"],
                "n": len(row["history"]),
                "hv": curve[-1],
                "regret": union - curve[-1],
                "recorded_hv": final.get("progressive"),
                "random_regret": None if "random" not in final else union - final["random"],
                "evolution_regret": None if "evolution" not in final else union - final["evolution"],
                "random_n": None if rand is None else rand.n,
                "reach": None if rand is None else networks_to_reach(curve, final["random"]),
                "spearman": row["spearman"],
                "same": row["same"],
            }
        )
    return {
        "task": task,
        "union": union,
        "rows": out,
        "trained": table.trained_now,
        "table": len(table.known),
        "verified": checked,
    }


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def report(res: dict) -> str:
    rows = res["rows"]
    complete = [r for r in rows if r["random_regret"] is not None and r["evolution_regret"] is not None]
    lines = [
        f"#### Task `{res['task']}`: union front HV {res['union']:.4f} over {res['table']} measured cells "
        f"({res['trained']} trained by this replay); exactness: {res['verified']}",
        "",
        "| seed | N | replayed final HV | recorded progressive HV | regret | random's regret | evolution's regret "
        "| reaches random's final HV after | Dice Spearman, steps >= 3 | same as recorded |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["random_n"] is None:
            reach = "-"
        else:
            reach = "never" if r["reach"] is None else f"{r['reach']} ({r['reach'] / r['random_n']:.0%} of N)"
        sp = ", ".join(f"{v:.2f}" for v in r["spearman"]) or "-"
        lines.append(
            f"| {r['seed']} | {r['n']} | {r['hv']:.4f} | {_f(r['recorded_hv'])} | {r['regret']:.4f} "
            f"| {_f(r['random_regret'])} | {_f(r['evolution_regret'])} | {reach} | {sp} | {r['same']} |"
        )
    med = lambda key: float(np.median([r[key] for r in complete]))  # noqa: E731
    spearmen = [v for r in rows for v in r["spearman"] if math.isfinite(v)]
    lines += [
        "",
        "- median Dice Spearman on steps >= 3: " + (f"{float(np.median(spearmen)):.2f}" if spearmen else "n/a"),
    ]
    if len(complete) < len(rows):
        lines.append(f"- targets not judged: {len(rows) - len(complete)} seeds lack a finished random or evolution run")
        return "\n".join(lines)
    within = sum(r["reach"] is not None and r["reach"] <= B.TARGET_FRACTION * r["random_n"] for r in rows)
    lines += [
        f"- medians: regret {med('regret'):.4f}, random's {med('random_regret'):.4f}, evolution's "
        f"{med('evolution_regret'):.4f}; final HV {med('hv'):.4f}",
        f"- regret <= {B.TARGET_REGRET_VS_RANDOM} x random's: "
        f"{'met' if med('regret') <= B.TARGET_REGRET_VS_RANDOM * med('random_regret') else 'NOT met'}",
        f"- regret <= evolution's: {'met' if med('regret') <= med('evolution_regret') else 'NOT met'}",
        f"- random's final HV within {B.TARGET_FRACTION:.0%} of N: {within} of {len(rows)} seeds "
        f"({'met' if within >= B.TARGET_SEEDS_FRACTION * len(rows) else 'NOT met'})",
    ]
    return "\n".join(lines)


def add_table_arguments(p: argparse.ArgumentParser) -> None:
    """The options that name a task's table of measured cells (replay and oracle)."""
    p.add_argument(
        "--logs-dir",
        type=Path,
        required=True,
        help="run folders of bench_search.py (runs still going add their cells, but are no baseline)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--tasks", nargs="+", choices=sorted(B.TASKS), default=["default", "hard"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_table_arguments(p)
    p.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="K",
        help="first retrain K recorded cells and report the largest differences (the replay's premise)",
    )
    args, rest = p.parse_known_args(argv)
    bench = B.parse_args(rest)  # every bench_search setting (--b1, --max-children, ...) as the runs were made
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="replay_") as tmp:
        for task in args.tasks:
            print(report(replay_task(args, bench, task, Path(tmp))), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
