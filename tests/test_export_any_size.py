"""Exports take any height/width: Keras (.keras), ONNX (Runtime and onnx2torch) and model.pt agree at two sizes.

The networks are trained at one crop size; `dynamic_size` / `keras_to_onnx` drop that size from the input,
so whole images (sides multiples of 2**motifs) run in one call. Covers the default operators (dilated
conv, factorised conv, max pool), a dilated separable conv, SE, the bilinear decoder and the U-Net.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from popnas_seg.analog.equivalence import onnxruntime_predict  # noqa: E402
from popnas_seg.analog.export import (  # noqa: E402
    keras_to_onnx,
    load_torch,
    save_keras,
    torch_predict,
    torch_save_atomic,
)
from popnas_seg.config import ArchitectureConfig  # noqa: E402
from popnas_seg.models.builder import build_model, build_unet  # noqa: E402
from popnas_seg.search_space.encoding import Cell  # noqa: E402

SIZES = [(32, 32), (48, 80)]  # neither is the 16x16 build size


def _randomise_batch_norm(model: keras.Model) -> None:
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, c),
                    rng.uniform(-0.5, 0.5, c),
                    rng.uniform(-0.5, 0.5, c),
                    rng.uniform(0.5, 1.5, c),
                ]
            )


def _check_any_size(model: keras.Model, folder: Path) -> None:
    _randomise_batch_norm(model)
    channels = model.input.shape[-1]
    keras_path = save_keras(model, folder / "model.keras")
    onnx_path = keras_to_onnx(model, folder / "model.onnx")
    torch_save_atomic(torch, load_torch(onnx_path).state_dict(), folder / "model.pt")
    loaded = keras.saving.load_model(keras_path)  # plain load: no custom objects, no compile=False
    module = load_torch(onnx_path, folder / "model.pt")
    assert tuple(loaded.input.shape[1:3]) == (None, None)
    rng = np.random.default_rng(1)
    for h, w in SIZES:
        x = rng.random((2, h, w, channels), dtype=np.float32)
        expected = np.asarray(loaded(x), np.float32)
        assert expected.shape == (2, h, w, model.output.shape[-1])
        ort, _ = onnxruntime_predict(onnx_path, x)
        assert np.max(np.abs(ort - expected)) < 1e-4
        assert np.max(np.abs(torch_predict(module, x) - expected)) < 1e-4
    # the any-size copy is the same network: at the build size it equals the original
    x = rng.random((2, 16, 16, channels), dtype=np.float32)
    assert np.max(np.abs(np.asarray(loaded(x)) - np.asarray(model(x)))) < 1e-5


def test_default_operators_bilinear_decoder_any_size(tmp_path: Path) -> None:
    arch = ArchitectureConfig(filters=4, motifs=2, normal_cells_per_motif=1, decoder_upsampling="bilinear")
    cell = Cell.from_string("[(-1,3x3:2dr conv,-2,1x5-5x1 conv);(0,2x2 maxpool,-1,identity)]")
    _check_any_size(build_model(cell, arch, (16, 16, 1), 2), tmp_path)


def test_separable_se_tconv_decoder_any_size(tmp_path: Path) -> None:
    arch = ArchitectureConfig(filters=4, motifs=2, normal_cells_per_motif=0, decoder_upsampling="tconv4")
    cell = Cell.from_string("[(-1,3x3:2dr dconv,-2,2r SE);(0,2x2 tconv,-1,3x3 avgpool)]")
    _check_any_size(build_model(cell, arch, (16, 16, 3), 3), tmp_path)


@pytest.mark.parametrize("mode", ["bilinear", "tconv2"])
def test_unet_any_size(mode: str, tmp_path: Path) -> None:
    _check_any_size(build_unet(ArchitectureConfig(motifs=2, decoder_upsampling=mode), (16, 16, 1), 2, 4), tmp_path)
