"""Does a plateau learning-rate rule, or a longer patience, train the finalists closer to convergence?

Why: under the finalists' rule (at most `analog.final_epochs`, early stopping after `early_stopping_patience`
epochs without a better validation Dice, best weights restored) the cosine schedule decays over the *maximum*
epoch count, so a run that stops early (epoch 54-66 of 80 on the issue-10 folder) ends at a learning rate of
still 10-30 % of the peak. A plateau rule (constant learning rate, halved after `--reduce-after` epochs
without a better validation Dice, as Keras' ReduceLROnPlateau does) anneals wherever the run happens to
stop. This script trains the issue-10 study cell on the study folder (`bench_analog.py --study`, same 48
training tiles, same seeds) under either rule and prints the test Dice per seed; one JSON line per training
goes to `OUT/results.jsonl` (rerunning skips what is there). `--patience` trains under other early-stopping
patiences (default: the config's), `--networks unet` the U-Net under the same rule (issue 10 target (a)
compares the cell with the U-Net trained by the same rules).

    python -m benchmarks.studies.bench_lr_rule OUT --rules cosine plateau --seeds 1 2 3 --threads 1
    python -m benchmarks.studies.bench_lr_rule OUT --rules cosine --patience 15 25 --networks cell unet --threads 1
    python -m benchmarks.studies.bench_lr_rule OUT --rules restarts20 --patience 25 --threads 1
    python -m benchmarks.studies.bench_lr_rule OUT --rules cosine --seeds 1 2 3 4 5 6 --init-offsets 0 1000

`--init-offsets` trains each seed's network again from other initial weights (and batch order) on the same
split (`others.seed` = seed, weights seeded with seed + offset), and the summary also prints "best of the
offsets by validation Dice": what restarts of one finalist, kept by validation Dice, would give.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.studies import bench_analog  # noqa: E402


def _plateau(reduce_after: int, factor: float) -> None:
    """Halve (x `factor`) the learning rate every `reduce_after` epochs without a better validation Dice.

    Hooked into the Trainer's own epoch monitor, so best-epoch tracking and early stopping stay the
    finalists' exactly; the optimizer's learning rate must be a plain variable (scheduler "constant").
    """
    from popnas_seg.training import callbacks as T

    original = T.EpochMonitor.on_epoch_end

    def on_epoch_end(self: T.EpochMonitor, epoch: int, logs: dict | None = None) -> None:
        original(self, epoch, logs)
        if self.best_epoch != epoch and (epoch - self.best_epoch) % reduce_after == 0:
            lr = self.model.optimizer.learning_rate
            lr.assign(float(lr.numpy()) * factor)

    T.EpochMonitor.on_epoch_end = on_epoch_end


def run_one(out: Path, rule: str, seed: int, reduce_after: int, patience: int, network: str, offset: int = 0) -> dict:
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.training.trainer import Trainer

    cfg = bench_analog._study_config("folder", out, seed, {"early_stopping_patience": patience})
    if rule.startswith("restarts"):  # SGDR: cosine cycles of N epochs, each back at the peak rate
        cfg.training_hyperparameters.scheduler = "cosine_restarts"
        cfg.training_hyperparameters.restart_period_epochs = int(rule.removeprefix("restarts"))
    if rule == "plateau":
        cfg.training_hyperparameters.scheduler = "constant"
        _plateau(reduce_after, 0.5)
    data = load_data(cfg.dataset, seed)
    _, result = bench_analog._train(Trainer(cfg, data), cfg, data, network, bench_analog.STUDY_CELL, seed + offset, 1)
    return {
        **result,
        "rule": rule,
        "seed": seed,
        "reduce_after": reduce_after,
        "network": network,
        "patience": cfg.analog.early_stopping_patience,
        "init_offset": offset,
    }


def _key(row: dict) -> tuple[str, str, int, int, int]:
    """(network, rule, patience, seed, init offset); rows written before --patience / --networks /
    --init-offsets are cell, patience 15, offset 0."""
    return row.get("network", "cell"), row["rule"], row.get("patience", 15), row["seed"], row.get("init_offset", 0)


def _rule(text: str) -> str:
    if text in ("cosine", "plateau") or (text.startswith("restarts") and text.removeprefix("restarts").isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"unknown rule {text!r}: cosine, plateau or restartsN")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--rules",
        nargs="+",
        type=_rule,
        default=["cosine", "plateau"],
        help="cosine, plateau, or restartsN (cosine restarts every N epochs)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--reduce-after", type=int, default=5, help="plateau: epochs without improvement")
    parser.add_argument(
        "--patience",
        type=int,
        nargs="+",
        default=[None],
        help="early-stopping patiences to train under (default: the config's)",
    )
    parser.add_argument("--networks", nargs="+", choices=["cell", "unet"], default=["cell"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    parser.add_argument(
        "--init-offsets",
        type=int,
        nargs="+",
        default=[0],
        help="weights seeded with seed + offset on the seed's split (restarts of one finalist)",
    )
    parser.add_argument(
        "--one", nargs=5, metavar=("NETWORK", "RULE", "PATIENCE", "SEED", "OFFSET"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    if args.one:  # one training per process: the plateau hook patches the Trainer class
        bench_analog._pin_threads(args.threads)
        network, rule, patience, seed, offset = args.one
        row = run_one(args.out, rule, int(seed), args.reduce_after, int(patience), network, int(offset))
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return 0
    import subprocess

    from popnas_seg.config import AnalogConfig

    patiences = [p or AnalogConfig().early_stopping_patience for p in args.patience]
    done = {_key(r) for r in map(json.loads, results.read_text().splitlines())} if results.exists() else set()
    for network in args.networks:
        for rule in args.rules:
            for patience in patiences:
                for seed in args.seeds:
                    for offset in args.init_offsets:
                        if (network, rule, patience, seed, offset) in done:
                            continue
                        print(f"{network} {rule} patience {patience} seed {seed} offset {offset} ...", flush=True)
                        subprocess.run(
                            [
                                sys.executable,
                                "-m",
                                "benchmarks.studies.bench_lr_rule",
                                str(args.out),
                                "--one",
                                network,
                                rule,
                                str(patience),
                                str(seed),
                                str(offset),
                                "--reduce-after",
                                str(args.reduce_after),
                                "--threads",
                                str(args.threads),
                            ],
                            check=True,
                        )
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    print(
        "\n| network | rule | patience | seed | init offset | test Dice | val Dice | epochs (best) | train s |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    for r in sorted(rows, key=_key):
        network, rule, patience, seed, offset = _key(r)
        print(
            f"| {network} | {rule} | {patience} | {seed} | {offset} | {r['test_dice']:.3f} | {r['val_dice']:.3f} | "
            f"{r['epochs']} ({r['best_epoch']}) | {r['train_s']:.0f} |"
        )
    for group in sorted({_key(r)[:3] for r in rows}):
        members = [r for r in rows if _key(r)[:3] == group]
        for offset in sorted({_key(r)[4] for r in members}):
            v = [r["test_dice"] for r in members if _key(r)[4] == offset]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            print(
                f"{group[0]} {group[1]} patience {group[2]} offset {offset}: mean test Dice "
                f"{statistics.mean(v):.3f} ± {sd:.3f} over {len(v)} seeds"
            )
        by_seed: dict[int, list[dict]] = {}
        for r in members:
            by_seed.setdefault(r["seed"], []).append(r)
        if any(len(rs) > 1 for rs in by_seed.values()):  # restarts: keep the best validation Dice per seed
            best = [max(rs, key=lambda r: r["val_dice"])["test_dice"] for rs in by_seed.values() if len(rs) > 1]
            sd = statistics.stdev(best) if len(best) > 1 else 0.0
            print(
                f"{group[0]} {group[1]} patience {group[2]} best of the offsets by validation Dice: mean test "
                f"Dice {statistics.mean(best):.3f} ± {sd:.3f} over {len(best)} seeds"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
