"""Sliding-window tiling and whole-image scores (numpy only, no framework)."""
from __future__ import annotations

import numpy as np
import pytest

from popnas_seg.inference.tiling import blend_weights, evaluate_images, sliding_window_predict, tile_starts
from popnas_seg.training.scores import dice_score, miou_score


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
    probs = sliding_window_predict(threshold_fn, image, (16, 16), overlap=0.5, batch_size=3,
                                   progress=lambda d, t: calls.append((d, t)))
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
