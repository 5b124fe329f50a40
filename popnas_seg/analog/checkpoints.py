"""The analog checkpoints HWA + drift scoring saves, and the worker jobs that use them again.

Runs inside the analog worker process (worker_process.py dispatches the "score_checkpoint" and "analog_samples"
jobs here), never in the parent: it imports torch and AIHWKit. hwa.py writes the checkpoints (`save_checkpoint`,
named by `CHECKPOINTS`); `score_checkpoint_in_process` re-scores one without retraining; `load_checkpoint`
rebuilds one (also for analog `predict`, inference/analog.py); `analog_samples_in_process` draws the label
maps of the finalists' sample figure.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.analog.scoring import drift_curve, on_device
from popnas_seg.atomic import atomic_write_bytes
from popnas_seg.config import AnalogConfig

CHECKPOINTS = {"inference": "analog_inference.pt", "hwa": "analog_hwa.pt", "control": "analog_control.pt"}


def save_checkpoint(module: Any, path: Path, kind: str, cfg: AnalogConfig) -> str:
    """Write `module`'s analog state atomically to `path`, with what `load_checkpoint` needs to rebuild it."""
    import torch

    buf = io.BytesIO()
    torch.save(
        {
            "state_dict": module.state_dict(),
            "kind": kind,
            "analog_config": cfg.model_dump(mode="json"),
            "tiles": "torch",
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())
    return str(path)


def _checkpoint_tiles(checkpoint: str) -> str:
    """The tile class a checkpoint holds ("compiled" for those saved before the move to torch tiles)."""
    import torch

    return str(torch.load(checkpoint, map_location="cpu", weights_only=False).get("tiles", "compiled"))


def load_checkpoint(onnx_path: str, checkpoint: str) -> tuple[Any, AnalogConfig]:
    """Rebuild the analog network saved by `hwa_and_drift` (ONNX graph + analog state_dict), in eval mode."""
    import torch

    from popnas_seg.analog.export import onnx_to_torch
    from popnas_seg.analog.rpu import hwa_rpu_config, inference_rpu_config, to_analog

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    # checkpoints from before `weight_scaling` existed were made with unmapped tiles
    analog_cfg = AnalogConfig.model_validate({"weight_scaling": "none", **saved["analog_config"]})
    make = hwa_rpu_config if saved["kind"] == "hwa" else inference_rpu_config
    # checkpoints from before the move to torch tiles hold compiled tiles' state
    module = to_analog(onnx_to_torch(onnx_path), make(analog_cfg, saved.get("tiles", "compiled")))
    module.load_state_dict(saved["state_dict"])
    module.eval()
    return module, analog_cfg


def score_checkpoint_in_process(
    onnx_path: str,
    checkpoint: str,
    classes_count: int,
    ignore_class: int | None,
    seed: int,
    eval_times: list[float] | None,
    repetitions: int | None,
    batch_size: int,
    test_x: np.ndarray,
    test_y: np.ndarray,
    tile: list[int] | dict[str, Any] | None = None,
    test_sizes: np.ndarray | None = None,
) -> dict[str, Any]:
    from popnas_seg.analog.rpu import analog_device

    module, analog_cfg = load_checkpoint(onnx_path, checkpoint)
    module = on_device(module, analog_device(_checkpoint_tiles(checkpoint)))
    times = eval_times if eval_times is not None else list(analog_cfg.eval_times)
    reps = repetitions if repetitions is not None else int(analog_cfg.repetitions)
    return drift_curve(
        module, test_x, test_y, times, reps, seed, classes_count, ignore_class, batch_size, tile, test_sizes
    )


def analog_samples_in_process(
    onnx_path: str, checkpoint: str, out: str, t_inference: float, seed: int, images: np.ndarray
) -> dict[str, Any]:
    """Worker job: label maps of `images` from a saved analog checkpoint programmed and drifted to `t_inference`.

    Seeded like repetition 0 of the drift curves, so the figure shows the first simulated chip.
    """
    import torch

    from popnas_seg.analog.export import save_npz_atomic, torch_predict
    from popnas_seg.analog.rpu import program_and_drift

    module, _ = load_checkpoint(onnx_path, checkpoint)
    torch.manual_seed(int(seed))
    program_and_drift(module, float(t_inference))
    predictions = np.argmax(torch_predict(module, images), axis=-1).astype(np.int32)
    save_npz_atomic(Path(out), predictions=predictions)
    return {"path": out, "images": int(len(images))}
