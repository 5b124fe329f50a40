"""What every figure shares: time labels, colours, log and count axes, network-id labels, the atomic PNG write."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from popnas_seg.atomic import atomic_write_bytes

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
FRONT_COLOUR = "tab:red"
OTHER_COLOUR = "0.65"


def log_x_axis(ax: Any) -> None:
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


def integer_x_axis(ax: Any) -> None:
    """Ticks only at whole numbers on an axis of counts (networks, epochs): no "4.25 networks"."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# Up to this many points every point of a scatter is labelled with its network id; beyond, only the front.
LABEL_ALL_MAX = 40


def label_ids(
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


def save(fig: Figure, path: PathLike) -> Path:
    """Render the figure to PNG bytes and write them atomically (a reader never sees half an image)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(Path(path), buffer.getvalue())
