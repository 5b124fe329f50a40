"""`python run.py summary -r RUN` (and `popnas-seg summary`): the network to use and the measured front, as text.

Reads the run folder only (like report.md, whose first section it repeats), imports no TensorFlow or torch, and
works on a finished, running or interrupted run. Exit codes as the main CLI: 0 done, 2 user error.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from popnas_seg.command import tool_command

__all__ = ["build_parser", "main", "summary_text"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py summary",
        description="Print which network a run recommends (digital and analog use), the U-Net beside it, and the "
        "measured Pareto front of the search, as tables.",
    )
    parser.add_argument("-r", "--run", required=True, metavar="FOLDER", help="the run folder (logs/NAME)")
    return parser


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table: numbers right-aligned, text left-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def numeric(text: str) -> bool:
        return text.replace(",", "").replace(".", "").replace("-", "").replace(" ± ", "").isdigit()

    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if k and numeric(c) else c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _front(run_path: Path) -> tuple[list[Any], int]:
    from popnas_seg.plots import load_results, measured_front_ids

    results = load_results(run_path)
    ids = set(measured_front_ids(run_path, results))
    front = sorted((r for r in results if r.network_id in ids), key=lambda r: -r.dice)
    return front, sum(r.status == "ok" for r in results)


def _trials_line(run_path: Path) -> str:
    """The search's networks by trial state (runlog/trials.py), read from the journal; "" before any is planned.
    RUNNING and RETRIED in a run that is not going on are the attempts a resume trains again."""
    from popnas_seg.runlog.events import RUN_EVENTS
    from popnas_seg.runlog.journal import Journal
    from popnas_seg.runlog.trials import TrialStatus, trial_states

    states = list(trial_states(Journal(run_path / "restore" / "journal.jsonl", schema=RUN_EVENTS).events()).values())
    if not states:
        return ""
    counts = ", ".join(f"{states.count(s)} {s.value}" for s in TrialStatus if states.count(s))
    return f"Search networks: {counts}"


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_text(run_folder: str | Path) -> str:
    """The summary of a run folder as printed by `run.py summary` (UserError when it is not a run folder)."""
    from popnas_seg.errors import UserError
    from popnas_seg.finalists.recommendation import load_recommendation, recommendation_rows

    run_path = Path(run_folder)
    if not (run_path / "restore" / "config.json").is_file():
        raise UserError(f'"{run_folder}" is not a run folder (no restore/config.json)')
    try:
        state = json.loads((run_path / "restore" / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    out = [f"run {run_path}: stage {state.get('stage', 'unknown')} (updated {state.get('updated_at', '?')})"]
    trials = _trials_line(run_path)
    out += [trials, ""] if trials else [""]
    rec = load_recommendation(run_path)
    if rec is None:
        out += [
            "Recommendation: none yet (no network has finished final training; finish the run with "
            f"`{tool_command('-r', run_folder)}`).",
            "",
        ]
    else:
        headers, rows = recommendation_rows(rec)
        out += ["Recommended network (final/recommendation.json):", text_table(headers, rows), ""]
        out += [
            textwrap.fill(f"{label}: {rec['rules'][key]}.", 110, initial_indent=prefix, subsequent_indent=" " * 7)
            for prefix, label, key in (("Rules: ", "digital", "digital"), (" " * 7, "analog", "analog"))
        ]
        out += [f"WARNING: {w}" for w in rec.get("warnings") or []]
        predict = tool_command("predict", "-r", run_folder)
        out += [
            "",
            f"Segment images with it: {predict} --input IMAGES/ --output MASKS/"
            + (" [--analog]" if rec.get("analog") else ""),
            "",
        ]
    front, ok = _front(run_path)
    if not front:
        out.append("Measured front: the search has no results yet (csv/training_results.csv).")
    else:
        out.append(
            f"Measured Pareto front of the search: {len(front)} non-dominated networks of {ok} trained "
            "(search-time scores: validation Dice, analog Dice of the probe):"
        )
        out.append(
            text_table(
                ["id", "Dice", "analog Dice", "params", "FLOPs", "cell"],
                [
                    [
                        r.network_id,
                        _num(r.dice),
                        "-" if r.analog_dice is None else f"{r.analog_dice:.3f} ± {_num(r.analog_dice_std)}",
                        f"{r.params:,}",
                        f"{r.flops:,}",
                        r.encoding,
                    ]
                    for r in front
                ],
            )
        )
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from popnas_seg.errors import UserError

    try:
        sys.stdout.write(summary_text(args.run))
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
