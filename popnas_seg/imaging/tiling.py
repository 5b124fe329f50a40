"""Sliding-window inference and whole-image scores, in plain numpy.

Networks are trained on crops, but users (and the reported scores) need whole images of any size. As
MONAI's `sliding_window_inference` does, an image is covered by overlapping tiles of the training crop
size, each tile is predicted, and the tiles' probabilities are blended with a weight that is highest at
the tile centre (gaussian) or flat (constant), so seams and border effects of a single tile fade out.
Images smaller than a tile are padded (reflect) and the padding cropped off again.

Why tiles need not be the training crop: the networks are fully convolutional, so at inference a tile may
be as large as memory allows. `Tiling` picks each image's tile: the whole image (rounded up to a multiple of
the network's downsampling factor) up to `tile_size` pixels a side, and larger images in tiles of that side.
Crop-sized tiles of a 256x256 image at 25 % overlap (121 tiles of 32x32) feed the network 1.9x the image's
pixels, one small batch at a time, and every analog layer pays its per-call cost per batch; one whole-image
tile feeds it each pixel once (benchmarks/speed/bench_inference_tiles.py, docs/benchmarks_log.md).

`predict_fn` maps a float32 batch [N, h, w, C] to probabilities [N, h, w, K]; a Keras model, an ONNX
Runtime session and a torch/AIHWKit model all fit behind it, so digital, exported and analog scores use
one tiling. Nothing here imports Keras, TensorFlow or torch (the analog worker imports this module).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from popnas_seg.imaging.scores import confusion_counts, dice_from_counts, miou_from_counts

__all__ = [
    "PredictFn",
    "Tiling",
    "tile_starts",
    "blend_weights",
    "sliding_window_predict",
    "predict_image",
    "evaluate_images",
    "pack_images",
    "unpack_images",
]

PredictFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Tiling:
    """How whole images are cut into network inputs: plain data, so it travels to the analog worker as JSON.

    `crop` is the training crop; `tile_size` 0 tiles at the crop (the behaviour before `inference.tile_size`),
    else each tile side is the image side rounded up to a multiple of `divisor` (2**motifs, the sizes the
    network accepts), at most `tile_size` rounded down to one (and never below the crop). Where an image needs
    more than one tile, neighbours overlap by `overlap` of the training crop (`overlap_for`).
    """

    crop: tuple[int, int]
    tile_size: int = 0
    divisor: int = 1
    overlap: float = 0.25

    def tile_for(self, height: int, width: int) -> tuple[int, int]:
        """The tile (h, w) for an image of `height` x `width` pixels."""
        if self.tile_size <= 0:
            return (int(self.crop[0]), int(self.crop[1]))
        div = max(1, int(self.divisor))
        limit = max(div, int(self.tile_size) // div * div)
        sides = []
        for side, crop in zip((height, width), self.crop):
            whole = max(div, math.ceil(int(side) / div) * div)
            sides.append(min(whole, max(limit, int(crop))))
        return sides[0], sides[1]

    def batch_for(self, tile: tuple[int, int], batch_size: int) -> int:
        """Tiles per batch: `batch_size` crop-sized tiles' worth of pixels (at least one tile), so a larger
        tile needs no more memory per batch than the crop-sized batches did."""
        pixels = int(self.crop[0]) * int(self.crop[1]) * max(1, int(batch_size))
        return max(1, min(max(1, int(batch_size)), pixels // max(1, tile[0] * tile[1])))

    def overlap_for(self, tile: tuple[int, int]) -> float:
        """The overlap fraction of `tile`: `overlap` of the training crop, in pixels, whatever the tile size.

        Why pixels of the crop: what neighbouring tiles must share is the band where a tile's border effects
        (padding inside the receptive field) sit, which does not grow with the tile. A fixed fraction of a large
        tile would make large tiles cost 1/(1-overlap)^2 the pixels, as much as crop-sized ones."""
        if self.tile_size <= 0:
            return float(self.overlap)
        band = self.overlap * min(int(self.crop[0]), int(self.crop[1]))
        return min(float(self.overlap), band / max(1, min(int(tile[0]), int(tile[1]))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "crop": [int(self.crop[0]), int(self.crop[1])],
            "tile_size": int(self.tile_size),
            "divisor": int(self.divisor),
            "overlap": float(self.overlap),
        }

    @classmethod
    def coerce(cls, value: Tiling | dict[str, Any] | Sequence[int]) -> Tiling:
        """A Tiling from itself, its `to_dict()`, or a bare (h, w) tile (crop-sized tiles, the old form)."""
        if isinstance(value, Tiling):
            return value
        if isinstance(value, dict):
            crop = value["crop"]
            return cls(
                (int(crop[0]), int(crop[1])),
                int(value.get("tile_size", 0)),
                int(value.get("divisor", 1)),
                float(value.get("overlap", 0.25)),
            )
        return cls((int(value[0]), int(value[1])))


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
        chunk = starts[i : i + max(1, int(batch_size))]
        batch = np.stack([padded[y : y + th, x : x + tw] for y, x in chunk])
        probs = np.asarray(predict_fn(batch), dtype=np.float32)
        if probs.ndim != 4 or probs.shape[:3] != (len(chunk), th, tw):
            raise ValueError(
                f"predict_fn returned shape {probs.shape} for a batch of shape {batch.shape}; "
                f"expected [{len(chunk)}, {th}, {tw}, K]"
            )
        if total is None:
            total = np.zeros((ph, pw, probs.shape[-1]), dtype=np.float32)
        for (y, x), p in zip(chunk, probs):
            total[y : y + th, x : x + tw] += p * weight
            norm[y : y + th, x : x + tw] += weight
        if progress is not None:
            progress(min(i + len(chunk), len(starts)), len(starts))
    assert total is not None  # at least one tile always exists
    return (total / norm)[:height, :width]


def predict_image(
    predict_fn: PredictFn,
    image: np.ndarray,
    tiling: Tiling | dict[str, Any] | Sequence[int],
    batch_size: int = 4,
    mode: str = "gaussian",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """`sliding_window_predict` with the tile, overlap and tiles per batch that `tiling` gives this image."""
    plan = Tiling.coerce(tiling)
    tile = plan.tile_for(int(np.shape(image)[0]), int(np.shape(image)[1]))
    return sliding_window_predict(
        predict_fn, image, tile, plan.overlap_for(tile), plan.batch_for(tile, batch_size), mode, progress=progress
    )


def evaluate_images(
    predict_fn: PredictFn,
    images: Iterable[np.ndarray],
    masks: Iterable[np.ndarray],
    tile: Tiling | dict[str, Any] | Sequence[int],
    classes_count: int,
    ignore_class: int | None = None,
    overlap: float | None = None,
    batch_size: int = 4,
    mode: str = "gaussian",
) -> dict[str, Any]:
    """Whole-image foreground Dice and mean IoU of a set of images, by `predict_image`.

    `tile` is a `Tiling` (or its dict), or a bare (h, w) for fixed tiles of that size; `overlap`, when given,
    overrides the tiling's. Counts are summed over every pixel of every image before scoring, the same
    definition as the training metrics (popnas_seg/imaging/scores.py), so a one-tile image scores exactly as
    before.
    """
    plan = Tiling.coerce(tile)
    if overlap is not None:
        plan = Tiling(plan.crop, plan.tile_size, plan.divisor, float(overlap))
    counts = np.zeros((3, classes_count), dtype=np.float64)
    n_images = n_pixels = 0
    for image, mask in zip(images, masks, strict=True):
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[..., 0]
        img = np.asarray(image)
        if img.shape[:2] != m.shape[:2]:
            raise ValueError(f"image {img.shape[:2]} and mask {m.shape[:2]} sizes differ")
        probs = predict_image(predict_fn, img, plan, batch_size, mode)
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
    images = [x[i, : int(h), : int(w)] for i, (h, w) in enumerate(sizes)]
    masks = [y[i, : int(h), : int(w)] for i, (h, w) in enumerate(sizes)]
    return images, masks
