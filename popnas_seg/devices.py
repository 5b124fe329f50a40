"""Which device runs which part of a run, decided once and said at start.

Two frameworks, two answers: Keras trains on TensorFlow, which uses a GPU only in its CUDA build (installed
by `GPU=1 bash scripts/install.sh`; the default `tensorflow-cpu` never does); the analog simulation runs
on AIHWKit's torch tiles in the analog worker, plain PyTorch, which uses CUDA wherever torch sees a GPU (the
pinned torch 2.10 wheel is a CUDA build). The pure `device_plan` turns what each framework sees into the
plan and the lines the run logs; it is what the tests exercise without a GPU. `tensorflow_gpus` runs in the
driver (which holds TensorFlow); `torch_gpus` runs in the analog worker (which holds torch), through the
worker's "devices" job, so the driver never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DevicePlan", "device_plan", "tensorflow_gpus", "torch_gpus", "describe_run_devices"]


@dataclass(frozen=True)
class DevicePlan:
    """Where Keras training and the analog (AIHWKit) work run, and why."""

    keras: str
    """"gpu" or "cpu"."""
    analog: str
    """"cuda" or "cpu"."""
    lines: list[str] = field(default_factory=list)
    """What the run logs at start, one finding per line."""


def device_plan(
    tf_gpus: list[str], torch_gpus: list[str] | None, analog_tiles: str = "torch", aihwkit_cuda_compiled: bool = False
) -> DevicePlan:
    """The plan from what TensorFlow and torch see (`torch_gpus` None: not asked, the run does no analog work).

    The analog worker uses CUDA when torch sees a GPU and the tiles can run there: AIHWKit's torch tiles always
    can; its compiled tiles only when AIHWKit was built with CUDA (the PyPI wheel is not, ANALOG_FACTS.md 5).
    """
    keras = "gpu" if tf_gpus else "cpu"
    lines = [
        f"Keras training: GPU ({', '.join(tf_gpus)})" if tf_gpus else "Keras training: CPU (TensorFlow sees no GPU)"
    ]
    analog = "cpu"
    if torch_gpus is None:
        lines.append("analog simulation: not used by this run's stages")
    elif torch_gpus and (analog_tiles == "torch" or aihwkit_cuda_compiled):
        analog = "cuda"
        lines.append(f"analog simulation: CUDA ({torch_gpus[0]}), AIHWKit {analog_tiles} tiles")
    elif torch_gpus:
        lines.append(
            f"analog simulation: CPU (torch sees {torch_gpus[0]}, but AIHWKit's compiled tiles were built without CUDA)"
        )
    else:
        lines.append(f"analog simulation: CPU, AIHWKit {analog_tiles} tiles (torch sees no GPU)")
    if torch_gpus and not tf_gpus:
        lines.append(
            "note: torch sees a GPU but TensorFlow does not (tensorflow-cpu, or no CUDA libraries for it): "
            "for GPU training install with GPU=1 bash scripts/install.sh"
        )
    return DevicePlan(keras, analog, lines)


def tensorflow_gpus() -> list[str]:
    """The GPUs TensorFlow sees in this process (names), empty on the CPU build."""
    import tensorflow as tf

    return [gpu.name for gpu in tf.config.list_physical_devices("GPU")]


def torch_gpus() -> list[str]:
    """The CUDA devices torch sees (names); run in the analog worker, never in the driver."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def devices_in_process() -> dict[str, Any]:
    """The analog worker's "devices" job: what torch and AIHWKit there can use."""
    try:
        from aihwkit.simulator.rpu_base import cuda as rpu_cuda

        compiled = bool(rpu_cuda.is_compiled())
    except (ImportError, AttributeError):
        compiled = False
    return {"torch_gpus": torch_gpus(), "aihwkit_cuda_compiled": compiled}


def describe_run_devices(analog: bool) -> DevicePlan:
    """The plan of this run: TensorFlow asked here, torch asked in the analog worker when `analog` work is
    planned (the worker then stays up for that work). A worker that fails to answer is reported, not fatal."""
    tf = tensorflow_gpus()
    if not analog:
        return device_plan(tf, None)
    from popnas_seg.analog.worker import AnalogWorkerError, run_job

    try:
        found = run_job("devices", {}, timeout_s=300.0)
    except AnalogWorkerError as exc:
        plan = device_plan(tf, [])
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return DevicePlan(plan.keras, "cpu", [plan.lines[0], f"analog simulation: unknown (worker: {reason})"])
    return device_plan(tf, list(found["torch_gpus"]), "torch", bool(found["aihwkit_cuda_compiled"]))
