"""Search throughput (networks per hour) of the default config with others.workers 1 and 2, back to back.

Why: `others.workers` > 1 runs the networks of a step as Ray tasks; this measures what that buys on one
machine, with everything else equal. Each setting is one real `run.py -j` search (pipeline ["search"]) of
configs/run.json in its own run folder, in one invocation, on the same machine, one after the other.
`--networks N` shrinks the default budget (64 networks) to N with the same shape: step 1 capped by
`search_strategy.b1_max_networks`, then the default 4 + 1 children per later step (`blocks` is lowered only
when N is too small for them). `--steps-per-epoch` / `--epochs` make each network cheaper.

Networks per hour uses the search wall time: the first `step_planned` journal event to `search_finished`
(predictor fitting and the step tails in which fewer networks than workers are left are included; process
start, data generation and the Ray start-up before the first plan are in "run wall s"). Probe s and train s
are medians of the journal's per-network `probe_time_s` (analog probe) and `train_time_s`. The machine may be
shared: nproc and the load average before and after each setting are printed with the table.

    python -m benchmarks.speed.bench_parallel                        # 24 networks per setting, ~8-10 min each idle
    python -m benchmarks.speed.bench_parallel --networks 64          # the full default search (~22 min at workers 1)
    python -m benchmarks.speed.bench_parallel --quick                # smoke test: 2 tiny networks per setting
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT  # noqa: E402
from popnas_seg.config import config_from_dict  # noqa: E402
from popnas_seg.search.strategies import progressive_budget  # noqa: E402


def shrink(cfg: dict[str, Any], networks: int | None) -> dict[str, Any]:
    """The default search cut to `networks` networks: step 1 capped, later steps as configured."""
    if networks is None:
        return cfg
    ss, space = cfg["search_strategy"], cfg["search_space"]
    for blocks in range(int(space["blocks"]), 0, -1):
        tail = (blocks - 1) * ss["max_children"] + max(blocks - 2, 0) * ss["max_exploration_children"]
        if networks - tail >= min(networks, 2):
            space["blocks"], ss["b1_max_networks"] = blocks, networks - tail
            break
    return cfg


def quick(cfg: dict[str, Any]) -> dict[str, Any]:
    """Tiny images and networks (the test suite's sizes): a smoke test of this script, not a measurement."""
    cfg["dataset"].update(
        samples=24, generated_size=[24, 24], crop=[16, 16], batch_size=8, validation_size=0.25, test_size=0.25
    )
    cfg["architecture_hyperparameters"].update(filters=4, normal_cells_per_motif=0)
    cfg["training_hyperparameters"].update(epochs=1, steps_per_epoch=2)
    cfg["analog"].update(probe_images=4, probe_repetitions=1)
    cfg["search_strategy"].update(predictor_epochs=8, accuracy_predictor_ensemble_units=2)
    return cfg


def events(folder: Path) -> list[dict[str, Any]]:
    path = folder / "restore" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run_setting(cfg: dict[str, Any], workers: int | str, out: Path) -> dict[str, Any]:
    """One search with `workers`; returns its row of the table (raises if the run fails)."""
    name = f"workers_{workers}"
    cfg = json.loads(json.dumps(cfg))
    cfg["others"]["workers"] = workers
    path = out / f"{name}.json"
    path.write_text(json.dumps(cfg, indent=1))
    load_before = os.getloadavg()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)  # a local instance per run, never a cluster named by the environment
    t0 = time.monotonic()
    with (out / f"{name}.log").open("w") as log:
        code = subprocess.call(
            [sys.executable, str(ROOT / "run.py"), "-j", str(path), "--name", name, "--logs-dir", str(out / "logs")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    wall = time.monotonic() - t0
    load_after = os.getloadavg()
    if code != 0:
        raise SystemExit(f"workers {workers}: run.py exited {code}; see {out / f'{name}.log'}")
    ev = events(out / "logs" / name)
    planned = [e["time"] for e in ev if e["event"] == "step_planned"]
    done = [e["time"] for e in ev if e["event"] == "search_finished"]
    results = [e["result"] for e in ev if e["event"] == "network_finished"]
    search_s = done[-1] - planned[0]
    ok = [r for r in results if r.get("status") == "ok"]
    return {
        "workers": workers,
        "networks": len(results),
        "ok": len(ok),
        "run_s": wall,
        "search_s": search_s,
        "per_hour": len(results) / search_s * 3600,
        "probe_s": median([float(r["extra"]["probe_time_s"]) for r in ok if "probe_time_s" in r.get("extra", {})]),
        "train_s": median([float(r["train_time_s"]) for r in ok]),
        "load_before": load_before,
        "load_after": load_after,
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]["per_hour"]
    lines = [
        "| workers | networks (ok) | run wall s | search wall s | networks/hour | vs first | probe s median "
        "| train s median | load avg 1 min before / after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['networks']} ({r['ok']}) | {r['run_s']:.0f} | {r['search_s']:.0f} "
            f"| {r['per_hour']:.0f} | {r['per_hour'] / base:.2f}x | {fmt(r['probe_s'])} "
            f"| {fmt(r['train_s'])} | {r['load_before'][0]:.2f} / {r['load_after'][0]:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "run.json"), help="base config (default run.json)")
    parser.add_argument("--networks", type=int, help="networks per setting (default 24, --quick 2; 0: the config's)")
    parser.add_argument("--workers", nargs="+", default=["1", "2"], help='settings, in order (default: 1 2; "auto" ok)')
    parser.add_argument("--epochs", type=int, help="training_hyperparameters.epochs (default: the config's)")
    parser.add_argument("--steps-per-epoch", type=int, help="training_hyperparameters.steps_per_epoch")
    parser.add_argument("--quick", action="store_true", help="tiny images and networks, 2 networks: a smoke test")
    parser.add_argument("--out", help="folder for the configs, logs and run folders (default: a new temp folder)")
    args = parser.parse_args()

    cfg = json.loads(Path(args.config).read_text())
    cfg.setdefault("others", {})["pipeline"] = ["search"]
    if args.quick:
        cfg = quick(cfg)
    networks = (2 if args.quick else 24) if args.networks is None else (args.networks or None)
    cfg = shrink(cfg, networks)
    if args.epochs is not None:
        cfg["training_hyperparameters"]["epochs"] = args.epochs
    if args.steps_per_epoch is not None:
        cfg["training_hyperparameters"]["steps_per_epoch"] = args.steps_per_epoch
    workers = [w if w == "auto" else int(w) for w in args.workers]
    budget = progressive_budget(config_from_dict(cfg))  # also validates the config before any run
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_parallel_"))
    out.mkdir(parents=True, exist_ok=True)
    th = cfg["training_hyperparameters"]
    print(
        f"# bench_parallel: {budget} networks per setting (blocks {cfg['search_space']['blocks']}, step-1 cap "
        f"{cfg['search_strategy'].get('b1_max_networks')}), {th['epochs']} epochs x {th['steps_per_epoch']} "
        f"steps, probe {cfg['analog'].get('probe', True)}; run folders in {out}",
        flush=True,
    )
    rows = []
    for w in workers:
        rows.append(run_setting(cfg, w, out))
        r = rows[-1]
        print(
            f"workers {w}: {r['networks']} networks in {r['search_s']:.0f} s of search ({r['per_hour']:.0f}/hour)",
            flush=True,
        )
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"\nmachine: nproc {cpus}, os.cpu_count {os.cpu_count()}; the load average is the whole machine's "
        "(other users' work included: this machine may be shared)\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
