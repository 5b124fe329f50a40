"""How `predict` writes what a person looks at: palette PNG masks and coloured overlays.

A PNG mask is a palette ("P" mode) image: its pixel values are the class indices 0, 1, ... (what PIL, numpy,
scikit-image and our own data loader read back), while its palette makes an image viewer show them: black
background and white foreground for two classes, distinct colours for more. A 0/1 greyscale PNG would look black.
An overlay is the input image (contrast-stretched, as RGB) with each foreground class tinted in its colour and
its outline drawn solid, written as `<name>.overlay.png` beside the mask.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from popnas_seg.atomic import atomic_write_bytes

__all__ = ["OVERLAY_SUFFIX", "class_colours", "mask_png", "overlay_image", "write_overlay"]

OVERLAY_SUFFIX = ".overlay.png"
# matplotlib's tab10 without its grey: distinct on both dark and light images
_COLOURS = (
    (214, 39, 40),
    (44, 160, 44),
    (31, 119, 180),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
)
_TINT = 0.4


def class_colours(classes: int) -> np.ndarray:
    """RGB colour of each class in overlays, [classes, 3] uint8; class 0 (background) black."""
    colours = np.zeros((max(classes, 1), 3), np.uint8)
    for k in range(1, classes):
        colours[k] = _COLOURS[(k - 1) % len(_COLOURS)]
    return colours


def mask_png(labels: np.ndarray, classes: int) -> bytes:
    """PNG bytes of a label mask: a palette image when the classes fit 8 bits, else 16-bit greyscale."""
    from PIL import Image

    buffer = io.BytesIO()
    if classes > 256:
        Image.fromarray(labels.astype(np.uint16)).save(buffer, format="PNG")
        return buffer.getvalue()
    palette = np.zeros((256, 3), np.uint8)
    palette[:classes] = class_colours(classes)
    if classes <= 2:
        palette[1] = 255  # binary: white foreground, as a 0/255 mask looks
    image = Image.fromarray(labels.astype(np.uint8))
    image.putpalette(palette.reshape(-1).tolist())  # an "L" image becomes "P": values stay the class indices
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _display(image: np.ndarray) -> np.ndarray:
    """An image as read by `read_image` ([H, W, C] float) -> RGB uint8, stretched between its 1st and 99th
    percentiles (microscopy images rarely fill their bit depth)."""
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    img = img[:, :, :3] if img.shape[-1] >= 3 else np.repeat(img[:, :, :1], 3, axis=-1)
    lo, hi = np.percentile(img, (1.0, 99.0))
    scaled = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def overlay_image(image: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """The image as RGB with every foreground class tinted and outlined in its colour, [H, W, 3] uint8."""
    rgb = _display(image).astype(np.float32)
    labels = np.asarray(labels)
    if rgb.shape[:2] != labels.shape:
        raise ValueError(f"image {rgb.shape[:2]} and labels {labels.shape} sizes differ")
    colours = class_colours(classes).astype(np.float32)[np.clip(labels, 0, classes - 1)]
    fg = labels > 0
    rgb[fg] = (1.0 - _TINT) * rgb[fg] + _TINT * colours[fg]
    edge = np.zeros_like(fg)  # a pixel whose right or lower neighbour has another class
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    outline = edge & fg
    rgb[outline] = colours[outline]
    return rgb.astype(np.uint8)


def write_overlay(path: Path, image: np.ndarray, labels: np.ndarray, classes: int) -> Path:
    """`overlay_image` as an RGB PNG, written atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(overlay_image(image, labels, classes)).save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())
