"""Would another order of step 1 reach random's final hypervolume sooner? A replay of recorded search runs.

Issue 12 asks the progressive search to reach random's final hypervolume within 50 % of N networks. With the
benchmark's b1 14 of N = 25, networks 1-12 are all step-1 cells, trained in bisection order over params
(`search.strategies.spread_order`), so the target is decided by step 1 alone. This asks whether ordering the
same cells differently would decide it: train the first `m` in the recorded (bisection) order, then the rest
in the order of their greedy contribution to the predicted hypervolume, the rule later steps use, with the
search's own score predictors (cheap-feature ridge) fitted on those `m` networks.

Why a replay is exact: under `network_seeding: common` every network of a run trains and is probed with the run's
seed, so its scores do not depend on when it trains; the step-1 cells and every later step are unchanged (they
are planned from all of step 1), and only the order of the first networks moves. So the reordered curve is
the curve the reordered search would have recorded (up to the compiled tiles' clock-seeded probe noise of the
recorded runs). A last row bounds every order: whether any subset of the step-1 cells of 50 % of N networks
reaches random's final hypervolume. It reads the run folders of `benchmarks/search/bench_search.py`; nothing is trained.

    python -m benchmarks.search.bench_step1_order --logs-dir /work/bench_runs/search_e8_fixdata
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np  # noqa: E402

from benchmarks.search import bench_search as B  # noqa: E402
from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.results import TrainingResult  # noqa: E402
from popnas_seg.search.anytime import front_hypervolume, hypervolume_curve, networks_to_reach  # noqa: E402
from popnas_seg.search.pareto import greedy_hypervolume_selection, maximise_flags  # noqa: E402
from popnas_seg.search.strategies import ProgressiveStrategy  # noqa: E402
from popnas_seg.search_space.encoding import Cell  # noqa: E402

OBJECTIVES = ["dice", "params", "analog_dice"]


def predicted_order(
    strategy: ProgressiveStrategy, head: list[TrainingResult], tail: list[TrainingResult]
) -> list[TrainingResult]:
    """`tail` ordered by greedy predicted-hypervolume contribution, predictors fitted on `head`."""
    cells = [Cell.from_string(r.encoding) for r in head]
    tail_cells = [Cell.from_string(r.encoding) for r in tail]
    columns = []
    for offset, field in ((0, "dice"), (1, "analog_dice")):
        predictor, _ = strategy.score_predictor(len(head), offset)
        predictor.fit(cells, [float(getattr(r, field)) for r in head])
        columns.append(predictor.predict(tail_cells))
    values = np.stack([columns[0], [float(r.params) for r in tail], columns[1]], axis=1)
    maximise = maximise_flags(OBJECTIVES)
    picks = greedy_hypervolume_selection(values, maximise, strategy._predicted_reference(OBJECTIVES, values), len(tail))
    return [tail[i] for i in picks]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logs-dir", type=Path, required=True, help="run folders of bench_search.py (all finished)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--tasks", nargs="+", choices=sorted(B.TASKS), default=["default", "hard"])
    p.add_argument(
        "--heads",
        type=int,
        nargs="+",
        default=[4, 6, 8],
        help="m: step-1 networks kept in the recorded order before the predictors order the rest",
    )
    p.add_argument("--vary-data", action="store_true", help="the runs were made with bench_search --vary-data")
    args = p.parse_args(argv)
    bench_args = B.parse_args(["--vary-data"] if args.vary_data else [])

    print("| task | step-1 order | networks to reach random's final HV, per seed | seeds within 50 % of N |")
    print("|---|---|---|---:|")
    for task in args.tasks:
        cfg = RunConfig.model_validate(B.build_config(bench_args, task, "progressive", args.seeds[0], None))
        shape = (bench_args.size, bench_args.size, cfg.dataset.generated_channels)
        strategy = ProgressiveStrategy(cfg, shape, cfg.dataset.classes_count)
        # scores 0 and params 1.1 x the largest network of the space: the benchmark's one reference per task
        reference = B.run_reference_point(
            OBJECTIVES, cfg, np.zeros((0, len(OBJECTIVES))), shape, cfg.dataset.classes_count
        )
        reach: dict[str, list[int | None]] = {"recorded (bisection)": []}
        reach.update({f"first {m} recorded, then predicted": [] for m in args.heads})
        sizes, oracle = [], []
        for seed in args.seeds:
            progressive = B.load_run(args.logs_dir, task, "progressive", seed).results
            target = front_hypervolume(B.load_run(args.logs_dir, task, "random", seed).results, OBJECTIVES, reference)
            step1 = [r for r in progressive if r.step == 1]
            later = [r for r in progressive if r.step > 1]
            sizes.append(len(progressive))

            def first_reach(
                order: list[TrainingResult], later: list[TrainingResult] = later, reference=reference, target=target
            ) -> int | None:
                return networks_to_reach(hypervolume_curve(order + later, OBJECTIVES, reference), target)

            reach["recorded (bisection)"].append(first_reach(step1))
            # an oracle bound: does ANY order of these step-1 cells reach it within 50 % of N?
            k = min(len(step1), math.floor(B.TARGET_FRACTION * len(progressive)))
            oracle.append(
                any(
                    front_hypervolume(list(subset), OBJECTIVES, reference) >= target - 1e-12
                    for subset in itertools.combinations(step1, k)
                )
            )
            for m in args.heads:
                head = step1[:m]
                reach[f"first {m} recorded, then predicted"].append(
                    first_reach(head + predicted_order(strategy, head, step1[m:]))
                )
        for order, values in reach.items():
            within = sum(v is not None and v <= B.TARGET_FRACTION * n for v, n in zip(values, sizes))
            shown = ", ".join("never" if v is None else str(v) for v in values)
            print(f"| {task} | {order} | {shown} | {within} of {len(values)} |")
        print(
            f"| {task} | best order of the same cells (oracle) | "
            f"{', '.join('reachable' if ok else 'out of reach' for ok in oracle)} | {sum(oracle)} of {len(oracle)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
