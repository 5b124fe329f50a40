"""Run configuration: one JSON file, validated by pydantic, sections named as in POPNAS.

Every section forbids unknown keys so that a typo is an error naming the key, never a silently
ignored setting. `load_config` turns every validation problem into a `UserError` (exit code 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SearchSpaceConfig(_Section):
    """Which cells exist: up to `blocks` blocks over `operators`, inputs up to `lookback_depth` back."""

    blocks: int = Field(3, ge=1, le=8)
    lookback_depth: int = Field(2, ge=1, le=3)
    operators: list[str] = Field(
        default_factory=lambda: ["identity", "3x3 conv", "3x3:2dr conv", "1x5-5x1 conv", "2x2 maxpool"],
        min_length=1,
    )

    @field_validator("operators")
    @classmethod
    def _parse_operators(cls, value: list[str]) -> list[str]:
        from popnas_seg.search_space.operators import parse_operator

        for op in value:
            parse_operator(op)  # raises ValueError with the reason
        if len(set(value)) != len(value):
            raise ValueError("operators contain duplicates")
        return value


ParetoObjective = Literal["params", "analog_robustness", "time"]


class SearchStrategyConfig(_Section):
    """How cells are chosen: progressive Pareto (POPNAS), PNAS top-K, or the random/evolution baselines."""

    strategy: Literal["progressive", "random", "evolution"] = "progressive"
    max_children: int = Field(4, ge=1)
    max_exploration_children: int = Field(1, ge=0)
    score_metric: Literal["dice", "mean_iou"] = "dice"
    additional_pareto_objectives: list[ParetoObjective] = Field(
        default_factory=lambda: ["params", "analog_robustness"]
    )
    pnas_mode: bool = False
    b1_max_networks: int | None = Field(8, ge=1, description="cap on step b=1 (None: every distinct cell)")
    max_networks: int | None = Field(None, ge=1, description="budget for random/evolution")
    population_size: int = Field(8, ge=2, description="regularised evolution population")
    tournament_size: int = Field(3, ge=1)
    predictor_epochs: int = Field(80, ge=1)
    accuracy_predictor_ensemble_units: int = Field(3, ge=1, le=10)
    hypervolume_reference: dict[str, float] | None = Field(
        None, description="reference point per objective; None: documented rule in search/pareto.py"
    )

    @field_validator("additional_pareto_objectives")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("additional_pareto_objectives contain duplicates")
        return value


class TrainingConfig(_Section):
    """How every child network is trained (the same trainer trains baselines and finalists)."""

    epochs: int = Field(3, ge=1)
    learning_rate: float = Field(3e-3, gt=0, le=10)
    weight_decay: float = Field(1e-4, ge=0)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    scheduler: Literal["cosine", "cosine_restarts", "constant"] = "cosine"
    restart_period_epochs: int = Field(2, ge=1)
    warmup_epochs: int = Field(0, ge=0)
    dice_loss_weight: float = Field(1.0, ge=0)
    ce_loss_weight: float = Field(1.0, ge=0)


class ArchitectureConfig(_Section):
    """The encoder-decoder macro-architecture around the searched cell."""

    filters: int = Field(8, ge=1, le=512)
    motifs: int = Field(2, ge=1, le=6)
    normal_cells_per_motif: int = Field(1, ge=0, le=6)
    block_join_operator: Literal["add", "avg"] = "add"
    residual_cells: bool = False
    concat_only_unused_blocks: bool = True
    decoder_upsampling: Literal["bilinear", "tconv2", "tconv4"] = "bilinear"
    skip_join: Literal["concat", "add"] = "concat"


class AugmentationConfig(_Section):
    enabled: bool = True
    flips: bool = True
    rotations: bool = True


class DatasetConfig(_Section):
    """Where images come from and how they are split, cropped and normalised."""

    name: Literal["synthetic_nuclei"] | None = "synthetic_nuclei"
    path: str | None = None
    classes_count: int = Field(2, ge=2, le=256)
    ignore_class: int | None = Field(None, ge=0)
    samples: int | None = Field(192, ge=4, description="images generated (synthetic) or used (folder)")
    generated_size: tuple[int, int] = (96, 96)
    generated_channels: Literal[1, 3] = 1
    batch_size: int = Field(16, ge=1)
    val_test_batch_size: int | None = Field(None, ge=1)
    validation_size: float = Field(0.15, gt=0, lt=1)
    test_size: float = Field(0.15, ge=0, lt=1)
    folds: int = Field(1, ge=1, le=10)
    resize: tuple[int, int] = (64, 64)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    normalisation: Literal["minmax", "standard"] = "minmax"
    cache: bool = True
    shuffle_buffer: int = Field(256, ge=1)
    class_labels_remapping: dict[int, int] | None = None
    balance_class_losses: bool = False

    @model_validator(mode="after")
    def _source(self) -> "DatasetConfig":
        if (self.name is None) == (self.path is None):
            raise ValueError('set exactly one of "name" (built-in data) and "path" (a folder of images/ and masks/)')
        if self.validation_size + self.test_size >= 0.9:
            raise ValueError("validation_size + test_size must leave at least 10% for training")
        for side in self.resize:
            if side < 8:
                raise ValueError("resize sides must be >= 8")
        if self.ignore_class is not None and self.ignore_class >= self.classes_count:
            raise ValueError(f"ignore_class {self.ignore_class} must be < classes_count {self.classes_count}")
        return self


class AnalogConfig(_Section):
    """AIHWKit settings: PCM-like inference tiles, the search-time probe and the finalists' drift scoring."""

    preset: Literal["pcm"] = "pcm"
    g_max: float = Field(25.0, gt=0)
    drift_compensation: Literal["global", "none"] = "global"
    inp_res: float = Field(1 / 254, gt=0, le=1)
    out_res: float = Field(1 / 254, gt=0, le=1)
    out_noise: float = Field(0.04, ge=0)
    w_noise: float = Field(0.0, ge=0)
    clip_sigma: float = Field(2.5, gt=0)
    tile_size: int = Field(512, ge=16)
    probe: bool = True
    t_inference: float = Field(86400.0, gt=0, description="probe time in seconds (1 day)")
    probe_repetitions: int = Field(3, ge=1)
    probe_images: int = Field(16, ge=1)
    eval_times: list[float] = Field(default_factory=lambda: [1.0, 3600.0, 86400.0, 2592000.0, 31536000.0])
    repetitions: int = Field(5, ge=2)
    hwa_epochs: int = Field(1, ge=0)
    hwa_learning_rate: float = Field(0.01, gt=0)
    hwa_noise_std: float = Field(0.06, ge=0)
    finalists: int = Field(2, ge=1)
    selection_rule: Literal["best_dice", "best_analog", "knee"] = "best_analog"
    model_selection_epochs: int = Field(4, ge=1)
    final_epochs: int = Field(8, ge=1)
    early_stopping_patience: int = Field(3, ge=1)
    macro_variants: bool = False
    unet_baseline: bool = True


class OthersConfig(_Section):
    seed: int = 42
    save_children_weights: bool = False
    save_children_models: bool = False
    train_strategy: Literal["auto", "cpu", "gpu"] = "auto"
    xla: bool = False
    mixed_precision: bool = False
    pipeline: list[Literal["search", "finalists", "report"]] = Field(
        default_factory=lambda: ["search", "finalists", "report"]
    )


class RunConfig(_Section):
    search_space: SearchSpaceConfig = Field(default_factory=SearchSpaceConfig)
    search_strategy: SearchStrategyConfig = Field(default_factory=SearchStrategyConfig)
    training_hyperparameters: TrainingConfig = Field(default_factory=TrainingConfig)
    architecture_hyperparameters: ArchitectureConfig = Field(default_factory=ArchitectureConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    analog: AnalogConfig = Field(default_factory=AnalogConfig)
    others: OthersConfig = Field(default_factory=OthersConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> "RunConfig":
        div = 2 ** self.architecture_hyperparameters.motifs
        h, w = self.dataset.resize
        if h % div or w % div:
            raise ValueError(
                f"dataset.resize {list(self.dataset.resize)} must be divisible by 2**motifs = {div} "
                f"(architecture_hyperparameters.motifs = {self.architecture_hyperparameters.motifs})"
            )
        return self


DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "run.json"
