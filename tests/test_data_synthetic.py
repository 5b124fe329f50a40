"""The built-in nuclei generator: shapes, ranges, determinism, masks that match the images."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from popnas_seg.data.synthetic import generate_nuclei
from popnas_seg.errors import UserError


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtypes_and_ranges(channels: int) -> None:
    images, masks = generate_nuclei(5, size=(24, 40), channels=channels, seed=3)
    assert images.shape == (5, 24, 40, channels) and images.dtype == np.float32
    assert masks.shape == (5, 24, 40) and masks.dtype == np.uint8
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(np.unique(masks).tolist()) == {0, 1}


def test_deterministic_by_seed_and_independent_of_count() -> None:
    a_img, a_mask = generate_nuclei(4, size=(32, 32), seed=7)
    b_img, b_mask = generate_nuclei(4, size=(32, 32), seed=7)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    c_img, c_mask = generate_nuclei(4, size=(32, 32), seed=8)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_mask, c_mask)
    # Growing the data set keeps the first images: image i depends on (seed, i) only.
    d_img, d_mask = generate_nuclei(6, size=(32, 32), seed=7)
    np.testing.assert_array_equal(a_img, d_img[:4])
    np.testing.assert_array_equal(a_mask, d_mask[:4])
    # Images within one call differ from each other.
    assert not np.array_equal(a_img[0], a_img[1])


def test_nuclei_are_brighter_than_background() -> None:
    images, masks = generate_nuclei(8, size=(48, 48), seed=1)
    inside = images[..., 0][masks == 1].mean()
    outside = images[..., 0][masks == 0].mean()
    assert inside > outside + 0.15
    coverage = (masks == 1).mean()
    assert 0.05 < coverage < 0.6


def test_three_class_boundaries() -> None:
    _, two = generate_nuclei(16, size=(48, 48), seed=5, classes_count=2)
    _, three = generate_nuclei(16, size=(48, 48), seed=5, classes_count=3)
    assert set(np.unique(three).tolist()) == {0, 1, 2}
    # The boundary class is carved out of the nuclei: same foreground as the 2-class mask.
    np.testing.assert_array_equal(three > 0, two == 1)
    # Interior pixels never touch background: the contour closes every nucleus.
    for m in three:
        near_background = ndimage.binary_dilation(m == 0, structure=np.ones((3, 3), bool))
        assert not (near_background & (m == 1)).any()
    # Boundaries are thin (1-2 px), not whole nuclei.
    assert (three == 2).sum() < (three > 0).sum()
    # Touching nuclei: the boundary splits merged blobs into more interiors than foreground components.
    interiors = sum(ndimage.label(m == 1)[1] for m in three)
    blobs = sum(ndimage.label(m > 0)[1] for m in three)
    assert interiors > blobs


@pytest.mark.parametrize("classes", [1, 4, 7])
def test_unsupported_class_counts_are_user_errors(classes: int) -> None:
    with pytest.raises(UserError, match="classes_count"):
        generate_nuclei(2, size=(16, 16), classes_count=classes)


def test_tiny_and_empty_requests() -> None:
    images, masks = generate_nuclei(0, size=(16, 16))
    assert images.shape == (0, 16, 16, 1) and masks.shape == (0, 16, 16)
    images, masks = generate_nuclei(3, size=(16, 16), seed=2)
    assert masks.any()
    with pytest.raises(UserError):
        generate_nuclei(1, size=(4, 4))


def test_debris_is_not_labelled() -> None:
    clean, m_clean = generate_nuclei(3, size=(64, 64), seed=9, debris=False)
    dirty, m_dirty = generate_nuclei(3, size=(64, 64), seed=9, debris=True)
    np.testing.assert_array_equal(m_clean, m_dirty)
    assert not np.array_equal(clean, dirty)


def test_fast_enough_for_the_default_data_set() -> None:
    start = time.perf_counter()
    images, _ = generate_nuclei(256, size=(96, 96), seed=0)
    elapsed = time.perf_counter() - start
    assert images.shape == (256, 96, 96, 1)
    assert elapsed < 10.0, f"256 images of 96x96 took {elapsed:.1f} s"


def test_artefacts_hot_pixels_saturated_debris_and_empty_tiles() -> None:
    clean, clean_masks = generate_nuclei(6, size=(48, 48), seed=5)
    dirty, dirty_masks = generate_nuclei(6, size=(48, 48), seed=5, artefacts=True)
    np.testing.assert_array_equal(clean_masks, dirty_masks)  # artefacts are never labelled as nuclei
    assert clean.max() <= 1.0 and dirty.max() >= 4.0  # hot pixels far above any nucleus
    extra = dirty - clean
    assert (extra > 3.0).sum() >= 6  # at least one hot pixel per image
    assert np.all(extra >= 0)
    _, masks = generate_nuclei(20, size=(48, 48), seed=5, empty_fraction=0.5)
    empty = [int(m.max()) == 0 for m in masks]
    assert 3 <= sum(empty) <= 17
    with pytest.raises(UserError):
        generate_nuclei(2, size=(16, 16), empty_fraction=1.5)


def test_write_folder_reads_back_as_a_dataset(tmp_path) -> None:
    from popnas_seg.data.folder import read_folder
    from popnas_seg.data.synthetic import write_folder

    images, masks = generate_nuclei(5, size=(32, 32), seed=2, artefacts=True)
    write_folder(tmp_path / "small", images, masks)
    read_images, read_masks, names = read_folder(str(tmp_path / "small"), 2, None, None)
    assert len(names) == 5
    np.testing.assert_array_equal(np.asarray(read_masks[3]), masks[3])
    np.testing.assert_allclose(np.asarray(read_images[3]).reshape(32, 32), images[3, ..., 0])


def test_hard_variant_has_lower_contrast_and_more_boundary() -> None:
    """synthetic_nuclei_hard: same generator, denser/touching nuclei, dimmer and noisier, 3 classes."""
    easy_x, easy_y = generate_nuclei(16, (64, 64), 1, seed=0, classes_count=3)
    hard_x, hard_y = generate_nuclei(16, (64, 64), 1, seed=0, classes_count=3, hard=True)
    again_x, again_y = generate_nuclei(16, (64, 64), 1, seed=0, classes_count=3, hard=True)
    assert np.array_equal(hard_x, again_x) and np.array_equal(hard_y, again_y)

    def contrast(x, y):
        return float(x[..., 0][y > 0].mean() - x[..., 0][y == 0].mean())

    assert contrast(hard_x, hard_y) < 0.8 * contrast(easy_x, easy_y)
    assert (hard_y == 2).mean() > (easy_y == 2).mean()  # more touching nuclei: more boundary pixels
    assert hard_x[..., 0][hard_y == 0].std() > easy_x[..., 0][easy_y == 0].std()  # fewer photons


def test_hard_variant_config_needs_three_classes() -> None:
    from popnas_seg.config import config_from_dict
    from popnas_seg.data.pipeline import load_data

    with pytest.raises(UserError, match="3-class boundary task"):
        config_from_dict({"dataset": {"name": "synthetic_nuclei_hard"}}, source="x.json")
    cfg = config_from_dict(
        {
            "dataset": {
                "name": "synthetic_nuclei_hard",
                "classes_count": 3,
                "samples": 8,
                "generated_size": [32, 32],
                "crop": [32, 32],
            }
        },
        source="x.json",
    )
    data = load_data(cfg.dataset, seed=1)
    assert data.classes_count == 3 and "synthetic_nuclei_hard" in data.source
