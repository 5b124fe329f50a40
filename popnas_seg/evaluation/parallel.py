"""The networks of one planned step as Ray tasks (`others.workers` > 1); the driver alone writes the run folder.

The Ray implementation of evaluation/executor.py's `Executor`. Each task is one `Trial` evaluated by a
`NetworkEvaluator` in a Ray worker process. The run config
goes into the object store once (`ray.put`); a worker loads the data from it once (the data folder path,
or the seeded synthetic generator) and keeps its evaluator for every later task, so neither the data nor
the trainer is rebuilt per task. TensorFlow in a worker is pinned to one intra-op and one inter-op thread
per CPU the task holds, so N workers do not oversubscribe the cores.

Results come back to the driver in completion order; the runner journals each as it arrives. No shared disk is
needed: a task trains its network into a temporary folder of its own node and returns the network's files
(history.csv, model.keras, model.onnx, TensorBoard events: tens to hundreds of kB for these networks) with its
result, and the driver writes them into the network's folder under its own run folder (`write_artefacts`),
so the run folder is complete on the driver's disk whichever node trained the network. A task
whose worker process dies is retried once by Ray (`max_retries=1`); if it fails again, or raises, the
network is recorded with status "failed" and the reason, and the search goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from popnas_seg.config import RunConfig
from popnas_seg.errors import UserError
from popnas_seg.evaluation import ray_reaper
from popnas_seg.evaluation.evaluator import UNET_ENCODING, NetworkEvaluator, Trial
from popnas_seg.results import TrainingResult
from popnas_seg.termination import keep_signal_handlers

__all__ = ["RayExecutor", "collect_artefacts", "failed_result", "write_artefacts"]

# Per worker process: config hash -> evaluator (data loaded once per process, trainer kept between tasks).
_WORKER_EVALUATORS: dict[str, NetworkEvaluator] = {}
TASK_CPUS = 1
TASK_PID_DIR_ENV = "POPNAS_TASK_PID_DIR"  # test hook only, see _announce_pid


def _pin_tensorflow_threads(threads: int) -> None:
    """Before TF runs any op in this worker: without it every task uses every core of the node."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF already initialised in this process (an earlier task pinned it)
        pass


def task_gpus(cluster_gpus: float, slots: int) -> float:
    """GPUs each Ray task asks for: the cluster's GPUs shared evenly by the `slots` tasks in flight.

    0 without a GPU (tasks run on the CPU as before). A fraction lets several small children share one
    GPU; Ray then sets CUDA_VISIBLE_DEVICES per task, which TF, torch and the analog worker (a
    subprocess, same environment) follow. Capped at 1 (a task uses one device) and rounded down to Ray's
    1e-4 resource precision, so `slots` tasks always fit together.
    """
    if not cluster_gpus > 0:
        return 0.0
    return min(1.0, math.floor(float(cluster_gpus) / max(1, int(slots)) * 1e4) / 1e4)


def _share_gpus() -> None:
    """Tasks sharing a GPU: TF must not reserve all of its memory for the first one."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # TF already initialised in this process
            pass


def _announce_pid(job: Trial) -> None:
    """Test hook: with POPNAS_TASK_PID_DIR set, leave `<dir>/<network_id>-<pid>` so a test can SIGKILL this worker.

    Only an empty file whose name carries the data (creating a name is atomic); unset, it costs one lookup.
    """
    folder = os.environ.get(TASK_PID_DIR_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{job.network_id}-{os.getpid()}").touch()


def collect_artefacts(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its POSIX path relative to it: a network's folder as plain, picklable data."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_artefacts(out_dir: str | os.PathLike[str], files: dict[str, bytes]) -> None:
    """The driver's half of `collect_artefacts`: a fresh `out_dir` holding exactly `files`, each written
    atomically; a relative path that would leave `out_dir` is refused (the bytes came over the network)."""
    from popnas_seg.atomic import atomic_write_bytes

    out = Path(out_dir)
    if out.exists():  # leftovers of an interrupted attempt, as the in-process path does
        shutil.rmtree(out)
    out.mkdir(parents=True)
    root = out.resolve()
    for name, data in files.items():
        target = (out / name).resolve()
        if target == root or root not in target.parents:
            raise ValueError(f"artefact path {name!r} leaves the network folder {out}")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)


def evaluate_task(config_json: str, job: Trial, warm_start: bytes | None = None) -> dict[str, Any]:
    """The body of one Ray task: plain data in; out {"result": `TrainingResult.to_dict()`, "artefacts": the
    network folder's files (`collect_artefacts`)}.

    The network is trained into a temporary folder of this node, never into `job.out_dir` (the driver's path,
    which this node may not have or may not share): the driver writes the returned files there. Likewise a warm
    start (e.g. a multi-fidelity continuation's rung-below model) comes as the file's bytes (`warm_start`) and
    is written here, under its own name, beside that folder."""
    _announce_pid(job)
    key = hashlib.sha256(config_json.encode()).hexdigest()
    evaluator = _WORKER_EVALUATORS.get(key)
    if evaluator is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        _pin_tensorflow_threads(TASK_CPUS)
        _share_gpus()
        from popnas_seg.data.pipeline import load_data

        config = RunConfig.model_validate_json(config_json)
        data = load_data(config.dataset, seed=config.data_seed)
        evaluator = NetworkEvaluator(config, data, logging.getLogger("popnas_seg"))
        _WORKER_EVALUATORS[key] = evaluator
    with tempfile.TemporaryDirectory(prefix="popnas_task_") as tmp:
        local = Path(tmp) / Path(job.out_dir).name
        if warm_start is not None and job.warm_start is not None:
            start = Path(tmp) / "warm_start" / Path(job.warm_start).name
            start.parent.mkdir()
            start.write_bytes(warm_start)
            job = dataclasses.replace(job, warm_start=str(start))
        result = evaluator.evaluate(dataclasses.replace(job, out_dir=str(local))).to_dict()
        artefacts = collect_artefacts(local) if local.is_dir() else {}
    return {"result": result, "artefacts": artefacts}


def failed_result(job: Trial, reason: str, input_channels: int, classes_count: int) -> TrainingResult:
    """The row of a network whose task never returned: exact params/FLOPs from the encoding, status failed."""
    from popnas_seg.config import ArchitectureConfig
    from popnas_seg.models.cost import count_params
    from popnas_seg.search_space.encoding import Cell

    params, blocks = 0, 0
    if job.encoding != UNET_ENCODING:
        cell = Cell.from_string(job.encoding)
        arch = ArchitectureConfig.model_validate(job.architecture)
        params, blocks = count_params(cell, arch, input_channels, classes_count), len(cell.blocks)
    return TrainingResult(
        network_id=job.network_id,
        encoding=job.encoding,
        blocks=blocks,
        dice=0.0,
        miou=0.0,
        params=params,
        flops=0,
        train_time_s=0.0,
        inference_time_ms=0.0,
        epochs=0,
        status="failed",
        origin=job.origin,
        step=job.step,
        error=reason,
    )


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's or Slurm's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def oversubscription_warning(workers: int | str, cores: int) -> str | None:
    """A warning when `others.workers` asks for more parallel networks than there are cores (not capped:
    the user may know better, e.g. GPU-bound tasks); None when it fits."""
    if workers == "auto" or int(workers) * TASK_CPUS <= cores:
        return None
    return (
        f"others.workers = {workers} is more than the {cores} CPU core(s) of this machine: the local Ray "
        f"instance is told it has {int(workers) * TASK_CPUS} CPUs, so the networks share the cores and each "
        f"trains slower (no faster in total, more memory); {cores} is the most that helps"
    )


def _stop_started(ray: Any, before: dict[int, str]) -> None:
    """ray.init failed or was interrupted: kill the processes it had started (and theirs: the raylet's agents
    outlive it by a minute otherwise), then let Ray forget its state."""
    ray_reaper.kill_tree({pid: t for pid, t in ray_reaper.children(os.getpid()).items() if before.get(pid) != t})
    try:
        ray.shutdown()
    except BaseException:  # noqa: BLE001 - the clean-up of a failure must not mask it
        pass


class RayExecutor:
    """A Ray instance for one run: local (started and stopped here) or an existing cluster it joins."""

    def __init__(
        self,
        config: RunConfig,
        input_shape: tuple[int, int, int],
        classes_count: int,
        logger: logging.Logger | None = None,
    ) -> None:
        # Ray's C++ failure-signal handler (installed by ray.init) would replace the CLI's SIGTERM handling:
        # "*** SIGTERM received ***", abort, exit 134, no resume hint. Read when ray is imported, and inherited
        # by the Ray processes started here (they lose Ray's crash stack traces, not their clean-up).
        os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
        try:
            import ray
        except ImportError:
            raise UserError(
                "others.workers > 1 needs Ray: pip install ray==2.60.0 (or set others.workers to 1)"
            ) from None
        self.log = logger or logging.getLogger("popnas_seg")
        self._reaper: subprocess.Popen | None = None  # kills the local instance's processes if this driver dies
        self.input_channels = int(input_shape[-1])
        self.classes_count = int(classes_count)
        workers, address = config.others.workers, config.others.ray_address
        if address is None:
            # A private local instance: token auth (Ray 2.60's default) only guards shared clusters.
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            cpus = (os.cpu_count() or 1) if workers == "auto" else int(workers) * TASK_CPUS
            warning = oversubscription_warning(workers, usable_cores())
            if warning is not None:
                self.log.warning(warning)
            before = ray_reaper.children(os.getpid())
            try:
                with keep_signal_handlers():
                    # address "local": always a new instance, never one named by RAY_ADDRESS or left by a killed
                    # run.
                    ray.init(
                        address="local",
                        num_cpus=cpus,
                        include_dashboard=False,
                        logging_level=logging.WARNING,
                        configure_logging=False,
                    )
            except BaseException:  # e.g. SIGTERM half-way: stop what was started, do not leave it behind
                _stop_started(ray, before)
                raise
            started = {pid: t for pid, t in ray_reaper.children(os.getpid()).items() if before.get(pid) != t}
            self._reaper = ray_reaper.start(started)
        else:
            try:
                with keep_signal_handlers():
                    ray.init(address=address, logging_level=logging.WARNING, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(f"cannot join the Ray cluster at others.ray_address = {address!r}: {exc}") from None
        total = int(ray.cluster_resources().get("CPU", 1))
        self.slots = max(1, total // TASK_CPUS if workers == "auto" else int(workers))
        self._ray = ray
        self._config_ref = ray.put(config.model_dump_json())
        self.gpus_per_task = task_gpus(float(ray.cluster_resources().get("GPU", 0)), self.slots)
        self._task = ray.remote(num_cpus=TASK_CPUS, num_gpus=self.gpus_per_task, max_retries=1, retry_exceptions=False)(
            evaluate_task
        )
        self.log.info(
            "Ray: %d workers (%d CPUs, %s)%s",
            self.slots,
            total,
            "local instance" if address is None else f"cluster {address}",
            f", {self.gpus_per_task:g} GPU per task" if self.gpus_per_task else "",
        )

    def map_unordered(
        self, trials: Iterable[Trial], on_start: Callable[[Trial], None] | None = None
    ) -> Iterator[tuple[Trial, TrainingResult]]:
        """Run `trials` with at most `slots` in flight; yield each (trial, result) as soon as it finishes.
        `on_start(trial)` runs in the driver as each trial is submitted."""
        queue = list(trials)
        in_flight: dict[Any, Trial] = {}
        while queue or in_flight:
            while queue and len(in_flight) < self.slots:
                job = queue.pop(0)
                if on_start is not None:
                    on_start(job)
                start = None if job.warm_start is None else Path(job.warm_start).read_bytes()
                in_flight[self._task.remote(self._config_ref, job, start)] = job
            ready, _ = self._ray.wait(list(in_flight), num_returns=1)
            job = in_flight.pop(ready[0])
            try:
                payload = self._ray.get(ready[0])
                result = TrainingResult.from_dict(payload["result"])
            except Exception as exc:  # the worker died twice, or the task raised: the search goes on
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                self.log.warning("network %d: its Ray task failed (%s); recorded as failed", job.network_id, reason)
                result = failed_result(job, reason, self.input_channels, self.classes_count)
            else:
                write_artefacts(job.out_dir, payload["artefacts"])  # before the result is journaled
            yield job, result

    def close(self) -> None:
        """Disconnect; a local instance started by this run stops with it (the watchdog kills any straggler)."""
        if self._ray.is_initialized():
            self._ray.shutdown()
        ray_reaper.stop(self._reaper)
        self._reaper = None
