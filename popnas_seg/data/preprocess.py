"""The image preprocessing contract of a run: `dataset.rescale`, then per-image normalisation.

Training (data/pipeline.py, at load time) and `predict` (inference/predictor.py, on new images) both call these,
so a network never sees an image prepared another way than the images it was trained on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from popnas_seg.config import DatasetConfig
from popnas_seg.errors import UserError


def rescaled_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """Size of an image scaled by `dataset.rescale` (at least 1 pixel a side)."""
    return max(1, round(height * factor)), max(1, round(width * factor))


def rescale_image(image: np.ndarray, factor: float) -> np.ndarray:
    """[H, W, C] float image scaled by `factor`: bilinear, antialiased when shrinking (dataset.rescale)."""
    if factor == 1.0:
        return np.asarray(image, np.float32)
    size = rescaled_size(image.shape[0], image.shape[1], factor)
    out = tf.image.resize(np.asarray(image, np.float32), size, method="bilinear", antialias=factor < 1.0)
    return np.ascontiguousarray(out.numpy(), dtype=np.float32)


def rescale_mask(mask: np.ndarray, factor: float) -> np.ndarray:
    """[H, W] label mask scaled by `factor` with nearest-neighbour sampling (labels stay labels)."""
    if factor == 1.0:
        return np.asarray(mask)
    h, w = mask.shape[:2]
    nh, nw = rescaled_size(h, w, factor)
    rows = np.minimum(((np.arange(nh) + 0.5) * h / nh).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(nw) + 0.5) * w / nw).astype(np.int64), w - 1)
    return np.ascontiguousarray(np.asarray(mask)[rows][:, cols])


def preprocess_image(image: np.ndarray, cfg: DatasetConfig) -> np.ndarray:
    """The preprocessing contract of a run, for images the network has never seen (`predict`): an image
    as `data.folder.read_image` returns it, rescaled by `dataset.rescale`, then normalised per image."""
    scaled = rescale_image(np.asarray(image, np.float32), cfg.rescale)
    return normalise(scaled, cfg.normalisation, cfg.normalisation_percentiles, cfg.normalisation_clip)


def normalise(
    image: np.ndarray, mode: str, percentiles: Sequence[float] = (1.0, 99.8), clip: float | None = None
) -> np.ndarray:
    """Per-image normalisation over all pixels and channels; a constant image becomes all zeros.

    `clip` bounds the result to [-clip, clip] (`dataset.normalisation_clip`).

    "percentile" maps the low / high percentile to 0 / 1 without clipping (as CSBDeep's `normalize`): a few
    hot pixels or saturated specks then cannot squeeze the nuclei into a sliver of the range, which is what
    "minmax" does on such images.
    """
    if mode == "percentile":
        lo, hi = (float(v) for v in np.percentile(image, [float(percentiles[0]), float(percentiles[1])]))
        out = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    elif mode == "minmax":
        lo, hi = float(image.min()), float(image.max())
        out = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    elif mode == "standard":
        mean, std = float(image.mean(dtype=np.float64)), float(image.std(dtype=np.float64))
        out = (image - mean) / std if std > 1e-12 else np.zeros_like(image)
    else:
        raise UserError(f'unknown dataset.normalisation {mode!r}: use "percentile", "minmax" or "standard"')
    if clip is not None:
        out = np.clip(out, -float(clip), float(clip))
    return np.ascontiguousarray(out, dtype=np.float32)
