"""Size limits checked before memory is allocated, so a typo is an error line, not an exhausted host.

Measured before these limits (issue 37): `generated_size` [100000, 100000] or `samples` 1e9 ended in numpy's
"Unable to allocate 894 GiB" traceback; a 435 KB zlib TIFF of 20000 x 20000 took 6.7 GB of RAM (PIL refused
the same PNG, NPY had no limit at all).
"""

from __future__ import annotations

import os
from pathlib import Path

from popnas_seg.errors import UserError

# One limit for every image format (PNG, TIFF, NPY), read from the file's header before it is decoded:
# 100 megapixels (e.g. 10000 x 10000) is about 0.4 GB per channel as float32, the form training keeps.
MAX_IMAGE_PIXELS = 100_000_000
MAX_IMAGE_VALUES = 4 * MAX_IMAGE_PIXELS  # height x width x channels: four channels at the pixel limit
MEMORY_SHARE = 0.5  # generated data may take at most this share of the memory available now
COPIES = 2  # the generated arrays plus the split / cached copies the data pipeline keeps


def check_image_shape(shape: tuple[int, ...], file: str | os.PathLike[str]) -> None:
    """Refuse an image whose header announces more than MAX_IMAGE_PIXELS (height x width), or more than
    MAX_IMAGE_VALUES values in all, before it is decoded."""
    dims = [int(d) for d in shape]
    if len(dims) < 2:
        return  # the reader names the wrong dimensionality itself
    if len(dims) == 3 and dims[-1] > 4 and dims[0] <= 4:  # TIFF/NPY stored channels-first
        dims = [*dims[1:], dims[0]]
    pixels, values = dims[0] * dims[1], 1
    for d in dims:
        values *= d
    if pixels > MAX_IMAGE_PIXELS or values > MAX_IMAGE_VALUES:
        size = " x ".join(str(d) for d in shape)
        raise UserError(
            f"image {file} is {size}: over the limit of {MAX_IMAGE_PIXELS // 1_000_000} megapixels (height x "
            f"width; {MAX_IMAGE_VALUES // 1_000_000} million values with the channels) that applies to every "
            f"image file (PNG, TIFF, NPY); it would take {values * 4 / 2**30:.1f} GiB as float32: split it into "
            f"tiles or scale it down"
        )


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else None (no estimate is checked)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_generated_memory(count: int, size: tuple[int, int], channels: int) -> None:
    """Refuse generated data that would not fit in memory (float32 images + uint8 masks, a few copies)."""
    h, w = size
    needed = int(count) * int(h) * int(w) * (4 * int(channels) + 1) * COPIES
    available = available_memory_bytes()
    if available is not None and needed > MEMORY_SHARE * available:
        raise UserError(
            f"generating {count} images of {h}x{w}x{channels} (dataset.samples, dataset.generated_size, "
            f"dataset.generated_channels) needs about {needed / 2**30:.1f} GiB of memory, more than half of the "
            f"{available / 2**30:.1f} GiB available; lower dataset.samples or dataset.generated_size"
        )
