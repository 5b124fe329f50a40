"""The worker half of analog/drift.py: hardware-aware training (HWA) and Dice under conductance drift over time.

Runs inside the analog worker process (worker_process.py dispatches the "hwa_and_drift" job here), never in the
parent: it imports torch and AIHWKit. The client is drift.py.

`hwa_and_drift_in_process` does, for one exported network:

(a) converts it with the inference configuration and scores it *before* HWA: Dice at every
    `cfg.eval_times` (seconds after programming) over `cfg.repetitions` independent programmings;
(b) hardware-aware training for `cfg.hwa_epochs`, starting from the converged digital weights (AnalogSGD,
    `hwa_learning_rate` with the `hwa_schedule`, `hwa_rpu_config`'s PCM-like inference tiles plus training
    noise, the same Dice + CE loss as the Keras trainer, BatchNorm frozen), keeping the epoch whose analog
    validation Dice at `t_inference` (over `probe_repetitions` fresh programmings) is best, and scores it
    the same way as (a);
(c) with `hwa_digital_control`, the control: the same epochs, schedule, batches and checkpoint rule with
    plain digital SGD, then converted to the inference tiles and scored the same way. HWA helps only where
    it beats both (a) and (c); (c) alone measures what more SGD on the converged weights does.

Repetition r always uses `torch.manual_seed(seed + r)` before programming, at every time: the same
simulated chip is followed through time (common random numbers), so a curve over time shows drift, not
the luck of the draw at each point. Before/after HWA use the same seeds too.

Checkpoints (written atomically into `out_dir`): `analog_inference.pt` (the converted network before HWA),
`analog_hwa.pt` (after HWA) and `analog_control.pt` (the digital control on inference tiles), each a torch
file {"state_dict", "kind", "analog_config", "tiles"} ("tiles": "torch"; checkpoints without it hold
AIHWKit's compiled tiles and load as such), taken before any programming or drift (drift overwrites tile
weights). checkpoints.py saves, loads and re-scores them.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.analog.checkpoints import CHECKPOINTS, save_checkpoint
from popnas_seg.analog.scoring import drift_curve, on_device
from popnas_seg.config import AnalogConfig


def segmentation_loss_torch(
    probs: Any,
    labels: Any,
    classes_count: int,
    ignore_class: int | None,
    class_weights: list[float] | None,
    dice_weight: float,
    ce_weight: float,
    smooth: float = 1.0,
) -> Any:
    """torch twin of `training.losses.SegmentationLoss` (soft foreground Dice + weighted CE on softmax
    outputs, ignore_class pixels excluded), so HWA fine-tunes with the loss the network was trained with."""
    import torch

    probs = probs.float()
    labels = labels.long()
    if ignore_class is None:
        valid = torch.ones_like(labels, dtype=torch.float32)
        safe = labels
    else:
        valid = (labels != ignore_class).float()
        safe = torch.where(labels == ignore_class, torch.zeros_like(labels), labels)
    onehot = torch.nn.functional.one_hot(safe, classes_count).float()
    valid = valid.unsqueeze(-1)
    total = probs.new_zeros(())
    if ce_weight > 0:
        ce = -(onehot * torch.log(probs.clamp(1e-7, 1.0))).sum(-1, keepdim=True)
        if class_weights is not None:
            w = torch.as_tensor(class_weights, dtype=torch.float32, device=probs.device)
            pixel_w = (onehot * w).sum(-1, keepdim=True) * valid
        else:
            pixel_w = valid
        total = total + ce_weight * (ce * pixel_w).sum() / pixel_w.sum().clamp_min(1e-7)
    if dice_weight > 0:
        fg_true = (onehot * valid)[..., 1:]
        fg_pred = (probs * valid)[..., 1:]
        inter = (fg_true * fg_pred).sum(dim=(0, 1, 2))
        denom = fg_true.sum(dim=(0, 1, 2)) + fg_pred.sum(dim=(0, 1, 2))
        dice = (2.0 * inter + smooth) / (denom + smooth)
        keep = torch.ones(classes_count - 1, device=probs.device)
        if ignore_class is not None and ignore_class > 0:
            keep[ignore_class - 1] = 0.0
        mean_dice = (dice * keep).sum() / keep.sum() if keep.sum() > 0 else dice.new_ones(())
        total = total + dice_weight * (1.0 - mean_dice)
    return total


def freeze_batchnorm(module: Any) -> int:
    """Put every BatchNorm in eval mode (running statistics used, not updated); returns how many.

    Fine-tuning a converged network with BatchNorm in training mode replaces its statistics with those of
    small, noisy mini-batches, which HWA then has to undo: that cost the short HWA of earlier versions
    0.05-0.07 Dice. AIHWKit's own HWA examples fine-tune with the normalisation fixed in the same way.
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    count = 0
    for child in module.modules():
        if isinstance(child, _BatchNorm) or "BatchNorm" in type(child).__name__:
            child.eval()
            count += 1
    return count


def _learning_rate(cfg: AnalogConfig, step: int, total: int) -> float:
    """`hwa_learning_rate` constant, or cosine-decayed from it towards 0 over `total` steps."""
    lr = float(cfg.hwa_learning_rate)
    if cfg.hwa_schedule == "constant" or total <= 1:
        return lr
    return 0.5 * lr * (1.0 + math.cos(math.pi * step / total))


def epoch_batches(
    n: int, batch_size: int, steps_per_epoch: int | None, epochs: int, seed: int
) -> list[list[np.ndarray]]:
    """The batch indices of every fine-tuning epoch: one shuffled pass over `n` images, or with
    `steps_per_epoch` that many batches from a stream of reshuffled passes, so that, as in the digital
    training, a small folder gets the same number of optimiser steps as a large one (48 images at batch 16
    would otherwise give HWA 3 steps per epoch)."""
    rng = np.random.default_rng(seed)
    if not steps_per_epoch:
        out = []
        for _ in range(epochs):
            order = rng.permutation(n)
            out.append([order[i : i + batch_size] for i in range(0, n, batch_size)])
        return out
    stream: list[int] = []
    out = []
    for _ in range(epochs):
        need = steps_per_epoch * min(batch_size, n)
        while len(stream) < need:
            stream.extend(rng.permutation(n).tolist())
        chunk, stream = stream[:need], stream[need:]
        step = min(batch_size, n)
        out.append([np.asarray(chunk[i : i + step]) for i in range(0, need, step)])
    return out


def _fine_tune(
    module: Any,
    optimizer: Any,
    x: np.ndarray,
    y: np.ndarray,
    cfg: AnalogConfig,
    seed: int,
    batch_size: int,
    loss_fn: Any,
    score_fn: Any,
    steps_per_epoch: int | None = None,
) -> dict[str, Any]:
    """`cfg.hwa_epochs` epochs of `epoch_batches` (shuffled by `seed`, the same batches for HWA and its
    control), learning rate by `_learning_rate`, BatchNorm frozen. After each epoch `score_fn(module)` gives the analog
    validation Dice of that epoch's weights (it must score a copy); the best epoch's state_dict is loaded back
    at the end.
    Returns {"loss": per-epoch mean loss, "val_dice": per-epoch score, "best_epoch": 1-based}."""
    import torch

    first = next(iter(module.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    plan = epoch_batches(len(x), batch_size, steps_per_epoch, int(cfg.hwa_epochs), seed)
    total = sum(len(b) for b in plan)
    history: dict[str, Any] = {"loss": [], "val_dice": [], "best_epoch": 0}
    best: tuple[float, Any] | None = None
    step = 0
    for batches in plan:
        module.train()
        freeze_batchnorm(module)
        losses = []
        for idx in batches:
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(cfg, step, total)
            xb = torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32)).to(device)
            yb = torch.from_numpy(np.asarray(y[idx]).astype(np.int64)).to(device)
            optimizer.zero_grad()
            loss = loss_fn(module(xb), yb)
            if not torch.isfinite(loss):
                raise FloatingPointError("fine-tuning loss became NaN/inf; lower analog.hwa_learning_rate")
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
        module.eval()
        history["loss"].append(float(np.mean(losses)) if losses else float("nan"))
        state = copy.deepcopy(module.state_dict())
        score = float(score_fn(module))  # scores a copy: programming and drift must not touch the trained tiles
        history["val_dice"].append(score)
        if best is None or score > best[0]:
            best = (score, state)
            history["best_epoch"] = len(history["val_dice"])
    if best is not None:
        module.load_state_dict(best[1])
    module.eval()
    return history


def hwa_and_drift_in_process(
    onnx_path: str,
    cfg: dict[str, Any],
    classes_count: int,
    ignore_class: int | None,
    out_dir: str,
    seed: int,
    batch_size: int,
    class_weights: list[float] | None,
    dice_weight: float,
    ce_weight: float,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    tile: list[int] | dict[str, Any] | None = None,
    test_sizes: np.ndarray | None = None,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    steps_per_epoch: int | None = None,
) -> dict[str, Any]:
    """The HWA + drift job itself (run by the worker); returns DriftReport fields."""
    import onnx2torch  # noqa: F401  (imported before the clock starts: timings measure work, not imports)
    import torch

    from popnas_seg.analog.export import onnx_to_torch
    from popnas_seg.analog.rpu import analog_coverage, analog_device, hwa_rpu_config, inference_rpu_config, to_analog
    from popnas_seg.analog.scoring import analog_dice, score_repetitions

    analog_cfg = AnalogConfig.model_validate(cfg)
    out = Path(out_dir)
    times = [float(t) for t in analog_cfg.eval_times]
    reps = int(analog_cfg.repetitions)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # Networks are converted (and their coverage measured) on the CPU, then trained and scored on `device`
    # (CUDA where torch sees a GPU: the torch tiles run there, devices.py).
    device = analog_device()

    torch.manual_seed(seed)
    digital = onnx_to_torch(onnx_path)
    digital_dice = analog_dice(
        on_device(copy.deepcopy(digital), device),
        test_x,
        test_y,
        classes_count,
        ignore_class,
        batch_size,
        tile,
        test_sizes,
    )
    before = to_analog(digital, inference_rpu_config(analog_cfg))
    coverage = analog_coverage(before, train_x[:1])
    checkpoints = {"inference": save_checkpoint(before, out / CHECKPOINTS["inference"], "inference", analog_cfg)}
    before = on_device(before, device)
    timings["convert_s"] = time.perf_counter() - t0

    def scored(module: Any, timing: str) -> dict[str, list]:
        """`module`'s drift curve on the test images (same seeds for every variant), timed as `timing`."""
        t = time.perf_counter()
        curve = drift_curve(
            module, test_x, test_y, times, reps, seed, classes_count, ignore_class, batch_size, tile, test_sizes
        )
        timings[timing] = time.perf_counter() - t
        return curve

    before_curve = scored(before, "score_before_s")
    del before

    after_curve = control_curve = None
    history: dict[str, Any] = {}
    control_history: dict[str, Any] = {}
    if analog_cfg.hwa_epochs > 0:
        from aihwkit.optim import AnalogSGD

        if val_x is None or val_y is None or len(val_x) == 0:
            val_x, val_y = train_x, train_y  # no validation split given: select on training images
        t_val = float(analog_cfg.t_inference)
        val_reps = int(analog_cfg.probe_repetitions)
        val_seed = seed + 100_003  # programmings for checkpoint selection are not those of the test curves

        def loss_fn(probs: Any, labels: Any) -> Any:
            return segmentation_loss_torch(
                probs, labels, classes_count, ignore_class, class_weights, dice_weight, ce_weight
            )

        def analog_val(weights: Any, make_config: Any) -> float:
            """Mean analog validation Dice at t_inference over fresh programmings of a copy of `weights`."""
            if make_config is None:
                scorer = copy.deepcopy(weights)
            else:
                scorer = on_device(to_analog(copy.deepcopy(weights).cpu(), make_config(analog_cfg)), device)
            return float(
                np.mean(
                    score_repetitions(
                        scorer, val_x, val_y, t_val, val_reps, val_seed, classes_count, ignore_class, batch_size
                    )
                )
            )

        t = time.perf_counter()
        torch.manual_seed(seed)
        hwa = on_device(to_analog(digital, hwa_rpu_config(analog_cfg)), device)
        optimizer = AnalogSGD(hwa.parameters(), lr=float(analog_cfg.hwa_learning_rate))
        optimizer.regroup_param_groups(hwa)
        history = _fine_tune(
            hwa,
            optimizer,
            train_x,
            train_y,
            analog_cfg,
            seed,
            batch_size,
            loss_fn,
            lambda m: analog_val(m, None),
            steps_per_epoch,
        )
        checkpoints["hwa"] = save_checkpoint(hwa, out / CHECKPOINTS["hwa"], "hwa", analog_cfg)
        timings["hwa_train_s"] = time.perf_counter() - t
        after_curve = scored(hwa, "score_after_s")
        del hwa
        if analog_cfg.hwa_digital_control:
            t = time.perf_counter()
            torch.manual_seed(seed)
            control = on_device(copy.deepcopy(digital), device)
            optimizer = torch.optim.SGD(control.parameters(), lr=float(analog_cfg.hwa_learning_rate))
            control_history = _fine_tune(
                control,
                optimizer,
                train_x,
                train_y,
                analog_cfg,
                seed,
                batch_size,
                loss_fn,
                lambda m: analog_val(m, inference_rpu_config),
                steps_per_epoch,
            )
            control_analog = to_analog(control.cpu(), inference_rpu_config(analog_cfg))
            checkpoints["control"] = save_checkpoint(
                control_analog, out / CHECKPOINTS["control"], "inference", analog_cfg
            )
            timings["control_train_s"] = time.perf_counter() - t
            control_curve = scored(on_device(control_analog, device), "score_control_s")
    timings["total_s"] = time.perf_counter() - t0
    return {
        "times": times,
        "repetitions": reps,
        "before_hwa": before_curve,
        "after_hwa": after_curve,
        "digital_dice": float(digital_dice),
        "coverage": coverage,
        "timings": timings,
        "hwa_epochs": int(analog_cfg.hwa_epochs),
        "hwa_loss": list(history.get("loss", [])),
        "digital_control": control_curve,
        "hwa_val_dice": list(history.get("val_dice", [])),
        "hwa_best_epoch": int(history.get("best_epoch", 0)),
        "control_loss": list(control_history.get("loss", [])),
        "control_val_dice": list(control_history.get("val_dice", [])),
        "control_best_epoch": int(control_history.get("best_epoch", 0)),
        "checkpoints": checkpoints,
    }
