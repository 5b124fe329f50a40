"""Does multi-fidelity training rank cells better than one flat budget, at equal total training steps?

Why: at the default budget (3 epochs of 12 steps per network) one training ranks the default task's cells no better
than chance (docs/BENCHMARKS.md, `bench_rank_noise.py`). Successive halving (search/promotion.py) spends the same
steps differently: every cell trains a short rung 0, the measured Pareto front (Dice, params) of ceil(n / eta) of
them trains on to the top rung, and the score the search and its predictors rank on is each cell's highest-rung
Dice, lower rungs mapped onto the top rung's scale (search/calibration.py).

For each task and setting this script trains the same cells under two network seeds (common random numbers:
replicate s trains every cell with seed s, as the search does) and reports:

- the test-retest Spearman of the score the search ranks on (seed 1 vs seed 2), over all cells;
- the agreement of the two seeds' top 3 (shared cells / 3);
- the test-retest Spearman of the rung-0 Dice alone (what the promotion decides on);
- the epochs trained per seed (the settings are chosen to spend the same) and the seconds per seed.

Cells are `--cells` distinct random cells of 1 to `--max-blocks` blocks over bench_search's operators (fixed
`--pick-seed`). Tasks: `default` (the built-in synthetic nuclei, bench_search's settings) and `folder` (bench_search's
real-like folder of the artefact generator, `<logs-dir>/folder_task_data`, generated once). Results go to `--out`
(one JSON line per training; each rung's model beside it in `<out>.d/`); run the same command again to resume.

    python -m benchmarks.search.bench_fidelity --tasks default folder --out /work/bench_runs/fidelity.jsonl
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import logging
import random
import statistics
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from scipy.stats import spearmanr  # noqa: E402

from benchmarks.search import bench_search  # noqa: E402
from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.results import TrainingResult  # noqa: E402
from popnas_seg.search.calibration import top_rung_values  # noqa: E402
from popnas_seg.search.promotion import rung_record, rung_seed, select_promoted  # noqa: E402

OBJECTIVES = ["dice", "params"]


def parse_setting(text: str) -> list[int]:
    """ "3" (flat) or "2,5" (cumulative epochs of the rungs)."""
    budgets = [int(v) for v in text.split(",")]
    if any(b <= a for a, b in zip(budgets, budgets[1:])) or budgets[0] < 1:
        raise argparse.ArgumentTypeError(f"rungs must be increasing positive epochs, got {text!r}")
    return budgets


def pick_cells(args: argparse.Namespace) -> list[str]:
    """`--cells` distinct random cells (canonical strings), 1 to `--max-blocks` blocks, drawn with `--pick-seed`."""
    import numpy as np

    from popnas_seg.search_space.encoding import random_cell

    operators = bench_search.parse_args([]).operators
    rng = np.random.default_rng(args.pick_seed)
    cells: dict[str, str] = {}
    while len(cells) < args.cells:
        cell = random_cell(rng, int(rng.integers(1, args.max_blocks + 1)), operators, 2)
        cells.setdefault(cell.key(), str(cell))
    return sorted(cells.values())


class Bench:
    """Trains (task, setting, seed, cell, rung) combinations into `--out`, resumably."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
        self.store = Path(str(args.out) + ".d")
        self._evaluators: dict[str, Any] = {}

    def done(self, key: tuple) -> dict | None:
        return next((r for r in self.rows if tuple(r["key"]) == key), None)

    def evaluator(self, task: str) -> Any:
        if task not in self._evaluators:
            from popnas_seg.data.pipeline import load_data
            from popnas_seg.evaluation.evaluator import NetworkEvaluator

            search_args = bench_search.parse_args(["--no-probe", "--tasks", task])
            bench_search.prepare_folder_task(search_args, self.args.logs_dir)
            cfg = RunConfig.model_validate(bench_search.build_config(search_args, task, "random", 1, None))
            data = load_data(cfg.dataset, cfg.data_seed)
            self._evaluators[task] = (NetworkEvaluator(cfg, data, logging.getLogger("bench")), cfg)
        return self._evaluators[task]

    def train(self, task: str, label: str, seed: int, cell: str, rung: int, epochs: int, start: Path | None) -> dict:
        """One training (rung 0 from scratch, or a continuation from `start`'s weights); recorded in `--out`."""
        key = (task, label, seed, cell, rung)
        row = self.done(key)
        if row is not None:
            return row
        from popnas_seg.evaluation.evaluator import Trial

        evaluator, cfg = self.evaluator(task)
        folder = self.store / task / label / str(seed) / f"{zlib.crc32(cell.encode()):08x}_r{rung}"
        job = Trial(
            network_id=len(self.rows) + 1,
            encoding=cell,
            architecture=cfg.architecture_hyperparameters.model_dump(mode="json"),
            seed=rung_seed(seed, rung),
            out_dir=str(folder),
            epochs=epochs,
            save=True,
            rung=rung,
            warm_start=None if start is None else str(start / "model.keras"),
            keep_initial=start is not None,
        )
        began = time.perf_counter()
        result = evaluator.evaluate(job)
        row = {"key": list(key), "folder": str(folder), "result": result.to_dict(), "s": time.perf_counter() - began}
        with self.args.out.open("a") as handle:
            handle.write(json.dumps(row, default=str) + "\n")
        self.rows.append(row)
        print(
            f"[fidelity] {task} {label} seed {seed} rung {rung} (+{epochs} ep) dice {result.dice:.3f} "
            f"({row['s']:.1f} s) {cell}",
            flush=True,
        )
        return row

    def run_setting(self, task: str, budgets: list[int], seed: int, cells: list[str]) -> dict[str, Any]:
        """Every cell at rung 0, then the promoted ones up the rungs; the scores the search would rank on."""
        label = ",".join(str(b) for b in budgets)
        records: dict[str, TrainingResult] = {}
        folders: dict[str, Path] = {}
        seconds = 0.0
        epochs = 0
        for i, cell in enumerate(cells):
            row = self.train(task, label, seed, cell, 0, budgets[0], None)
            result = TrainingResult.from_dict(row["result"])
            result.network_id = i
            records[cell] = rung_record(None, result, budgets[0])
            folders[cell] = Path(row["folder"])
            seconds += row["s"]
            epochs += budgets[0]
        rung0 = {c: records[c].dice for c in cells}
        eta = self.args.eta
        for rung in range(1, len(budgets)):
            level = [r for r in records.values() if r.rung == rung - 1]
            promoted = set(select_promoted(level, OBJECTIVES, eta))
            for cell in cells:
                if records[cell].network_id not in promoted:
                    continue
                row = self.train(task, label, seed, cell, rung, budgets[rung] - budgets[rung - 1], folders[cell])
                result = TrainingResult.from_dict(row["result"])
                result.network_id = records[cell].network_id
                records[cell] = rung_record(records[cell], result, budgets[rung])
                folders[cell] = Path(row["folder"])
                seconds += row["s"]
                epochs += budgets[rung] - budgets[rung - 1]
        ordered = [records[c] for c in cells]
        scores = top_rung_values(ordered, len(budgets) - 1, lambda s: s.dice, lambda r: r.dice)
        return {
            "score": dict(zip(cells, scores)),
            "rung0": rung0,
            "top": {c: records[c].rung for c in cells},
            "epochs": epochs,
            "seconds": seconds,
        }


def top_agreement(a: dict[str, float], b: dict[str, float], k: int = 3) -> float:
    best = lambda d: set(sorted(d, key=lambda c: -d[c])[:k])  # noqa: E731
    return len(best(a) & best(b)) / k


def table(results: dict[tuple[str, str], list[dict[str, Any]]], args: argparse.Namespace) -> str:
    out = [
        "| task | setting (cumulative epochs of 12 steps; eta) | epochs per seed | cells reaching the top | "
        "test-retest Spearman of the ranked score | top-3 agreement | rung-0 Dice Spearman | ranked score mean | "
        "s per seed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (task, label), runs in results.items():
        if len(runs) < 2:
            continue
        a, b = runs[0], runs[1]
        cells = sorted(a["score"])
        rho = spearmanr([a["score"][c] for c in cells], [b["score"][c] for c in cells]).statistic
        rho0 = spearmanr([a["rung0"][c] for c in cells], [b["rung0"][c] for c in cells]).statistic
        budgets = label.split(",")
        top = len(budgets) - 1
        reached = statistics.mean(sum(1 for c in cells if r["top"][c] == top) for r in runs)
        setting = f"flat {label}" if len(budgets) == 1 else f"rungs {label}; eta {args.eta}"
        mean = statistics.mean(v for r in runs for v in r["score"].values())
        out.append(
            f"| {task} | {setting} | {statistics.mean(r['epochs'] for r in runs):.0f} | {reached:.0f} | "
            f"{rho:.2f} | {top_agreement(a['score'], b['score']):.2f} | {rho0:.2f} | {mean:.3f} | "
            f"{statistics.mean(r['seconds'] for r in runs):.0f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", choices=["default", bench_search.FOLDER_TASK], default=["default"])
    p.add_argument(
        "--settings",
        type=parse_setting,
        nargs="+",
        default=[[3], [2, 5], [1, 7]],
        help='"3": a flat budget; "2,5": rungs (cumulative epochs); default: equal total epochs at 12 cells, eta 3',
    )
    p.add_argument("--eta", type=int, default=3, help="promotion: ceil(n / eta) of a rung train on")
    p.add_argument("--cells", type=int, default=12)
    p.add_argument("--max-blocks", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs=2, default=[1, 2])
    p.add_argument("--pick-seed", type=int, default=0)
    p.add_argument("--logs-dir", type=Path, default=Path("/work/bench_runs"), help="holds folder_task_data")
    p.add_argument("--out", type=Path, required=True, help="JSON lines, one per training (resumable)")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    random.seed(args.pick_seed)
    cells = pick_cells(args)
    bench = Bench(args)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for task in args.tasks:
        for budgets in args.settings:
            label = ",".join(str(b) for b in budgets)
            for seed in args.seeds:
                results.setdefault((task, label), []).append(bench.run_setting(task, budgets, seed, cells))
            print(table(results, args), flush=True)
    print(f"\n{len(cells)} cells, seeds {args.seeds}, objectives of the promotion {OBJECTIVES}\n")
    print(table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
