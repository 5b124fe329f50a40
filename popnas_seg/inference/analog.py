"""Worker side of analog `predict`: runs inside `python -m popnas_seg.analog.worker_process` (no TensorFlow here).

The saved analog network (hardware-aware checkpoint if any) is programmed once with `seed`, drifted to
`t_inference` seconds, and every image is segmented by the same tiling as the digital path (`tiling.Tiling`);
probabilities come back through an .npz file (whole images are too large for the JSON reply).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def analog_predict_in_process(
    onnx_path: str,
    checkpoint: str,
    t_inference: float,
    seed: int,
    tile: list[int] | dict[str, Any],
    overlap: float,
    batch_size: int,
    out: str,
    x: np.ndarray,
    sizes: np.ndarray,
) -> dict[str, Any]:
    """Probabilities [N, Hmax, Wmax, K] of packed images (`tiling.pack_images`) from one drifted chip."""
    import torch

    from popnas_seg.analog.checkpoints import load_checkpoint
    from popnas_seg.analog.export import save_npz_atomic, torch_predict
    from popnas_seg.analog.rpu import program_and_drift
    from popnas_seg.imaging.tiling import Tiling, predict_image

    module, _ = load_checkpoint(onnx_path, checkpoint)
    torch.manual_seed(int(seed))
    program_and_drift(module, float(t_inference))
    base = Tiling.coerce(tile)  # a bare [h, w] is crop-sized tiles (the job layout before inference.tile_size)
    tiling = Tiling(base.crop, base.tile_size, base.divisor, float(overlap))
    probs: np.ndarray | None = None
    for i, (h, w) in enumerate(sizes):
        p = predict_image(
            lambda b: torch_predict(module, b, batch_size=len(b)), x[i, : int(h), : int(w)], tiling, int(batch_size)
        )
        if probs is None:
            probs = np.zeros((len(sizes), x.shape[1], x.shape[2], p.shape[-1]), np.float32)
        probs[i, : int(h), : int(w)] = p
    save_npz_atomic(Path(out), probs=probs if probs is not None else np.zeros((0, 1, 1, 1), np.float32))
    return {"path": out, "images": int(len(sizes))}
