"""`--preview-data`: a PNG of training pairs as the network sees them, for a person to check the data by eye."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from popnas_seg.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from popnas_seg.data.pipeline import SegmentationData


def save_preview(data: SegmentationData, path: str | os.PathLike[str], count: int = 4) -> Path:
    """A PNG grid (image | mask overlay) of `count` training pairs as the network sees them (augmented).

    For eyeballing the data: a misaligned mask or a wrong label map is obvious here and nowhere else.
    Written atomically (PNG in memory, then temp file + os.replace).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    pairs = list(data.train_dataset().unbatch().take(count).as_numpy_iterator())
    rows = max(1, len(pairs))
    fig = Figure(figsize=(5.0, 2.5 * rows), dpi=100)
    FigureCanvasAgg(fig)
    tab10 = colormaps["tab10"]
    colours = [(0.0, 0.0, 0.0, 0.0)] + [(*tab10((c - 1) % 10)[:3], 0.45) for c in range(1, data.classes_count)]
    if data.ignore_class is not None:
        colours[data.ignore_class] = (1.0, 1.0, 1.0, 0.6)
    cmap = ListedColormap(colours)
    for r, (x, y) in enumerate(pairs):
        shown = _display(x)
        for col, title in enumerate(("image", "mask overlay")):
            ax = fig.add_subplot(rows, 2, 2 * r + col + 1)
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, interpolation="nearest")
            if col == 1:
                ax.imshow(y, cmap=cmap, vmin=-0.5, vmax=data.classes_count - 0.5, interpolation="nearest")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.suptitle(f"{data.source}: {data.classes_count} classes", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def _display(x: np.ndarray) -> np.ndarray:
    """Rescale one image to [0,1] for display: gray for 1 channel, RGB for 3, else the first channel."""
    img = x[..., :3] if x.shape[-1] == 3 else x[..., 0]
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo and math.isfinite(hi - lo) else np.zeros_like(img)
