"""The analog probe's worker half: Dice of a torch network on PCM-like analog tiles at `t_inference`.

Runs inside the analog worker process (worker.py dispatches the "probe" job here; hwa.py and checkpoints.py score
their drift curves with `drift_curve`), never in the parent: it imports torch and AIHWKit. The client is probe.py.

Per repetition r the network is programmed afresh (`torch.manual_seed(seed + r)`, then
`program_analog_weights()` and `drift_analog_weights(t_inference)`), so the std over repetitions is the
spread over independently programmed chips, not over read noise of one programming (ANALOG_FACTS.md 3).
Dice is the project's one numpy `dice_score`, the same as the digital evaluation, so
`robustness = analog / digital` compares like with like.

Reproducibility: programming and drift noise follow the torch seed. The probe, HWA and the drift scoring run on
AIHWKit's torch tiles (`rpu.inference_rpu_config`), whose forward (ADC/DAC, output) noise follows it too, so every
analog score repeated under one seed is the same (the compiled tiles' forward noise is clock-seeded).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from popnas_seg.config import AnalogConfig


def analog_dice(
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    classes_count: int,
    ignore_class: int | None,
    batch_size: int = 32,
    tile: list[int] | dict[str, Any] | None = None,
    sizes: np.ndarray | None = None,
) -> float:
    """Dice of a (digital or analog) torch module on NHWC arrays, with the shared numpy scorer.

    With `tile` (a `tiling.Tiling.to_dict()`, or a bare [h, w] for crop-sized tiles) and `sizes`
    (`popnas_seg.imaging.tiling.pack_images`), x/y hold whole images of any size, scored by the same tiling
    as the digital whole-image evaluation.
    """
    from popnas_seg.analog.export import torch_predict
    from popnas_seg.imaging.scores import dice_score

    if tile is not None and sizes is not None:
        from popnas_seg.imaging.tiling import evaluate_images, unpack_images

        images, masks = unpack_images(x, y, sizes)
        return float(
            evaluate_images(
                lambda b: torch_predict(module, b, batch_size=len(b)),
                images,
                masks,
                tile,
                classes_count,
                ignore_class,
                batch_size=batch_size,
            )["dice"]
        )
    probs = torch_predict(module, x, batch_size=batch_size)
    return dice_score(np.argmax(probs, axis=-1), y, classes_count, ignore_class)


def score_repetitions(
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    t_inference: float,
    repetitions: int,
    seed: int,
    classes_count: int,
    ignore_class: int | None,
    batch_size: int = 32,
    tile: list[int] | dict[str, Any] | None = None,
    sizes: np.ndarray | None = None,
) -> list[float]:
    """Dice of `repetitions` independent programmings of `module`, each drifted to `t_inference` seconds."""
    import torch

    from popnas_seg.analog.rpu import program_and_drift

    scores = []
    for r in range(repetitions):
        torch.manual_seed(seed + r)
        program_and_drift(module, t_inference)
        scores.append(analog_dice(module, x, y, classes_count, ignore_class, batch_size, tile, sizes))
    return scores


def probe_in_process(
    onnx_path: str,
    cfg: dict[str, Any],
    classes_count: int,
    ignore_class: int | None,
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 32,
    tile: list[int] | None = None,
    sizes: np.ndarray | None = None,
) -> dict[str, Any]:
    """The probe itself (run by the worker): convert, measure coverage, score each programming."""
    import torch

    from popnas_seg.analog.export import onnx_to_torch
    from popnas_seg.analog.rpu import analog_coverage, analog_device, inference_rpu_config, to_analog

    analog_cfg = AnalogConfig.model_validate(cfg)
    torch.manual_seed(seed)
    digital = onnx_to_torch(onnx_path)
    analog = to_analog(digital, inference_rpu_config(analog_cfg))
    coverage = analog_coverage(analog, x[:1] if tile is None else x[:1, : int(tile[0]), : int(tile[1])])
    if analog_device() == "cuda":  # converted and measured on the CPU, scored on the GPU
        digital, analog = digital.cuda(), analog.cuda()
    digital_dice = analog_dice(digital, x, y, classes_count, ignore_class, batch_size, tile, sizes)
    scores = score_repetitions(
        analog,
        x,
        y,
        analog_cfg.t_inference,
        analog_cfg.probe_repetitions,
        seed,
        classes_count,
        ignore_class,
        batch_size,
        tile,
        sizes,
    )
    return {
        "analog_dice_mean": float(np.mean(scores)),
        "analog_dice_std": float(np.std(scores)),
        "dice_per_repetition": [float(s) for s in scores],
        "digital_dice_torch": float(digital_dice),
        "coverage": coverage,
    }


def drift_curve(
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    times: list[float],
    repetitions: int,
    seed: int,
    classes_count: int,
    ignore_class: int | None,
    batch_size: int,
    tile: list[int] | dict[str, Any] | None = None,
    sizes: np.ndarray | None = None,
) -> dict[str, list]:
    """Dice of `module` at each of `times` over `repetitions` programmings (seeds seed..seed+repetitions-1 at
    every time: one simulated chip followed through time): {"times", "mean", "std", "dice"} per time."""
    dice = [
        score_repetitions(module, x, y, t, repetitions, seed, classes_count, ignore_class, batch_size, tile, sizes)
        for t in times
    ]
    return {
        "times": [float(t) for t in times],
        "mean": [float(np.mean(d)) for d in dice],
        "std": [float(np.std(d)) for d in dice],
        "dice": [[float(v) for v in d] for d in dice],
    }


def on_device(module: Any, device: str) -> Any:
    """`module` moved to `device` ("cpu": left as it is, so the CPU path is exactly the tested one)."""
    return module if device == "cpu" else module.to(device)
