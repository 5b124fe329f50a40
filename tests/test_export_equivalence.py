"""Every operator, decoder mode and the U-Net survive Keras -> ONNX (tf2onnx) -> PyTorch (onnx2torch).

One small network per case (16x16, filters 4, random BatchNorm statistics so BN is not an identity);
the torch module's output must match Keras within 1e-4.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from popnas_seg.analog.export import keras_to_onnx, max_abs_diff, onnx_to_torch  # noqa: E402
from popnas_seg.config import ArchitectureConfig  # noqa: E402
from popnas_seg.models.builder import build_model, build_unet  # noqa: E402
from popnas_seg.search_space.encoding import Block, Cell  # noqa: E402

OPERATORS = [
    "identity",
    "3x3 conv",
    "2x2 conv",
    "3x3:2dr conv",
    "1x3-3x1 conv",
    "3x3 dconv",
    "3x3:2dr dconv",
    "2x2 maxpool",
    "3x3 maxpool",
    "2x2 avgpool",
    "3x3 avgpool",
    "2x2 tconv",
    "3x3 tconv",
    "2r SE",
    "3x3:2z zconv",
]


def _randomise_batch_norm(model: keras.Model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
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


def _assert_converts(model: keras.Model, folder: Path) -> None:
    _randomise_batch_norm(model)
    module = onnx_to_torch(keras_to_onnx(model, folder / f"{model.name}.onnx"))
    x = np.random.default_rng(1).random((2, *model.input.shape[1:]), dtype=np.float32)
    assert max_abs_diff(model, module, x) < 1e-4


@pytest.mark.parametrize("op", OPERATORS)
def test_every_operator_converts(op: str, tmp_path: Path) -> None:
    """Reduction cells reach lookbacks at stride 2 and 4, decoder cells at stride 1 (same and new channels)."""
    arch = ArchitectureConfig(filters=4, motifs=2, normal_cells_per_motif=0, skip_join="add")
    cell = Cell((Block(-2, op, -1, op),))
    _assert_converts(build_model(cell, arch, (16, 16, 1), 2, name="op"), tmp_path)


@pytest.mark.parametrize("mode", ["bilinear", "tconv2", "tconv4"])
def test_every_decoder_mode_converts(mode: str, tmp_path: Path) -> None:
    arch = ArchitectureConfig(
        filters=4,
        motifs=2,
        normal_cells_per_motif=1,
        decoder_upsampling=mode,
        residual_cells=True,
        block_join_operator="avg",
    )
    cell = Cell.from_string("[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-1,3x3 conv);(-2,3x3 conv,-1,identity)]")
    _assert_converts(build_model(cell, arch, (16, 16, 3), 3, name=f"dec_{mode}"), tmp_path)


@pytest.mark.parametrize("mode", ["bilinear", "tconv2", "tconv4"])
def test_unet_converts(mode: str, tmp_path: Path) -> None:
    arch = ArchitectureConfig(motifs=2, decoder_upsampling=mode)
    _assert_converts(build_unet(arch, (16, 16, 1), 2, base_filters=4), tmp_path)
