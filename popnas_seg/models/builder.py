"""Encoder-decoder segmentation networks around a searched cell, and the U-Net baseline.

`plan_network` (models/plan.py) describes the whole network as a `LayerGraph` (plain data, no Keras);
`build_model` turns that description into Keras layers one node at a time, and models/cost.py sums the
same description. So the analytic parameter count equals Keras's `count_params()` by construction, and
the tests check it.

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
from popnas_seg.models.plan import plan_network, plan_unet  # noqa: E402
from popnas_seg.search_space.encoding import Cell  # noqa: E402
from popnas_seg.search_space.operators import LayerGraph, LayerNode  # noqa: E402

__all__ = ["build_model", "build_unet", "plan_network", "plan_unet", "to_keras"]


def _keras_layer(node: LayerNode) -> keras.layers.Layer:
    a = node.attrs
    name = node.name
    kind = node.kind
    if kind == "conv":
        return keras.layers.Conv2D(
            a["filters"],
            a["kernel"],
            strides=a["strides"],
            padding="same",
            dilation_rate=a["dilation"],
            use_bias=a["use_bias"],
            name=name,
        )
    if kind == "separable_conv":
        return keras.layers.SeparableConv2D(
            a["filters"],
            a["kernel"],
            strides=a["strides"],
            padding="same",
            dilation_rate=a["dilation"],
            use_bias=False,
            name=name,
        )
    if kind == "conv_transpose":
        return keras.layers.Conv2DTranspose(
            a["filters"], a["kernel"], strides=a["strides"], padding=a["padding"], use_bias=a["use_bias"], name=name
        )
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


def build_model(
    cell: Cell, arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes_count: int, name: str = "net"
) -> keras.Model:
    """The searched encoder-decoder for `cell`: [B, H, W, C] images -> [B, H, W, classes] probabilities."""
    graph, out = plan_network(cell, arch, input_shape, classes_count)
    return to_keras(graph, out, name)


def build_unet(
    arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes_count: int, base_filters: int = 16
) -> keras.Model:
    """The hand-written U-Net baseline every comparison uses."""
    graph, out = plan_unet(arch, input_shape, classes_count, base_filters)
    return to_keras(graph, out, "unet")
