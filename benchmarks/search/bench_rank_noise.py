"""How much of a searched network's Dice is its cell and how much its training seed, at a given budget.

Why: a search (and its score predictor) can only rank cells as well as one training ranks them. This script
trains the same cells with several seeds, under the settings of `benchmarks/search/bench_search.py` (same task,
image size, data, macro-architecture), at one or more budgets (epochs of `steps_per_epoch` batches), and
reports per budget:

- the Dice spread across cells and within a cell (retrained with other seeds);
- the share of Dice variance that comes from the cell (1 - within / total, an intraclass correlation);
- the test-retest Spearman: the rank correlation of the cells' Dice between two seeds (median over seed
  pairs). No predictor can rank unseen networks much better than one training ranks them against another,
  so this is the ceiling of the Dice-predictor Spearman that the search measures;
- the training time per network.

`--seeding common` trains every cell of replicate s with seed s (common random numbers: the same batches in
the same order); `--seeding per-cell` uses the search's own per-network seed (`search.seeds.network_seed`),
so each cell also draws its own batches, as in a search run.

Cells are drawn at random (fixed `--pick-seed`) from the distinct cells that the given run folders trained
(e.g. the bench_search runs of the task), so they cover the range the search meets. Results go to
`--out` (one JSON line per training); run the same command again to resume.

    python -m benchmarks.search.bench_rank_noise /work/bench_runs/search/hard_* --task hard --cells 12 \\
        --seeds 1 2 3 --epochs 2 8 --out /work/bench_runs/rank_noise_hard.jsonl
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import itertools
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from scipy.stats import spearmanr  # noqa: E402

from benchmarks.search import bench_search  # noqa: E402
from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.runlog.tables import read_csv  # noqa: E402


def pick_cells(folders: list[Path], count: int, seed: int) -> list[str]:
    """`count` distinct cells (sorted, then sampled with `seed`) of the networks the run folders trained."""
    cells = sorted(
        {
            row["encoding"]
            for folder in folders
            for row in read_csv(folder / "csv" / "training_results.csv")
            if row.get("status") == "ok"
        }
    )
    if len(cells) < count:
        raise SystemExit(f"only {len(cells)} distinct cells in the given run folders, asked for {count}")
    return random.Random(seed).sample(cells, count)


def train_all(args: argparse.Namespace, cells: list[str]) -> list[dict]:
    """Train every (budget, seed, cell) not yet in `--out`; return all recorded trainings."""
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    have = {(d["epochs"], d["seed"], d["encoding"]) for d in done}
    todo = [(e, s, c) for e in args.epochs for s in args.seeds for c in cells if (e, s, c) not in have]
    if not todo:
        return done
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.evaluation.evaluator import NetworkEvaluator, Trial
    from popnas_seg.search.seeds import network_seed

    search_args = bench_search.parse_args(
        ["--size", str(args.size), "--samples", str(args.samples), "--filters", str(args.filters), "--no-probe"]
    )
    cfg_dict = bench_search.build_config(search_args, args.task, "random", args.data_seed, None)
    cfg = RunConfig.model_validate(cfg_dict)
    data = load_data(cfg.dataset, args.data_seed)  # one split for all trainings: only the network's seed varies
    evaluator = NetworkEvaluator(cfg, data, logging.getLogger("bench"))
    arch = cfg.architecture_hyperparameters.model_dump(mode="json")
    work = Path(tempfile.mkdtemp(prefix="rank_noise_"))
    for i, (epochs, seed, cell) in enumerate(todo, 1):
        start = time.perf_counter()
        train_seed = network_seed(seed, cell) if args.seeding == "per-cell" else seed
        job = Trial(
            network_id=i,
            encoding=cell,
            architecture=arch,
            seed=train_seed,
            out_dir=str(work / str(i)),
            epochs=epochs,
            save=False,
            probe=False,
        )
        result = evaluator.evaluate(job)
        row = {
            "epochs": epochs,
            "seed": seed,
            "encoding": cell,
            "dice": result.dice,
            "status": result.status,
            "params": result.params,
            "train_s": round(time.perf_counter() - start, 2),
        }
        with args.out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        done.append(row)
        print(
            f"[noise] {i}/{len(todo)} epochs {epochs} seed {seed} dice {result.dice:.3f} "
            f"({row['train_s']:.1f} s) {cell}",
            flush=True,
        )
    return done


def table(rows: list[dict], args: argparse.Namespace) -> str:
    out = [
        "| epochs (steps) | cells | Dice sd across all | mean within-cell sd | share of variance from the cell "
        "| test-retest Spearman (median over seed pairs) | min | s per network |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for epochs in args.epochs:
        by_cell: dict[str, dict[int, float]] = {}
        times = []
        for r in rows:
            if r["epochs"] == epochs and r["status"] == "ok" and r["dice"] is not None:
                by_cell.setdefault(r["encoding"], {})[r["seed"]] = float(r["dice"])
                times.append(r["train_s"])
        full = {c: v for c, v in by_cell.items() if all(s in v for s in args.seeds)}
        if len(full) < 3:
            continue
        values = [d for v in full.values() for d in v.values()]
        within = statistics.mean(statistics.variance(list(v.values())) for v in full.values())
        total = statistics.variance(values)
        rhos = [
            spearmanr([full[c][a] for c in full], [full[c][b] for c in full]).statistic
            for a, b in itertools.combinations(args.seeds, 2)
        ]
        steps = epochs * 12
        out.append(
            f"| {epochs} ({steps}) | {len(full)} | {total**0.5:.3f} | {within**0.5:.3f} | "
            f"{1 - within / total:.2f} | {statistics.median(rhos):.2f} | {min(rhos):.2f} | "
            f"{statistics.median(times):.1f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="run folders whose trained cells are sampled")
    p.add_argument("--task", choices=sorted(bench_search.TASKS), default="hard")
    p.add_argument("--cells", type=int, default=12)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--epochs", type=int, nargs="+", default=[2, 8], help="budgets (epochs of 12 steps)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--filters", type=int, default=8, help="the macro-architecture's base filters")
    p.add_argument("--data-seed", type=int, default=1)
    p.add_argument("--pick-seed", type=int, default=0)
    p.add_argument(
        "--seeding",
        choices=["common", "per-cell"],
        default="common",
        help="common: replicate s trains every cell with seed s (same batches, same init stream); "
        "per-cell: seed = the search's network_seed(s, cell), as a search run trains its networks",
    )
    p.add_argument("--out", type=Path, required=True, help="JSON lines, one per training (resumable)")
    args = p.parse_args(argv)
    folders = [f for f in args.runs if (f / "csv" / "training_results.csv").exists()]
    cells = pick_cells(folders, args.cells, args.pick_seed)
    rows = train_all(args, cells)
    print(
        f"\ntask {args.task}, {len(cells)} cells, seeds {args.seeds} ({args.seeding}), size {args.size}, "
        f"{args.samples} images, {args.filters} filters\n"
    )
    print(table(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
