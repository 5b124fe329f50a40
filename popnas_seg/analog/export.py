"""Keras -> ONNX -> PyTorch: the bridge from the searched (Keras) network to the analog simulator.

The exported graph keeps Keras's NHWC layout: the ONNX model and the torch module it becomes both take
`[N, H, W, C]` float32 input, exactly like the Keras model, so the same numpy arrays feed all three.
The batch dimension is dynamic so the probe can run any number of images.
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.atomic import atomic_write_bytes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Keras and the converted torch module must agree this closely (probabilities, and Dice of the argmax).
EQUIVALENCE_MAX_ABS_DIFF = 1e-4
EQUIVALENCE_DICE_TOL = 1e-3


def keras_to_onnx(model: Any, path: str | os.PathLike[str], opset: int = 17) -> Path:
    """Export a Keras model to ONNX at `path` (written atomically) and return the path.

    Uses `tf2onnx.convert.from_keras` with an input signature of `(None, H, W, C)` float32, which makes the
    batch dimension dynamic. Only single-input models are supported (every network we build has one input).
    """
    import tensorflow as tf
    import tf2onnx

    path = Path(path)
    inputs = model.inputs
    if len(inputs) != 1:
        raise ValueError(f"keras_to_onnx expects a single-input model, got {len(inputs)} inputs")
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"keras_to_onnx needs a fixed spatial input shape, got {shape}")
    signature = (tf.TensorSpec((None, *shape), tf.float32, name="input"),)
    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
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


def torch_predict(module: Any, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run a torch module on NHWC numpy input without gradients, in batches; returns numpy float32."""
    import torch

    outputs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32))
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


def onnxruntime_predict(onnx_path: Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    """ONNX Runtime (CPU) outputs on `x`, fed in odd-sized batches to prove the batch dimension is dynamic.

    Returns the outputs and the mean latency per image in ms.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = []
    t0 = time.perf_counter()
    for batch in (x[:1], x[1:4], x[4:]):  # sizes 1, 3 and the rest
        if len(batch):
            outputs.append(session.run(None, {name: np.ascontiguousarray(batch, np.float32)})[0])
    ms = (time.perf_counter() - t0) * 1000.0 / max(len(x), 1)
    return np.concatenate(outputs, axis=0).astype(np.float32), ms
