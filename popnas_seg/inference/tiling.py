"""Sliding-window inference and whole-image scores, in plain numpy.

Networks are trained on crops, but users (and the reported scores) need whole images of any size. As
MONAI's `sliding_window_inference` does, an image is covered by overlapping tiles of the training crop
size, each tile is predicted, and the tiles' probabilities are blended with a weight that is highest at
the tile centre (gaussian) or flat (constant), so seams and border effects of a single tile fade out.
Images smaller than a tile are padded (reflect) and the padding cropped off again.

`predict_fn` maps a float32 batch [N, h, w, C] to probabilities [N, h, w, K]; a Keras model, an ONNX
Runtime session and a torch/AIHWKit model all fit behind it, so digital, exported and analog scores use
one tiling. Nothing here imports Keras, TensorFlow or torch (the analog worker imports this module).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from popnas_seg.training.scores import confusion_counts, dice_from_counts, miou_from_counts

__all__ = [
    "PredictFn", "tile_starts", "blend_weights", "sliding_window_predict", "evaluate_images", "pack_images",
    "unpack_images",
]

PredictFn = Callable[[np.ndarray], np.ndarray]


def tile_starts(size: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of length `tile` covering `size` (>= tile) with at least `overlap` overlap.

    Same scan as MONAI: a step of tile*(1-overlap), and the last tile flush with the end.
    """
    if size <= tile:
        return [0]
    step = max(1, int(tile * (1.0 - overlap)))
    count = math.ceil((size - tile) / step) + 1
    return sorted({min(i * step, size - tile) for i in range(count)})


def blend_weights(tile: tuple[int, int], mode: str = "gaussian", sigma_scale: float = 0.125) -> np.ndarray:
    """Per-pixel weight [h, w] of one tile's prediction when tiles overlap.

    "gaussian": a gaussian of sigma = sigma_scale * tile side around the centre, scaled to max 1 and
    floored at its smallest positive value (MONAI's importance map); "constant": all ones (plain average).
    """
    h, w = tile
    if mode == "constant":
        return np.ones((h, w), dtype=np.float32)
    if mode != "gaussian":
        raise ValueError(f"blend mode must be 'gaussian' or 'constant', got {mode!r}")
    axes = []
    for n in (h, w):
        sigma = max(sigma_scale * n, 1e-6)
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        axes.append(np.exp(-0.5 * (x / sigma) ** 2))
    weight = np.outer(axes[0], axes[1])
    weight /= weight.max()
    positive = weight[weight > 0]
    weight = np.maximum(weight, positive.min() if positive.size else 1.0)
    return weight.astype(np.float32)


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad [H, W, C] at the bottom/right to at least height x width by reflection (edge for 1-pixel sides)."""
    ph, pw = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if not ph and not pw:
        return image
    widths = ((0, ph), (0, pw), (0, 0))
    if min(image.shape[0], image.shape[1]) > 1:
        return np.pad(image, widths, mode="reflect")
    return np.pad(image, widths, mode="edge")


def sliding_window_predict(
    predict_fn: PredictFn,
    image: np.ndarray,
    tile: tuple[int, int],
    overlap: float = 0.25,
    batch_size: int = 4,
    mode: str = "gaussian",
    sigma_scale: float = 0.125,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Class probabilities [H, W, K] of one image [H, W, C] (or [H, W]) by blended overlapping tiles.

    `tile` is the network's input size (the training crop, a multiple of its downsampling factor), so
    every tile the network sees is a legal size whatever the image size. `progress(done, total)` is
    called after each batch of tiles.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"image must be [H, W, C], got shape {img.shape}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    th, tw = (int(t) for t in tile)
    height, width = img.shape[:2]
    padded = _pad_to(img, th, tw)
    ph, pw = padded.shape[:2]
    starts = [(y, x) for y in tile_starts(ph, th, overlap) for x in tile_starts(pw, tw, overlap)]
    weight = blend_weights((th, tw), mode, sigma_scale)[:, :, None]
    total: np.ndarray | None = None
    norm = np.zeros((ph, pw, 1), dtype=np.float32)
    for i in range(0, len(starts), max(1, int(batch_size))):
        chunk = starts[i:i + max(1, int(batch_size))]
        batch = np.stack([padded[y:y + th, x:x + tw] for y, x in chunk])
        probs = np.asarray(predict_fn(batch), dtype=np.float32)
        if probs.ndim != 4 or probs.shape[:3] != (len(chunk), th, tw):
            raise ValueError(f"predict_fn returned shape {probs.shape} for a batch of shape {batch.shape}; "
                             f"expected [{len(chunk)}, {th}, {tw}, K]")
        if total is None:
            total = np.zeros((ph, pw, probs.shape[-1]), dtype=np.float32)
        for (y, x), p in zip(chunk, probs):
            total[y:y + th, x:x + tw] += p * weight
            norm[y:y + th, x:x + tw] += weight
        if progress is not None:
            progress(min(i + len(chunk), len(starts)), len(starts))
    assert total is not None  # at least one tile always exists
    return (total / norm)[:height, :width]


def evaluate_images(
    predict_fn: PredictFn,
    images: Iterable[np.ndarray],
    masks: Iterable[np.ndarray],
    tile: tuple[int, int],
    classes_count: int,
    ignore_class: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    mode: str = "gaussian",
) -> dict[str, Any]:
    """Whole-image foreground Dice and mean IoU of a set of images, by `sliding_window_predict`.

    Counts are summed over every pixel of every image before scoring, the same definition as the
    training metrics (popnas_seg/training/scores.py), so a one-tile image scores exactly as before.
    """
    counts = np.zeros((3, classes_count), dtype=np.float64)
    n_images = n_pixels = 0
    for image, mask in zip(images, masks, strict=True):
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[..., 0]
        img = np.asarray(image)
        if img.shape[:2] != m.shape[:2]:
            raise ValueError(f"image {img.shape[:2]} and mask {m.shape[:2]} sizes differ")
        probs = sliding_window_predict(predict_fn, img, tile, overlap, batch_size, mode)
        counts += confusion_counts(probs.argmax(-1), m, classes_count, ignore_class)
        n_images += 1
        n_pixels += int(m.size)
    return {
        "dice": dice_from_counts(counts, ignore_class),
        "miou": miou_from_counts(counts, ignore_class),
        "images": n_images,
        "pixels": n_pixels,
    }


def pack_images(images: list[np.ndarray], masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images of different sizes as one zero-padded stack [N, Hmax, Wmax, C], masks [N, Hmax, Wmax] and
    their sizes [N, 2]: how whole images travel to the analog worker (one .npz, no pickles)."""
    n = len(images)
    if n == 0:
        return np.zeros((0, 1, 1, 1), np.float32), np.zeros((0, 1, 1), np.int32), np.zeros((0, 2), np.int64)
    sizes = np.array([np.shape(m)[:2] for m in masks], dtype=np.int64)
    hmax, wmax = (int(v) for v in sizes.max(axis=0))
    channels = int(np.shape(images[0])[-1])
    x = np.zeros((n, hmax, wmax, channels), np.float32)
    y = np.zeros((n, hmax, wmax), np.int32)
    for i, (im, m) in enumerate(zip(images, masks, strict=True)):
        h, w = sizes[i]
        x[i, :h, :w] = im
        y[i, :h, :w] = m
    return x, y, sizes


def unpack_images(x: np.ndarray, y: np.ndarray, sizes: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Inverse of `pack_images`."""
    images = [x[i, :int(h), :int(w)] for i, (h, w) in enumerate(sizes)]
    masks = [y[i, :int(h), :int(w)] for i, (h, w) in enumerate(sizes)]
    return images, masks
