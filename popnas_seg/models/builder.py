"""Encoder-decoder segmentation networks around a searched cell, and the U-Net baseline.

`plan_network` describes the whole network as a `LayerGraph` (plain data, no Keras); `build_model` turns
that description into Keras layers one node at a time, and models/cost.py sums the same description. So
the analytic parameter count equals Keras's `count_params()` by construction, and the tests check it.

Macro-architecture (F = arch.filters, M = arch.motifs, N = arch.normal_cells_per_motif):
- stem: 3x3 conv -> BN -> swish to F channels at full resolution;
- encoder stage m (0..M-1): N normal cells (F*2^m filters), then a reduction cell (stride 2, F*2^(m+1));
  the lookbacks -1, -2, -3 are the previous cells, all the stem at the start (as POPNAS);
- decoder stage m (M-1..0): upsample x2 to F*2^m channels ("bilinear": UpSampling2D bilinear + 1x1
  conv-BN-swish; "tconv2": Conv2DTranspose k2 s2 'valid'; "tconv4": k4 s2 'same'; both transpose convs
  without bias, then BN -> swish), join the encoder skip of that resolution (the last encoder tensor at
  it: concat, or add after a 1x1 projection when channels differ), then one cell with F*2^m filters whose
  lookbacks are -1 = the join, -2 = the skip, -3 = the upsampled tensor;
- head: 1x1 conv (bias) to `classes_count`, softmax in float32 (also under mixed precision).

Inside a cell (filters f, target resolution r): each block applies its two operators to its inputs
(lookbacks arrive at their own resolution and channels: operators adapt, see search_space/operators.py)
and joins them with add or average. The cell output concatenates the unused blocks (or all blocks with
`concat_only_unused_blocks: false`) and projects them with 1x1 conv-BN-swish to f; a single block is
already f channels and is used as is. `residual_cells` adds the -1 lookback (adapted like `identity`).
The empty cell `[]` outputs its -1 lookback adapted like `identity` (a 1x1 strided conv in a reduction
cell): a plain encoder-decoder, the reference "empty cell" network.
Only layers that reach the output exist in the model (e.g. a cell that only reads -2 leaves every other
cell of a chain unused: Keras drops them, and so does the counter).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from popnas_seg.config import ArchitectureConfig  # noqa: E402
from popnas_seg.errors import UserError  # noqa: E402
from popnas_seg.search_space.encoding import Cell  # noqa: E402
from popnas_seg.search_space.operators import (  # noqa: E402
    LayerGraph,
    LayerNode,
    Shape,
    emit_adapter,
    emit_operator,
    parse_operator,
)

__all__ = ["build_model", "build_unet", "plan_network", "plan_unet", "to_keras"]


def _check_input(arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes_count: int) -> Shape:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise UserError(f"input shape must be (height, width, channels) with positive sides, got {input_shape}")
    h, w, c = (int(v) for v in input_shape)
    div = 2 ** arch.motifs
    if h % div or w % div:
        raise UserError(f"input size {h}x{w} must be divisible by 2**motifs = {div}: change dataset.crop "
                        f"or architecture_hyperparameters.motifs")
    if classes_count < 2:
        raise UserError(f"classes_count must be at least 2, got {classes_count}")
    return Shape(h, w, c)


def _emit_cell(g: LayerGraph, cell: Cell, lookbacks: list[int], arch: ArchitectureConfig, filters: int,
               target: tuple[int, int]) -> int:
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


def plan_network(cell: Cell, arch: ArchitectureConfig, input_shape: tuple[int, int, int],
                 classes_count: int) -> tuple[LayerGraph, int]:
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
        filters = arch.filters * 2 ** m
        target = (shape.h // 2 ** m, shape.w // 2 ** m)
        for n in range(arch.normal_cells_per_motif):
            g.scope = f"enc{m}_n{n}"
            history.append(_emit_cell(g, cell, history[::-1][:depth], arch, filters, target))
        skips.append(history[-1])
        g.scope = f"enc{m}_red"
        target = (target[0] // 2, target[1] // 2)
        history.append(_emit_cell(g, cell, history[::-1][:depth], arch, filters * 2, target))
    y = history[-1]
    for m in reversed(range(arch.motifs)):
        filters = arch.filters * 2 ** m
        g.scope = f"dec{m}_up"
        up = _upsample(g, y, filters, arch.decoder_upsampling, "swish")
        skip = skips[m]
        if arch.skip_join == "concat":
            joined = g.concat([up, skip])
        else:
            projected = skip if g.shape(skip).c == filters else g.conv_bn_act(skip, filters)
            joined = g.add([up, projected])
        g.scope = f"dec{m}_cell"
        target = (shape.h // 2 ** m, shape.w // 2 ** m)
        y = _emit_cell(g, cell, [joined, skip, up][:depth], arch, filters, target)
    return g, _head(g, y, classes_count)


def plan_unet(arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes_count: int,
              base_filters: int = 16) -> tuple[LayerGraph, int]:
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
        x = double_conv(x, base_filters * 2 ** m)
        skips.append(x)
        x = g.max_pool(x, (2, 2), 2)
    g.scope = "unet_bottleneck"
    x = double_conv(x, base_filters * 2 ** arch.motifs)
    for m in reversed(range(arch.motifs)):
        g.scope = f"unet_up{m}"
        x = _upsample(g, x, base_filters * 2 ** m, arch.decoder_upsampling, "relu")
        x = double_conv(g.concat([x, skips[m]]), base_filters * 2 ** m)
    return g, _head(g, x, classes_count)


def _keras_layer(node: LayerNode) -> keras.layers.Layer:
    a = node.attrs
    name = node.name
    kind = node.kind
    if kind == "conv":
        return keras.layers.Conv2D(a["filters"], a["kernel"], strides=a["strides"], padding="same",
                                   dilation_rate=a["dilation"], use_bias=a["use_bias"], name=name)
    if kind == "separable_conv":
        return keras.layers.SeparableConv2D(a["filters"], a["kernel"], strides=a["strides"], padding="same",
                                            dilation_rate=a["dilation"], use_bias=False, name=name)
    if kind == "conv_transpose":
        return keras.layers.Conv2DTranspose(a["filters"], a["kernel"], strides=a["strides"],
                                            padding=a["padding"], use_bias=a["use_bias"], name=name)
    if kind == "batch_norm":
        return keras.layers.BatchNormalization(name=name)
    if kind == "activation":
        return keras.layers.Activation(a["function"], dtype=a["dtype"], name=name)
    if kind == "max_pool":
        return keras.layers.MaxPooling2D(a["pool"], strides=a["strides"], padding="same", name=name)
    if kind == "avg_pool":
        return keras.layers.AveragePooling2D(a["pool"], strides=a["strides"], padding="valid", name=name)
    if kind == "zero_pad":
        return keras.layers.ZeroPadding2D(a["padding"], name=name)
    if kind == "crop":
        return keras.layers.Cropping2D(a["cropping"], name=name)
    if kind == "global_avg_pool":
        return keras.layers.GlobalAveragePooling2D(keepdims=True, name=name)
    if kind == "upsample":
        return keras.layers.UpSampling2D(a["factor"], interpolation="bilinear", name=name)
    if kind == "add":
        return keras.layers.Add(name=name)
    if kind == "average":
        return keras.layers.Average(name=name)
    if kind == "multiply":
        return keras.layers.Multiply(name=name)
    if kind == "concat":
        return keras.layers.Concatenate(axis=-1, name=name)
    raise ValueError(f"no Keras layer for node kind {kind!r}")


def to_keras(graph: LayerGraph, output: int, name: str = "net") -> keras.Model:
    """Instantiate the nodes that reach `output` as a functional Keras model."""
    tensors: dict[int, object] = {}
    inputs = None
    for i in graph.ancestors(output):
        node = graph.nodes[i]
        if node.kind == "input":
            inputs = keras.Input(shape=tuple(node.shape), name=f"{name}_input")
            tensors[i] = inputs
            continue
        args = [tensors[j] for j in node.inputs]
        layer = _keras_layer(node)
        tensors[i] = layer(args if len(args) > 1 else args[0])
    if inputs is None:
        raise ValueError("the graph output does not depend on an input")
    return keras.Model(inputs, tensors[output], name=name)


def build_model(cell: Cell, arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes_count: int,
                name: str = "net") -> keras.Model:
    """The searched encoder-decoder for `cell`: [B, H, W, C] images -> [B, H, W, classes] probabilities."""
    graph, out = plan_network(cell, arch, input_shape, classes_count)
    return to_keras(graph, out, name)


def build_unet(arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes_count: int,
               base_filters: int = 16) -> keras.Model:
    """The hand-written U-Net baseline every comparison uses."""
    graph, out = plan_unet(arch, input_shape, classes_count, base_filters)
    return to_keras(graph, out, "unet")
