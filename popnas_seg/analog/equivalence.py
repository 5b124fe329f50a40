"""The export's equivalence check: after keras -> ONNX -> torch (analog/export.py), do the ONNX model (in ONNX
Runtime) and the torch module reproduce the Keras network on held-out crops and on one larger image?

The finalists stage exports every finalist with `export_checked` and journals its `ExportCheck`
(`finalist_exported`); an export outside the tolerances below is logged as an error, since its analog scores
would not describe the Keras network.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.analog.export import (
    dynamic_size,
    keras_to_onnx,
    max_abs_diff,
    onnx_to_torch,
    torch_predict,
    torch_save_atomic,
)

# Keras and the converted torch module must agree this closely (probabilities, and Dice of the argmax).
EQUIVALENCE_MAX_ABS_DIFF = 1e-4
EQUIVALENCE_DICE_TOL = 1e-3


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


@dataclass(frozen=True)
class ExportCheck:
    """How closely an export (ONNX, torch) reproduces the Keras network on held-out images.

    Max absolute differences of the probabilities (torch and ONNX Runtime against Keras, over the crops and
    one larger whole image), foreground Dice of Keras and torch on the crops, ONNX Runtime latency per image,
    and the Keras probabilities (the digital predictions of the sample figure)."""

    torch_max_abs_diff: float
    onnxruntime_max_abs_diff: float
    keras_dice: float
    torch_dice: float
    onnxruntime_latency_ms: float
    keras_probs: np.ndarray

    @property
    def equivalent(self) -> bool:
        """Within EQUIVALENCE_MAX_ABS_DIFF and EQUIVALENCE_DICE_TOL (no foreground anywhere: both Dice NaN)."""
        dice_close = abs(self.keras_dice - self.torch_dice) <= EQUIVALENCE_DICE_TOL or (
            math.isnan(self.keras_dice) and math.isnan(self.torch_dice)
        )
        return (
            self.torch_max_abs_diff <= EQUIVALENCE_MAX_ABS_DIFF
            and self.onnxruntime_max_abs_diff <= EQUIVALENCE_MAX_ABS_DIFF
            and dice_close
        )


def export_checked(
    model: Any,
    out_dir: Path,
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    ignore_class: int | None,
    batch_size: int,
    whole: np.ndarray | None = None,
) -> ExportCheck:
    """Export `model` as out_dir/model.onnx (dynamic batch, height, width) and out_dir/model.pt (the onnx2torch
    module's state dict: tensors only, the module is rebuilt from model.onnx), then check Keras vs torch vs
    ONNX Runtime on the crops `x` (labels `y`) and, when given, on `whole`: one image of a second, larger size
    (the exports take any size)."""
    import torch

    from popnas_seg.imaging.scores import dice_score

    onnx_path = keras_to_onnx(model, out_dir / "model.onnx")
    module = onnx_to_torch(onnx_path)
    torch_save_atomic(torch, module.state_dict(), out_dir / "model.pt")

    keras_probs = np.asarray(model.predict(x, verbose=0, batch_size=batch_size), np.float32)
    torch_probs = torch_predict(module, x, batch_size=batch_size)
    diff = max_abs_diff(model, module, x[:batch_size])
    keras_dice = dice_score(np.argmax(keras_probs, -1), y, classes, ignore_class)
    torch_dice = dice_score(np.argmax(torch_probs, -1), y, classes, ignore_class)
    ort_probs, ort_ms = onnxruntime_predict(onnx_path, x)
    ort_diff = float(np.max(np.abs(ort_probs - keras_probs)))
    if whole is not None:
        whole_keras = np.asarray(dynamic_size(model)(whole, training=False), np.float32)
        diff = max(diff, float(np.max(np.abs(torch_predict(module, whole) - whole_keras))))
        ort_diff = max(ort_diff, float(np.max(np.abs(onnxruntime_predict(onnx_path, whole)[0] - whole_keras))))
    return ExportCheck(diff, ort_diff, float(keras_dice), float(torch_dice), ort_ms, keras_probs)
