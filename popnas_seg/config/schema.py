"""The root `RunConfig` and the sections with no module of their own (training, architecture, inference, others).

The search, dataset and analog sections live in search.py, data.py and analog.py of this package.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from popnas_seg.config.analog import AnalogConfig
from popnas_seg.config.base import Section
from popnas_seg.config.data import DatasetConfig
from popnas_seg.config.search import SearchSpaceConfig, SearchStrategyConfig

Stage = Literal["search", "finalists", "report"]


def _default_pipeline() -> list[Stage]:
    return ["search", "finalists", "report"]


class TrainingConfig(Section):
    """How every child network is trained (the same trainer trains baselines and finalists)."""

    epochs: int = Field(3, ge=1, description="training epochs of every child network during the search")
    learning_rate: float = Field(3e-3, gt=0, le=10, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0, le=1, description="decoupled weight decay (adamw) or L2 factor")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="optimizer")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (sgd only)")
    scheduler: Literal["cosine", "cosine_restarts", "constant"] = Field("cosine", description="learning-rate schedule")
    restart_period_epochs: int = Field(2, ge=1, description="first period of cosine_restarts, in epochs")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up epochs before the schedule")
    dice_loss_weight: float = Field(1.0, ge=0, le=100, description="weight of the soft Dice loss term")
    ce_loss_weight: float = Field(1.0, ge=0, le=100, description="weight of the cross-entropy loss term")
    steps_per_epoch: int | None = Field(
        12,
        ge=1,
        description="optimiser steps per epoch, batches drawn with replacement and augmented, so a "
        "budget does not shrink with the data set (null: one pass over the training split)",
    )


class ArchitectureConfig(Section):
    """The encoder-decoder macro-architecture around the searched cell."""

    filters: int = Field(8, ge=1, le=512, description="filters of the first encoder stage (doubled per reduction)")
    motifs: int = Field(2, ge=1, le=6, description="encoder stages (each ends with a stride-2 reduction cell)")
    normal_cells_per_motif: int = Field(1, ge=0, le=6, description="normal cells before each reduction cell")
    block_join_operator: Literal["add", "avg"] = Field("add", description="how a block joins its two branches")
    residual_cells: bool = Field(False, description="add a residual from the nearest lookback to each cell")
    concat_only_unused_blocks: bool = Field(
        True, description="cell output concatenates only blocks no other block reads (POPNAS); false: all blocks"
    )
    decoder_upsampling: Literal["bilinear", "tconv2", "tconv4"] = Field(
        "bilinear", description="decoder upsampling: bilinear + conv, or a transpose conv of kernel 2 or 4"
    )
    skip_join: Literal["concat", "add"] = Field("concat", description="how the decoder joins an encoder skip")


class InferenceConfig(Section):
    """How whole images are segmented: `predict`, and the whole-image test scores (digital and analog)."""

    tile_size: int = Field(
        256,
        ge=0,
        le=8192,
        description="largest tile side in pixels at inference: images up to this size are "
        "segmented whole (padded to a multiple of 2**motifs), larger ones in tiles of this side; the networks are "
        "fully convolutional, so this is independent of dataset.crop. 0: tiles of the training crop (slower)",
    )
    overlap: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="overlap of neighbouring tiles, as a fraction of the "
        "training crop side (the same band in pixels whatever the tile size)",
    )


class OthersConfig(Section):
    """Seed, what to keep on disk, and how TensorFlow runs."""

    seed: int = Field(
        42,
        ge=0,
        le=2**32 - 1,
        description="seed of the search and, unless "
        "search_strategy.network_seed / dataset.seed are set, of the weight initialisation and the "
        "data (numpy's range)",
    )
    save_children_weights: bool = Field(False, description="keep the weights of every trained child network")
    save_children_models: bool = Field(False, description="keep every trained child network as a .keras file")
    xla: bool = Field(False, description="compile training steps with XLA")
    mixed_precision: bool = Field(False, description="train in mixed float16 precision (GPU only)")
    pipeline: list[Stage] = Field(
        default_factory=_default_pipeline,
        description="stages to run, in order ([]: only validate config and data and create the run folder); each "
        "at most once and in the order search, finalists, report (a stage needs the ones before it)",
    )
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1,
        description="networks of one search step trained at once: 1 = in this process (no Ray); >1 or "
        '"auto" (one per CPU of the Ray instance) = Ray tasks, each with its TF threads pinned to 1',
    )
    ray_address: str | None = Field(
        None,
        description="Ray instance for workers > 1: null = a local one started and stopped by the run; "
        '"auto" or "host:port" = join a running cluster (its GCS address, as `ray start --head` prints it; '
        "Ray client addresses ray://... are not accepted)",
    )
    ray_connect_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="seconds to wait for the cluster at ray_address to answer; the run is "
        "refused (exit 2) before its folder is created when it does not",
    )

    @field_validator("pipeline")
    @classmethod
    def _check_pipeline_order(cls, value: list[str]) -> list[str]:
        """["search", "search"] or ["report", "search"] ran (the second search did nothing, the report came
        before its results): a stage reads what the stages before it wrote, so the order is fixed."""
        order = ["search", "finalists", "report"]
        twice = sorted({stage for stage in value if value.count(stage) > 1})
        if twice:
            raise ValueError(f'lists "{twice[0]}" twice; each stage runs at most once')
        if value != sorted(value, key=order.index):
            raise ValueError(
                f"{json.dumps(value)} is out of order: stages run as {json.dumps(order)} (a stage "
                f"uses the results of the ones before it); keep that order and leave out what you skip"
            )
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _check_workers(cls, value: Any) -> Any:
        """One clear message instead of one per member of the int | "auto" union."""
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f'must be an integer >= 1 or "auto", got {json.dumps(value, default=str)}')

    @field_validator("ray_address")
    @classmethod
    def _check_ray_address(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        if "://" in value:
            raise ValueError(
                f"{value!r}: Ray client addresses ({value.split('://')[0]}://...) are not accepted; "
                'give the cluster\'s GCS address "host:port" (ray start --head prints it, port 6379 '
                'by default) or "auto"'
            )
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f'must be null, "auto" or "host:port", got {value!r}')
        return value


class RunConfig(Section):
    """The whole run: one section per concern, every section optional (defaults below)."""

    search_space: SearchSpaceConfig = Field(default_factory=SearchSpaceConfig, description="the cell search space")
    search_strategy: SearchStrategyConfig = Field(
        default_factory=SearchStrategyConfig, description="how cells are chosen"
    )
    training_hyperparameters: TrainingConfig = Field(
        default_factory=TrainingConfig, description="how child networks are trained"
    )
    architecture_hyperparameters: ArchitectureConfig = Field(
        default_factory=ArchitectureConfig, description="the encoder-decoder around the cell"
    )
    dataset: DatasetConfig = Field(default_factory=DatasetConfig, description="data source, splits, preprocessing")
    analog: AnalogConfig = Field(default_factory=AnalogConfig, description="analog hardware simulation (AIHWKit)")
    inference: InferenceConfig = Field(
        default_factory=InferenceConfig, description="tiles for whole-image prediction and scoring"
    )
    others: OthersConfig = Field(default_factory=OthersConfig, description="seed, storage, runtime, stages")

    @property
    def data_seed(self) -> int:
        """The seed the data is generated, split and augmented with: dataset.seed, else others.seed."""
        return self.others.seed if self.dataset.seed is None else self.dataset.seed

    def tiling(self) -> Any:
        """The `popnas_seg.imaging.tiling.Tiling` of whole-image prediction and scoring for this run."""
        from popnas_seg.imaging.tiling import Tiling

        return Tiling(
            (int(self.dataset.crop[0]), int(self.dataset.crop[1])),
            int(self.inference.tile_size),
            2 ** int(self.architecture_hyperparameters.motifs),
            float(self.inference.overlap),
        )

    @property
    def network_seed(self) -> int:
        """The base seed of the searched networks' training and probe: search_strategy.network_seed, else
        others.seed."""
        seed = self.search_strategy.network_seed
        return self.others.seed if seed is None else seed

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        div = 2**self.architecture_hyperparameters.motifs
        h, w = self.dataset.crop
        if h % div or w % div:
            raise ValueError(
                f"dataset.crop {list(self.dataset.crop)} must be divisible by 2**motifs = {div} "
                f"(architecture_hyperparameters.motifs = {self.architecture_hyperparameters.motifs})"
            )
        rungs = self.search_strategy.rung_epochs
        if rungs and rungs[0] <= self.training_hyperparameters.epochs:
            raise ValueError(
                f"search_strategy.rung_epochs {rungs} are cumulative epochs above rung 0 "
                f"(training_hyperparameters.epochs = {self.training_hyperparameters.epochs}): the first must be "
                "larger"
            )
        return self

    @property
    def rung_budgets(self) -> list[int]:
        """Cumulative training epochs of every rung of the search, rung 0 first (one entry: a flat search)."""
        return [self.training_hyperparameters.epochs, *self.search_strategy.rung_epochs]
