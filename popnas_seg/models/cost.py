"""Exact parameter count and FLOPs of a network from its encoding, without building a Keras model.

Both walk the same `LayerGraph` that models/builder.py instantiates (models/plan.py, no Keras), counting only the
layers that reach the output, so `count_params(...) == build_model(...).count_params()` holds by
construction (tests/test_builder.py checks it against Keras over many encodings and macro settings).

What is counted:
- params: every weight Keras counts, trainable or not: conv kernels and biases, depthwise + pointwise
  kernels, transpose-conv kernels, BatchNorm gamma, beta, moving mean and moving variance (4 per channel).
- FLOPs: 2 x multiply-adds of the conv-like layers (conv, depthwise, pointwise, transpose conv, the 1x1
  convs of squeeze-and-excitation and of the head) for one image. Not counted: biases, BatchNorm,
  activations, pooling, upsampling, elementwise add/average/multiply, concatenation, softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from popnas_seg.config import ArchitectureConfig, SearchSpaceConfig
from popnas_seg.models.plan import plan_network, plan_unet
from popnas_seg.search_space.encoding import Block, Cell

__all__ = ["count_params", "count_flops", "unet_params", "unet_flops", "largest_network_params"]


def _shape3(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    h, w, c = (int(v) for v in shape)
    return h, w, c


def _any_valid_shape(arch: ArchitectureConfig, channels: int) -> tuple[int, int, int]:
    """Params do not depend on the spatial size; the smallest valid one keeps planning cheap."""
    side = 2**arch.motifs
    return side, side, channels


@lru_cache(maxsize=65536)
def _cell_costs(key: str, arch_json: str, input_shape: tuple[int, int, int], classes: int) -> tuple[int, int]:
    arch = ArchitectureConfig.model_validate_json(arch_json)
    graph, out = plan_network(Cell.from_string(key), arch, input_shape, classes)
    return graph.total_params(out), graph.total_flops(out)


def count_params(cell: Cell, arch: ArchitectureConfig, input_channels: int, classes_count: int) -> int:
    """Weights of `build_model(cell, arch, (H, W, input_channels), classes_count)` for any valid H, W."""
    shape = _any_valid_shape(arch, input_channels)
    return _cell_costs(cell.key(), arch.model_dump_json(), shape, classes_count)[0]


def count_flops(cell: Cell, arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes_count: int) -> int:
    """FLOPs (2 x multiply-adds of conv layers) of one forward pass on one `input_shape` image."""
    return _cell_costs(cell.key(), arch.model_dump_json(), _shape3(input_shape), classes_count)[1]


def unet_params(arch: ArchitectureConfig, input_channels: int, classes: int, base: int = 16) -> int:
    """Weights of `build_unet(arch, (H, W, input_channels), classes, base)`."""
    graph, out = plan_unet(arch, _any_valid_shape(arch, input_channels), classes, base)
    return graph.total_params(out)


def unet_flops(arch: ArchitectureConfig, input_shape: tuple[int, int, int], classes: int, base: int = 16) -> int:
    """FLOPs of the U-Net baseline on one `input_shape` image (same counting rules)."""
    graph, out = plan_unet(arch, _shape3(input_shape), classes, base)
    return graph.total_flops(out)


def largest_network_params(
    space: SearchSpaceConfig, arch: ArchitectureConfig, input_shape: Sequence[int], classes_count: int
) -> int:
    """Params of the largest network of the search space: B blocks, every operator the heaviest one.

    The heaviest operator is the one whose single-block cell has the most parameters; the cell shape is the
    largest of a few (see below). A heuristic, not an exhaustive search (the 1.1 margin of the reference covers
    small misses); on the default space with B=2 it equals the true maximum over all 6600 cells (78,554).
    """
    channels = int(input_shape[-1])
    heaviest = max(
        space.operators,
        key=lambda op: count_params(Cell((Block(-1, op, -1, op),)), arch, channels, classes_count),
    )
    lookbacks = [-(i + 1) for i in range(space.lookback_depth)]
    pairs = [(a, b) for ai, a in enumerate(lookbacks) for b in lookbacks[ai:]]
    # a few candidate shapes, the largest wins: all blocks on the same lookback pair or cycling through the
    # pairs (all blocks unused: the widest concat; which lookback costs more depends on the macro-architecture),
    # and a chain of blocks
    wide = [pairs[i % len(pairs)] for i in range(space.blocks)]
    shapes = [tuple(Block(a, heaviest, b, heaviest) for _ in range(space.blocks)) for a, b in pairs]
    shapes.append(tuple(Block(a, heaviest, b, heaviest) for a, b in wide))
    shapes.append(tuple(Block(-1 if i == 0 else i - 1, heaviest, -1, heaviest) for i in range(space.blocks)))
    counts = []
    for blocks in shapes:
        try:
            counts.append(int(count_params(Cell(blocks), arch, channels, classes_count)))
        except ValueError:
            continue
    if not counts:
        raise ValueError("could not build the largest cell of the search space to place the params reference")
    return max(counts)
