"""GPU placement decisions, tested without a GPU: the analog worker's device, and the GPU share each Ray task
asks for (RayExecutor, with a stand-in `ray` module so no Ray instance starts)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from popnas_seg.config import RunConfig
from popnas_seg.evaluation.parallel import RayExecutor, task_gpus


def test_analog_device_torch_tiles_follow_torch_compiled_tiles_need_cuda_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch
    from aihwkit.simulator.rpu_base import cuda as rpu_cuda

    from popnas_seg.analog.rpu import analog_device

    for gpu, compiled, torch_tiles, compiled_tiles in [
        (False, True, "cpu", "cpu"),
        (True, False, "cuda", "cpu"),
        (True, True, "cuda", "cuda"),
        (False, False, "cpu", "cpu"),
    ]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda gpu=gpu: gpu)
        monkeypatch.setattr(rpu_cuda, "is_compiled", lambda compiled=compiled: compiled)
        assert analog_device() == torch_tiles, (gpu, compiled)
        assert analog_device("compiled") == compiled_tiles, (gpu, compiled)


def test_the_installed_stack_scores_analog_on_the_cpu_here() -> None:
    """No GPU on this machine: the worker scores on the CPU (and the compiled wheel has no CUDA tiles)."""
    import torch
    from aihwkit.simulator.rpu_base import cuda as rpu_cuda

    from popnas_seg.analog.rpu import analog_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert analog_device() == "cpu"
    if not rpu_cuda.is_compiled():
        assert analog_device("compiled") == "cpu"


@pytest.mark.parametrize(
    "tf_gpus,torch_gpus,tiles,compiled,keras,analog,says",
    [
        ([], [], "torch", False, "cpu", "cpu", ["Keras training: CPU", "analog simulation: CPU, AIHWKit torch tiles"]),
        (
            ["/physical_device:GPU:0"],
            ["NVIDIA H100"],
            "torch",
            False,
            "gpu",
            "cuda",
            ["Keras training: GPU (/physical_device:GPU:0)", "analog simulation: CUDA (NVIDIA H100), AIHWKit torch"],
        ),
        # the CPU TensorFlow build on a GPU host: training stays on the CPU, the run says how to change that
        ([], ["NVIDIA H100"], "torch", False, "cpu", "cuda", ["Keras training: CPU", "CUDA (NVIDIA H100)", "GPU=1"]),
        (["GPU:0"], ["NVIDIA H100"], "compiled", False, "gpu", "cpu", ["built without CUDA"]),
        (["GPU:0"], ["NVIDIA H100"], "compiled", True, "gpu", "cuda", ["AIHWKit compiled tiles"]),
        ([], None, "torch", False, "cpu", "cpu", ["not used"]),
    ],
)
def test_device_plan_says_where_each_part_runs(
    tf_gpus: list[str],
    torch_gpus: list[str] | None,
    tiles: str,
    compiled: bool,
    keras: str,
    analog: str,
    says: list[str],
) -> None:
    from popnas_seg.devices import device_plan

    plan = device_plan(tf_gpus, torch_gpus, tiles, compiled)
    assert (plan.keras, plan.analog) == (keras, analog)
    text = "\n".join(plan.lines)
    assert all(s in text for s in says), text
    assert ("GPU=1" in text) == bool(torch_gpus and not tf_gpus)


def test_the_run_reports_its_devices_from_the_worker_here() -> None:
    """End to end on this CPU machine: TensorFlow asked in-process, torch in the analog worker."""
    from popnas_seg.devices import describe_run_devices

    plan = describe_run_devices(analog=True)
    assert plan.keras == "cpu" and plan.analog == "cpu", plan.lines
    assert plan.lines[1].startswith("analog simulation: CPU"), plan.lines


@pytest.mark.parametrize(
    "gpus,slots,expected",
    [
        (0, 4, 0.0),
        (1, 1, 1.0),
        (1, 2, 0.5),
        (1, 3, 0.3333),
        (2, 4, 0.5),
        (4, 2, 1.0),
        (1, 0, 1.0),
    ],
)
def test_task_gpus_shares_the_gpus_between_the_slots(gpus: float, slots: int, expected: float) -> None:
    share = task_gpus(gpus, slots)
    assert share == expected
    assert share * max(1, slots) <= gpus  # the slots fit together


class _FakeRay:
    """Just what RayExecutor.__init__ calls; records the task's resource request."""

    def __init__(self, resources: dict[str, float]) -> None:
        self.resources = resources
        self.remote_kwargs: dict[str, Any] = {}

    def init(self, **kwargs: Any) -> None:
        pass

    def cluster_resources(self) -> dict[str, float]:
        return self.resources

    def put(self, value: Any) -> Any:
        return value

    def remote(self, **kwargs: Any) -> Any:
        self.remote_kwargs = kwargs
        return lambda fn: fn

    def is_initialized(self) -> bool:
        return False


@pytest.mark.parametrize("resources,expected", [({"CPU": 2.0}, 0.0), ({"CPU": 2.0, "GPU": 1.0}, 0.5)])
def test_ray_tasks_request_a_gpu_share_only_when_the_cluster_has_one(
    monkeypatch: pytest.MonkeyPatch, resources: dict[str, float], expected: float
) -> None:
    fake = _FakeRay(resources)
    monkeypatch.setitem(sys.modules, "ray", fake)
    config = RunConfig.model_validate({"others": {"workers": 2}})
    executor = RayExecutor(config, (64, 64, 1), 2)
    assert executor.slots == 2
    assert fake.remote_kwargs["num_gpus"] == expected == executor.gpus_per_task
    assert fake.remote_kwargs["num_cpus"] == 1
