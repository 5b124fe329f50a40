"""Which network to use: the recommendation of a run, from final/finalists.csv and final/drift.csv alone.

Two uses, two rules, one per line of the report's first table and of final/recommendation.json:

- digital use: the highest digital test Dice (whole test images, as `predict` segments them);
- analog use: the highest risk-aware analog score at the drift horizon `analog.recommend_at` (the nearest scored
  `eval_times` entry), mean - `analog.risk_k` x std over programmings: the same objective the search ranks on,
  so a network that is good on average but unreliable from chip to chip is not recommended over a steady one.
  Scored on the weights `predict --analog` runs: the hardware-aware checkpoint when there is one.

Both among the networks that finished final training and fit `analog.recommend_max_params`; ties go to fewer
weights. The U-Net baseline competes like any finalist, so it is recommended when no finalist beats it, and
every finalist below it gets a plain warning. Reads files only, so `predict`, `summary` and the report agree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from popnas_seg.atomic import atomic_write_json
from popnas_seg.runlog.tables import finite_float as _number
from popnas_seg.runlog.tables import read_csv

__all__ = [
    "RECOMMENDATION_FILE",
    "build_recommendation",
    "load_recommendation",
    "recommendation_markdown",
    "recommendation_rows",
    "write_recommendation",
]

RECOMMENDATION_FILE = "recommendation.json"
BASELINE = "unet"
_VERSION = 2  # 2: the analog rule ranks by mean - risk_k x std (1: by the mean)


def _analog_settings(run_path: Path) -> tuple[float, int | None, float]:
    """(recommend_at, recommend_max_params, risk_k) of the run's frozen config; the schema defaults for older runs."""
    from popnas_seg.config import AnalogConfig

    try:
        analog = json.loads((run_path / "restore" / "config.json").read_text()).get("analog") or {}
    except (OSError, ValueError, AttributeError):
        analog = {}
    defaults = AnalogConfig()
    at = _number(analog.get("recommend_at"))
    budget = analog.get("recommend_max_params", defaults.recommend_max_params)
    risk_k = _number(analog.get("risk_k"))
    return (
        at if at and at > 0 else float(defaults.recommend_at),
        int(budget) if budget is not None and _number(budget) is not None else None,
        risk_k if risk_k is not None and risk_k >= 0 else float(defaults.risk_k),
    )


def _nearest(times: list[float], target: float) -> float | None:
    """The scored time closest to `target` on a log scale (drift is logarithmic in time)."""
    return min(times, key=lambda t: abs(math.log(t / target))) if times else None


def _entry(row: dict[str, str], drift: list[dict[str, str]], horizon: float | None, risk_k: float) -> dict[str, Any]:
    """One network's numbers: params, validation and test Dice, analog Dice ± std and risk-aware score at the
    horizon (a missing std counts as 0: one programming)."""
    name = row["network"]
    mine = [d for d in drift if d.get("network") == name]
    phase = "after" if any(d.get("hwa") == "after" for d in mine) else "before"
    analog = std = None
    if horizon is not None:
        for d in mine:
            t = _number(d.get("time"))
            if d.get("hwa") == phase and t is not None and math.isclose(t, horizon, rel_tol=1e-6):
                analog, std = _number(d.get("mean")), _number(d.get("std"))
    params = _number(row.get("params"))
    return {
        "network": name,
        "baseline": name == BASELINE,
        "params": None if params is None else int(params),
        "val_dice": _number(row.get("val_dice")),
        "test_dice": _number(row.get("test_dice")),
        "analog_dice": analog,
        "analog_dice_std": std,
        "analog_score": None if analog is None else analog - risk_k * (std or 0.0),
        "analog_weights": None if analog is None else ("HWA" if phase == "after" else "no HWA"),
    }


def _best(pool: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    scored = [e for e in pool if e.get(key) is not None]
    return max(scored, key=lambda e: (e[key], -(e["params"] or 0))) if scored else None


def build_recommendation(run_path: str | Path) -> dict[str, Any] | None:
    """The recommendation of the run at `run_path`, or None when no network finished final training yet."""
    from popnas_seg.plots import time_label

    run_path = Path(run_path)
    rows = read_csv(run_path / "final" / "finalists.csv")
    drift = read_csv(run_path / "final" / "drift.csv")
    requested, budget, risk_k = _analog_settings(run_path)
    times = sorted({t for t in (_number(d.get("time")) for d in drift) if t is not None and t > 0})
    horizon = _nearest(times, requested)
    warnings: list[str] = []
    for r in rows:
        if r.get("status") not in (None, "", "ok"):
            warnings.append(f"network {r['network']} failed its final training ({r.get('status')}): not considered.")
    entries = [_entry(r, drift, horizon, risk_k) for r in rows if r.get("status") in (None, "", "ok")]
    entries = [e for e in entries if e["test_dice"] is not None]
    if not entries:
        return None
    pool = [e for e in entries if budget is None or (e["params"] or 0) <= budget]
    if not pool:
        warnings.append(
            f"no network fits analog.recommend_max_params = {budget:,} weights; the recommendation ignores the budget."
        )
        pool = entries
    elif len(pool) < len(entries):
        left = ", ".join(e["network"] for e in entries if e not in pool)
        warnings.append(f"over the size budget of {budget:,} weights, not recommended: {left}.")
    digital, analog = _best(pool, "test_dice"), _best(pool, "analog_score")
    baseline = next((e for e in entries if e["baseline"]), None)
    label = None if horizon is None else time_label(horizon)
    if baseline is not None:
        for e in entries:
            if e["baseline"]:
                continue
            if e["test_dice"] < baseline["test_dice"]:
                warnings.append(
                    f"finalist {e['network']} is below the U-Net baseline digitally: test Dice "
                    f"{e['test_dice']:.3f} vs {baseline['test_dice']:.3f}."
                )
            if (
                e["analog_score"] is not None
                and baseline["analog_score"] is not None
                and e["analog_score"] < baseline["analog_score"]
            ):
                warnings.append(
                    f"finalist {e['network']} is below the U-Net baseline on analog hardware at {label}: "
                    f"Dice {e['analog_dice']:.3f} ± {e['analog_dice_std'] or 0:.3f} vs "
                    f"{baseline['analog_dice']:.3f} ± {baseline['analog_dice_std'] or 0:.3f} "
                    f"(mean - {risk_k:g} x std: {e['analog_score']:.3f} vs {baseline['analog_score']:.3f})."
                )
    if horizon is None:
        warnings.append("no analog drift scores (final/drift.csv): no recommendation for analog use.")
    budget_text = "" if budget is None else f", at most {budget:,} weights (analog.recommend_max_params)"
    return {
        "version": _VERSION,
        "horizon_s": horizon,
        "horizon": label,
        "requested_horizon_s": requested,
        "max_params": budget,
        "risk_k": risk_k,
        "rules": {
            "digital": f"highest digital test Dice{budget_text}; ties to fewer weights; the U-Net baseline competes, "
            "so it is recommended when no finalist beats it",
            "analog": f"highest mean - {risk_k:g} x std of the analog Dice over programmings (analog.risk_k) at "
            f"{label or '-'} of drift (the nearest scored time to analog.recommend_at = {requested:.0f} s), "
            "on the weights `predict --analog` runs (HWA when there is an HWA checkpoint)"
            f"{budget_text}; ties to fewer weights; the U-Net competes",
        },
        "digital": digital,
        "analog": analog,
        "baseline": baseline,
        "networks": entries,
        "warnings": warnings,
    }


def write_recommendation(run_path: str | Path) -> dict[str, Any] | None:
    """Write final/recommendation.json (atomically) from the run's tables; returns it (None: nothing to write)."""
    rec = build_recommendation(run_path)
    if rec is not None:
        atomic_write_json(Path(run_path) / "final" / RECOMMENDATION_FILE, rec)
    return rec


def load_recommendation(run_path: str | Path) -> dict[str, Any] | None:
    """final/recommendation.json when it is there and readable, else computed from the tables (not written)."""
    path = Path(run_path) / "final" / RECOMMENDATION_FILE
    try:
        rec = json.loads(path.read_text())
        if isinstance(rec, dict) and rec.get("version") == _VERSION and rec.get("digital"):
            return rec
    except (OSError, ValueError):
        pass
    return build_recommendation(run_path)


# ---------------------------------------------------------------------------------------------------- text
def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _name(e: dict[str, Any]) -> str:
    return f"{e['network']} (U-Net baseline)" if e["baseline"] else f"finalist {e['network']}"


def recommendation_rows(rec: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the recommendation table (report.md and `summary` print the same)."""
    at = rec.get("horizon") or "-"
    headers = ["use", "network", "params", "test Dice (digital)", f"analog Dice at {at} (mean ± std)"]
    rows = []
    for use, e in (
        ("digital", rec.get("digital")),
        (f"analog, {at} of drift", rec.get("analog")),
        ("baseline (for comparison)", rec.get("baseline")),
    ):
        if e is None:
            rows.append([use, "-", "-", "-", "-"])
            continue
        analog = (
            "-"
            if e["analog_dice"] is None
            else (f"{e['analog_dice']:.3f} ± {_f(e['analog_dice_std'])} ({e['analog_weights']})")
        )
        rows.append([use, _name(e), "-" if e["params"] is None else f"{e['params']:,}", _f(e["test_dice"]), analog])
    return headers, rows


def recommendation_markdown(rec: dict[str, Any] | None, run_folder: str = "logs/NAME") -> str:
    """The report's first section: which network to use, the rule, the baseline beside it, warnings."""
    out = ["## Recommendation"]
    if rec is None:
        out.append(
            "No recommendation yet: no network has finished final training (final/finalists.csv). Finish "
            "the run, then read this section again."
        )
        return "\n\n".join(out)
    headers, rows = recommendation_rows(rec)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += [
        "| " + " | ".join(("**" + c + "**") if i == 1 and c != "-" and k < 2 else c for i, c in enumerate(row)) + " |"
        for k, row in enumerate(rows)
    ]
    out.append("\n".join(lines))
    out.append(
        f"Rules: **digital**: {rec['rules']['digital']}. **Analog**: {rec['rules']['analog']}. Digital Dice "
        "is one trained network scored once on the pooled test pixels (no spread); analog Dice is the mean ± "
        "std over independent programmings of the chip. The same, machine-readable: "
        "`final/recommendation.json`."
    )
    for w in rec.get("warnings") or []:
        out.append(f"> **Warning:** {w}")
    analog = rec.get("analog")
    use = [
        f"`python run.py predict -r {run_folder} --input IMAGES/ --output MASKS/` segments with the digital "
        "recommendation"
    ]
    if analog is not None:
        use.append(f"add `--analog` for the analog one ({analog['network']}, drifted to {rec['horizon']})")
    out.append("; ".join(use) + ".")
    return "\n\n".join(out)
