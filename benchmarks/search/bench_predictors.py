"""Which score predictor ranks unseen networks best with few trained ones: GIN ensemble vs cheap-feature models.

Reads recorded results of real runs (csv/training_results.csv of run folders, or the committed fixture
benchmarks/data/random_hard_2epochs.csv), and for each training-set size n draws `--repeats` random subsets of n
networks, fits every predictor on them and measures Spearman / Kendall on all the other networks. Prints a
markdown table (median and min over repeats). Exact params and FLOPs come from each row's encoding, so the
features are the ones the search would compute.

    python -m benchmarks.search.bench_predictors benchmarks/data/random_hard_2epochs.csv --sizes 10 20 30 40
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np  # noqa: E402

from popnas_seg.predictors.quality import rank_quality  # noqa: E402
from popnas_seg.runlog.tables import read_csv  # noqa: E402
from popnas_seg.search_space.encoding import Cell  # noqa: E402


def load(paths: list[Path]) -> tuple[list[Cell], np.ndarray, np.ndarray, np.ndarray]:
    """Cells, Dice, params and FLOPs of every successfully trained network of the given CSVs."""
    cells, dice, params, flops = [], [], [], []
    for path in paths:
        for row in read_csv(path):
            if row.get("status") != "ok" or row.get("dice") in (None, ""):
                continue
            cells.append(Cell.from_string(row["encoding"]))
            dice.append(float(row["dice"]))
            params.append(float(row["params"]))
            flops.append(float(row["flops"]))
    return cells, np.array(dice), np.array(params), np.array(flops)


def predictors(
    operators: list[str],
    lookback: int,
    blocks: int,
    costs: dict[str, tuple[float, float]],
    gin_epochs: int,
    gin_members: int,
) -> dict[str, object]:
    from popnas_seg.predictors.features import FeatureScorePredictor
    from popnas_seg.predictors.time_svr import cell_time_features

    features = partial(
        cell_time_features, operators=operators, lookback_depth=lookback, cost_fn=lambda c: costs[c.key()]
    )

    def gin(seed: int):
        from popnas_seg.predictors.gin import GINPredictor

        return GINPredictor(operators, lookback, blocks, ensemble_units=gin_members, epochs=gin_epochs, seed=seed)

    return {
        f"gin x{gin_members}": gin,
        "ridge (features)": lambda seed: FeatureScorePredictor(features, "ridge", seed),
        "forest (features)": lambda seed: FeatureScorePredictor(features, "forest", seed),
        "log params only": None,  # the trivial baseline: rank by capacity
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", type=Path, nargs="+", help="training_results.csv files (or the fixture)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 30, 40])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--gin-epochs", type=int, default=80)
    p.add_argument("--gin-members", type=int, default=3)
    p.add_argument(
        "--operators", nargs="+", default=["identity", "3x3 conv", "3x3:2dr conv", "1x3-3x1 conv", "2x2 maxpool"]
    )
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--skip-gin", action="store_true")
    args = p.parse_args(argv)
    cells, dice, params, flops = load(args.csv)
    costs = {c.key(): (pa, fl) for c, pa, fl in zip(cells, params, flops)}
    print(
        f"{len(cells)} networks, Dice {dice.min():.3f}..{dice.max():.3f}, params {params.min():.0f}..{params.max():.0f}"
    )
    models = predictors(args.operators, 2, args.blocks, costs, args.gin_epochs, args.gin_members)
    if args.skip_gin:
        models = {k: v for k, v in models.items() if not k.startswith("gin")}
    lines = [
        "| train n | predictor | median Spearman | min Spearman | median Kendall | fit s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n in args.sizes:
        if n >= len(cells) - 2:
            continue
        for name, make in models.items():
            sp, kd, secs = [], [], []
            for rep in range(args.repeats):
                rng = np.random.default_rng([n, rep])
                order = rng.permutation(len(cells))
                train, test = order[:n], order[n:]
                t0 = time.perf_counter()
                if make is None:
                    pred = np.log(params[test])
                else:
                    model = make(rep).fit([cells[i] for i in train], dice[train])
                    pred = model.predict([cells[i] for i in test])
                secs.append(time.perf_counter() - t0)
                q = rank_quality(pred, dice[test])
                sp.append(q["spearman"])
                kd.append(q["kendall"])
            lines.append(
                f"| {n} | {name} | {np.nanmedian(sp):.3f} | {np.nanmin(sp):.3f} | {np.nanmedian(kd):.3f} "
                f"| {np.mean(secs):.1f} |"
            )
            print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
