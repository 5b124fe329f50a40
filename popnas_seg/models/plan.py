"""The searched network and the U-Net baseline as a `LayerGraph`: plain data, no Keras.

models/builder.py instantiates this description as Keras layers and models/cost.py sums it, so counting
params or FLOPs never imports Keras or TensorFlow (tests/test_builder.py checks both facts). The
macro-architecture is described in models/builder.py's docstring.
"""

from __future__ import annotations

from popnas_seg.config import ArchitectureConfig
from popnas_seg.errors import UserError
from popnas_seg.search_space.encoding import Cell
from popnas_seg.search_space.operators import LayerGraph, Shape, emit_adapter, emit_operator, parse_operator

__all__ = ["plan_network", "plan_unet"]


def _check_input(arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes_count: int) -> Shape:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise UserError(f"input shape must be (height, width, channels) with positive sides, got {input_shape}")
    h, w, c = (int(v) for v in input_shape)
    div = 2**arch.motifs
    if h % div or w % div:
        raise UserError(
            f"input size {h}x{w} must be divisible by 2**motifs = {div}: change dataset.crop "
            f"or architecture_hyperparameters.motifs"
        )
    if classes_count < 2:
        raise UserError(f"classes_count must be at least 2, got {classes_count}")
    return Shape(h, w, c)


def _emit_cell(
    g: LayerGraph, cell: Cell, lookbacks: list[int], arch: ArchitectureConfig, filters: int, target: tuple[int, int]
) -> int:
    """Append one cell; `lookbacks[k]` is lookback -(k+1); returns the cell output node."""

    def stride_of(x: int) -> int:
        s = g.shape(x)
        stride = s.h // target[0]
        if stride < 1 or s.h != stride * target[0] or s.w != stride * target[1]:
            raise ValueError(f"lookback of shape {s} cannot reach target {target}")
        return stride

    def source(value: int, outputs: list[int]) -> int:
        if value >= 0:
            return outputs[value]
        if -value > len(lookbacks):
            raise ValueError(f"cell {cell} reads lookback {value} but only {len(lookbacks)} are available")
        return lookbacks[-value - 1]

    previous = lookbacks[0]
    scope = g.scope
    if not cell.blocks:
        return emit_adapter(g, previous, filters, stride_of(previous))
    outputs: list[int] = []
    for i, block in enumerate(cell.blocks):
        g.scope = f"{scope}_b{i}"
        branches = []
        for value, op in ((block.in1, block.op1), (block.in2, block.op2)):
            x = source(value, outputs)
            branches.append(emit_operator(g, parse_operator(op), x, filters, stride_of(x)))
        outputs.append(g.add(branches) if arch.block_join_operator == "add" else g.average(branches))
    g.scope = scope
    chosen = [outputs[i] for i in cell.unused_blocks()] if arch.concat_only_unused_blocks else outputs
    out = chosen[0] if len(chosen) == 1 else g.concat(chosen)
    if g.shape(out).c != filters:
        out = g.conv_bn_act(out, filters)
    if arch.residual_cells:
        out = g.add([out, emit_adapter(g, previous, filters, stride_of(previous))])
    return out


def _upsample(g: LayerGraph, x: int, filters: int, mode: str, activation: str) -> int:
    if mode == "bilinear":
        return g.conv_bn_act(g.upsample(x, 2), filters, activation=activation)
    if mode == "tconv2":
        y = g.conv_transpose(x, filters, (2, 2), 2, "valid")
    elif mode == "tconv4":
        y = g.conv_transpose(x, filters, (4, 4), 2, "same")
    else:
        raise ValueError(f"unknown decoder_upsampling {mode!r}")
    return g.activation(g.batch_norm(y), activation)


def _head(g: LayerGraph, x: int, classes_count: int) -> int:
    g.scope = "head"
    logits = g.conv(x, classes_count, (1, 1), use_bias=True)
    return g.activation(logits, "softmax", dtype="float32")


def plan_network(
    cell: Cell, arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes_count: int
) -> tuple[LayerGraph, int]:
    """The layer graph of the searched network (see module docstring) and its output node."""
    shape = _check_input(arch, input_shape, classes_count)
    depth = max([2] + [-v for v in cell.used_lookbacks()])
    g = LayerGraph()
    x = g.input(shape)
    g.scope = "stem"
    stem = g.conv_bn_act(x, arch.filters, (3, 3))
    history = [stem] * depth  # history[-1] is lookback -1
    skips: list[int] = []
    for m in range(arch.motifs):
        filters = arch.filters * 2**m
        target = (shape.h // 2**m, shape.w // 2**m)
        for n in range(arch.normal_cells_per_motif):
            g.scope = f"enc{m}_n{n}"
            history.append(_emit_cell(g, cell, history[::-1][:depth], arch, filters, target))
        skips.append(history[-1])
        g.scope = f"enc{m}_red"
        target = (target[0] // 2, target[1] // 2)
        history.append(_emit_cell(g, cell, history[::-1][:depth], arch, filters * 2, target))
    y = history[-1]
    for m in reversed(range(arch.motifs)):
        filters = arch.filters * 2**m
        g.scope = f"dec{m}_up"
        up = _upsample(g, y, filters, arch.decoder_upsampling, "swish")
        skip = skips[m]
        if arch.skip_join == "concat":
            joined = g.concat([up, skip])
        else:
            projected = skip if g.shape(skip).c == filters else g.conv_bn_act(skip, filters)
            joined = g.add([up, projected])
        g.scope = f"dec{m}_cell"
        target = (shape.h // 2**m, shape.w // 2**m)
        y = _emit_cell(g, cell, [joined, skip, up][:depth], arch, filters, target)
    return g, _head(g, y, classes_count)


def plan_unet(
    arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes_count: int, base_filters: int = 16
) -> tuple[LayerGraph, int]:
    """A standard U-Net: per level two 3x3 conv-BN-ReLU, max-pool down, up as the decoder mode, concat skips."""
    shape = _check_input(arch, input_shape, classes_count)
    g = LayerGraph()
    x = g.input(shape)

    def double_conv(t: int, filters: int) -> int:
        t = g.conv_bn_act(t, filters, (3, 3), activation="relu")
        return g.conv_bn_act(t, filters, (3, 3), activation="relu")

    skips = []
    for m in range(arch.motifs):
        g.scope = f"unet_down{m}"
        x = double_conv(x, base_filters * 2**m)
        skips.append(x)
        x = g.max_pool(x, (2, 2), 2)
    g.scope = "unet_bottleneck"
    x = double_conv(x, base_filters * 2**arch.motifs)
    for m in reversed(range(arch.motifs)):
        g.scope = f"unet_up{m}"
        x = _upsample(g, x, base_filters * 2**m, arch.decoder_upsampling, "relu")
        x = double_conv(g.concat([x, skips[m]]), base_filters * 2**m)
    return g, _head(g, x, classes_count)
