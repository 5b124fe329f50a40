"""The search's figures: the measured front's projections, predicted vs measured, hypervolume, front operators.

They take TrainingResult rows and plain numbers, never a live search, so a run's CSVs re-draw them
(plots/run_folder.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from popnas_seg.plots.style import FRONT_COLOUR, OTHER_COLOUR, PathLike, integer_x_axis, label_ids, log_x_axis, save
from popnas_seg.results import TrainingResult


def ok_results(results: Iterable[TrainingResult]) -> list[TrainingResult]:
    return [r for r in results if r.status == "ok" and r.dice is not None and math.isfinite(r.dice)]


def _scatter_projection(
    ax: Any,
    xs: Sequence[Any],
    ys: Sequence[Any],
    is_front: Sequence[bool],
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool,
    ids: Sequence[int] = (),
) -> None:
    xs_a, ys_a, mask = np.asarray(xs, float), np.asarray(ys, float), np.asarray(is_front, bool)
    if len(ids):
        label_ids(ax, xs_a, ys_a, ids, mask)
    if (~mask).any():
        ax.scatter(xs_a[~mask], ys_a[~mask], s=18, c=OTHER_COLOUR, label="other networks", zorder=2)
    if mask.any():
        order = np.argsort(xs_a[mask])
        ax.plot(xs_a[mask][order], ys_a[mask][order], "-", color=FRONT_COLOUR, lw=1, alpha=0.6, zorder=3)
        ax.scatter(xs_a[mask], ys_a[mask], s=40, c=FRONT_COLOUR, edgecolors="k", label="measured front", zorder=4)
    if log_x and len(xs_a) and np.all(xs_a > 0):
        log_x_axis(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(xs_a):
        ax.legend(loc="best", fontsize=8)


def plot_front_projections(
    results: Sequence[TrainingResult], front_ids: Iterable[int], path: PathLike, *, probe_time_label: str = "1 day"
) -> Path:
    """Three 2-D projections of the measured front: Dice vs params, Dice vs analog Dice, params vs analog Dice.

    Front points are red and joined in x order (a projection of a 3-objective front is not monotone, the line
    only guides the eye); networks without an analog probe are left out of the analog panels. Points carry
    their network ids (every point up to LABEL_ALL_MAX networks, else the front's).
    """
    ok = ok_results(results)
    front = set(int(i) for i in front_ids)
    fig = Figure(figsize=(15, 4.6))
    axes = fig.subplots(1, 3)
    _scatter_projection(
        axes[0],
        [r.params for r in ok],
        [r.dice for r in ok],
        [r.network_id in front for r in ok],
        "parameters (count, log scale)",
        "digital Dice (validation)",
        "Dice vs size",
        True,
        [r.network_id for r in ok],
    )
    probed = [r for r in ok if r.analog_dice is not None]
    _scatter_projection(
        axes[1],
        [r.dice for r in probed],
        [r.analog_dice for r in probed],
        [r.network_id in front for r in probed],
        "digital Dice (validation)",
        f"analog Dice at {probe_time_label}",
        "analog vs digital Dice",
        False,
        [r.network_id for r in probed],
    )
    if probed:
        lo = min(min(r.dice for r in probed), min(r.analog_dice for r in probed))  # type: ignore[type-var]
        hi = max(max(r.dice for r in probed), max(r.analog_dice for r in probed))  # type: ignore[type-var]
        axes[1].plot([lo, hi], [lo, hi], ":", color="k", lw=0.8, label="analog = digital")
        axes[1].legend(loc="best", fontsize=8)
    else:
        axes[1].text(0.5, 0.5, "no analog probe results", ha="center", va="center", transform=axes[1].transAxes)
    _scatter_projection(
        axes[2],
        [r.params for r in probed],
        [r.analog_dice for r in probed],
        [r.network_id in front for r in probed],
        "parameters (count, log scale)",
        f"analog Dice at {probe_time_label}",
        "analog Dice vs size",
        True,
        [r.network_id for r in probed],
    )
    fig.suptitle(f"Measured Pareto front: {len(front & {r.network_id for r in ok})} of {len(ok)} networks")
    return save(fig, path)


def plot_dice_params_analog(
    results: Sequence[TrainingResult], path: PathLike, *, probe_time_label: str = "1 day", front_ids: Iterable[int] = ()
) -> Path:
    """Dice vs params with each point coloured by its analog Dice (colorbar); unprobed networks hollow grey;
    points labelled with their network ids (all up to LABEL_ALL_MAX networks, else the front's: `front_ids`)."""
    ok = ok_results(results)
    fig = Figure(figsize=(7.5, 5))
    ax = fig.subplots()
    probed = [r for r in ok if r.analog_dice is not None]
    unprobed = [r for r in ok if r.analog_dice is None]
    if unprobed:
        ax.scatter(
            [r.params for r in unprobed],
            [r.dice for r in unprobed],
            s=30,
            facecolors="none",
            edgecolors=OTHER_COLOUR,
            label="no analog probe",
        )
    if probed:
        sc = ax.scatter(
            [r.params for r in probed],
            [r.dice for r in probed],
            s=40,
            c=[float(r.analog_dice or 0.0) for r in probed],
            cmap="viridis",
            edgecolors="k",
            linewidths=0.4,
            label="probed networks",
        )
        fig.colorbar(sc, ax=ax, label=f"analog Dice at {probe_time_label}")
    front = set(int(i) for i in front_ids)
    label_ids(
        ax,
        [r.params for r in ok],
        [r.dice for r in ok],
        [r.network_id for r in ok],
        [r.network_id in front for r in ok],
    )
    if ok and all(r.params > 0 for r in ok):
        log_x_axis(ax)
    ax.set_xlabel("parameters (count, log scale)")
    ax.set_ylabel("digital Dice (validation)")
    ax.set_title("Accuracy, size and analog robustness of every trained network")
    ax.grid(True, alpha=0.3)
    if ok:
        ax.legend(loc="best", fontsize=8)
    return save(fig, path)


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation (NaN below MIN_RANK_POINTS points or for a constant input)."""
    from popnas_seg.predictors.quality import rank_quality

    return rank_quality(a, b)["spearman"]


def plot_predicted_vs_measured(
    panels: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: PathLike, *, step: int
) -> Path:
    """One scatter per objective of predicted vs measured values for the networks trained at `step`.

    `panels` maps an objective label (e.g. "Dice") to (predicted, measured). Spearman is in each title because
    the search only uses the predictors to rank candidates.
    """
    names = list(panels) or ["(no predictions)"]
    fig = Figure(figsize=(5.2 * len(names), 4.6))
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names):
        pred, meas = panels.get(name, ((), ()))
        pred_a, meas_a = np.asarray(pred, float), np.asarray(meas, float)
        if len(pred_a):
            ax.scatter(pred_a, meas_a, s=30, c="tab:blue", edgecolors="k", linewidths=0.4, label="trained networks")
            lo, hi = float(min(pred_a.min(), meas_a.min())), float(max(pred_a.max(), meas_a.max()))
            ax.plot([lo, hi], [lo, hi], ":", color="k", lw=0.8, label="predicted = measured")
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no predicted networks trained", ha="center", va="center", transform=ax.transAxes)
        from popnas_seg.predictors.quality import MIN_RANK_POINTS

        rho = spearman(pred_a, meas_a)
        if len(pred_a) < MIN_RANK_POINTS:
            rho_text = "n/a, too few networks"
        else:
            rho_text = "n/a" if math.isnan(rho) else f"{rho:.3f}"
        ax.set_title(f"{name}, step {step}: Spearman {rho_text} (n={len(pred_a)})")
        ax.set_xlabel(f"predicted {name}")
        ax.set_ylabel(f"measured {name}")
        ax.grid(True, alpha=0.3)
    return save(fig, path)


def plot_hypervolume(series: Mapping[str, Sequence[tuple[float, float]]], path: PathLike) -> Path:
    """Hypervolume of the measured front vs networks trained; one line per strategy (or per run)."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    for name, points in series.items():
        pts = sorted((float(n), float(h)) for n, h in points)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name, ms=4)
    integer_x_axis(ax)
    ax.set_xlabel("networks trained (count)")
    ax.set_ylabel("hypervolume of the measured front\n(normalised: share of the reference box, 0-1)")
    ax.set_title("Search progress: hypervolume vs budget")
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(loc="best", fontsize=8, title="strategy")
    return save(fig, path)


def plot_hypervolume_spread(
    curves: Mapping[str, Sequence[Sequence[float]]], path: PathLike, title: str = "Hypervolume vs networks trained"
) -> Path:
    """Median (line) and min-max band (shaded) over seeds of normalised hypervolume curves, per strategy.

    `curves[strategy]` holds one curve per seed (value after k = 1, 2, ... networks); curves are cut to the
    shortest one of that strategy so every point aggregates all seeds.
    """
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    for name, runs in curves.items():
        runs = [list(c) for c in runs if len(c)]
        if not runs:
            continue
        n = min(len(c) for c in runs)
        arr = np.array([c[:n] for c in runs], dtype=float)
        k = np.arange(1, n + 1)
        (line,) = ax.plot(k, np.median(arr, axis=0), "-", label=f"{name} (median of {len(runs)})")
        ax.fill_between(k, arr.min(axis=0), arr.max(axis=0), color=line.get_color(), alpha=0.2)
    integer_x_axis(ax)
    ax.set_xlabel("networks trained (count)")
    ax.set_ylabel("hypervolume of the measured front\n(normalised: share of the reference box, 0-1)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="best", fontsize=8, title="strategy (band: min-max over seeds)")
    return save(fig, path)


# Operator names in an encoding string: "(in1,op1,in2,op2)" -> op1, op2. Used only when the
# search_space package is unavailable; Cell.from_string is the reference parser.
_BLOCK_RE = re.compile(r"\(\s*-?\d+\s*,([^,()]+),\s*-?\d+\s*,([^,()]+)\)")


def operator_counts(encodings: Iterable[str]) -> dict[str, int]:
    """How often each operator appears in the given cell encodings (both operators of every block)."""
    counts: dict[str, int] = {}
    for enc in encodings:
        try:
            from popnas_seg.search_space.encoding import Cell

            ops = [op for b in Cell.from_string(enc).blocks for op in (b.op1, b.op2)]
        except ImportError:
            ops = [op.strip() for m in _BLOCK_RE.finditer(enc) for op in m.groups()]
        for op in ops:
            counts[op] = counts.get(op, 0) + 1
    return counts


def plot_operator_frequency(
    counts: Mapping[str, int], path: PathLike, *, title: str = "Operators used by the measured Pareto front"
) -> Path:
    """Bar chart of operator usage (count over every block of every front cell), most used first."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    fig = Figure(figsize=(max(6.0, 1.1 * len(items) + 2), 4.5))
    ax = fig.subplots()
    if items:
        bars = ax.bar([k for k, _ in items], [v for _, v in items], color="tab:blue", label="uses in front cells")
        ax.bar_label(bars)
        ax.legend(loc="best", fontsize=8)
        ax.tick_params(axis="x", rotation=30)
    else:
        ax.text(0.5, 0.5, "no cells", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("operator")
    ax.set_ylabel("occurrences (count)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return save(fig, path)
