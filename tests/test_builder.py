"""Keras builder: analytic params == Keras count_params over many encodings; shapes; FLOPs; training."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import itertools  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from popnas_seg.config import ArchitectureConfig  # noqa: E402
from popnas_seg.errors import UserError  # noqa: E402
from popnas_seg.models.builder import build_model, build_unet, plan_network  # noqa: E402
from popnas_seg.models.cost import count_flops, count_params, unet_flops, unet_params  # noqa: E402
from popnas_seg.search_space.encoding import Block, Cell, random_cell  # noqa: E402

ALL_OPS = [
    "identity",
    "3x3 conv",
    "3x3:2dr conv",
    "1x3-3x1 conv",
    "3x3 dconv",
    "3x3:2dr dconv",
    "2x2 maxpool",
    "3x3 avgpool",
    "2x2 avgpool",
    "2x2 tconv",
    "3x3 tconv",
    "2r SE",
    "3x3:2z zconv",
]


def _macro_settings() -> list[tuple[ArchitectureConfig, int]]:
    """A spread of macro settings covering every option value at least twice, with input channels."""
    settings = []
    options = itertools.product([1, 2, 3], [0, 1, 2], ["add", "avg"], [False, True])
    for k, (motifs, normal, join, residual) in enumerate(options):
        arch = ArchitectureConfig(
            filters=2 + k % 3,
            motifs=motifs,
            normal_cells_per_motif=normal,
            block_join_operator=join,
            residual_cells=residual,
            concat_only_unused_blocks=bool(k % 2 == 0),
            decoder_upsampling=("bilinear", "tconv2", "tconv4")[k % 3],
            skip_join=("concat", "add")[(k // 3) % 2],
        )
        settings.append((arch, (1, 3)[k % 2]))
    return settings


SETTINGS = _macro_settings()


def test_settings_cover_every_option() -> None:
    for field, values in {
        "motifs": {1, 2, 3},
        "normal_cells_per_motif": {0, 1, 2},
        "block_join_operator": {"add", "avg"},
        "residual_cells": {False, True},
        "concat_only_unused_blocks": {False, True},
        "decoder_upsampling": {"bilinear", "tconv2", "tconv4"},
        "skip_join": {"concat", "add"},
    }.items():
        assert {getattr(a, field) for a, _ in SETTINGS} == values, field


@pytest.mark.parametrize("index", range(len(SETTINGS)))
def test_analytic_params_equal_keras(index: int) -> None:
    arch, channels = SETTINGS[index]
    rng = np.random.default_rng(index)
    blocks = 1 + index % 3
    # each setting gets a random cell plus operators rotated in so all of them meet every setting family
    cell = random_cell(rng, blocks, ALL_OPS, 2)
    forced = Block(-1, ALL_OPS[index % len(ALL_OPS)], -2, ALL_OPS[(index + 5) % len(ALL_OPS)])
    cell = Cell(cell.blocks[:-1] + (forced,))
    size = 2**arch.motifs * 2
    model = build_model(cell, arch, (size, size, channels), 3)
    assert count_params(cell, arch, channels, 3) == model.count_params(), str(cell)
    assert model.output.shape == (None, size, size, 3)


@pytest.mark.parametrize("op", ALL_OPS)
def test_every_operator_params_in_a_deep_network(op: str) -> None:
    """Each operator in normal, reduction and decoder cells, strides up to 4 (-2 across a reduction)."""
    arch = ArchitectureConfig(filters=3, motifs=2, normal_cells_per_motif=0, residual_cells=True)
    cell = Cell((Block(-2, op, -1, op), Block(0, op, -2, "identity")))
    model = build_model(cell, arch, (8, 8, 2), 2)
    assert count_params(cell, arch, 2, 2) == model.count_params()


def test_unused_cells_are_dropped_by_keras_and_by_the_counter() -> None:
    arch = ArchitectureConfig(filters=4, motifs=1, normal_cells_per_motif=2)
    only_minus_two = Cell((Block(-2, "3x3 conv", -2, "identity"),))
    graph, out = plan_network(only_minus_two, arch, (8, 8, 1), 2)
    assert len(graph.ancestors(out)) < len(graph.nodes)  # a dead chain of cells exists in the plan
    model = build_model(only_minus_two, arch, (8, 8, 1), 2)
    assert count_params(only_minus_two, arch, 1, 2) == model.count_params()


def test_output_is_per_pixel_probabilities_for_rectangular_inputs() -> None:
    arch = ArchitectureConfig(filters=4, motifs=2, normal_cells_per_motif=1)
    cell = Cell.from_string("[(-1,3x3 conv,-2,2x2 maxpool);(0,3x3:2z zconv,-1,2r SE)]")
    model = build_model(cell, arch, (16, 32, 3), 4, name="rect")
    x = np.random.default_rng(0).random((2, 16, 32, 3), dtype=np.float32)
    y = keras.ops.convert_to_numpy(model(x))
    assert y.shape == (2, 16, 32, 4)
    assert model.name == "rect"
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
    assert (y >= 0).all()


def test_empty_cell_is_a_plain_encoder_decoder() -> None:
    arch = ArchitectureConfig(filters=4, motifs=2, normal_cells_per_motif=1)
    model = build_model(Cell(), arch, (16, 16, 1), 2)
    assert count_params(Cell(), arch, 1, 2) == model.count_params()
    strided = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.strides == (2, 2)]
    assert len(strided) == 2  # one 1x1 strided conv per reduction cell
    assert model.output.shape == (None, 16, 16, 2)


def test_flops_by_hand_for_the_empty_cell() -> None:
    f, c, h, w, k = 4, 3, 16, 8, 2
    arch = ArchitectureConfig(filters=f, motifs=1, normal_cells_per_motif=0, decoder_upsampling="bilinear")
    expected = 2 * (
        h * w * 9 * c * f  # stem 3x3
        + (h // 2) * (w // 2) * f * 2 * f  # reduction: 1x1 conv stride 2
        + h * w * 2 * f * f  # decoder upsample: bilinear + 1x1 conv
        + h * w * (f + f) * f  # decoder cell: concat join (2F) -> 1x1 adapter to F
        + h * w * f * k  # head
    )
    assert count_flops(Cell(), arch, (h, w, c), k) == expected


def test_flops_scale_with_the_image_area() -> None:
    arch = ArchitectureConfig(filters=4, motifs=2, decoder_upsampling="tconv4")
    # (no SE here: its excitation runs on the 1x1 pooled tensor, whose cost does not grow with the image)
    cell = Cell.from_string("[(-1,3x3 conv,-2,3x3 dconv);(0,3x3:2z zconv,-1,1x3-3x1 conv)]")
    small = count_flops(cell, arch, (16, 16, 1), 2)
    assert small > 0
    assert count_flops(cell, arch, (32, 32, 1), 2) == 4 * small


def _keras_flops(model: keras.Model) -> int:
    """Independent FLOPs count read off the built Keras layers' shapes (same rules as models/cost.py)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.SeparableConv2D):
            _, h, w, f = layer.output.shape
            c = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += 2 * h * w * (kh * kw * c + c * f)
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, c = layer.input.shape
            kh, kw = layer.kernel_size
            total += 2 * h * w * kh * kw * c * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, f = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2 * h * w * kh * kw * layer.input.shape[-1] * f
    return total


@pytest.mark.parametrize("seed", range(4))
def test_flops_match_a_count_read_off_the_keras_model(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    arch = ArchitectureConfig(
        filters=3,
        motifs=1 + seed % 3,
        normal_cells_per_motif=seed % 2,
        decoder_upsampling=("bilinear", "tconv2", "tconv4")[seed % 3],
        residual_cells=True,
    )
    cell = random_cell(rng, 3, ALL_OPS, 2)
    shape = (2**arch.motifs * 3, 2**arch.motifs * 2, 2)
    model = build_model(cell, arch, shape, 2)
    assert count_flops(cell, arch, shape, 2) == _keras_flops(model), str(cell)


def test_odd_bottleneck_sizes_and_mixed_precision() -> None:
    """24x40 with 3 motifs leaves a 3x5 bottleneck: zoomed convs fall back to zoom 1, pools pad."""
    arch = ArchitectureConfig(filters=2, motifs=3, normal_cells_per_motif=1)
    cell = Cell.from_string("[(-1,3x3:2z zconv,-2,2x2 avgpool);(0,2x2 maxpool,-2,2r SE)]")
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(cell, arch, (24, 40, 1), 2)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert model.output.shape == (None, 24, 40, 2)
    assert model.output.dtype == "float32"  # softmax stays float32 under mixed precision
    assert count_params(cell, arch, 1, 2) == model.count_params()


def test_bad_input_sizes_are_user_errors() -> None:
    arch = ArchitectureConfig(motifs=3)
    with pytest.raises(UserError, match="divisible by 2\\*\\*motifs = 8"):
        build_model(Cell(), arch, (20, 16, 1), 2)
    with pytest.raises(UserError, match="classes_count"):
        build_model(Cell(), arch, (16, 16, 1), 1)


def test_a_lookback_beyond_the_decoder_lookbacks_is_rejected() -> None:
    cell = Cell((Block(-4, "identity", -1, "identity"),))
    with pytest.raises(ValueError, match="lookback -4"):
        build_model(cell, ArchitectureConfig(filters=2, motifs=1), (8, 8, 1), 2)


@pytest.mark.parametrize("mode", ["bilinear", "tconv2", "tconv4"])
def test_unet_params_equal_keras(mode: str) -> None:
    arch = ArchitectureConfig(motifs=2, decoder_upsampling=mode)
    model = build_unet(arch, (16, 16, 3), 2, base_filters=4)
    assert unet_params(arch, 3, 2, 4) == model.count_params()
    assert model.output.shape == (None, 16, 16, 2)
    assert unet_flops(arch, (16, 16, 3), 2, 4) > 0


def test_default_unet_size_is_a_standard_small_unet() -> None:
    """3 levels from 16 filters: the ~0.47M-parameter U-Net (two 3x3 conv-BN-ReLU per level)."""
    arch = ArchitectureConfig(motifs=3, decoder_upsampling="tconv2")
    params = unet_params(arch, 1, 2)
    conv = lambda cin, cout: 9 * cin * cout + 4 * cout  # noqa: E731
    down = conv(1, 16) + conv(16, 16) + conv(16, 32) + conv(32, 32) + conv(32, 64) + conv(64, 64)
    bottom = conv(64, 128) + conv(128, 128)
    up = sum(4 * 2 * f * f + 4 * f + conv(2 * f, f) + conv(f, f) for f in (64, 32, 16))
    assert params == down + bottom + up + 16 * 2 + 2


@pytest.mark.parametrize("op", ALL_OPS)
def test_every_operator_trains_one_step(op: str) -> None:
    arch = ArchitectureConfig(filters=4, motifs=1, normal_cells_per_motif=1)
    cell = Cell((Block(-1, op, -2, op),))
    model = build_model(cell, arch, (16, 16, 1), 2)
    # eager: the same gradients without tracing a graph per operator (keeps the suite fast on 2 cores)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", run_eagerly=True)
    rng = np.random.default_rng(0)
    x = rng.random((2, 16, 16, 1), dtype=np.float32)
    y = (x[..., 0] > 0.5).astype("int32")
    before = [w.copy() for w in model.get_weights()]
    loss = float(np.asarray(model.train_on_batch(x, y)).ravel()[0])
    assert np.isfinite(loss)
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert changed > 0


@pytest.mark.slow
def test_all_operators_in_one_cell_train_in_graph_mode() -> None:
    """The compiled (tf.function) path the trainer uses, every operator at once."""
    arch = ArchitectureConfig(filters=4, motifs=1, normal_cells_per_motif=1)
    blocks = tuple(Block(-1, ALL_OPS[i], -2, ALL_OPS[(i + 1) % len(ALL_OPS)]) for i in range(0, len(ALL_OPS), 2))
    model = build_model(Cell(blocks), arch, (16, 16, 1), 2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((2, 16, 16, 1), dtype=np.float32)
    loss = float(np.asarray(model.train_on_batch(x, (x[..., 0] > 0.5).astype("int32"))).ravel()[0])
    assert np.isfinite(loss)


def test_counting_params_and_flops_imports_neither_keras_nor_tensorflow() -> None:
    """The search scores thousands of candidates by params: a fresh interpreter must count them without TF."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from popnas_seg.config import ArchitectureConfig\n"
        "from popnas_seg.models.cost import count_flops, count_params, unet_params\n"
        "from popnas_seg.search_space.encoding import Cell\n"
        "arch = ArchitectureConfig()\n"
        "cell = Cell.from_string('[(-1,3x3 conv,-2,identity)]')\n"
        "assert count_params(cell, arch, 1, 2) > 0 and count_flops(cell, arch, (64, 64, 1), 2) > 0\n"
        "assert unet_params(arch, 1, 2) > 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'torch'))\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported: {done.stdout.strip()[:300]}"
