"""GPU placement decisions, tested without a GPU: the analog worker's device, and the GPU share each Ray task
asks for (RayExecutor, with a stand-in `ray` module so no Ray instance starts)."""
from __future__ import annotations

import sys
from typing import Any

import pytest

from popnas_seg.config import RunConfig
from popnas_seg.evaluation.parallel import RayExecutor, task_gpus


def test_analog_device_needs_a_gpu_and_cuda_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from aihwkit.simulator.rpu_base import cuda as rpu_cuda

    from popnas_seg.analog.rpu import analog_device

    for gpu, compiled, expected in [(False, True, "cpu"), (True, False, "cpu"), (True, True, "cuda"),
                                    (False, False, "cpu")]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda gpu=gpu: gpu)
        monkeypatch.setattr(rpu_cuda, "is_compiled", lambda compiled=compiled: compiled)
        assert analog_device() == expected, (gpu, compiled)


def test_the_installed_stack_scores_analog_on_the_cpu_here() -> None:
    """The PyPI AIHWKit wheel has no CUDA tiles (STACK.md), so with or without a GPU the worker uses the CPU."""
    from aihwkit.simulator.rpu_base import cuda as rpu_cuda

    from popnas_seg.analog.rpu import analog_device

    if rpu_cuda.is_compiled():
        pytest.skip("this AIHWKit was built with CUDA")
    assert analog_device() == "cpu"


@pytest.mark.parametrize("gpus,slots,expected", [
    (0, 4, 0.0), (1, 1, 1.0), (1, 2, 0.5), (1, 3, 0.3333), (2, 4, 0.5), (4, 2, 1.0), (1, 0, 1.0),
])
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
        monkeypatch: pytest.MonkeyPatch, resources: dict[str, float], expected: float) -> None:
    fake = _FakeRay(resources)
    monkeypatch.setitem(sys.modules, "ray", fake)
    config = RunConfig.model_validate({"others": {"workers": 2}})
    executor = RayExecutor(config, (64, 64, 1), 2)
    assert executor.slots == 2
    assert fake.remote_kwargs["num_gpus"] == expected == executor.gpus_per_task
    assert fake.remote_kwargs["num_cpus"] == 1
