"""Sliding-window tiling and whole-image scores (numpy only, no framework)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from popnas_seg.imaging.scores import dice_score, miou_score
from popnas_seg.imaging.tiling import (
    Tiling,
    blend_weights,
    evaluate_images,
    predict_image,
    sliding_window_predict,
    tile_starts,
)


def threshold_fn(batch: np.ndarray) -> np.ndarray:
    """A 'network' whose foreground probability is the first channel: exact under any tiling."""
    fg = np.clip(batch[..., :1], 0.0, 1.0)
    return np.concatenate([1.0 - fg, fg], axis=-1)


def test_tile_starts_cover_and_end_flush() -> None:
    assert tile_starts(64, 64, 0.25) == [0]
    assert tile_starts(30, 64, 0.25) == [0]
    starts = tile_starts(200, 64, 0.25)
    assert starts[0] == 0 and starts[-1] == 200 - 64
    assert all(b - a <= 48 for a, b in zip(starts, starts[1:]))


def test_blend_weights_peak_at_centre_and_positive() -> None:
    w = blend_weights((16, 16))
    assert w.max() == pytest.approx(1.0) and w.min() > 0
    assert w[7, 7] > w[0, 0]
    assert np.all(blend_weights((8, 8), "constant") == 1.0)
    with pytest.raises(ValueError):
        blend_weights((8, 8), "cosine")


@pytest.mark.parametrize("shape", [(100, 130, 1), (16, 16, 1), (10, 40, 2), (16, 1, 1)])
def test_pointwise_network_is_reproduced_exactly(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    image = rng.random(shape).astype(np.float32)
    calls: list[tuple[int, int]] = []
    probs = sliding_window_predict(
        threshold_fn, image, (16, 16), overlap=0.5, batch_size=3, progress=lambda d, t: calls.append((d, t))
    )
    assert probs.shape == (*shape[:2], 2)
    np.testing.assert_allclose(probs[..., 1], image[..., 0], atol=1e-5)
    assert calls[-1][0] == calls[-1][1]


def test_wrong_predict_output_is_reported() -> None:
    with pytest.raises(ValueError, match="expected"):
        sliding_window_predict(lambda b: b[:, ::2, ::2], np.zeros((32, 32, 1), np.float32), (16, 16))


def test_tiles_blend_position_dependent_predictions() -> None:
    """A network that sees only its tile (here: the tile mean) gives a smooth blend, never a hard seam."""

    def tile_mean(batch: np.ndarray) -> np.ndarray:
        m = batch.mean(axis=(1, 2, 3), keepdims=True) * np.ones_like(batch[..., :1])
        return np.concatenate([1 - m, m], -1)

    image = np.zeros((16, 48, 1), np.float32)
    image[:, 24:] = 1.0
    probs = sliding_window_predict(tile_mean, image, (16, 16), overlap=0.5)
    row = probs[8, :, 1]
    assert np.all(np.diff(row) >= -1e-6)  # monotone left to right
    assert row[0] == pytest.approx(0.0, abs=1e-6) and row[-1] == pytest.approx(1.0, abs=1e-6)


def test_evaluate_images_matches_scores_over_all_pixels() -> None:
    rng = np.random.default_rng(1)
    images = [rng.random((40, 56, 1)).astype(np.float32), rng.random((24, 24, 1)).astype(np.float32)]
    masks = [(rng.random(im.shape[:2]) > 0.5).astype(np.uint8) for im in images]
    result = evaluate_images(threshold_fn, images, masks, (16, 16), classes_count=2)
    preds = np.concatenate([(im[..., 0] > 0.5).reshape(-1) for im in images])
    trues = np.concatenate([m.reshape(-1) for m in masks])
    assert result["dice"] == pytest.approx(dice_score(preds, trues, 2))
    assert result["miou"] == pytest.approx(miou_score(preds, trues, 2))
    assert result["images"] == 2 and result["pixels"] == 40 * 56 + 24 * 24


# ------------------------------------------------------------------ inference.tile_size (Tiling)


def test_tiling_takes_whole_images_up_to_the_tile_size() -> None:
    crop_tiles = Tiling((32, 32), 0, 4)
    assert crop_tiles.tile_for(256, 256) == (32, 32)  # tile_size 0: the training crop, as before
    whole = Tiling((32, 32), 1024, 4)
    assert whole.tile_for(256, 256) == (256, 256)
    assert whole.tile_for(250, 101) == (252, 104)  # rounded up to what the network takes (2**motifs)
    assert whole.tile_for(2048, 3000) == (1024, 1024)  # larger images: tiles of tile_size
    assert whole.tile_for(20, 12) == (20, 12)
    assert Tiling((32, 32), 100, 8).tile_for(500, 500) == (96, 96)  # tile_size rounded down to a multiple
    assert Tiling((64, 64), 16, 4).tile_for(256, 256) == (64, 64)  # never below the crop
    # batches hold about batch_size crops' worth of pixels, at least one tile
    assert whole.batch_for((32, 32), 8) == 8 and whole.batch_for((64, 64), 8) == 2
    assert whole.batch_for((256, 256), 8) == 1
    # tiles overlap by the same band of pixels (overlap x crop side) whatever their size
    assert Tiling((32, 32), 512, 4, 0.25).overlap_for((512, 512)) == pytest.approx(8 / 512)
    assert crop_tiles.overlap_for((32, 32)) == 0.25 and whole.overlap_for((16, 16)) == 0.25
    assert Tiling.coerce(whole.to_dict()) == whole and Tiling.coerce([32, 32]).tile_for(256, 256) == (32, 32)


def _box_net(k: int = 5) -> Callable[[np.ndarray], np.ndarray]:
    """A fully convolutional 'network': foreground = sigmoid of a k x k local mean (zero 'same' padding),
    so every pixel depends on a neighbourhood, like a real network's receptive field."""

    def fn(batch: np.ndarray) -> np.ndarray:
        x = batch[..., 0]
        pad = k // 2
        padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))
        fg = 1.0 / (1.0 + np.exp(-12.0 * (windows.mean(axis=(-1, -2)) - 0.2)))
        return np.stack([1.0 - fg, fg], axis=-1).astype(np.float32)

    return fn


def test_whole_image_tiles_equal_one_pass_and_match_crop_tiles_in_dice() -> None:
    """Tile-size equivalence: a whole-image tile is exactly one pass over the image (no seams at all), and its
    Dice on the built-in nuclei matches the crop-tiled Dice within noise (0.005)."""
    from popnas_seg.data.synthetic import generate_nuclei

    images, masks = generate_nuclei(3, (128, 128), seed=3)
    net = _box_net()
    whole = Tiling((32, 32), 1024, 4, 0.25)
    one_pass = predict_image(net, images[0], whole, batch_size=8)
    np.testing.assert_allclose(one_pass, net(images[:1])[0], atol=1e-6)
    crop = evaluate_images(net, images, masks, Tiling((32, 32), 0, 4, 0.25), 2)
    full = evaluate_images(net, images, masks, whole, 2)
    assert full["dice"] > 0.85
    assert abs(full["dice"] - crop["dice"]) <= 0.005
    # a tile_size below the image: several overlapping tiles, still within noise of one pass
    tiled = evaluate_images(net, images, masks, Tiling((32, 32), 64, 4, 0.25), 2)
    assert abs(tiled["dice"] - full["dice"]) <= 0.005
