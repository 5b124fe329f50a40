"""read_folder: formats, scaling, pairing and every error a user can make with their files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from popnas_seg.data.folder import read_folder, remap_labels
from popnas_seg.errors import UserError


def _make(root: Path) -> tuple[Path, Path]:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    return root / "images", root / "masks"


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def _pair(root: Path, name: str, h: int = 8, w: int = 10, label: int = 1) -> None:
    images, masks = _make(root)
    _png(images / f"{name}.png", np.full((h, w), 51, np.uint8))
    mask = np.zeros((h, w), np.uint8)
    mask[: h // 2] = label
    _png(masks / f"{name}.png", mask)


def test_png_pairs_are_read_scaled_and_sorted(tmp_path: Path) -> None:
    _pair(tmp_path, "b")
    _pair(tmp_path, "a")
    images, masks, names = read_folder(tmp_path, classes_count=2)
    assert names == ["a", "b"]
    assert images[0].shape == (8, 10, 1) and images[0].dtype == np.float32
    np.testing.assert_allclose(images[0], 51 / 255)
    assert masks[0].dtype == np.int32 and masks[0].shape == (8, 10)
    assert set(np.unique(masks[0]).tolist()) == {0, 1}


def test_tiff_npy_and_mixed_formats(tmp_path: Path) -> None:
    images, masks = _make(tmp_path)
    tifffile.imwrite(images / "t.tif", np.full((6, 6), 65535, np.uint16))
    np.save(masks / "t.npy", np.eye(6, dtype=np.int64))
    np.save(images / "f.npy", np.full((6, 6), 2.5, np.float32))  # floats are kept as stored
    tifffile.imwrite(masks / "f.tiff", np.zeros((6, 6), np.uint8))
    _png(images / "u.png", (np.arange(36).reshape(6, 6) * 1000).astype(np.uint16))  # 16-bit PNG
    _png(masks / "u.png", np.zeros((6, 6), np.uint8))
    imgs, msks, names = read_folder(tmp_path, classes_count=2)
    assert names == ["f", "t", "u"]
    np.testing.assert_allclose(imgs[0], 2.5)
    np.testing.assert_allclose(imgs[1], 1.0)
    np.testing.assert_allclose(imgs[2][..., 0], np.arange(36).reshape(6, 6) * 1000 / 65535, rtol=1e-6)
    np.testing.assert_array_equal(msks[1], np.eye(6))


def test_rgb_images_and_equal_channel_rgb_mask(tmp_path: Path) -> None:
    images, masks = _make(tmp_path)
    _png(images / "c.png", np.dstack([np.full((5, 7), v, np.uint8) for v in (0, 128, 255)]))
    mask = np.zeros((5, 7), np.uint8)
    mask[2:, 3:] = 2
    _png(masks / "c.png", np.dstack([mask] * 3))
    imgs, msks, _ = read_folder(tmp_path, classes_count=3)
    assert imgs[0].shape == (5, 7, 3)
    np.testing.assert_allclose(imgs[0][0, 0], [0, 128 / 255, 1])
    np.testing.assert_array_equal(msks[0], mask)


def test_palette_mask_gives_indices(tmp_path: Path) -> None:
    images, masks = _make(tmp_path)
    _png(images / "p.png", np.zeros((4, 4), np.uint8))
    mask = Image.fromarray(np.array([[0, 1, 2, 1]] * 4, np.uint8), mode="L").convert("P")
    mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    mask.save(masks / "p.png")
    _, msks, _ = read_folder(tmp_path, classes_count=3)
    np.testing.assert_array_equal(msks[0], [[0, 1, 2, 1]] * 4)


def test_samples_keeps_first_names(tmp_path: Path) -> None:
    for n in ("c", "a", "b"):
        _pair(tmp_path, n)
    _, _, names = read_folder(tmp_path, classes_count=2, samples=2)
    assert names == ["a", "b"]


def test_remapping_fixes_out_of_range_labels_and_swaps(tmp_path: Path) -> None:
    _pair(tmp_path, "x", label=255)
    with pytest.raises(UserError) as err:
        read_folder(tmp_path, classes_count=2)
    message = str(err.value)
    assert "255" in message and "x.png" in message
    assert "classes_count" in message and "class_labels_remapping" in message
    assert '{"255": 1}' in message and '{"255": 0}' not in message  # 255 is the foreground, never erase it
    _, masks, _ = read_folder(tmp_path, classes_count=2, class_labels_remapping={255: 1})
    assert set(np.unique(masks[0]).tolist()) == {0, 1}
    swapped = remap_labels(np.array([[0, 1, 2]]), {1: 2, 2: 1})
    np.testing.assert_array_equal(swapped, [[0, 2, 1]])


# ------------------------------------------------------------------ errors
def test_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_folder(tmp_path / "nope", classes_count=2)
    (tmp_path / "images").mkdir()
    with pytest.raises(UserError, match="masks"):
        read_folder(tmp_path, classes_count=2)


def test_no_images(tmp_path: Path) -> None:
    _make(tmp_path)
    (tmp_path / "images" / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    with pytest.raises(UserError, match="no images"):
        read_folder(tmp_path, classes_count=2)


def test_images_without_masks_and_masks_without_images(tmp_path: Path) -> None:
    _pair(tmp_path, "ok")
    images, masks = _make(tmp_path)
    for i in range(7):
        _png(images / f"lonely{i}.png", np.zeros((8, 10), np.uint8))
    with pytest.raises(UserError) as err:
        read_folder(tmp_path, classes_count=2)
    assert "7 image(s)" in str(err.value) and "lonely0" in str(err.value) and "2 more" in str(err.value)
    for i in range(7):
        (images / f"lonely{i}.png").unlink()
    np.save(masks / "orphan.npy", np.zeros((8, 10), np.uint8))
    with pytest.raises(UserError, match="orphan"):
        read_folder(tmp_path, classes_count=2)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    _pair(tmp_path, "good")
    images, masks = _make(tmp_path)
    (images / "bad.png").write_bytes(b"this is not a png")
    _png(masks / "bad.png", np.zeros((8, 10), np.uint8))
    with pytest.raises(UserError, match=r"cannot read .*bad\.png"):
        read_folder(tmp_path, classes_count=2)


def test_size_mismatch(tmp_path: Path) -> None:
    images, masks = _make(tmp_path)
    _png(images / "s.png", np.zeros((8, 10), np.uint8))
    _png(masks / "s.png", np.zeros((8, 9), np.uint8))
    with pytest.raises(UserError, match=r"size mismatch.*s\.png.*8x10.*8x9"):
        read_folder(tmp_path, classes_count=2)


def test_multichannel_mask(tmp_path: Path) -> None:
    images, masks = _make(tmp_path)
    _png(images / "m.png", np.zeros((4, 4), np.uint8))
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 1
    _png(masks / "m.png", rgb)
    with pytest.raises(UserError, match=r"m\.png has 3 channels"):
        read_folder(tmp_path, classes_count=2)


def test_channel_count_mismatch(tmp_path: Path) -> None:
    images, masks = _make(tmp_path)
    _png(images / "a.png", np.zeros((4, 4), np.uint8))
    _png(images / "b.png", np.zeros((4, 4, 3), np.uint8))
    for n in ("a", "b"):
        _png(masks / f"{n}.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match=r"b\.png has 3 channel"):
        read_folder(tmp_path, classes_count=2)


def test_unsupported_suffix_duplicate_stems_and_bad_mask_values(tmp_path: Path) -> None:
    _pair(tmp_path, "a")
    images, masks = _make(tmp_path)
    (images / "c.jpg").write_bytes(b"")
    with pytest.raises(UserError, match=r"unsupported file type .*c\.jpg"):
        read_folder(tmp_path, classes_count=2)
    (images / "c.jpg").unlink()
    np.save(images / "a.npy", np.zeros((8, 10), np.float32))
    with pytest.raises(UserError, match="share the name 'a'"):
        read_folder(tmp_path, classes_count=2)
    (images / "a.npy").unlink()
    np.save(masks / "a.npy", np.full((8, 10), 0.5))
    (masks / "a.png").unlink()
    with pytest.raises(UserError, match="non-integer"):
        read_folder(tmp_path, classes_count=2)
    np.save(masks / "a.npy", np.full((8, 10), -1))
    with pytest.raises(UserError, match="negative"):
        read_folder(tmp_path, classes_count=2)
