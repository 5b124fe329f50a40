"""How much hypervolume regret a search could remove at all: a mean oracle over a bench_search task's measured cells.

On a task where every cell's result is a fixed value (bench_search's defaults: one data seed, one network seed; see
bench_search_replay.py) a result is the cell's mean plus the luck of its one training. A predictor can at best
learn the mean. This script gives a strategy that *knows* the mean, as well as the cheap cell features can state
it (a ridge fitted on every measured cell of the task, in sample), and the covariance of the luck (the ridge's
residuals, Dice and analog Dice together), and lets it pick the progressive budget's N cells of the measured pool
in the search's steps, one at a time by expected hypervolume gain (Monte-Carlo draws of the luck,
`greedy_hypervolume_selection(draws=...)`) over the measured values of its earlier steps, as a search sees its
trained networks (and, for comparison, all N at once). Its picks are scored with their measured values against
the task's union front, exactly as the runs are.

A target that this oracle misses in the median over draw seeds is beyond what knowing the means buys at this
budget and noise: what is left is a training's luck, which no predictor of a cell foresees. The oracle is greedy,
so it is a yardstick, not a strict bound (a search may match it by its own luck).

    python -m benchmarks.search.bench_search_oracle --logs-dir /work/bench_runs/search_e24_default --tasks default
"""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np  # noqa: E402

from benchmarks.search import bench_search as B  # noqa: E402
from benchmarks.search import bench_search_replay as R  # noqa: E402
from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.search.anytime import (  # noqa: E402
    front_hypervolume,
    hypervolume_curve,
    networks_to_reach,
    usable_results,
)
from popnas_seg.search.pareto import greedy_hypervolume_selection, objective_matrix  # noqa: E402
from popnas_seg.search.strategies import ProgressiveStrategy  # noqa: E402
from popnas_seg.search_space.encoding import Cell  # noqa: E402


def mean_model(features: np.ndarray, values: np.ndarray, noisy: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The pool's means (a ridge per noisy column, in sample; exact columns kept) and the luck's covariance."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    means = values.copy()
    for j in noisy:
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
        means[:, j] = model.fit(features, values[:, j]).predict(features)
    residuals = (values - means)[:, noisy]
    return means, np.atleast_2d(residuals.T @ residuals / len(residuals))


def inherited_luck(cells: list[Cell], luck: np.ndarray) -> tuple[int, float, float]:
    """(pairs, Pearson r, p) between a parent's luck and its child's over the pool's parent -> child pairs (the
    child = the parent plus one block): does a lucky cell pass its luck on, so that a search could learn it?"""
    from scipy.stats import pearsonr

    index = {c.key(): i for i, c in enumerate(cells)}
    pairs = [
        (index[Cell(c.blocks[:-1]).key()], i)
        for i, c in enumerate(cells)
        if len(c.blocks) > 1 and Cell(c.blocks[:-1]).key() in index
    ]
    if len(pairs) < 3:
        return len(pairs), float("nan"), float("nan")
    parent, child = np.array(pairs).T
    r, p = pearsonr(luck[parent], luck[child])
    return len(pairs), float(r), float(p)


def oracle_picks(
    means: np.ndarray,
    cov: np.ndarray,
    noisy: list[int],
    maximise: list[bool],
    reference: np.ndarray,
    batches: list[int],
    draws: int,
    seed: int,
    measured: np.ndarray | None = None,
) -> list[int]:
    """Rows of the pool in batches (a search's steps), each batch greedy by expected hypervolume gain over `draws`
    Gaussian draws of the luck, counted against the *measured* values of the earlier batches (`measured`, as
    a search sees its trained networks; without it, every batch is planned from the means alone)."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for size in batches:
        taken = set(chosen)
        rest = [i for i in range(len(means)) if i not in taken]
        samples = np.repeat(means[rest][None], draws, axis=0)
        luck = rng.multivariate_normal(np.zeros(len(noisy)), cov, size=(draws, len(rest)), method="eigh")
        samples[:, :, noisy] = np.clip(samples[:, :, noisy] + luck, 0.0, 1.0)
        held = None if not chosen else (measured if measured is not None else means)[chosen]
        chosen += [
            rest[j]
            for j in greedy_hypervolume_selection(means[rest], maximise, reference, size, held=held, draws=samples)
        ]
    return chosen


def step_sizes(bench: argparse.Namespace) -> list[int]:
    """The progressive search's networks per step at these bench_search settings: b1, then K (+ exploration
    children on every step but the last)."""
    return [bench.b1] + [
        bench.max_children + (bench.exploration if b < bench.blocks else 0) for b in range(2, bench.blocks + 1)
    ]


def oracle_task(args: argparse.Namespace, bench: argparse.Namespace, task: str) -> dict:
    objectives = ["dice", "params", "analog_dice"] if bench.probe else ["dice", "params"]
    base = RunConfig.model_validate(B.build_config(bench, task, "progressive", args.seeds[0], None))
    pool = usable_results(list(R.measured_table(args.logs_dir, task, args.seeds, base).known.values()), objectives)
    if len(pool) < 10:
        raise SystemExit(f"[oracle] {task}: only {len(pool)} measured cells in {args.logs_dir}")
    shape = (bench.size, bench.size, base.dataset.generated_channels)
    reference = B.run_reference_point(
        objectives, base, np.zeros((0, len(objectives))), shape, base.dataset.classes_count
    )
    values, maximise = objective_matrix(pool, objectives)
    union = front_hypervolume(pool, objectives, reference)
    strategy = ProgressiveStrategy(base, shape, base.dataset.classes_count, None, logging.getLogger("oracle"))
    cells = [Cell.from_string(r.encoding) for r in pool]
    features = np.array([list(strategy._cell_features()(c)) for c in cells], dtype=float)
    noisy = [j for j, o in enumerate(objectives) if o != "params"]
    means, cov = mean_model(features, values, noisy)
    inherited = inherited_luck(cells, values[:, 0] - means[:, 0])
    recorded: dict[str, list[float]] = {}
    for seed in args.seeds:
        for s in B.STRATEGIES:
            if B.search_finished(args.logs_dir / B.run_name(task, s, seed)):
                run = B.load_run(args.logs_dir, task, s, seed)
                recorded.setdefault(s, []).append(union - front_hypervolume(run.results, objectives, reference))
    batches = step_sizes(bench)
    regrets: dict[str, list[float]] = {"steps": [], "once": []}
    reach = [0, 0]  # (draw seed, recorded random run) pairs: random's final HV within 50 % of N, of all pairs
    for seed in range(args.oracle_seeds):
        for mode, plan in (("steps", batches), ("once", [sum(batches)])):
            picks = oracle_picks(means, cov, noisy, maximise, reference, plan, args.draws, seed, values)
            regrets[mode].append(union - front_hypervolume([pool[i] for i in picks], objectives, reference))
            if mode == "steps":
                curve = hypervolume_curve([pool[i] for i in picks], objectives, reference)
                for random_regret in recorded.get("random", []):
                    k = networks_to_reach(curve, union - random_regret)
                    reach[0] += k is not None and k <= B.TARGET_FRACTION * len(picks)
                    reach[1] += 1
        print(
            f"[oracle] {task}: draw seed {seed}: regret {regrets['steps'][-1]:.4f} in steps {batches}, "
            f"{regrets['once'][-1]:.4f} in one batch",
            flush=True,
        )
    return {
        "task": task,
        "pool": len(pool),
        "union": union,
        "batches": batches,
        "inherited": inherited,
        "reach": reach,
        "sd": np.sqrt(np.diag(cov)),
        "corr": float(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])) if len(noisy) == 2 else None,
        "regrets": regrets,
        "recorded": recorded,
    }


def report(res: dict) -> str:
    recorded = {s: float(np.median(v)) for s, v in res["recorded"].items()}
    oracle = float(np.median(res["regrets"]["steps"]))
    lines = [
        f"#### Task `{res['task']}`: {res['pool']} measured cells, union front HV {res['union']:.4f}, "
        f"N = {sum(res['batches'])}; luck (ridge residual) sd {' / '.join(f'{v:.4f}' for v in res['sd'])}"
        + (f", Dice / analog Dice correlation {res['corr']:.2f}" if res["corr"] is not None else ""),
        "",
        "| who | runs | median regret | range |",
        "|---|---:|---:|---:|",
    ]
    for mode, text in (
        (
            "steps",
            f"mean oracle, expected-HV greedy in steps {res['batches']}, each against the measured earlier picks",
        ),
        ("once", "mean oracle, expected-HV greedy, all N at once"),
    ):
        v = res["regrets"][mode]
        lines.append(f"| {text} | {len(v)} draw seeds | {np.median(v):.4f} | {min(v):.4f} - {max(v):.4f} |")
    for s, v in res["recorded"].items():
        lines.append(f"| {s} (recorded) | {len(v)} seeds | {recorded[s]:.4f} | {min(v):.4f} - {max(v):.4f} |")
    pairs, r, p = res["inherited"]
    lines += [
        "",
        f"- Dice luck of a child vs its parent's, over {pairs} parent -> child pairs of the pool: "
        f"Pearson r {r:.2f} (p {p:.2g}).",
    ]
    if "random" in recorded:
        goal = B.TARGET_REGRET_VS_RANDOM * recorded["random"]
        lines += [
            f"- {B.TARGET_REGRET_VS_RANDOM} x random's median regret: {goal:.4f}; the mean oracle in steps "
            f"{'meets' if oracle <= goal else 'misses'} it ({oracle / recorded['random']:.2f} x random's).",
            f"- The mean oracle in steps reaches a recorded random run's final HV within {B.TARGET_FRACTION:.0%} "
            "of N in "
            f"{res['reach'][0]} of {res['reach'][1]} (draw seed, random run) pairs.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    R.add_table_arguments(p)
    p.add_argument("--draws", type=int, default=48, help="Monte-Carlo draws of the luck per pick")
    p.add_argument("--oracle-seeds", type=int, default=5, help="draw seeds (each a full greedy pick of N cells)")
    args, rest = p.parse_known_args(argv)
    bench = B.parse_args(rest)
    logging.basicConfig(level=logging.WARNING)
    for task in args.tasks:
        print(report(oracle_task(args, bench, task)), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
