"""SegmentationData: splits, folds, aligned augmentation, reproducibility, weights, preview."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from popnas_seg.config import AugmentationConfig, DatasetConfig
from popnas_seg.data.pipeline import SegmentationData, load_data
from popnas_seg.data.preview import save_preview
from popnas_seg.errors import UserError

# Geometric augmentation only (flips, rotations): pixel values keep encoding the labels, so alignment is checkable.
GEOMETRIC = dict(
    intensity_scale=0.0, intensity_shift=0.0, gaussian_noise=0.0, affine_rotation_deg=0.0, affine_scale=0.0
)


def _cfg(**kw) -> DatasetConfig:
    base = dict(
        samples=12,
        generated_size=(20, 20),
        crop=(16, 16),
        batch_size=4,
        cache=True,
        shuffle_buffer=16,
        classes_count=4,  # _label_images makes 4 classes; synthetic tests set 2 or 3
        augmentation=AugmentationConfig(**GEOMETRIC),
        normalisation="minmax",
    )  # keeps x = y / (classes - 1) of _label_images
    base.update(kw)
    return DatasetConfig(**base)


def _label_images(n: int, size: tuple[int, int], classes: int = 4, seed: int = 0):
    """Images whose pixel value encodes the label (x = y / (classes-1)), so alignment is checkable."""
    rng = np.random.default_rng(seed)
    masks = [rng.integers(0, classes, size=size).astype(np.int32) for _ in range(n)]
    for m in masks:  # make min and max present so minmax normalisation keeps x = y / (classes - 1)
        m[0, 0], m[0, 1] = 0, classes - 1
    images = [(m / (classes - 1)).astype(np.float32)[..., None] for m in masks]
    return images, masks, [f"img{i:02d}" for i in range(n)]


def _dihedral(a: np.ndarray) -> list[np.ndarray]:
    rots = [np.rot90(a, k) for k in range(4)]
    return rots + [np.fliplr(r) for r in rots]


def _epoch(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_synthetic_load_shapes_dtypes_and_batches() -> None:
    cfg = _cfg(val_test_batch_size=2, classes_count=3)
    data = load_data(cfg, seed=1)
    assert data.input_shape == (16, 16, 1) and data.classes_count == 3 and data.ignore_class is None
    x, y = next(iter(data.train_dataset()))
    assert x.shape == (4, 16, 16, 1) and x.dtype.name == "float32"
    assert y.shape == (4, 16, 16) and y.dtype.name == "int32"
    xv, yv = next(iter(data.val_dataset()))
    assert xv.shape[0] == 2 and xv.shape[1:] == (16, 16, 1)
    xt, yt = _epoch(data.test_dataset())
    tx, ty = data.test_arrays()
    np.testing.assert_array_equal(xt, tx)
    np.testing.assert_array_equal(yt, ty)
    assert set(np.unique(ty).tolist()) <= {0, 1, 2}
    line = data.describe()
    assert "\n" not in line and "12 images" in line and "synthetic" in line


def test_splits_sizes_no_overlap_and_determinism() -> None:
    images, masks, names = _label_images(20, (16, 16))
    cfg = _cfg(validation_size=0.2, test_size=0.25)
    data = SegmentationData(images, masks, names, cfg, seed=3)
    assert data.split_sizes() == {"train": 11, "val": 4, "test": 5}
    split = data.split_names()
    train, val, test = (set(split[k]) for k in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(names)
    assert SegmentationData(images, masks, names, cfg, seed=3).split_names() == split
    assert SegmentationData(images, masks, names, cfg, seed=4).split_names() != split
    # val_arrays/test_arrays follow the split names.
    xv, yv = data.val_arrays()
    expected = np.stack([masks[names.index(n)] for n in split["val"]])
    np.testing.assert_array_equal(yv, expected)
    assert data.val_arrays(n=2)[0].shape[0] == 2
    assert data.train_arrays()[0].shape == (11, 16, 16, 1)


def test_small_splits_get_at_least_one_image_and_too_few_is_an_error() -> None:
    images, masks, names = _label_images(4, (16, 16))
    data = SegmentationData(images, masks, names, _cfg(validation_size=0.05, test_size=0.05), seed=0)
    assert data.split_sizes() == {"train": 2, "val": 1, "test": 1}
    no_test = SegmentationData(images, masks, names, _cfg(test_size=0.0), seed=0)
    assert no_test.split_sizes()["test"] == 0 and no_test.test_arrays()[0].shape[0] == 0
    with pytest.raises(UserError, match="too few"):
        SegmentationData(images[:2], masks[:2], names[:2], _cfg(validation_size=0.1, test_size=0.1), seed=0)


def test_folds_partition_the_non_test_images() -> None:
    images, masks, names = _label_images(14, (16, 16))
    data = SegmentationData(images, masks, names, _cfg(folds=3, test_size=0.15), seed=0)
    assert data.folds == 3
    tests = {tuple(data.split_names(f)["test"]) for f in range(3)}
    assert len(tests) == 1
    vals = [set(data.split_names(f)["val"]) for f in range(3)]
    assert not (vals[0] & vals[1]) and not (vals[1] & vals[2]) and not (vals[0] & vals[2])
    test = set(next(iter(tests)))
    assert set().union(*vals) == set(names) - test
    for f in range(3):
        split = data.split_names(f)
        assert not set(split["train"]) & set(split["val"])
        assert set(split["train"]) | set(split["val"]) | test == set(names)
        assert data.split_sizes(f)["val"] == len(split["val"])
    _, yv1 = data.val_arrays(fold=1)
    assert yv1.shape[0] == len(vals[1])
    x, _ = next(iter(data.val_dataset(fold=2)))
    assert x.shape[1:] == (16, 16, 1)
    with pytest.raises(ValueError):
        data.split_sizes(fold=3)
    with pytest.raises(UserError, match="folds"):
        SegmentationData(images[:4], masks[:4], names[:4], _cfg(folds=5), seed=0)


def test_images_smaller_than_crop_are_user_errors() -> None:
    images, masks, names = _label_images(6, (12, 20))
    with pytest.raises(UserError, match="smaller than dataset.crop"):
        SegmentationData(images, masks, names, _cfg(crop=(16, 16)), seed=0)
    with pytest.raises(UserError, match="smaller than dataset.crop"):
        load_data(_cfg(generated_size=(12, 12), crop=(16, 16), classes_count=2), seed=0)


def test_augmentation_keeps_image_and_mask_aligned_and_is_reproducible() -> None:
    images, masks, names = _label_images(10, (20, 20), seed=1)
    cfg = _cfg(crop=(12, 12), batch_size=3, validation_size=0.1, test_size=0.1)
    data = SegmentationData(images, masks, names, cfg, seed=5)
    ds = data.train_dataset()
    x1, y1 = _epoch(ds)
    x2, _ = _epoch(ds)
    assert x1.shape == (8, 12, 12, 1)
    # The image still encodes its own mask after crop + flips + rotations.
    np.testing.assert_array_equal(np.rint(x1[..., 0] * 3).astype(np.int32), y1)
    assert not np.array_equal(x1, x2)  # a new epoch draws new crops / orders
    again, _ = _epoch(SegmentationData(images, masks, names, cfg, seed=5).train_dataset())
    np.testing.assert_array_equal(x1, again)  # same seed -> same batches
    other, _ = _epoch(SegmentationData(images, masks, names, cfg, seed=6).train_dataset())
    assert not np.array_equal(x1, other)


def test_flips_and_rotations_happen_only_when_enabled() -> None:
    images, masks, names = _label_images(8, (16, 16), seed=2)
    cfg = _cfg(crop=(16, 16), batch_size=8, validation_size=0.15, test_size=0.15)
    train_masks = lambda d: [masks[names.index(n)] for n in d.split_names()["train"]]  # noqa: E731

    data = SegmentationData(images, masks, names, cfg, seed=0)
    originals = train_masks(data)
    transforms = set()
    for _ in range(3):
        _, ys = _epoch(data.train_dataset())
        for y in ys:
            hits = [k for m in originals for k, t in enumerate(_dihedral(m)) if np.array_equal(y, t)]
            assert hits, "every output must be a flip/rotation of a training mask"
            transforms.update(hits)
    assert len(transforms) > 2  # several of the 8 symmetries were used

    off = _cfg(crop=(16, 16), batch_size=8, augmentation=AugmentationConfig(enabled=False))
    plain = SegmentationData(images, masks, names, off, seed=0)
    _, ys = _epoch(plain.train_dataset())
    for y in ys:
        assert any(np.array_equal(y, m) for m in train_masks(plain))


def test_non_square_crops_keep_their_shape() -> None:
    images, masks, names = _label_images(6, (20, 24))
    data = SegmentationData(images, masks, names, _cfg(crop=(8, 16), batch_size=6), seed=0)
    x, y = _epoch(data.train_dataset())
    assert x.shape[1:] == (8, 16, 1) and y.shape[1:] == (8, 16)
    np.testing.assert_array_equal(np.rint(x[..., 0] * 3).astype(np.int32), y)
    assert data.input_shape == (8, 16, 1)


def test_images_of_different_sizes_stream_and_center_crop() -> None:
    images, masks, names = [], [], []
    for i, size in enumerate([(16, 16), (20, 18), (24, 30), (18, 22), (30, 16), (16, 20)]):
        im, m, _ = _label_images(1, size, seed=i)
        images += im
        masks += m
        names.append(f"v{i}")
    data = SegmentationData(images, masks, names, _cfg(crop=(16, 16), batch_size=2, cache=False), seed=0)
    ds = data.train_dataset()
    assert int(ds.cardinality()) == 2  # 4 training images in batches of 2, known without a pass
    x, y = _epoch(ds)
    assert x.shape[1:] == (16, 16, 1)
    np.testing.assert_array_equal(np.rint(x[..., 0] * 3).astype(np.int32), y)
    xv, yv = data.val_arrays()
    i = names.index(data.split_names()["val"][0])
    h, w = masks[i].shape
    np.testing.assert_array_equal(
        yv[0], masks[i][(h - 16) // 2 : (h - 16) // 2 + 16, (w - 16) // 2 : (w - 16) // 2 + 16]
    )
    assert "sizes" in data.describe()


def test_normalisation_is_per_image_and_the_same_in_every_split() -> None:
    rng = np.random.default_rng(0)
    images = [rng.uniform(2.0, 9.0, size=(16, 16, 2)).astype(np.float32) * (i + 1) for i in range(8)]
    masks = [np.zeros((16, 16), np.int32) for _ in range(8)]
    names = [f"n{i}" for i in range(8)]
    for mode in ("minmax", "standard"):
        data = SegmentationData(images, masks, names, _cfg(normalisation=mode, crop=(16, 16)), seed=0)
        split = data.split_names()
        for key, (x, _) in (("train", data.train_arrays()), ("val", data.val_arrays()), ("test", data.test_arrays())):
            for xi, name in zip(x, split[key]):
                raw = images[names.index(name)].astype(np.float64)
                if mode == "minmax":
                    expected = (raw - raw.min()) / (raw.max() - raw.min())
                else:
                    expected = (raw - raw.mean()) / raw.std()
                np.testing.assert_allclose(xi, expected, atol=1e-5)


def test_ignore_class_passes_through_and_class_weights() -> None:
    masks = []
    for _ in range(8):
        m = np.zeros((16, 16), np.int32)
        m[:4] = 1  # 25 % class 1, 75 % class 0 ...
        m[:, :2] = 2  # ... minus two ignored columns
        masks.append(m)
    images = [(m / 2.0).astype(np.float32)[..., None] for m in masks]
    names = [f"w{i}" for i in range(8)]
    assert SegmentationData(images, masks, names, _cfg(crop=(16, 16)), seed=0).class_weights is None

    cfg = _cfg(crop=(16, 16), classes_count=3, ignore_class=2, balance_class_losses=True)
    data = SegmentationData(images, masks, names, cfg, seed=0)
    w = data.class_weights
    assert w is not None and w.dtype == np.float32 and w.shape == (3,)
    counts = np.array([12 * 14, 4 * 14], float)  # per image: class 0 and class 1 outside the ignored columns
    inv = counts.sum() / counts
    np.testing.assert_allclose(w[:2], inv / inv.mean(), rtol=1e-5)
    assert w[2] == 0.0 and w[:2].mean() == pytest.approx(1.0)
    for ds in (data.train_dataset(), data.val_dataset(), data.test_dataset()):
        _, y = _epoch(ds)
        assert (y == 2).sum() == 2 * 16 * len(y)  # ignored pixels are never altered or dropped
    assert "ignore class 2" in data.describe()


def test_absent_class_gets_the_largest_weight() -> None:
    masks = [np.zeros((16, 16), np.int32) for _ in range(6)]
    for m in masks:
        m[:4] = 1
    images = [m.astype(np.float32)[..., None] for m in masks]
    data = SegmentationData(
        images, masks, list("abcdef"), _cfg(crop=(16, 16), classes_count=3, balance_class_losses=True), seed=0
    )
    w = data.class_weights
    assert w[2] == pytest.approx(w[1]) and w[1] > w[0] and w.mean() == pytest.approx(1.0)


def test_remapping_with_synthetic_data() -> None:
    data = load_data(_cfg(classes_count=3, class_labels_remapping={2: 1}), seed=0)
    _, y = data.train_arrays()
    assert set(np.unique(y).tolist()) == {0, 1}
    with pytest.raises(UserError, match="remapping"):
        load_data(_cfg(classes_count=2, class_labels_remapping={1: 5}), seed=0)
    with pytest.raises(UserError, match="classes_count"):
        load_data(_cfg(classes_count=4), seed=0)


def test_load_from_folder(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(6):
        Image.fromarray(np.full((18, 18), 10 * i, np.uint8)).save(tmp_path / "images" / f"f{i}.png")
        mask = np.zeros((18, 18), np.uint8)
        mask[i : i + 5] = 7
        Image.fromarray(mask).save(tmp_path / "masks" / f"f{i}.png")
    cfg = DatasetConfig(
        name=None, path=str(tmp_path), crop=(16, 16), samples=None, class_labels_remapping={7: 1}, batch_size=2
    )
    data = load_data(cfg, seed=0)
    assert sum(data.split_sizes().values()) == 6
    x, y = next(iter(data.train_dataset()))
    assert x.shape == (2, 16, 16, 1) and int(y.numpy().max()) == 1
    assert str(tmp_path) in data.describe()


def test_save_preview_writes_a_valid_png(tmp_path: Path) -> None:
    data = load_data(_cfg(classes_count=3, ignore_class=2), seed=0)
    out = save_preview(data, tmp_path / "preview" / "data.png", count=3)
    assert out == tmp_path / "preview" / "data.png" and out.is_file()
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
    assert [p.name for p in out.parent.iterdir()] == ["data.png"]  # no temp file left behind


def test_arrays_with_bad_labels_or_shapes_are_refused() -> None:
    images, masks, names = _label_images(6, (16, 16), classes=4)
    with pytest.raises(UserError, match="0..1"):
        SegmentationData(images, masks, names, _cfg(classes_count=2), seed=0)
    masks[2] = masks[2][:, :15]
    with pytest.raises(UserError, match="img02"):
        SegmentationData(images, masks, names, _cfg(classes_count=4), seed=0)


def test_percentile_normalisation_survives_hot_pixels_where_minmax_regresses() -> None:
    """Hot pixels and saturated debris (generator artefacts) squeeze min-max's nuclei into a sliver of [0, 1];
    percentile normalisation and standardisation keep nuclei and background apart (by a good part of their
    unit). Guards the default against a regression to min-max."""
    from popnas_seg.data.synthetic import generate_nuclei

    images, masks = generate_nuclei(12, size=(48, 48), seed=4, artefacts=True)
    names = [f"a{i}" for i in range(12)]
    contrast = {}
    for mode in ("minmax", "percentile", "standard"):
        data = SegmentationData(
            list(images), list(masks), names, _cfg(normalisation=mode, crop=(48, 48), classes_count=2), seed=0
        )
        x, y = data.train_arrays()
        contrast[mode] = float(np.median(x[..., 0][y == 1]) - np.median(x[..., 0][y == 0]))
    assert contrast["minmax"] < 0.1  # what broke real folders
    assert contrast["percentile"] > 0.2 and contrast["standard"] > 0.2
    assert DatasetConfig().normalisation != "minmax"


def test_normalisation_clip_bounds_hot_pixels_in_training_and_predict_inputs() -> None:
    """Hot pixels sit tens of standard deviations out after standardisation; normalisation_clip bounds them in
    every split and in predict's preprocessing (the same function), and leaves the rest of the image as is."""
    from popnas_seg.data.preprocess import preprocess_image
    from popnas_seg.data.synthetic import generate_nuclei

    images, masks = generate_nuclei(8, size=(32, 32), seed=2, artefacts=True)
    names = [f"c{i}" for i in range(8)]
    plain = SegmentationData(
        list(images), list(masks), names, _cfg(crop=(32, 32), normalisation="standard", classes_count=2), seed=0
    )
    clipped = SegmentationData(
        list(images),
        list(masks),
        names,
        _cfg(crop=(32, 32), normalisation="standard", classes_count=2, normalisation_clip=4.0),
        seed=0,
    )
    (px, _), (cx, _) = plain.val_arrays(), clipped.val_arrays()
    assert float(np.abs(px).max()) > 8.0  # the artefacts are far out without the clip
    assert float(np.abs(cx).max()) <= 4.0
    inside = np.abs(px) < 4.0
    np.testing.assert_array_equal(cx[inside], px[inside])
    one = preprocess_image(
        images[0], _cfg(crop=(32, 32), normalisation="standard", classes_count=2, normalisation_clip=4.0)
    )
    assert float(np.abs(one).max()) <= 4.0
    with pytest.raises(ValueError):
        DatasetConfig(normalisation_clip=0.0)


def test_percentile_normalisation_maps_the_percentiles_to_0_and_1() -> None:
    rng = np.random.default_rng(3)
    images = [rng.uniform(0, 100, size=(16, 16, 1)).astype(np.float32) for _ in range(6)]
    masks = [np.zeros((16, 16), np.int32) for _ in range(6)]
    data = SegmentationData(
        images,
        masks,
        [f"p{i}" for i in range(6)],
        _cfg(normalisation="percentile", normalisation_percentiles=(2.0, 98.0)),
        seed=0,
    )
    x, _ = data.train_arrays()
    name = data.split_names()["train"][0]
    raw = images[int(name[1:])]
    lo, hi = np.percentile(raw, [2.0, 98.0])
    np.testing.assert_allclose(x[0], (raw - lo) / (hi - lo), atol=1e-5)
    with pytest.raises(ValueError):
        DatasetConfig(normalisation_percentiles=(99.0, 1.0))


def test_steps_per_epoch_draws_full_batches_with_replacement() -> None:
    images, masks, names = _label_images(10, (20, 20), seed=1)
    cfg = _cfg(crop=(12, 12), batch_size=3, validation_size=0.1, test_size=0.1)  # 8 training images
    data = SegmentationData(images, masks, names, cfg, seed=5)
    ds = data.train_dataset(steps_per_epoch=7)
    assert int(ds.cardinality()) == 7
    x1, y1 = _epoch(ds)
    x2, _ = _epoch(ds)
    assert x1.shape == (21, 12, 12, 1)  # 7 full batches of 3 from 8 images: some drawn twice
    np.testing.assert_array_equal(np.rint(x1[..., 0] * 3).astype(np.int32), y1)  # still aligned
    assert not np.array_equal(x1, x2)
    again, _ = _epoch(SegmentationData(images, masks, names, cfg, seed=5).train_dataset(steps_per_epoch=7))
    np.testing.assert_array_equal(x1, again)
    assert int(data.train_dataset().cardinality()) == 3  # null: one pass, as before
    ragged = [im[: 16 + i % 3] for i, im in enumerate(images)]
    rmasks = [m[: 16 + i % 3] for i, m in enumerate(masks)]
    streamed = SegmentationData(ragged, rmasks, names, cfg, seed=5).train_dataset(steps_per_epoch=5)
    xs, _ = _epoch(streamed)
    assert xs.shape == (15, 12, 12, 1)


def test_new_augmentations_change_training_data_only() -> None:
    """Intensity scale / shift, noise and affine each alter training crops; validation and test never change."""
    images, masks, names = _label_images(10, (20, 20), seed=3)
    plain_cfg = _cfg(crop=(16, 16), batch_size=8, validation_size=0.2, test_size=0.2)
    plain = SegmentationData(images, masks, names, plain_cfg, seed=1)
    base_x, base_y = _epoch(plain.train_dataset())
    for field, value in (
        ("intensity_scale", 0.5),
        ("intensity_shift", 0.5),
        ("gaussian_noise", 0.3),
        ("affine_rotation_deg", 30.0),
        ("affine_scale", 0.3),
    ):
        aug = AugmentationConfig(**{**GEOMETRIC, field: value})
        data = SegmentationData(
            images,
            masks,
            names,
            _cfg(crop=(16, 16), batch_size=8, validation_size=0.2, test_size=0.2, augmentation=aug),
            seed=1,
        )
        x, y = _epoch(data.train_dataset())
        assert not np.allclose(x, base_x), field
        if field.startswith("affine"):
            assert not np.array_equal(y, base_y), field  # the mask moves with the image
            assert set(np.unique(y).tolist()) <= {0, 1, 2, 3}  # nearest-neighbour labels, no blends
        else:
            np.testing.assert_array_equal(y, base_y)  # intensity changes never touch the mask
        for got, want in (
            (data.val_arrays(), plain.val_arrays()),
            (data.test_arrays(), plain.test_arrays()),
            (_epoch(data.val_dataset()), plain.val_arrays()),
            (_epoch(data.test_dataset()), plain.test_arrays()),
        ):
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_whole_images_of_val_and_test_keep_their_sizes() -> None:
    """val_images/test_images give whole normalised images (what whole-image evaluation tiles), not crops."""
    images, masks, names = [], [], []
    for i, size in enumerate([(16, 16), (20, 18), (24, 30), (18, 22), (30, 16), (16, 20)]):
        im, m, _ = _label_images(1, size, seed=i)
        images += im
        masks += m
        names.append(f"v{i}")
    data = SegmentationData(images, masks, names, _cfg(crop=(16, 16), normalisation="minmax"), seed=0)
    for split, (xs, ys) in (("val", data.val_images()), ("test", data.test_images())):
        assert [names[names.index(n)] for n in data.split_names()[split]] and len(xs) == len(ys) >= 1
        for name, x, y in zip(data.split_names()[split], xs, ys):
            i = names.index(name)
            assert x.shape == (*masks[i].shape, 1) and x.dtype == np.float32
            np.testing.assert_array_equal(y, masks[i])
            np.testing.assert_allclose(x[..., 0] * 3, masks[i], atol=1e-5)


def test_rescale_really_resizes_images_and_masks() -> None:
    from popnas_seg.data.preprocess import preprocess_image, rescale_mask

    images, masks, names = _label_images(8, (40, 32))
    data = SegmentationData(images, masks, names, _cfg(crop=(16, 16), rescale=0.5, normalisation="minmax"), seed=0)
    xs, ys = data.val_images()
    assert xs[0].shape == (20, 16, 1) and ys[0].shape == (20, 16)
    assert set(np.unique(ys[0]).tolist()) <= {0, 1, 2, 3}  # nearest: labels stay labels
    mask = np.kron(np.arange(4).reshape(2, 2), np.ones((4, 4), np.int32))
    np.testing.assert_array_equal(rescale_mask(mask, 0.5), np.kron(np.arange(4).reshape(2, 2), np.ones((2, 2))))
    np.testing.assert_array_equal(rescale_mask(rescale_mask(mask, 2.0), 0.5), mask)
    assert preprocess_image(images[0], _cfg(rescale=2.0)).shape == (80, 64, 1)


def test_runs_with_one_dataset_seed_load_the_same_data_whatever_their_search_seed() -> None:
    """What bench_search relies on to compare search seeds on one problem: the CLI loads by the data seed."""
    from popnas_seg.cli import _load_data
    from popnas_seg.config import config_from_dict

    def val_images(others_seed: int, data_seed: int | None) -> list[np.ndarray]:
        cfg = config_from_dict(
            {
                "others": {"seed": others_seed},
                "dataset": {"samples": 8, "generated_size": [24, 24], "crop": [16, 16], "seed": data_seed},
            }
        )
        return _load_data(cfg).val_images()[0]

    same = val_images(1, 5), val_images(2, 5)
    assert all(np.array_equal(a, b) for a, b in zip(*same))
    assert not all(np.array_equal(a, b) for a, b in zip(val_images(1, None), val_images(2, None)))
