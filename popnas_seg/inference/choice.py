"""Which finalist `predict` runs: the trained finalists of a run folder, and its recommendation for the use."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any


def list_finalists(run_folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Finalists of a run that have a trained model: rows of final/finalists.csv (best validation Dice first)."""
    final = Path(run_folder) / "final"
    rows: list[dict[str, Any]] = []
    table = final / "finalists.csv"
    if table.is_file():
        with open(table, newline="") as fh:
            for row in csv.DictReader(fh):
                if (final / row["network"] / "model.keras").is_file():
                    rows.append(row)
    known = {r["network"] for r in rows}
    if final.is_dir():  # trained but the table not written yet (interrupted run)
        for folder in sorted(final.iterdir()):
            if folder.name not in known and (folder / "model.keras").is_file():
                rows.append({"network": folder.name, "val_dice": ""})

    def key(row: dict[str, Any]) -> tuple[int, float]:
        try:
            dice = float(row.get("val_dice") or "nan")
        except ValueError:
            dice = float("nan")
        return (row["network"] == "unet", -dice if math.isfinite(dice) else math.inf)

    return sorted(rows, key=key)


def recommended(run_folder: Path, names: list[str], analog: bool) -> tuple[str, str, float | None]:
    """(network, why, drift horizon or None) when no --network is given: the run's recommendation for the use,
    else the searched finalist with the best validation Dice (a run from before recommendations)."""
    from popnas_seg.finalists.recommendation import load_recommendation

    rec = load_recommendation(run_folder)
    use = "analog" if analog else "digital"
    entry = rec.get(use) if rec else None
    if rec and entry and entry.get("network") in names:
        if analog:
            return entry["network"], f"recommended for analog use at {rec['horizon']}", rec.get("horizon_s")
        return entry["network"], "recommended for digital use", None
    return names[0], f"best validation Dice; no {use} recommendation in final/recommendation.json", None
