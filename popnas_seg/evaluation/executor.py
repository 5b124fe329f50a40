"""Where trials run: one `Executor` Protocol, in this process or as Ray tasks
(evaluation/parallel.py's `RayExecutor`), with the same call; the search runner picks one by `others.workers`.

The search runner hands an executor a step's trials and journals each (trial, result) as it comes back, so
one loop serves `others.workers = 1` and a Ray pool alike. `on_start` is called, in the driver, for each
trial when it is handed to a worker (in process: right before it trains), which is when the runner journals
it as running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from popnas_seg.evaluation.evaluator import NetworkEvaluator, Trial
from popnas_seg.results import TrainingResult

__all__ = ["Executor", "InProcessExecutor", "OnStart"]

OnStart = Callable[[Trial], None]


class Executor(Protocol):
    """Runs trials; `slots` of them at once."""

    slots: int

    def map_unordered(
        self, trials: Iterable[Trial], on_start: OnStart | None = None
    ) -> Iterator[tuple[Trial, TrainingResult]]:
        """Yield each (trial, result) as soon as the trial finishes, in completion order."""
        ...

    def close(self) -> None:
        """Release the workers (a no-op in process)."""
        ...


class InProcessExecutor:
    """One trial at a time in this process, with one evaluator (data and trainer kept between trials)."""

    slots = 1

    def __init__(self, evaluator: NetworkEvaluator) -> None:
        self.evaluator = evaluator

    def map_unordered(
        self, trials: Iterable[Trial], on_start: OnStart | None = None
    ) -> Iterator[tuple[Trial, TrainingResult]]:
        for trial in trials:
            if on_start is not None:
                on_start(trial)
            yield trial, self.evaluator.evaluate(trial)

    def close(self) -> None:
        pass
