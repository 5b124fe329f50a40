"""SegmentationData: one loaded data set, its deterministic splits and its tf.data pipelines.

Everything downstream (trainer, analog probe, hardware-aware training, report) reads images through this
one object so that every split gets exactly the same preprocessing:

- images are normalised per image once, on the full image, at load time ("percentile": 1st / 99.8th
  percentile to 0 / 1; "minmax": to [0,1]; "standard": zero mean, unit variance), so a training crop and a
  validation crop of the same image see the same statistics and no split can drift from another;
- training crops are random (`crop` sized), validation/test/`*_arrays` crops are centred; an image and
  its mask are always cut with the same offsets and flipped/rotated together;
- splits are a seeded permutation of the images (sorted by name first), so a run, its resume and its
  report all see the same train/validation/test images; with `folds` > 1 the test split is held out first
  and the rest is cut into folds;
- augmentation uses stateless random ops seeded from `seed` (per element, from a seeded random stream),
  so two `train_dataset()` calls give the same sequence of batches: every candidate network of a search
  sees the same data, which keeps their scores comparable. TensorFlow combines op seeds with its global
  seed, so "the same" holds for a fixed global seed (none set, or `keras.utils.set_random_seed(s)` with
  the same `s`), in this process or another; successive epochs of one dataset still differ.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from popnas_seg.config import DatasetConfig
from popnas_seg.data.preprocess import normalise, rescale_image, rescale_mask
from popnas_seg.data.sources import DEFAULT_SYNTHETIC_SAMPLES, load_images  # noqa: F401  (the default, re-exported)
from popnas_seg.errors import UserError


def load_data(cfg: DatasetConfig, seed: int) -> SegmentationData:
    """Load the configured data (the registered source of `dataset.name`, or the folder of `dataset.path`:
    data/sources.py) and split it by `seed`."""
    loaded = load_images(cfg, seed)
    return SegmentationData(
        loaded.images, loaded.masks, loaded.names, cfg, seed, source=loaded.description
    ).check_foreground()


class SegmentationData:
    """A split, normalised data set and its pipelines (see the module docstring for the guarantees)."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        names: Sequence[str],
        cfg: DatasetConfig,
        seed: int,
        source: str = "arrays",
    ) -> None:
        if not (len(images) == len(masks) == len(names)):
            raise ValueError("images, masks and names must have the same length")
        if len(set(names)) != len(names):
            raise ValueError("image names must be unique (they identify images across splits)")
        self.cfg = cfg
        self.seed = int(seed)
        self._tf_seed = self.seed & 0x3FFFFFFFFFFFFFFF  # TF seeds are int64
        self.source = source
        self.names: list[str] = list(names)
        self._crop = (int(cfg.crop[0]), int(cfg.crop[1]))
        rh, rw = self._crop
        if cfg.rescale != 1.0:  # dataset.rescale really resizes (before cropping); predict does the same
            images = [rescale_image(im, cfg.rescale) for im in images]
            masks = [rescale_mask(m, cfg.rescale) for m in masks]

        channels = {int(np.shape(im)[-1]) for im in images} if images else {1}
        if len(channels) != 1:
            raise UserError(f"images have different channel counts {sorted(channels)}; use one channel count")
        self._channels = channels.pop()
        small = [(n, np.shape(im)) for n, im in zip(names, images) if im.shape[0] < rh or im.shape[1] < rw]
        if small:
            shown = ", ".join(f"{n} ({s[0]}x{s[1]})" for n, s in small[:5])
            raise UserError(
                f"{len(small)} image(s) are smaller than dataset.crop {rh}x{rw}: {shown}; "
                f"lower dataset.crop or use larger images"
            )
        self._images = [
            normalise(
                np.asarray(im, dtype=np.float32),
                cfg.normalisation,
                cfg.normalisation_percentiles,
                cfg.normalisation_clip,
            )
            for im in images
        ]
        self._masks = [np.asarray(m, dtype=np.int32) for m in masks]
        for name, im, m in zip(self.names, self._images, self._masks):
            if m.shape != im.shape[:2]:
                raise UserError(f"{name}: mask shape {m.shape} differs from image shape {im.shape[:2]}")
            if m.size and (m.min() < 0 or m.max() >= cfg.classes_count):
                raise UserError(
                    f"{name}: mask labels must be in 0..{cfg.classes_count - 1} (dataset.classes_count), "
                    f"found {int(m.min())}..{int(m.max())}"
                )
        self._same_size = len({im.shape for im in self._images}) <= 1
        self._test_idx, self._folds_idx = self._make_splits(len(self._images))
        self.class_weights: np.ndarray | None = self._class_weights() if cfg.balance_class_losses else None

    # ----------------------------------------------------------------- properties
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the crops the networks see."""
        return (self._crop[0], self._crop[1], self._channels)

    @property
    def classes_count(self) -> int:
        return int(self.cfg.classes_count)

    @property
    def ignore_class(self) -> int | None:
        return self.cfg.ignore_class

    @property
    def folds(self) -> int:
        return int(self.cfg.folds)

    # ----------------------------------------------------------------- splits
    def _make_splits(self, n: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Test indices and, per fold, validation indices (folds == 1: one validation split)."""
        cfg = self.cfg
        n_test = max(1, round(cfg.test_size * n)) if cfg.test_size > 0 else 0
        perm = np.random.default_rng(self._tf_seed).permutation(n)
        test, rest = np.sort(perm[:n_test]), perm[n_test:]
        if cfg.folds == 1:
            n_val = max(1, round(cfg.validation_size * n))
            if len(rest) - n_val < 1:
                raise UserError(
                    f"{n} images are too few for validation_size={cfg.validation_size} and "
                    f"test_size={cfg.test_size}: {n_test} test + {n_val} validation leave no training image; "
                    f"add images (dataset.samples) or lower the split sizes"
                )
            return test, [np.sort(rest[:n_val])]
        if len(rest) < max(cfg.folds, 2):
            raise UserError(
                f"{n} images are too few for {cfg.folds} folds after holding out {n_test} test images; "
                f"add images (dataset.samples) or lower dataset.folds"
            )
        return test, [np.sort(f) for f in np.array_split(rest, cfg.folds)]

    def check_foreground(self) -> SegmentationData:
        """Refuse training splits without a single foreground pixel: the search then ran to the end and reported
        Dice 0.000 for every network (issue 37)."""
        background = {0} if self.cfg.ignore_class is None else {0, int(self.cfg.ignore_class)}
        has = [bool(np.isin(m, list(background), invert=True).any()) for m in self._masks]
        for fold in range(len(self._folds_idx)):
            train = self._indices(fold)[0]
            if not any(has[i] for i in train):
                where = f" of fold {fold + 1}" if len(self._folds_idx) > 1 else ""
                total = sum(has)
                raise UserError(
                    f"no training mask{where} holds a foreground pixel (a label other than 0"
                    f"{'' if self.cfg.ignore_class is None else f' and ignore_class {self.cfg.ignore_class}'}): "
                    f"{total} of {len(has)} masks have any, and every network would learn to predict background "
                    f"only (Dice 0). Check the masks (are the labels in the expected channel?) or add images with "
                    f"objects"
                )
        return self

    def _indices(self, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 <= fold < len(self._folds_idx):
            raise ValueError(f"fold {fold} out of range: this data set has {len(self._folds_idx)} fold(s)")
        val = self._folds_idx[fold]
        used = np.zeros(len(self._images), dtype=bool)
        used[val] = True
        used[self._test_idx] = True
        train = np.flatnonzero(~used)
        return train, val, self._test_idx

    def split_sizes(self, fold: int = 0) -> dict[str, int]:
        train, val, test = self._indices(fold)
        return {"train": len(train), "val": len(val), "test": len(test)}

    def split_names(self, fold: int = 0) -> dict[str, list[str]]:
        """Image names per split: the proof that no image is in two splits."""
        train, val, test = self._indices(fold)
        return {k: [self.names[i] for i in idx] for k, idx in (("train", train), ("val", val), ("test", test))}

    # ----------------------------------------------------------------- numpy views
    def _center_crops(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rh, rw = self._crop
        x = np.empty((len(idx), rh, rw, self._channels), dtype=np.float32)
        y = np.empty((len(idx), rh, rw), dtype=np.int32)
        for j, i in enumerate(idx):
            h, w = self._masks[i].shape
            oy, ox = (h - rh) // 2, (w - rw) // 2
            x[j] = self._images[i][oy : oy + rh, ox : ox + rw]
            y[j] = self._masks[i][oy : oy + rh, ox : ox + rw]
        return x, y

    def train_arrays(self, fold: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Centre-cropped training images and masks, no augmentation (hardware-aware training in PyTorch)."""
        return self._center_crops(self._indices(fold)[0])

    def val_arrays(self, n: int | None = None, fold: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The first `n` validation images (all when None), preprocessed exactly as `val_dataset`."""
        val = self._indices(fold)[1]
        return self._center_crops(val if n is None else val[:n])

    def test_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All test images, preprocessed exactly as `test_dataset`."""
        return self._center_crops(self._test_idx)

    def _whole(self, idx: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return [self._images[i] for i in idx], [self._masks[i] for i in idx]

    def val_images(self, n: int | None = None, fold: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The first `n` validation images (all when None) whole: normalised [H, W, C] float32 and [H, W]
        int32 masks, sizes may differ. Whole-image scores tile these (popnas_seg/imaging/tiling.py)."""
        val = self._indices(fold)[1]
        return self._whole(val if n is None else val[:n])

    def test_images(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """All test images whole (normalised, any size), as `val_images`."""
        return self._whole(self._test_idx)

    # ----------------------------------------------------------------- tf.data
    @property
    def _eval_batch(self) -> int:
        return int(self.cfg.val_test_batch_size or self.cfg.batch_size)

    def _eval_dataset(self, idx: np.ndarray) -> tf.data.Dataset:
        x, y = self._center_crops(idx)
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(self._eval_batch).prefetch(tf.data.AUTOTUNE)

    def val_dataset(self, fold: int = 0) -> tf.data.Dataset:
        """Centre crops of the validation split, batched by val_test_batch_size (or batch_size)."""
        return self._eval_dataset(self._indices(fold)[1])

    def test_dataset(self) -> tf.data.Dataset:
        """Centre crops of the test split, batched by val_test_batch_size (or batch_size)."""
        return self._eval_dataset(self._test_idx)

    def train_dataset(self, fold: int = 0, steps_per_epoch: int | None = None) -> tf.data.Dataset:
        """cache -> shuffle -> random crop -> flips / rotations / affine -> intensity -> noise -> batch.

        `steps_per_epoch` None: one pass over the training split per iteration. Set: every iteration yields
        exactly that many full batches of images drawn with replacement (images of different sizes: from a
        repeated, reshuffled stream), so a budget in steps does not depend on how many images there are.
        Reproducible: two calls yield the same batches (for a fixed TF global seed, see the module
        docstring); successive epochs (iterations) differ.
        """
        idx = self._indices(fold)[0]
        c = self._channels
        randoms = tf.data.Dataset.random(seed=self._tf_seed + 1, rerandomize_each_iteration=True)
        if steps_per_epoch is not None and self._same_size:
            images = tf.constant(np.stack([self._images[i] for i in idx]))
            masks = tf.constant(np.stack([self._masks[i] for i in idx]))
            n = tf.constant(len(idx), tf.int64)
            draws = tf.data.Dataset.random(seed=self._tf_seed + 2, rerandomize_each_iteration=True)

            def draw(r: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                i = tf.math.floormod(r, n)
                return tf.gather(images, i), tf.gather(masks, i)

            ds = draws.map(draw)
            ds = tf.data.Dataset.zip((ds, randoms)).map(self._augment, num_parallel_calls=tf.data.AUTOTUNE)
            return (
                ds.batch(self.cfg.batch_size, drop_remainder=True).take(int(steps_per_epoch)).prefetch(tf.data.AUTOTUNE)
            )
        if self._same_size:
            ds = tf.data.Dataset.from_tensor_slices(
                (np.stack([self._images[i] for i in idx]), np.stack([self._masks[i] for i in idx]))
            )
        else:  # images of different sizes cannot be stacked: stream them
            images, masks = [self._images[i] for i in idx], [self._masks[i] for i in idx]
            ds = tf.data.Dataset.from_generator(
                lambda: zip(images, masks),
                output_signature=(
                    tf.TensorSpec((None, None, c), tf.float32),
                    tf.TensorSpec((None, None), tf.int32),
                ),
            ).apply(tf.data.experimental.assert_cardinality(len(idx)))  # so Keras knows the epoch length
        if self.cfg.cache:
            ds = ds.cache()
        if steps_per_epoch is not None:
            ds = ds.repeat()
        ds = ds.shuffle(self.cfg.shuffle_buffer, seed=self._tf_seed, reshuffle_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, randoms)).map(self._augment, num_parallel_calls=tf.data.AUTOTUNE)
        if steps_per_epoch is not None:
            return (
                ds.batch(self.cfg.batch_size, drop_remainder=True).take(int(steps_per_epoch)).prefetch(tf.data.AUTOTUNE)
            )
        return ds.batch(self.cfg.batch_size).prefetch(tf.data.AUTOTUNE)

    def _augment(self, pair: tuple[tf.Tensor, tf.Tensor], rand: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Random crop plus the configured augmentations; geometric ones hit image and mask identically,
        intensity and noise only the image. Training split only (the eval pipelines never call this)."""
        x, y = pair
        rh, rw = self._crop
        aug = self.cfg.augmentation
        seed = tf.stack([rand, tf.constant(self._tf_seed, tf.int64)])
        u = tf.random.stateless_uniform([10], seed=seed)
        shape = tf.shape(y)
        span_y, span_x = shape[0] - rh + 1, shape[1] - rw + 1
        oy = tf.minimum(tf.cast(u[0] * tf.cast(span_y, tf.float32), tf.int32), span_y - 1)
        ox = tf.minimum(tf.cast(u[1] * tf.cast(span_x, tf.float32), tf.int32), span_x - 1)
        x = x[oy : oy + rh, ox : ox + rw, :]
        y = y[oy : oy + rh, ox : ox + rw]
        if aug.enabled and aug.flips:
            x, y = tf.cond(u[2] < 0.5, lambda: (tf.reverse(x, [1]), tf.reverse(y, [1])), lambda: (x, y))
            x, y = tf.cond(u[3] < 0.5, lambda: (tf.reverse(x, [0]), tf.reverse(y, [0])), lambda: (x, y))
        if aug.enabled and aug.rotations:
            # Quarter turns change H and W, so non-square crops only get half turns.
            k = tf.cast(u[4] * 4.0, tf.int32) if rh == rw else 2 * tf.cast(u[4] * 2.0, tf.int32)
            x = tf.image.rot90(x, k)
            y = tf.image.rot90(y[:, :, None], k)[:, :, 0]
        if aug.enabled and (aug.affine_rotation_deg > 0 or aug.affine_scale > 0):
            x, y = _affine(
                x,
                y,
                (2.0 * u[5] - 1.0) * (aug.affine_rotation_deg * math.pi / 180.0),
                1.0 + (2.0 * u[6] - 1.0) * aug.affine_scale,
            )
        if aug.enabled and aug.intensity_scale > 0:
            x = x * (1.0 + (2.0 * u[7] - 1.0) * aug.intensity_scale)
        if aug.enabled and aug.intensity_shift > 0:
            x = x + (2.0 * u[8] - 1.0) * aug.intensity_shift
        if aug.enabled and aug.gaussian_noise > 0:
            noise_seed = tf.stack([rand, tf.constant((self._tf_seed + 7) & 0x3FFFFFFFFFFFFFFF, tf.int64)])
            x = x + u[9] * aug.gaussian_noise * tf.random.stateless_normal(tf.shape(x), seed=noise_seed)
        x = tf.ensure_shape(x, (rh, rw, self._channels))
        y = tf.ensure_shape(y, (rh, rw))
        return x, y

    # ----------------------------------------------------------------- class weights, description
    def _class_weights(self) -> np.ndarray:
        """Inverse pixel frequency over every non-test image (fold-independent, no test leakage).

        Normalised to mean 1 over the non-ignored classes; the ignored class gets 0. A class absent from
        these images gets the largest present weight (it is at least as rare as the rarest one seen).
        """
        k = self.classes_count
        used = np.ones(len(self._masks), dtype=bool)
        used[self._test_idx] = False
        counts = np.zeros(k, dtype=np.float64)
        for i in np.flatnonzero(used):
            counts += np.bincount(self._masks[i].ravel(), minlength=k)[:k]
        active = np.ones(k, dtype=bool)
        if self.ignore_class is not None:
            active[self.ignore_class] = False
        present = active & (counts > 0)
        weights = np.zeros(k, dtype=np.float64)
        if present.any():
            freq = counts[present] / counts[present].sum()
            weights[present] = 1.0 / freq
            weights[active & ~present] = weights[present].max()
        else:
            weights[active] = 1.0
        weights[active] /= weights[active].mean()
        return weights.astype(np.float32)

    def describe(self) -> str:
        """One line for run.log."""
        sizes = self.split_sizes(0)
        shapes = {im.shape[:2] for im in self._images}
        size = "x".join(map(str, next(iter(shapes)))) if len(shapes) == 1 else f"{len(shapes)} sizes"
        aug = self.cfg.augmentation
        aug_s = (
            "+".join(
                n
                for n, on in (
                    ("flips", aug.flips),
                    ("rot90", aug.rotations),
                    ("affine", aug.affine_rotation_deg > 0 or aug.affine_scale > 0),
                    ("intensity", aug.intensity_scale > 0 or aug.intensity_shift > 0),
                    ("noise", aug.gaussian_noise > 0),
                )
                if on
            )
            or "crop only"
        )
        folds = f", {self.folds} folds (fold 0 shown)" if self.folds > 1 else ""
        weights = (
            ", class weights " + "/".join(f"{w:.2f}" for w in self.class_weights)
            if self.class_weights is not None
            else ""
        )
        ignore = f", ignore class {self.ignore_class}" if self.ignore_class is not None else ""
        return (
            f"data {self.source}: {len(self._images)} images {size}x{self._channels}, "
            f"{self.classes_count} classes{ignore}, crops {self._crop[0]}x{self._crop[1]}, "
            f"train/val/test {sizes['train']}/{sizes['val']}/{sizes['test']}{folds} (seed {self.seed}), "
            f"{self.cfg.normalisation} normalisation, augmentation "
            f"{aug_s if aug.enabled else 'off'}, batch {self.cfg.batch_size}{weights}"
        )


def _affine(x: tf.Tensor, y: tf.Tensor, angle: tf.Tensor, zoom: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Rotate by `angle` (radians) and zoom by `zoom` about the centre: bilinear image, nearest-label mask,
    reflected borders (no invented background at the edges)."""
    h, w = tf.cast(tf.shape(y)[0], tf.float32), tf.cast(tf.shape(y)[1], tf.float32)
    cy, cx = (h - 1.0) / 2.0, (w - 1.0) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    # output pixel (x, y) reads input pixel (a0 x + a1 y + a2, b0 x + b1 y + b2)
    transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])[None]
    shape = tf.shape(y)[:2]

    def warp(t: tf.Tensor, interpolation: str) -> tf.Tensor:
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=t[None],
            transforms=transform,
            output_shape=shape,
            fill_value=0.0,
            interpolation=interpolation,
            fill_mode="REFLECT",
        )[0]

    x = warp(x, "BILINEAR")
    y = tf.cast(tf.round(warp(tf.cast(y[:, :, None], tf.float32), "NEAREST")[:, :, 0]), tf.int32)
    return x, y
