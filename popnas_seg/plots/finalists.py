"""The finalists stage's figures: drift curves, size vs analog Dice, learning curves, sample predictions.

They take rows of final/*.csv (or arrays of images and masks), so the report re-draws them from the files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from popnas_seg.plots.style import FRONT_COLOUR, PathLike, integer_x_axis, log_x_axis, save, time_label
from popnas_seg.runlog.tables import finite_float


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
        log_x_axis(ax)
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
    return save(fig, path)


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
            color="black" if unet else FRONT_COLOUR,
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
        log_x_axis(ax)
        ax.margins(x=0.25, y=0.2)
    else:
        ax.text(0.5, 0.5, "no finalist drift results", ha="center", va="center", transform=ax.transAxes)
    tag = "HWA" if phase == "after" else "no HWA"
    ax.set_xlabel("params (log scale)")
    ax.set_ylabel(f"analog Dice at {time_label(when) if when else '-'} ({tag}, mean ± std)")
    ax.set_title("Finalists and U-Net: size vs analog Dice at the horizon")
    ax.grid(True, alpha=0.3)
    return save(fig, path)


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
    integer_x_axis(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice (dot: best validation epoch, the weights kept)")
    ax.set_title("Final training: learning curves of the finalists and the U-Net")
    ax.grid(True, alpha=0.3)
    return save(fig, path)


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
    return save(fig, path)
