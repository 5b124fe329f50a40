"""Keras -> ONNX -> PyTorch: the bridge from the searched (Keras) network to the analog simulator.

The exported graph keeps Keras's NHWC layout: the ONNX model and the torch module it becomes both take
`[N, H, W, C]` float32 input, exactly like the Keras model, so the same numpy arrays feed all three.
The batch, height and width dimensions are dynamic (the networks are fully convolutional): height and width
must be multiples of the network's downsampling factor 2**motifs (`popnas_seg.inference` pads to that).
Whether an export reproduces the Keras network (ONNX Runtime and torch against Keras): analog/equivalence.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.atomic import atomic_write_bytes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def dynamic_size(model: Any) -> Any:
    """A copy of a single-input Keras model with input (None, None, C): any height/width, same weights.

    Every network we build is fully convolutional, so only the Input layer fixes the training crop size.
    The copy is uncompiled (no custom loss/metrics), so its `.keras` file loads with plain
    `keras.saving.load_model`.
    """
    import keras

    if len(model.inputs) != 1:
        raise ValueError(f"expected a single-input model, got {len(model.inputs)} inputs")
    channels = model.inputs[0].shape[-1]
    # From the functional config (layers and wiring only: no compile state, so no custom loss to resolve),
    # with the Input layer's height and width unknown.
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = [None, None, None, channels]
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def save_keras(model: Any, path: str | os.PathLike[str]) -> Path:
    """Save the any-size, uncompiled copy of `model` (`dynamic_size`) as a .keras file, atomically."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.keras")
    dynamic_size(model).save(tmp)
    tmp.replace(path)
    return path


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


@contextlib.contextmanager
def _dynamic_size_tracing() -> Iterator[None]:
    """Let the Keras layers we use trace with unknown height/width while tf2onnx converts a model.

    - Keras 3.15's `ops.image.resize` checks `size[0] <= 0` in Python, which fails on a symbolic size, so
      UpSampling2D(bilinear) calls the same `tf.image.resize(method="bilinear")` directly;
    - a dilated conv/separable conv becomes SpaceToBatchND -> conv -> BatchToSpaceND with size-dependent
      paddings, which tf2onnx then writes as SpaceToDepth (onnx2torch cannot convert it); the graph ops
      Conv2D / DepthwiseConv2dNative take a `dilations` attribute, which ONNX Conv has too. The graph
      is only converted, never run by TensorFlow, so the CPU kernels' lack of dilations does not matter.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import nn as tf_nn
    from keras.src.layers.reshaping import up_sampling2d

    original_resize = up_sampling2d.UpSampling2D._resize_images
    original_conv, original_separable = tf_nn.conv, tf_nn.separable_conv

    def resize(
        self: Any, x: Any, height_factor: int, width_factor: int, data_format: str, interpolation: str = "nearest"
    ) -> Any:
        if interpolation != "bilinear" or data_format != "channels_last":
            return original_resize(self, x, height_factor, width_factor, data_format, interpolation)
        shape = tf.shape(x)
        return tf.image.resize(x, tf.stack([shape[1] * height_factor, shape[2] * width_factor]), method="bilinear")

    def plain(inputs: Any, data_format: Any, dilation_rate: Any) -> bool:
        return len(inputs.shape) != 4 or data_format == "channels_first" or _pair(dilation_rate) == (1, 1)

    def conv(
        inputs: Any,
        kernel: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: Any = None,
        dilation_rate: Any = 1,
    ) -> Any:
        if plain(inputs, data_format, dilation_rate):
            return original_conv(inputs, kernel, strides, padding, data_format, dilation_rate)
        dh, dw = _pair(dilation_rate)
        sh, sw = _pair(strides)
        return tf.raw_ops.Conv2D(
            input=inputs, filter=kernel, strides=[1, sh, sw, 1], padding=padding.upper(), dilations=[1, dh, dw, 1]
        )

    def separable_conv(
        inputs: Any,
        depthwise_kernel: Any,
        pointwise_kernel: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: Any = None,
        dilation_rate: Any = 1,
    ) -> Any:
        if plain(inputs, data_format, dilation_rate):
            return original_separable(
                inputs, depthwise_kernel, pointwise_kernel, strides, padding, data_format, dilation_rate
            )
        dh, dw = _pair(dilation_rate)
        sh, sw = _pair(strides)
        depthwise = tf.raw_ops.DepthwiseConv2dNative(
            input=inputs,
            filter=depthwise_kernel,
            strides=[1, sh, sw, 1],
            padding=padding.upper(),
            dilations=[1, dh, dw, 1],
        )
        return tf.raw_ops.Conv2D(input=depthwise, filter=pointwise_kernel, strides=[1, 1, 1, 1], padding="VALID")

    up_sampling2d.UpSampling2D._resize_images = resize
    tf_nn.conv, tf_nn.separable_conv = conv, separable_conv
    try:
        yield
    finally:
        up_sampling2d.UpSampling2D._resize_images = original_resize
        tf_nn.conv, tf_nn.separable_conv = original_conv, original_separable


def _explicit_same_padding(model_proto: Any) -> None:
    """Replace auto_pad SAME_UPPER/SAME_LOWER (which onnx2torch cannot convert) by explicit pads.

    With unknown height/width tf2onnx writes `auto_pad` for every 'same' conv/pool. For an input side that is
    a multiple of the stride (guaranteed when H and W are multiples of 2**motifs) the total 'same' padding
    is max(effective_kernel - stride, 0), whatever the size, so explicit pads are exact.
    """
    from onnx import helper

    for node in model_proto.graph.node:
        if node.op_type not in {"Conv", "MaxPool", "AveragePool"}:
            continue
        attrs = {a.name: a for a in node.attribute}
        mode = attrs.get("auto_pad")
        if mode is None or mode.s not in (b"SAME_UPPER", b"SAME_LOWER"):
            continue
        kernel = list(helper.get_attribute_value(attrs["kernel_shape"]))
        strides = list(helper.get_attribute_value(attrs["strides"])) if "strides" in attrs else [1] * len(kernel)
        dilations = list(helper.get_attribute_value(attrs["dilations"])) if "dilations" in attrs else [1] * len(kernel)
        begins, ends = [], []
        for k, s, d in zip(kernel, strides, dilations):
            total = max((k - 1) * d + 1 - s, 0)
            small, large = total // 2, total - total // 2
            begins.append(small if mode.s == b"SAME_UPPER" else large)
            ends.append(large if mode.s == b"SAME_UPPER" else small)
        node.attribute.remove(mode)
        node.attribute.append(helper.make_attribute("pads", begins + ends))


# tf2onnx's generated-name suffix: `name__<n>`, n from a process-wide counter
_COUNTER_SUFFIX = re.compile(r"__\d+")


def _canonical_graph(model_proto: Any) -> None:
    """Give the exported graph a node order and internal names that depend only on the network.

    tf2onnx names the nodes and tensors it creates from a process-wide counter and sorts the graph by those
    names, so the same network exported after others came out in another order: onnx2torch then ran two
    parallel branches the other way round and the analog tiles drew their noise in another order, which moved
    a cell's analog Dice by up to 0.005 with the search's history (docs/benchmarks_log.md). Here the nodes are
    re-sorted topologically (Kahn), taking among the ready nodes the least by a key that never reads a counter:
    the node's name without its counter suffix, its op, its attributes and where each input comes from (an
    earlier node's position and output slot, a graph input, or an initializer's name stem and content hash).
    Nodes with equal keys compute the same thing from the same tensors, so either order gives the same file.
    Then every counter-suffixed name is renamed `<stem>__<k>`, k in order of first appearance; the graph's
    input and output names are kept.
    """
    from onnx import numpy_helper

    graph = model_proto.graph
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    initializers = {}
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        digest = hashlib.sha1(array.tobytes()).hexdigest()
        initializers[init.name] = ("init", _COUNTER_SUFFIX.sub("", init.name), str(array.dtype), array.shape, digest)
    position: dict[str, tuple[int, int]] = {}  # tensor -> (emitted position of its producer, output slot)

    def source(name: str) -> tuple:
        if not name:
            return ("none",)
        if name in position:
            return ("node", *position[name])
        return initializers.get(name, ("input", name))

    def key(i: int) -> tuple:
        node = nodes[i]
        attributes = tuple((a.name, a.SerializeToString()) for a in sorted(node.attribute, key=lambda a: a.name))
        return (
            _COUNTER_SUFFIX.sub("", node.name),
            node.domain,
            node.op_type,
            attributes,
            tuple(source(name) for name in node.input),
        )

    waiting = [len({producer[n] for n in node.input if n in producer}) for node in nodes]
    consumers: dict[int, set[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            if name in producer:
                consumers.setdefault(producer[name], set()).add(i)
    ready = [(key(i), i) for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, i = heapq.heappop(ready)
        for slot, out in enumerate(nodes[i].output):
            position[out] = (len(order), slot)
        order.append(i)
        for j in sorted(consumers.get(i, ())):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, (key(j), j))
    if len(order) != len(nodes):
        raise ValueError("the exported ONNX graph has a cycle")

    kept = {v.name for v in graph.input} | {v.name for v in graph.output}
    renamed: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in kept or not _COUNTER_SUFFIX.search(name):
            return name
        if name not in renamed:
            renamed[name] = f"{_COUNTER_SUFFIX.sub('', name)}__{len(renamed) + 1}"
        return renamed[name]

    sorted_nodes = [nodes[i] for i in order]
    for node in sorted_nodes:
        node.name = rename(node.name)
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    # the nodes' inputs named the used initializers; the unused ones get names in the order of their content
    for init in sorted(graph.initializer, key=lambda t: initializers[t.name]):
        init.name = rename(init.name)
    infos = list(graph.value_info)
    for info in infos:
        info.name = rename(info.name)
    infos.sort(key=lambda v: v.name)
    # symbolic dimensions (`unk__<n>`) come from the same counter
    dims: dict[str, str] = {}
    for info in [*graph.input, *graph.output, *infos]:
        for dim in info.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and _COUNTER_SUFFIX.search(dim.dim_param):
                stem = _COUNTER_SUFFIX.sub("", dim.dim_param)
                dim.dim_param = dims.setdefault(dim.dim_param, f"{stem}__{len(dims) + 1}")
    inits = sorted(graph.initializer, key=lambda t: t.name)
    for field, items in ((graph.node, sorted_nodes), (graph.initializer, inits), (graph.value_info, infos)):
        copies = [type(item)() for item in items]
        for copy, item in zip(copies, items):
            copy.CopyFrom(item)
        del field[:]
        field.extend(copies)


def keras_to_onnx(model: Any, path: str | os.PathLike[str], opset: int = 17) -> Path:
    """Export a Keras model to ONNX at `path` (written atomically) with dynamic batch, height and width.

    Uses `tf2onnx.convert.from_keras` on the `dynamic_size` copy with an input signature of
    `(None, None, None, C)` float32. Only single-input models are supported (every network we build has one).
    """
    import tensorflow as tf
    import tf2onnx

    path = Path(path)
    dynamic = dynamic_size(model)
    channels = dynamic.inputs[0].shape[-1]
    signature = (tf.TensorSpec((None, None, None, channels), tf.float32, name="input"),)
    with _dynamic_size_tracing():
        model_proto, _ = tf2onnx.convert.from_keras(dynamic, input_signature=signature, opset=opset)
    _explicit_same_padding(model_proto)
    _canonical_graph(model_proto)
    atomic_write_bytes(path, model_proto.SerializeToString())
    return path


def onnx_to_torch(path: str | os.PathLike[str]) -> Any:
    """Load an ONNX file as a `torch.nn.Module` (an onnx2torch GraphModule) in eval mode; NHWC input."""
    import onnx
    from onnx2torch import convert

    onnx_model = onnx.load(str(path))
    module = convert(onnx_model)
    module.eval()
    return module


def load_torch(onnx_path: str | os.PathLike[str], weights_path: str | os.PathLike[str] | None = None) -> Any:
    """The torch module of an export: onnx2torch's module of `model.onnx`, with `model.pt` weights if given.

    `model.pt` is a plain state dict (tensors only: `torch.load(..., weights_only=True)`), so loading it runs
    no pickled code; the module's classes come from onnx2torch, rebuilt from the ONNX graph.
    """
    import torch

    module = onnx_to_torch(onnx_path)
    if weights_path is not None:
        module.load_state_dict(torch.load(str(weights_path), map_location="cpu", weights_only=True))
    return module


def torch_predict(module: Any, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run a torch module on NHWC numpy input without gradients, in batches; returns numpy float32.

    Batches go to the device the module's first parameter (or buffer) is on: the CPU unless the analog
    worker moved the module to CUDA (rpu.analog_device).
    """
    import itertools

    import torch

    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    device = first.device if first is not None else torch.device("cpu")
    outputs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32))
            batch = batch.to(device)
            out = module(batch)
            if isinstance(out, (list, tuple)):
                out = out[0]
            outputs.append(out.detach().cpu().numpy().astype(np.float32))
    return np.concatenate(outputs, axis=0)


def max_abs_diff(keras_model: Any, torch_module: Any, x: np.ndarray) -> float:
    """Largest absolute difference between the Keras and the converted torch outputs on `x`.

    The equivalence check of the export: a value above ~1e-4 means the conversion changed the network.
    """
    x = np.asarray(x, dtype=np.float32)
    keras_out = np.asarray(keras_model(x, training=False), dtype=np.float32)
    torch_out = torch_predict(torch_module, x)
    if keras_out.shape != torch_out.shape:
        raise ValueError(f"output shapes differ: keras {keras_out.shape} vs torch {torch_out.shape}")
    return float(np.max(np.abs(keras_out - torch_out)))


def torch_save_atomic(torch: Any, obj: Any, path: Path) -> None:
    """torch.save to a temp name in the same folder, then rename (a kill never leaves a torn file)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def save_npz_atomic(path: Path, **arrays: Any) -> None:
    """np.savez_compressed, written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
