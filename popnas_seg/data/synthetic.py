"""Procedural fluorescence-microscopy nuclei: the built-in data set, so `python run.py` needs no download.

Each image is a field of view of stained nuclei (DAPI/Hoechst-like). Every effect below exists because a
real nuclei image has it and a segmentation network must learn to cope with it:

- ellipses of varied size, eccentricity and orientation: nuclei are not circles, and a network that only
  learns one blob size fails on real data;
- clustered placement, so nuclei touch and overlap: the hard part of nuclei segmentation is separating
  neighbours, which is what the optional boundary class (classes_count=3) is for;
- uneven per-nucleus brightness (cell-cycle stage, DNA content) and a slight dome profile: a global
  threshold must not be enough;
- internal texture (chromatin granules): nuclei are not flat, so the network must not read texture as edges;
- Gaussian blur (the microscope's point-spread function): edges are soft, the mask edge is at the half-maximum;
- a smooth background gradient and vignetting (uneven illumination): absolute intensity is not the label;
- faint small debris that is NOT in the mask: bright-ish specks must not all be called nuclei;
- Poisson shot noise at a random photon budget (plus a little read noise): low-light images are grainy.

Optional (`artefacts`, `empty_fraction`), what real camera tiles add and what broke per-image min-max
normalisation on a real folder: hot pixels (single pixels 4-20x the nucleus brightness), saturated debris
(small blobs far brighter than any nucleus, not in the mask) and tiles with only background.

Generation is deterministic by seed. Image i depends only on (seed, i), not on `count`, so growing a data
set keeps its first images unchanged. Nucleus size is fixed in pixels (a fixed magnification): a bigger
image is a bigger field of view with more nuclei; images under 64 px shrink the nuclei so that a few
still fit.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from scipy import ndimage

from popnas_seg.data.limits import check_generated_memory
from popnas_seg.errors import UserError

_REFERENCE_SIDE = 64.0
"""Below this side length (px) nuclei shrink proportionally so tiny test images still hold several."""


def generate_nuclei(
    count: int,
    size: tuple[int, int] = (96, 96),
    channels: int = 1,
    seed: int = 0,
    classes_count: int = 2,
    *,
    debris: bool = True,
    artefacts: bool = False,
    empty_fraction: float = 0.0,
    hard: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate `count` nuclei images and masks.

    Returns (images float32 [N,H,W,C] in [0,1], masks uint8 [N,H,W]). Masks: 0 background, 1 nucleus;
    with classes_count == 3, class 2 marks the 1-2 px contour of every nucleus, including the line where
    two nuclei touch (so instances can be separated). `debris` adds faint specks that are not nuclei.
    `artefacts` adds hot pixels and saturated debris (those pixels exceed 1, like raw camera counts);
    `empty_fraction` is the probability of a tile without nuclei.
    `hard` (the built-in "synthetic_nuclei_hard" task): denser, more clustered nuclei that touch more often,
    dimmer against a brighter background and with fewer photons (lower contrast, more noise).
    """
    if not 0.0 <= empty_fraction <= 1.0:
        raise UserError(f"empty_fraction must be in [0, 1], got {empty_fraction}")
    if classes_count not in (2, 3):
        raise UserError(
            f"the synthetic nuclei generator makes 2 classes (background, nucleus) or 3 (plus nucleus "
            f"boundary), not classes_count={classes_count}; set dataset.classes_count to 2 or 3"
        )
    if count < 0:
        raise UserError(f"cannot generate a negative number of images ({count})")
    h, w = (int(s) for s in size)
    if h < 8 or w < 8:
        raise UserError(f"synthetic images must be at least 8x8 pixels, got {h}x{w} (dataset.generated_size)")
    if channels < 1:
        raise UserError(f"synthetic images need at least one channel, got {channels}")

    check_generated_memory(count, (h, w), channels)  # before numpy allocates (or the host runs out)
    images = np.empty((count, h, w, channels), dtype=np.float32)
    masks = np.empty((count, h, w), dtype=np.uint8)
    children = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x6E75636C]).spawn(count)
    for i, child in enumerate(children):
        images[i], masks[i] = _one_image(
            np.random.default_rng(child), h, w, channels, classes_count, debris, artefacts, empty_fraction, hard
        )
    return images, masks


def _one_image(
    rng: np.random.Generator,
    h: int,
    w: int,
    channels: int,
    classes_count: int,
    debris: bool,
    artefacts: bool = False,
    empty_fraction: float = 0.0,
    hard: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    scale = min(1.0, min(h, w) / _REFERENCE_SIDE)
    # Mean nucleus radius about 6.5 px at full scale; the semi-major axis is drawn per nucleus below.
    r_lo, r_hi = 4.0 * scale, 9.0 * scale
    coverage = rng.uniform(0.35, 0.55) if hard else rng.uniform(0.18, 0.40)
    mean_area = np.pi * ((r_lo + r_hi) / 2) ** 2 * 0.8
    n_nuclei = max(1, int(rng.poisson(coverage * h * w / mean_area)))
    if empty_fraction > 0 and rng.random() < empty_fraction:
        n_nuclei = 0

    best_rho2 = np.full((h, w), np.inf, dtype=np.float32)  # normalised squared distance to the nearest centre
    instance = np.zeros((h, w), dtype=np.int32)  # 0 background, k+1 nucleus k (nearest wins in overlaps)
    signal = np.zeros((h, w), dtype=np.float32)
    texture = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), sigma=1.0 * max(scale, 0.5))
    texture /= max(float(np.abs(texture).max()), 1e-6)

    centres: list[tuple[float, float, float]] = []
    for k in range(n_nuclei):
        a = rng.uniform(r_lo, r_hi)  # semi-major axis
        b = max(1.5, a * rng.uniform(0.55, 1.0))  # semi-minor axis: eccentricity
        theta = rng.uniform(0.0, np.pi)
        if centres and rng.random() < (0.75 if hard else 0.45):
            # Cluster: place next to an earlier nucleus so that the two touch or overlap.
            cy, cx, ca = centres[int(rng.integers(len(centres)))]
            angle = rng.uniform(0.0, 2 * np.pi)
            dist = (ca + a) * (rng.uniform(0.55, 0.9) if hard else rng.uniform(0.65, 1.05))
            cy, cx = cy + dist * np.sin(angle), cx + dist * np.cos(angle)
        else:
            cy, cx = rng.uniform(-0.1 * h, 1.1 * h), rng.uniform(-0.1 * w, 1.1 * w)
        centres.append((cy, cx, a))

        # Work inside the nucleus's bounding box only: cost is O(area), so any image size is cheap.
        reach = a + 2.0
        y0, y1 = max(0, int(np.floor(cy - reach))), min(h, int(np.ceil(cy + reach)) + 1)
        x0, x1 = max(0, int(np.floor(cx - reach))), min(w, int(np.ceil(cx + reach)) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        cos, sin = np.cos(theta), np.sin(theta)
        u = (dx * cos + dy * sin) / a
        v = (-dx * sin + dy * cos) / b
        rho2 = u * u + v * v
        rho = np.sqrt(rho2)

        # Soft edge about one pixel wide, at half maximum on the ellipse (where the mask edge is).
        edge = np.clip((1.0 - rho) * b + 0.5, 0.0, 1.0)
        dome = 1.0 - 0.25 * np.minimum(rho2, 1.0)
        brightness = rng.uniform(0.15, 0.45) if hard else rng.uniform(0.35, 1.0)
        grain = 1.0 + rng.uniform(0.1, 0.45) * texture[y0:y1, x0:x1]
        signal[y0:y1, x0:x1] += brightness * edge * dome * grain

        box_best = best_rho2[y0:y1, x0:x1]
        closer = (rho2 <= 1.0) & (rho2 < box_best)
        box_best[closer] = rho2[closer]
        instance[y0:y1, x0:x1][closer] = k + 1

    mask = (instance > 0).astype(np.uint8)
    if classes_count == 3:
        mask[_contour(instance)] = 2

    if debris:
        signal += _debris(rng, h, w, scale)

    image = np.empty((h, w, channels), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yn, xn = yy / max(h - 1, 1) - 0.5, xx / max(w - 1, 1) - 0.5
    for c in range(channels):
        gain = 1.0 if c == 0 else rng.uniform(0.3, 1.0)  # channel cross-talk for multi-channel stains
        background = (
            (rng.uniform(0.10, 0.30) if hard else rng.uniform(0.03, 0.15))
            + rng.uniform(-0.08, 0.08) * yn
            + rng.uniform(-0.08, 0.08) * xn
        )
        vignetting = 1.0 - rng.uniform(0.0, 0.35) * (yn * yn + xn * xn) * 2.0
        clean = (background + gain * signal) * vignetting
        clean = ndimage.gaussian_filter(clean, sigma=rng.uniform(0.6, 1.3) * max(scale, 0.5))
        # photons at unit intensity: sets the shot-noise level
        photons = rng.uniform(15.0, 60.0) if hard else rng.uniform(30.0, 300.0)
        noisy = rng.poisson(np.maximum(clean, 0.0) * photons).astype(np.float32) / photons
        noisy += rng.normal(0.0, 0.005, size=noisy.shape).astype(np.float32)
        image[..., c] = noisy

    top = float(np.percentile(image, 99.8))
    image = np.clip(image / max(top, 1e-6), 0.0, 1.0).astype(np.float32)
    if artefacts:
        image += _artefacts(rng, h, w, scale)[..., None]
    return image, mask


def _contour(instance: np.ndarray) -> np.ndarray:
    """Nucleus pixels with an 8-neighbour of another instance or of background (image borders excluded)."""
    padded = np.pad(instance, 1, mode="edge")
    h, w = instance.shape
    differs = np.zeros(instance.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                differs |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] != instance
    return differs & (instance > 0)


def _debris(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """A few faint specks of sub-nucleus size: realistic clutter the network must leave as background."""
    specks = np.zeros((h, w), dtype=np.float32)
    n = int(rng.poisson(h * w / 1500.0))
    if n == 0:
        return specks
    ys = rng.integers(0, h, size=n)
    xs = rng.integers(0, w, size=n)
    np.add.at(specks, (ys, xs), rng.uniform(0.5, 1.4, size=n).astype(np.float32))
    return ndimage.gaussian_filter(specks, sigma=max(0.8 * scale, 0.6)) * 0.9


def _artefacts(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Hot pixels (about 1 in 2000 pixels, 4-20x a nucleus) and 0-2 small saturated debris specks (3-8x): not
    nuclei. Sparse enough that a 99.8th percentile still lands on nucleus brightness, as on real tiles."""
    out = np.zeros((h, w), dtype=np.float32)
    n_hot = max(1, int(rng.poisson(h * w / 2000.0)))
    out[rng.integers(0, h, size=n_hot), rng.integers(0, w, size=n_hot)] = rng.uniform(4.0, 20.0, size=n_hot)
    blobs = np.zeros((h, w), dtype=np.float32)
    for _ in range(int(rng.integers(0, 3))):
        blobs[int(rng.integers(0, h)), int(rng.integers(0, w))] = 1.0
    if blobs.any():
        sigma = max(0.7 * scale, 0.6)
        blobs = ndimage.gaussian_filter(blobs, sigma=sigma)
        blobs *= rng.uniform(3.0, 8.0) / float(blobs.max())
    return out + blobs


def write_folder(path: str | Path, images: np.ndarray, masks: np.ndarray) -> Path:
    """Write images and masks as a dataset folder (images/ and masks/ of matching .npy files), to mimic a user's
    small data set with the generator (benchmarks, tests). Returns the folder."""
    from popnas_seg.atomic import atomic_write_bytes

    root = Path(path)
    for sub, arrays in (("images", images), ("masks", masks)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i, arr in enumerate(arrays):
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(arr), allow_pickle=False)
            atomic_write_bytes(root / sub / f"img_{i:04d}.npy", buffer.getvalue())
    return root
