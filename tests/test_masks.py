"""What `predict` writes for people: palette PNG masks that read back as class indices, coloured overlays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from popnas_seg.inference.masks import class_colours, mask_png, overlay_image


def test_palette_masks_keep_class_indices_and_show_colours() -> None:
    labels = np.array([[0, 1, 2], [3, 1, 0]], np.uint8)
    with Image.open(io.BytesIO(mask_png(labels, 4))) as png:
        assert png.mode == "P"
        np.testing.assert_array_equal(np.asarray(png), labels)  # values are the classes
        rgb = np.asarray(png.convert("RGB"))  # what a viewer shows
    assert (rgb[0, 0] == 0).all() and len({tuple(rgb[0, 1]), tuple(rgb[0, 2]), tuple(rgb[1, 0])}) == 3
    with Image.open(io.BytesIO(mask_png(labels[:, :2].clip(0, 1), 2))) as png:
        assert np.asarray(png.convert("L")).max() == 255  # binary: white foreground
    big = np.array([[0, 300]], np.uint16)
    with Image.open(io.BytesIO(mask_png(big, 301))) as png:  # more classes than a palette: 16-bit values
        np.testing.assert_array_equal(np.asarray(png), big)


def test_overlay_tints_foreground_and_leaves_background() -> None:
    image = np.full((8, 8, 1), 0.5, np.float32)
    image[0, 0] = 0.0
    image[7, 7] = 1.0
    labels = np.zeros((8, 8), np.int64)
    labels[2:6, 2:6] = 1
    out = overlay_image(image, labels, 2)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    red = class_colours(2)[1]
    assert (out[5, 5] == red).all()  # outline pixel (its lower neighbour is background): solid colour
    inner = out[3, 3].astype(int)
    assert inner[0] > inner[1] and inner[0] > inner[2]  # tinted
    assert out[1, 1, 0] == out[1, 1, 1] == out[1, 1, 2]  # background stays grey
