"""What every step of the finalists stage reads: the run folder, the config, the data, the journal, one trainer.

`StageContext` holds them and the helpers on them (journal look-ups, cached held-out and training arrays, the
network seed); the steps (analog_steps.py, stage.py) are its subclasses. `Finalist` is the network they pass on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from popnas_seg.config import ArchitectureConfig, RunConfig
from popnas_seg.runlog.events import Event

if TYPE_CHECKING:
    from popnas_seg.data.pipeline import SegmentationData
    from popnas_seg.evaluation.evaluator import NetworkEvaluator
    from popnas_seg.runlog.folder import RunFolder
    from popnas_seg.training.trainer import Trainer


@dataclass
class Finalist:
    """One network going through final training: a searched cell with its chosen macro variant, or the U-Net."""

    name: str
    network_id: int
    encoding: str
    blocks: int
    arch: ArchitectureConfig
    origin: str
    variant: str = ""  # model-selection variant whose weights final training starts from ("" : none)


class StageContext:
    """The run, config and data of one finalists stage, with the helpers every step uses (stage.py runs the steps)."""

    def __init__(
        self, run: RunFolder, config: RunConfig, data: SegmentationData, logger: logging.Logger | None = None
    ) -> None:
        self.run = run
        self.config = config
        self.data = data
        self.log = logger or logging.getLogger("popnas_seg")
        self.final_dir = Path(run.final_dir)
        self._trainer: Trainer | None = None
        self._network_evaluator: NetworkEvaluator | None = None
        self._test: tuple[np.ndarray, np.ndarray] | None = None
        self._train: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ journal helpers
    def _events(self, kind: type[Event], **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.run.journal.events(kind) if all(e.get(k) == v for k, v in match.items())]

    def _last(self, kind: type[Event], **match: Any) -> dict[str, Any] | None:
        events = self._events(kind, **match)
        return events[-1] if events else None

    def _trainer_(self) -> Trainer:
        """The stage's one trainer (model selection and final training alike), the evaluator's factory."""
        if self._trainer is None:
            from popnas_seg.training.trainer import Trainer

            self._trainer = Trainer(self.config, self.data, self.log)
        return self._trainer

    def _test_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._test is None:
            x, y = self.data.test_arrays()
            if len(x) == 0:  # test_size 0: the validation split is the only held-out data
                x, y = self.data.val_arrays()
            self._test = (np.asarray(x, np.float32), np.asarray(y, np.int32))
        return self._test

    def _train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._train is None:
            x, y = self.data.train_arrays()
            self._train = (np.asarray(x, np.float32), np.asarray(y, np.int32))
        return self._train

    def _seed(self, encoding: str, salt: str = "") -> int:
        from popnas_seg.search.seeds import network_seed

        return network_seed(self.config.others.seed, encoding + salt)
