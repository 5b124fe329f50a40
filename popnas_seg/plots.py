"""Every figure of a run, drawn from plain data (numbers, rows, arrays) and written atomically as PNG.

The functions never read Keras or torch objects: the search, the finalists stage and the report hand them rows,
so the same figures can be re-drawn from the CSVs of an old or still-running run (`plot_search`).
Matplotlib is used through its object API with the Agg canvas (no pyplot global state, no display needed).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from popnas_seg.atomic import atomic_write_bytes
from popnas_seg.results import TrainingResult
from popnas_seg.runlog.tables import finite_float

PathLike = str | os.PathLike[str]

# Drift evaluation times get human labels on the log axis.
_TIME_LABELS = (
    (1.0, "1 s"),
    (60.0, "1 min"),
    (3600.0, "1 h"),
    (86400.0, "1 day"),
    (604800.0, "1 week"),
    (2592000.0, "1 month"),
    (31104000.0, "1 year"),
    (31536000.0, "1 year"),
)
_FRONT_COLOUR = "tab:red"
_OTHER_COLOUR = "0.65"


def _log_x(ax: Any) -> None:
    """Log x axis labelled at 1, 2 and 5 x 10^k in compact units (12k, 1.5M): default minor labels overlap."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    def compact(value: float, _pos: int) -> str:
        for scale, unit in ((1e6, "M"), (1e3, "k")):
            if value >= scale:
                return f"{value / scale:g}{unit}"
        return f"{value:g}"

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(compact))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda _v, _p: ""))


def _integer_x(ax: Any) -> None:
    """Ticks only at whole numbers on an axis of counts (networks, epochs): no "4.25 networks"."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# Up to this many points every point of a scatter is labelled with its network id; beyond, only the front.
LABEL_ALL_MAX = 40


def _label_ids(
    ax: Any,
    xs: Sequence[Any] | np.ndarray,
    ys: Sequence[Any] | np.ndarray,
    ids: Sequence[int],
    is_front: Sequence[bool] | np.ndarray,
) -> None:
    """Write each point's network id beside it (the id `predict --network` and the CSVs use)."""
    label_all = len(ids) <= LABEL_ALL_MAX
    for x, y, network_id, front in zip(xs, ys, ids, is_front):
        if front or label_all:
            ax.annotate(
                str(network_id),
                (float(x), float(y)),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=7,
                color="k" if front else "0.35",
                zorder=5,
            )


def time_label(seconds: float) -> str:
    """'1 day' for 86400 etc.; other values as seconds with 3 significant digits."""
    for value, label in _TIME_LABELS:
        if math.isclose(seconds, value, rel_tol=1e-6):
            return label
    return f"{seconds:.3g} s"


def _save(fig: Figure, path: PathLike) -> Path:
    """Render the figure to PNG bytes and write them atomically (a reader never sees half an image)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(Path(path), buffer.getvalue())


def _ok(results: Iterable[TrainingResult]) -> list[TrainingResult]:
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
        _label_ids(ax, xs_a, ys_a, ids, mask)
    if (~mask).any():
        ax.scatter(xs_a[~mask], ys_a[~mask], s=18, c=_OTHER_COLOUR, label="other networks", zorder=2)
    if mask.any():
        order = np.argsort(xs_a[mask])
        ax.plot(xs_a[mask][order], ys_a[mask][order], "-", color=_FRONT_COLOUR, lw=1, alpha=0.6, zorder=3)
        ax.scatter(xs_a[mask], ys_a[mask], s=40, c=_FRONT_COLOUR, edgecolors="k", label="measured front", zorder=4)
    if log_x and len(xs_a) and np.all(xs_a > 0):
        _log_x(ax)
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
    ok = _ok(results)
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
    return _save(fig, path)


def plot_dice_params_analog(
    results: Sequence[TrainingResult], path: PathLike, *, probe_time_label: str = "1 day", front_ids: Iterable[int] = ()
) -> Path:
    """Dice vs params with each point coloured by its analog Dice (colorbar); unprobed networks hollow grey;
    points labelled with their network ids (all up to LABEL_ALL_MAX networks, else the front's: `front_ids`)."""
    ok = _ok(results)
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
            edgecolors=_OTHER_COLOUR,
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
    _label_ids(
        ax,
        [r.params for r in ok],
        [r.dice for r in ok],
        [r.network_id for r in ok],
        [r.network_id in front for r in ok],
    )
    if ok and all(r.params > 0 for r in ok):
        _log_x(ax)
    ax.set_xlabel("parameters (count, log scale)")
    ax.set_ylabel("digital Dice (validation)")
    ax.set_title("Accuracy, size and analog robustness of every trained network")
    ax.grid(True, alpha=0.3)
    if ok:
        ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


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
    return _save(fig, path)


def plot_hypervolume(series: Mapping[str, Sequence[tuple[float, float]]], path: PathLike) -> Path:
    """Hypervolume of the measured front vs networks trained; one line per strategy (or per run)."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    for name, points in series.items():
        pts = sorted((float(n), float(h)) for n, h in points)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name, ms=4)
    _integer_x(ax)
    ax.set_xlabel("networks trained (count)")
    ax.set_ylabel("hypervolume of the measured front\n(normalised: share of the reference box, 0-1)")
    ax.set_title("Search progress: hypervolume vs budget")
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(loc="best", fontsize=8, title="strategy")
    return _save(fig, path)


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
    _integer_x(ax)
    ax.set_xlabel("networks trained (count)")
    ax.set_ylabel("hypervolume of the measured front\n(normalised: share of the reference box, 0-1)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="best", fontsize=8, title="strategy (band: min-max over seeds)")
    return _save(fig, path)


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
    return _save(fig, path)


def plot_drift_curves(
    rows: Sequence[Mapping[str, Any]], path: PathLike, *, digital: Mapping[str, float] | None = None
) -> Path:
    """Analog Dice vs time after programming (log axis), one colour per network, mean ± std band.

    `rows` are drift-table rows: network, hwa ("before"/"control"/"after"), time (s), mean, std. Solid lines
    are after hardware-aware training, dash-dotted the digital fine-tune control, dashed no HWA; a dotted
    horizontal line marks each network's digital Dice.
    """
    fig = Figure(figsize=(8.5, 5.2))
    ax = fig.subplots()
    networks = list(dict.fromkeys(str(r["network"]) for r in rows))
    colours = ListedColormap(
        ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
    )
    all_times: set[float] = set()
    for i, net in enumerate(networks):
        colour = colours(i % colours.N)
        for hwa, style, marker in (("after", "-", "o"), ("control", "-.", "^"), ("before", "--", "s")):
            pts = sorted(
                (float(r["time"]), float(r["mean"]), float(r.get("std") or 0.0))
                for r in rows
                if str(r["network"]) == net and str(r["hwa"]) == hwa
            )
            if not pts:
                continue
            t, m, s = (np.array(v) for v in zip(*pts))
            all_times.update(t.tolist())
            label = f"{net} ({ {'after': 'HWA', 'control': 'digital control'}.get(hwa, 'no HWA') })"
            ax.plot(
                t,
                m,
                style,
                marker=marker,
                ms=5,
                color=colour,
                label=label,
                markerfacecolor=colour if hwa == "after" else "white",
            )
            ax.fill_between(t, m - s, m + s, color=colour, alpha=0.15 if hwa == "after" else 0.08)
        if digital and net in digital and digital[net] is not None:
            ax.axhline(float(digital[net]), ls=":", color=colour, lw=1, label=f"{net} digital")
    if all_times and min(all_times) > 0:
        _log_x(ax)
        ticks = sorted(all_times)
        ax.set_xticks(ticks)
        ax.set_xticklabels([time_label(t) for t in ticks], rotation=20)
    if not rows:
        ax.text(0.5, 0.5, "no drift results", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("time after programming (log scale)")
    ax.set_ylabel("analog Dice (test, mean ± std over programmings)")
    ax.set_title("Conductance drift: analog Dice over time")
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend(loc="best", fontsize=7, ncol=2)
    return _save(fig, path)


def plot_finalists_size_analog(
    finalists: Sequence[Mapping[str, Any]], drift: Sequence[Mapping[str, Any]], horizon_s: float, path: PathLike
) -> Path:
    """Params (log) vs analog Dice at the drift time nearest `horizon_s`, mean ± std over programmings, one point
    per finalist and the U-Net (`network` "unet", a black square): do the small finalists hold up on the chip?

    `finalists` are final/finalists.csv rows (network, params), `drift` the drift-table rows; after HWA where
    the run did HWA, else without. Networks without a drift row at that time are left out.
    """
    fig = Figure(figsize=(6.8, 4.6))
    ax = fig.subplots()
    phase = "after" if any(str(d.get("hwa")) == "after" for d in drift) else "before"
    times = sorted({float(d["time"]) for d in drift})
    when = min(times, key=lambda t: abs(math.log(t / horizon_s))) if times else None
    drawn = 0
    for row in finalists:
        name, params = str(row.get("network")), finite_float(row.get("params"))
        hit = [
            d
            for d in drift
            if str(d["network"]) == name
            and str(d["hwa"]) == phase
            and when is not None
            and math.isclose(float(d["time"]), when)
        ]
        if params is None or not hit:
            continue
        mean, std = float(hit[0]["mean"]), float(hit[0].get("std") or 0.0)
        unet = name == "unet"
        ax.errorbar(
            [params],
            [mean],
            yerr=[std],
            fmt="s" if unet else "o",
            ms=7,
            capsize=4,
            color="black" if unet else _FRONT_COLOUR,
            label="U-Net" if unet else None,
        )
        ax.annotate(
            "U-Net" if unet else f"finalist {name}",
            (params, mean),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
        )
        drawn += 1
    if drawn:
        _log_x(ax)
        ax.margins(x=0.25, y=0.2)
    else:
        ax.text(0.5, 0.5, "no finalist drift results", ha="center", va="center", transform=ax.transAxes)
    tag = "HWA" if phase == "after" else "no HWA"
    ax.set_xlabel("params (log scale)")
    ax.set_ylabel(f"analog Dice at {time_label(when) if when else '-'} ({tag}, mean ± std)")
    ax.set_title("Finalists and U-Net: size vs analog Dice at the horizon")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_learning_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: PathLike) -> Path:
    """Validation Dice (solid) and training Dice (dashed) per epoch, one colour per network.

    `histories` maps a network name to its rows of training/history.csv (Keras CSVLogger: epoch, dice,
    val_dice, ...); a marker shows the best validation epoch, whose weights the network keeps.
    """
    fig = Figure(figsize=(8.5, 5.2))
    ax = fig.subplots()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]

    def series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
        pts = [
            (float(r["epoch"]) + 1.0, float(r[key]))
            for r in rows
            if r.get(key) not in (None, "") and r.get("epoch") not in (None, "")
        ]
        pts = [(e, v) for e, v in pts if math.isfinite(v)]
        return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (np.array([]),) * 2

    for i, (name, rows) in enumerate(histories.items()):
        colour = colours[i % len(colours)]
        e, v = series(rows, "val_dice")
        if len(e):
            ax.plot(e, v, "-", color=colour, label=f"{name} validation")
            best = int(np.argmax(v))
            ax.plot([e[best]], [v[best]], "o", color=colour, ms=7)
        e, v = series(rows, "dice")
        if len(e):
            ax.plot(e, v, "--", color=colour, alpha=0.7, label=f"{name} training")
    if not histories:
        ax.text(0.5, 0.5, "no training histories", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(loc="lower right", fontsize=7, ncol=2)
    _integer_x(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice (dot: best validation epoch, the weights kept)")
    ax.set_title("Final training: learning curves of the finalists and the U-Net")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_sample_predictions(
    images: np.ndarray,
    truths: np.ndarray,
    digital: np.ndarray,
    analog: np.ndarray | None,
    path: PathLike,
    *,
    analog_label: str = "analog prediction (1 month)",
    title: str = "",
) -> Path:
    """Grid with one row per sample: image, ground truth, digital prediction, analog prediction.

    Masks hold class indices; the same colour scale is used for truth and both predictions.
    """
    images = np.asarray(images)
    n = len(images)
    columns = [("image", None), ("ground truth", truths), ("digital prediction", digital)]
    if analog is not None:
        columns.append((analog_label, analog))
    vmax = max(1, int(max(np.max(np.asarray(m)) for _, m in columns[1:])))
    fig = Figure(figsize=(2.6 * len(columns), 2.6 * max(n, 1)))
    axes = np.array(fig.subplots(max(n, 1), len(columns), squeeze=False))
    for i in range(n):
        for j, (name, masks) in enumerate(columns):
            ax = axes[i, j]
            if masks is None:
                img = images[i]
                img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            else:
                ax.imshow(np.asarray(masks[i]), cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------- run folder
def _read_rows(path: Path) -> list[dict[str, str]]:
    from popnas_seg.runlog.tables import read_csv

    return read_csv(path)


def load_results(run_path: Path) -> list[TrainingResult]:
    """Rows of csv/training_results.csv as TrainingResult records."""
    return [TrainingResult.from_dict(r) for r in _read_rows(run_path / "csv" / "training_results.csv")]


def measured_front_ids(run_path: Path, results: Sequence[TrainingResult]) -> list[int]:
    """Ids of the measured front: the search's csv/measured_front.csv; else recomputed on Dice/params/analog."""
    rows = _read_rows(run_path / "csv" / "measured_front.csv")
    if rows:
        return [int(float(r["network_id"])) for r in rows]
    ok = _ok(results)
    probed = [r for r in ok if r.analog_dice is not None]
    pool = probed or ok
    ids = []
    for r in pool:
        dominated = any(
            o is not r
            and o.dice >= r.dice
            and o.params <= r.params
            and (o.analog_dice or 0) >= (r.analog_dice or 0)
            and (o.dice > r.dice or o.params < r.params or (o.analog_dice or 0) > (r.analog_dice or 0))
            for o in pool
        )
        if not dominated:
            ids.append(r.network_id)
    return ids


def _strategy_name(run_path: Path) -> str:
    try:
        cfg = json.loads((run_path / "restore" / "config.json").read_text())
        return str(cfg["search_strategy"]["strategy"])
    except (OSError, ValueError, KeyError, TypeError):
        return run_path.name


def _probe_label(run_path: Path) -> str:
    try:
        cfg = json.loads((run_path / "restore" / "config.json").read_text())
        return time_label(float(cfg["analog"]["t_inference"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "1 day"


def hypervolume_series(run_path: Path) -> list[tuple[float, float]]:
    """(networks trained, hypervolume) per finished step from csv/search_progress.csv."""
    out = []
    for row in _read_rows(run_path / "csv" / "search_progress.csv"):
        n, hv = finite_float(row.get("networks_trained")), finite_float(row.get("hypervolume"))
        if n is not None and hv is not None:
            out.append((n, hv))
    return out


def predicted_vs_measured(run_path: Path, results: Sequence[TrainingResult]) -> dict[int, dict[str, tuple[list, list]]]:
    """Per step: objective label -> (predicted, measured) for networks that were predicted and then trained."""
    out: dict[int, dict[str, tuple[list, list]]] = {}
    columns = (
        ("Dice", "predicted_dice", "dice"),
        ("analog score", "predicted_analog_dice", "analog_objective"),
        ("training time (s)", "predicted_time", "train_time_s"),
    )
    for csv_path in sorted((run_path / "csv").glob("predictions_b*.csv")):
        match = re.fullmatch(r"predictions_b(\d+)\.csv", csv_path.name)
        if not match:
            continue
        step = int(match.group(1))
        preds = {row.get("encoding"): row for row in _read_rows(csv_path)}
        trained = [r for r in _ok(results) if r.step == step and r.encoding in preds]
        panels: dict[str, tuple[list, list]] = {}
        for label, pcol, field in columns:
            pairs = [(finite_float(preds[r.encoding].get(pcol)), finite_float(getattr(r, field))) for r in trained]
            pairs = [(p, m) for p, m in pairs if p is not None and m is not None]
            if pairs:
                panels[label] = ([p for p, _ in pairs], [m for _, m in pairs])
        if panels:
            out[step] = panels
    return out


def plot_search(run_folder: Any) -> list[Path]:
    """Re-draw every search figure of a run folder (a RunFolder or its path) from its CSVs; returns the files.

    Safe on an old run or one still being written: each figure only needs its own CSV and is skipped
    when that CSV does not exist yet.
    """
    run_path = Path(getattr(run_folder, "path", run_folder))
    plots_dir = run_path / "plots"
    results = load_results(run_path)
    written: list[Path] = []
    if _ok(results):
        front = measured_front_ids(run_path, results)
        probe_label = _probe_label(run_path)
        written.append(
            plot_front_projections(results, front, plots_dir / "front_projections.png", probe_time_label=probe_label)
        )
        written.append(
            plot_dice_params_analog(
                results, plots_dir / "dice_params_analog.png", probe_time_label=probe_label, front_ids=front
            )
        )
        front_set = set(front)
        counts = operator_counts(r.encoding for r in results if r.network_id in front_set)
        written.append(plot_operator_frequency(counts, plots_dir / "front_operators.png"))
        for step, panels in sorted(predicted_vs_measured(run_path, results).items()):
            written.append(
                plot_predicted_vs_measured(panels, plots_dir / f"predicted_vs_measured_b{step}.png", step=step)
            )
    series = hypervolume_series(run_path)
    if series:
        written.append(plot_hypervolume({_strategy_name(run_path): series}, plots_dir / "hypervolume.png"))
    return written
