"""Run configuration: one JSON file, validated by pydantic, sections named as in POPNAS.

Every section forbids unknown keys so that a typo is an error naming the key, never a silently
ignored setting. `load_config` turns every validation problem into a `UserError` (exit code 2) with
one message that names the key path and, where it can, the fix (`did you mean ...?`).
Every field carries a `description`: `scripts/config_reference.py` turns them into the README table.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from popnas_seg.errors import UserError
from popnas_seg.objectives import OBJECTIVE_ALIASES, OBJECTIVES
from popnas_seg.pathcheck import not_a_folder_reason
from popnas_seg.registry import DATA_SOURCES, PREDICTORS, STRATEGIES, Registry


class _Section(BaseModel):
    # allow_inf_nan=False: NaN and Infinity (which Python's json accepts) are errors in every float field.
    # Strictness of types (no "2" or true for an integer) comes from `config_from_dict`, which validates in
    # pydantic's strict JSON mode; sections built in code keep lax Python-mode validation.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _check_operator(op: str) -> str:
    """Per-item check, so an error names the item: `search_space.operators[2]: cannot parse ...`."""
    from popnas_seg.search_space.operators import parse_operator

    try:
        parse_operator(op)
    except ValueError as exc:
        reason = str(exc)
        raise ValueError(reason if f'"{op}"' in reason else f'cannot parse "{op}": {reason}') from None
    return op


OperatorName = Annotated[str, AfterValidator(_check_operator)]


def _registered(registry: Registry[Any], *extra: str, excluded: tuple[str, ...] = ()) -> AfterValidator:
    """A name the registry knows (an extension registered before the config is read counts too)."""

    def check(name: str) -> str:
        if (name in registry or name in extra) and name not in excluded:
            return name
        raise ValueError(registry.unknown_message(name, extra, excluded))

    return AfterValidator(check)


class SearchSpaceConfig(_Section):
    """Which cells exist: up to `blocks` blocks over `operators`, inputs up to `lookback_depth` back."""

    blocks: int = Field(3, ge=1, le=8, description="maximum blocks per cell (B): the search runs steps b = 1..B")
    lookback_depth: int = Field(
        2, ge=1, le=3, description="how many previous cells a block may read (-1 .. -lookback_depth)"
    )
    operators: list[OperatorName] = Field(
        default_factory=lambda: ["identity", "3x3 conv", "3x3:2dr conv", "1x5-5x1 conv", "2x2 maxpool"],
        min_length=1,
        max_length=64,
        description='operator strings, e.g. "identity", "3x3 conv", "3x3:2dr conv", "1x5-5x1 conv", "2x2 maxpool" '
        "(at most 64)",
    )

    @field_validator("operators")
    @classmethod
    def _unique_operators(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("operators contain duplicates")
        return value


ParetoObjective = Literal["params", "analog_dice", "time"]
Stage = Literal["search", "finalists", "report"]


def _default_objectives() -> list[ParetoObjective]:
    return ["params", "analog_dice"]


def _default_pipeline() -> list[Stage]:
    return ["search", "finalists", "report"]


class SearchStrategyConfig(_Section):
    """How cells are chosen: progressive Pareto (POPNAS), PNAS top-K, or the random/evolution baselines."""

    strategy: Annotated[str, _registered(STRATEGIES)] = Field(
        "progressive",
        description='a registered search strategy: "progressive" (POPNAS\'s Pareto search), '
        '"random" or "evolution" (baselines), or one an extension registers (docs/ARCHITECTURE.md)',
    )
    max_children: int = Field(4, ge=1, description="K: cells kept per step from the predicted Pareto front")
    max_exploration_children: int = Field(
        1, ge=0, description="extra cells per step that use under-represented operators and inputs"
    )
    score_metric: Literal["dice", "mean_iou"] = Field("dice", description="accuracy objective (maximised)")
    additional_pareto_objectives: list[ParetoObjective] = Field(
        default_factory=_default_objectives,
        description="objectives beside the score: params (min), analog_dice (max; old name analog_robustness), "
        "time (min)",
    )
    selection: Literal["hypervolume", "score"] = Field(
        "hypervolume",
        description="how K children are taken from the predicted front: greedy predicted "
        "contribution to the hypervolume of the networks already trained, or POPNAS's highest predicted score",
    )
    selection_optimism: float = Field(
        1.0,
        ge=0,
        description="hypervolume selection counts a child's gain with its predicted Dice and analog "
        "Dice raised by this many leave-one-out errors of a ridge on the trained networks (an upper confidence "
        "bound: the trained front holds the lucky draws, the predictions are means); 0: the predicted means",
    )
    network_seeding: Literal["common", "per_network"] = Field(
        "common",
        description="common: every searched network trains (and is probed) with one seed "
        "(search_strategy.network_seed, else others.seed), so all "
        "draw the same batches and augmentations and Dice differences come from the cells (common random "
        "numbers; a test-retest Spearman of 0.32 vs 0.07 in docs/BENCHMARKS.md); per_network: a seed per cell",
    )
    network_seed: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="seed every searched network trains and is probed with (its base "
        "seed under per_network seeding; null: others.seed). Fix it, with dataset.seed, to compare searches whose "
        "others.seed differs on the same measurements: a cell then scores the same in each",
    )
    pnas_mode: bool = Field(False, description="PNAS: top-K by predicted score, no Pareto front, no exploration")
    b1_max_networks: int | None = Field(
        None,
        ge=1,
        description="cap on step b=1, sampled stratified over params (None: every distinct cell); "
        "the cells left out stay candidates of later steps",
    )
    max_networks: int | None = Field(None, ge=1, description="budget for random/evolution")
    population_size: int = Field(8, ge=2, description="regularised evolution population")
    tournament_size: int = Field(3, ge=1, description="regularised evolution tournament size")
    score_predictor: Annotated[str, _registered(PREDICTORS, "auto")] = Field(
        "auto",
        description='a registered predictor of Dice and analog Dice: "gin" (GIN ensemble), "ridge" / '
        '"forest" (ridge / random forest on cheap features: params, FLOPs, operator counts), "auto" (the ridge up '
        "to 60 trained networks, where it ranked held-out networks better than the GIN, then GIN), or one an "
        "extension registers (docs/ARCHITECTURE.md)",
    )
    predictor_epochs: int = Field(80, ge=1, description="training epochs of the GIN predictors at every step")
    accuracy_predictor_ensemble_units: int = Field(
        3, ge=1, le=10, description="GIN ensemble members (each trained on its own fold)"
    )
    hypervolume_reference: dict[str, float] | None = Field(
        None,
        description="reference point per objective; None: documented rule in search/pareto.py (the search's "
        "picks); the run's reported hypervolume (search/user_region.py) takes params, Dice and analog Dice from it as "
        "its params ceiling (else the run's U-Net's params) and score floors (else 0)",
    )
    rung_epochs: list[int] = Field(
        default_factory=list,
        description="multi-fidelity search (successive halving within each step): cumulative training epochs of "
        "the rungs above rung 0, which is training_hyperparameters.epochs; after each rung the measured Pareto "
        "front (score, params, analog score) of ceil(n / promotion_eta) of the step's networks trains on from its "
        "own weights to the next rung, the rest stop. [] (default): one rung, every network trains the same "
        "epochs. E.g. epochs 2 and [5] with eta 3 costs 2 + 3/3 = 3 epochs per network, as a flat 3 "
        "(docs/ARCHITECTURE.md, Multi-fidelity search)",
    )
    promotion_eta: int = Field(
        3, ge=2, description="successive halving's reduction factor: ceil(n / eta) of a rung's n networks move up"
    )
    _deprecated_names: list[str] = PrivateAttr(default_factory=list)

    @field_validator("rung_epochs")
    @classmethod
    def _increasing_rungs(cls, value: list[int]) -> list[int]:
        if any(e < 2 for e in value) or any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"rung_epochs {value} must be strictly increasing cumulative epochs, each at least 2")
        return value

    @field_validator("additional_pareto_objectives")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("additional_pareto_objectives contain duplicates")
        return value

    @field_validator("hypervolume_reference")
    @classmethod
    def _known_reference_names(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        unknown = sorted(set(value or {}) - set(OBJECTIVES))
        if unknown:
            raise ValueError(f"unknown objective(s) {unknown}; known: {sorted(OBJECTIVES)}")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _rename_deprecated(cls, data: Any, handler: Any) -> SearchStrategyConfig:
        """Accept old objective names (analog_robustness -> analog_dice); the log notes the rename."""
        renamed: set[str] = set()
        if isinstance(data, dict):
            data = dict(data)
            objectives = data.get("additional_pareto_objectives")
            if isinstance(objectives, list):
                renamed |= {o for o in objectives if isinstance(o, str) and o in OBJECTIVE_ALIASES}
                data["additional_pareto_objectives"] = [
                    OBJECTIVE_ALIASES.get(o, o) if isinstance(o, str) else o for o in objectives
                ]
            reference = data.get("hypervolume_reference")
            if isinstance(reference, dict):
                renamed |= {k for k in reference if k in OBJECTIVE_ALIASES}
                data["hypervolume_reference"] = {OBJECTIVE_ALIASES.get(k, k): v for k, v in reference.items()}
        model = handler(data)
        if renamed:
            model._deprecated_names = sorted(renamed)
        return model

    def deprecation_notes(self) -> list[str]:
        """One line per deprecated name this section was written with (logged when the search starts)."""
        return [
            f'search_strategy: objective "{old}" is deprecated, read as "{OBJECTIVE_ALIASES[old]}"'
            for old in self._deprecated_names
        ]


class TrainingConfig(_Section):
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


class ArchitectureConfig(_Section):
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


class AugmentationConfig(_Section):
    """Training-time augmentation (never applied to validation or test data)."""

    enabled: bool = Field(True, description="augment the training split")
    flips: bool = Field(True, description="random horizontal and vertical flips")
    rotations: bool = Field(True, description="random 90-degree rotations")
    intensity_scale: float = Field(0.0, ge=0, lt=1, description="random gain in [1 - s, 1 + s] (0: off)")
    intensity_shift: float = Field(0.0, ge=0, le=1, description="random offset in [-s, s], normalised units (0: off)")
    gaussian_noise: float = Field(
        0.0, ge=0, le=1, description="added gaussian noise, std drawn in [0, s] per image, normalised units (0: off)"
    )
    affine_rotation_deg: float = Field(
        10.0, ge=0, le=45, description="small random rotation in [-d, d] degrees, reflected borders (0: off)"
    )
    affine_scale: float = Field(0.1, ge=0, lt=0.5, description="random zoom in [1 - s, 1 + s] (0: off)")


GeneratedSide = Annotated[int, Field(ge=8, le=8192)]


class DatasetConfig(_Section):
    """Where images come from and how they are split, cropped and normalised."""

    name: Annotated[str, _registered(DATA_SOURCES, excluded=("folder",))] | None = Field(
        "synthetic_nuclei",
        description='a registered data source (set to null when using path): "synthetic_nuclei", '
        '"synthetic_nuclei_hard" (3 classes with the boundary, denser touching nuclei, lower contrast; needs '
        "classes_count 3), or one an extension registers (docs/ARCHITECTURE.md)",
    )
    path: str | None = Field(
        None, description="folder holding images/ and masks/ with matching names (relative to the working folder)"
    )
    classes_count: int = Field(2, ge=2, le=256, description="number of classes, background included")
    ignore_class: int | None = Field(None, ge=0, description="mask value excluded from loss and metrics")
    samples: int | None = Field(
        None,
        ge=4,
        le=1_000_000,
        description="images generated (synthetic; null = 192) or used (folder; null = all, "
        "sorted by name); generated data must also fit in half the available memory (checked before generating)",
    )
    generated_size: tuple[GeneratedSide, GeneratedSide] = Field(
        (96, 96), description="height, width of generated images (8 to 8192 each)"
    )
    generated_channels: Literal[1, 3] = Field(1, description="channels of generated images")
    batch_size: int = Field(16, ge=1, description="training batch size")
    val_test_batch_size: int | None = Field(None, ge=1, description="validation/test batch size (None: batch_size)")
    validation_size: float = Field(0.15, gt=0, lt=1, description="fraction of images held out for validation")
    test_size: float = Field(0.15, ge=0, lt=1, description="fraction of images held out for the final test")
    folds: int = Field(1, ge=1, le=10, description="cross-validation folds (1: a single split)")
    seed: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="seed of the data alone: the generated images, the train/val/test "
        "split and the augmentation draws (null: others.seed). Fix it to compare runs whose others.seed differs "
        "on the same data",
    )
    crop: tuple[int, int] = Field(
        (64, 64),
        validation_alias=AliasChoices("crop", "resize"),
        description="height, width of the crops the networks train on (random crops; validation, test "
        "and predict tile whole images with it); must be divisible by 2**motifs. Old name: resize",
    )
    rescale: float = Field(
        1.0,
        gt=0,
        le=4,
        description="scale factor applied to every image (bilinear) and mask (nearest) when "
        "loaded, before cropping, e.g. 0.5 for 2048 px images of large objects; predict scales its inputs the "
        "same way and its masks back to the input size (1: off)",
    )
    augmentation: AugmentationConfig = Field(
        default_factory=AugmentationConfig, description="training-time augmentation"
    )
    normalisation: Literal["standard", "percentile", "minmax"] = Field(
        "standard",
        description="per image: zero mean and unit variance (measured best, README), percentiles to "
        "0 and 1 (robust to hot pixels), or min-max to [0, 1] (hot pixels squeeze it)",
    )
    normalisation_percentiles: tuple[float, float] = Field(
        (1.0, 99.8), description="low, high percentile of the percentile normalisation (CSBDeep's defaults)"
    )
    normalisation_clip: float | None = Field(
        None,
        gt=0,
        description="clip normalised values to [-c, c] (null: off); bounds hot pixels and saturated "
        "specks, which otherwise set the analog tiles' per-input DAC scale (docs/BENCHMARKS.md)",
    )
    cache: bool = Field(True, description="cache the decoded data set in memory")
    shuffle_buffer: int = Field(256, ge=1, description="tf.data shuffle buffer of the training split")
    class_labels_remapping: dict[int, int] | None = Field(
        None, description="map mask values to class indices, e.g. {255: 1}"
    )
    balance_class_losses: bool = Field(False, description="weight the loss by inverse class frequency")

    @model_validator(mode="after")
    def _source(self) -> DatasetConfig:
        if (self.name is None) == (self.path is None):
            raise ValueError('set exactly one of "name" (built-in data) and "path" (a folder of images/ and masks/)')
        if self.name == "synthetic_nuclei_hard" and self.classes_count != 3:
            raise ValueError('"synthetic_nuclei_hard" is the 3-class boundary task: set classes_count to 3')
        if self.validation_size + self.test_size >= 0.9:
            raise ValueError("validation_size + test_size must leave at least 10% for training")
        for side in self.crop:
            if side < 8:
                raise ValueError("crop sides must be >= 8")
        lo, hi = self.normalisation_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"normalisation_percentiles must satisfy 0 <= low < high <= 100, got {lo}, {hi}")
        if self.ignore_class is not None and self.ignore_class >= self.classes_count:
            raise ValueError(f"ignore_class {self.ignore_class} must be < classes_count {self.classes_count}")
        return self


# Physical ranges of the analog settings: NaN, Infinity and 1e308 would "run" and give meaningless numbers.
MAX_DRIFT_SECONDS = 100 * 365.25 * 86400.0  # 100 years: far past any PCM retention claim
G_MAX_LIMIT_US = 1000.0  # microsiemens; PCM devices reach tens of uS (AIHWKit's default is 25)
DriftSeconds = Annotated[float, Field(gt=0, le=MAX_DRIFT_SECONDS)]
# Devices whose AIHWKit model drifts only to the times it was measured at (ReRamWan2022NoiseModel's coefficient
# table: 1 s, 1 day, 2 days; any other time raises inside the analog worker). Other devices drift to any time.
DEVICE_DRIFT_TIMES: dict[str, tuple[float, ...]] = {"reram_wan2022": (1.0, 86400.0, 172800.0)}


def unsupported_drift_time(device: str, seconds: float) -> str | None:
    """Why `device` cannot be drifted to `seconds` (None: it can); the config and `predict --drift-time` ask."""
    allowed = DEVICE_DRIFT_TIMES.get(device)
    if allowed is None or float(seconds) in allowed:
        return None

    def shown(t: float) -> str:
        return f"{t:,.0f}" if t >= 1 and t == int(t) else f"{t:g}"

    listed = ", ".join(shown(t) for t in allowed)
    return f'{shown(float(seconds))} s: analog.device "{device}" is characterised at drift times {listed} s only'


class AnalogConfig(_Section):
    """AIHWKit settings: the inference tiles (device model `device`), the search-time probe and the finalists' drift
    scoring."""

    device: Literal["pcm", "reram_wan2022", "reram_cmo"] = Field(
        "pcm",
        description="device model of the analog tiles (AIHWKit inference noise model: programming and read "
        "noise, drift): PCM-like (PCMLikeNoiseModel), ReRAM of Wan et al. 2022 (ReRamWan2022NoiseModel) or CMO "
        "ReRAM (ReRamCMONoiseModel); the probe, drift scoring, HWA and predict all use it. reram_wan2022 drifts "
        "only to its measured times: t_inference and eval_times must be 1, 86400 or 172800 s",
    )
    g_max: float = Field(25.0, gt=0, le=G_MAX_LIMIT_US, description="maximum conductance in microsiemens")
    drift_compensation: Literal["global", "none"] = Field("global", description="drift compensation at read-out")
    inp_res: float = Field(1 / 254, gt=0, le=1, description="input (DAC) resolution")
    out_res: float = Field(1 / 254, gt=0, le=1, description="output (ADC) resolution")
    out_noise: float = Field(0.04, ge=0, le=1, description="additive output noise")
    w_noise: float = Field(0.0, ge=0, le=1, description="additive weight read noise per forward pass")
    clip_sigma: float = Field(2.5, gt=0, le=10, description="weights clipped at this many standard deviations")
    weight_scaling: Literal["column", "layer", "none"] = Field(
        "column",
        description="map each tile column's (or layer's) largest |weight| onto the full conductance "
        "range, with a digital output scale (AIHWKit's weight_scaling_omega 1): without it output noise and ADC "
        "steps act on the raw weight magnitudes of the digital network",
    )
    tile_size: int = Field(512, ge=16, le=4096, description="maximum tile rows and columns")
    probe: bool = Field(True, description="measure analog Dice of every network trained in the search")
    t_inference: float = Field(
        2592000.0,
        gt=0,
        le=MAX_DRIFT_SECONDS,
        description="the deployment horizon in seconds: the drift time the "
        "search's analog probe scores (also HWA's checkpoint choice and predict's default; 30 days; at most 100 years)",
    )
    probe_repetitions: int = Field(
        6,
        ge=1,
        le=1000,
        description="independent programmings the probe scores: their mean and std give the "
        "risk-aware analog objective",
    )
    probe_images: int = Field(
        6,
        ge=1,
        description="validation images the probe scores (each programming scores "
        "all of them: the probe's cost is about probe_images x probe_repetitions)",
    )
    probe_whole_images: bool = Field(
        False,
        description="probe whole validation images by sliding-window tiling, as the finalists are scored "
        "(false: one centre crop of each; whole 96x96 images cost about 8x a 64x64 crop, docs/BENCHMARKS.md)",
    )
    risk_k: float = Field(
        1.0,
        ge=0,
        le=10,
        description="the search's analog objective is mean - risk_k x std of the probe's Dice "
        "over programmings (0: the mean), so networks whose chips spread widely rank lower",
    )
    eval_times: list[DriftSeconds] = Field(
        default_factory=lambda: [1.0, 3600.0, 86400.0, 2592000.0, 31536000.0],
        min_length=1,
        description="drift times in seconds for the finalists (1 s, 1 h, 1 day, 30 days, 1 year); each > 0 and at "
        "most 100 years",
    )
    repetitions: int = Field(
        5, ge=2, le=1000, description="programmings per drift time for the finalists (mean and std)"
    )
    hwa_epochs: int = Field(
        2,
        ge=0,
        description="hardware-aware training epochs of the finalists, from the converged weights (0: none); "
        "an epoch is training_hyperparameters.steps_per_epoch batches, as in the digital training (null: one pass)",
    )
    hwa_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="learning-rate schedule of hardware-aware training and of its digital control"
    )
    hwa_digital_control: bool = Field(
        True, description="also fine-tune digitally with the same epochs and schedule (the control of HWA)"
    )
    hwa_learning_rate: float = Field(
        0.003, gt=0, le=10, description="learning rate of hardware-aware training (SGD; 0.01 undoes short-trained nets)"
    )
    hwa_noise_std: float = Field(0.06, ge=0, le=1, description="weight noise injected during hardware-aware training")
    finalists: int = Field(2, ge=1, description="networks from the final front that are retrained and scored")
    selection_rule: Literal["size_buckets", "best_dice", "best_analog", "knee"] = Field(
        "size_buckets",
        description="how finalists are picked from the final front: size_buckets = the best "
        "risk-aware analog score among networks of at most max_params, then in each of finalists - 1 "
        "log-spaced size buckets above it (so at least one finalist is small); best_analog / best_dice = "
        "the front by that score; knee = the Dice / params knee",
    )
    max_params: int | None = Field(
        None,
        ge=1,
        description="size_buckets: params of the small finalist at most (null: "
        "0.15 x the U-Net baseline's params at this architecture)",
    )
    model_selection_epochs: int = Field(4, ge=1, description="epochs of the model-selection training")
    final_epochs: int = Field(
        80, ge=1, description="maximum epochs of the final training (it stops earlier once validation Dice stalls)"
    )
    early_stopping_patience: int = Field(
        15, ge=1, description="final training: epochs without a better validation Dice before stopping"
    )
    macro_variants: bool = Field(False, description="also try finalists with more filters / cells (POPNAS -params)")
    unet_baseline: bool = Field(True, description="also train a plain U-Net as a baseline for comparison")
    recommend_at: DriftSeconds = Field(
        2592000.0,
        description="drift time in seconds at which final/recommendation.json picks the network for "
        "analog use (the nearest of `eval_times` that was scored; 30 days)",
    )
    recommend_max_params: int | None = Field(
        None,
        ge=1,
        description="size budget of the recommendation: networks with more weights are not "
        "recommended (null: no budget)",
    )

    @model_validator(mode="after")
    def _device_drift_times(self) -> AnalogConfig:
        for key, times in (("t_inference", [self.t_inference]), ("eval_times", self.eval_times)):
            for seconds in times:
                reason = unsupported_drift_time(self.device, seconds)
                if reason is not None:
                    raise ValueError(f"{key} {reason}")
        return self


class InferenceConfig(_Section):
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


class OthersConfig(_Section):
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


class RunConfig(_Section):
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


DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "run.json"


# ---------------------------------------------------------------------------------------------------- loading


# A run config is a few KB; a 50 MB operator list took 60 s and 1.27 GB to be refused item by item.
MAX_CONFIG_BYTES = 1_000_000


def load_config(path: str | Path | None) -> RunConfig:
    """Read, parse and validate a JSON config file (None: DEFAULT_CONFIG); every problem is a `UserError`.

    Also checks that `dataset.path` is an existing folder holding images/ and masks/ and stores it as an
    absolute path, so a run folder's frozen config still points at the data when resumed from elsewhere.
    """
    if path is None:
        path = DEFAULT_CONFIG
    source = str(path)
    file = Path(path).expanduser()
    if not file.exists():
        raise UserError(f"config error in {source}: file not found")
    if file.is_dir():
        raise UserError(f"config error in {source}: is a folder, not a JSON file")
    if not file.is_file():
        raise UserError(f"config error in {source}: not a regular file (a FIFO or device would block the read)")
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(
            f"config error in {source}: the file is {file.stat().st_size:,} bytes, over the "
            f"{MAX_CONFIG_BYTES:,} a config may have (a run config is a few KB)"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"config error in {source}: cannot read the file ({exc})") from None
    data = parse_config_text(text, source)
    config = config_from_dict(data, source=source)
    _check_dataset_path(config, source)
    return config


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    """JSON text -> dict; syntax errors name line and column, duplicate keys are errors (JSON keeps the last)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # The hook cannot know where its object sits; it marks the object and the walk below names the path.
        seen = _ObjectWithDuplicates()
        for key, value in pairs:
            if key in seen and key not in seen.duplicates:
                seen.duplicates.append(key)
            seen[key] = value
        return seen

    if not text.strip():
        raise UserError(f"config error in {source}: the file is empty (expected a JSON object)")
    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        lines = text.splitlines()
        shown = lines[exc.lineno - 1].strip() if 0 < exc.lineno <= len(lines) else ""
        near = f' near "{shown[:60]}"' if shown else ""
        before = text[: exc.pos].rstrip()
        if before.endswith(",") and exc.msg.startswith(("Expecting property name", "Expecting value")):
            near += " (JSON allows no comma before a closing } or ])"
        raise UserError(
            f"config error in {source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{near}"
        ) from None
    except RecursionError:
        raise UserError(f"config error in {source}: the JSON is nested too deeply to be a config") from None
    try:
        duplicate = _first_duplicate(data, ())
    except RecursionError:
        raise UserError(f"config error in {source}: the JSON is nested too deeply to be a config") from None
    if duplicate is not None:
        loc, key = duplicate
        where = f"in {_format_loc(loc)}" if loc else "at the top level"
        raise UserError(f'config error in {source}: key "{key}" appears twice {where} (JSON would keep only the last)')
    if not isinstance(data, dict):
        raise UserError(
            f"config error in {source}: the top level must be a JSON object with sections such as "
            f'"search_space" and "dataset" (got {_json_kind(data)})'
        )
    return data


def _note_deprecated_resize(d: dict[str, Any], where: str) -> None:
    """`dataset.resize` is the old name of `dataset.crop` (it always cropped, never resized): it is still read
    (the field's alias), with a warning; both at once is an error."""
    dataset = d.get("dataset")
    if not isinstance(dataset, dict) or "resize" not in dataset:
        return
    if "crop" in dataset:
        raise UserError(f'{where}: dataset: set "crop" only; "resize" is its deprecated old name')
    logging.getLogger("popnas_seg.config").warning(
        "dataset.resize is deprecated: it is read as dataset.crop (the networks train on random crops of this "
        "size and whole images are tiled with it); rename the key. dataset.rescale is the option that resizes"
    )


def config_from_dict(d: dict[str, Any], source: str | None = None) -> RunConfig:
    """Validate a plain dict (e.g. parsed JSON) into a RunConfig; errors become one `UserError` message."""
    where = f"config error in {source}" if source else "config error"
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a JSON object of sections (got {_json_kind(d)})")
    try:
        # Through JSON text in strict mode: "2" or true is not an integer, 2.0 is not a count, while lists still
        # fill tuple fields and string keys integer-keyed maps, exactly as a JSON file is read.
        text = json.dumps(d)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: not representable as JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{where}: nested too deeply to be a config") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise UserError(f"{where}: {len(text):,} bytes of JSON, over the {MAX_CONFIG_BYTES:,} a config may have")
    _note_deprecated_resize(d, where)
    try:
        return RunConfig.model_validate_json(text, strict=True)
    except ValidationError as exc:
        problems = [_describe_error(err) for err in exc.errors()]
    if len(problems) == 1:
        raise UserError(f"{where}: {problems[0]}")
    listed = "\n".join(f"  {p}" for p in problems)
    raise UserError(f"{where}: {len(problems)} problems:\n{listed}")


def dump_config(cfg: RunConfig) -> dict[str, Any]:
    """JSON-ready dict of every setting (defaults included); `config_from_dict` reads it back unchanged."""
    return cfg.model_dump(mode="json")


def _check_dataset_path(config: RunConfig, source: str) -> None:
    """Fail before anything is created if the data folder is missing; freeze it as an absolute path."""
    raw = config.dataset.path
    if raw is None:
        return
    folder = Path(raw).expanduser()
    if not folder.is_absolute():
        folder = Path.cwd() / folder
    where = f'config error in {source}: dataset.path: folder "{raw}"'
    resolved = "" if Path(raw).is_absolute() else f" (looked in {folder})"
    reason = not_a_folder_reason(folder)
    if reason is not None:
        raise UserError(f"{where} {reason}{resolved}")
    missing = [sub for sub in ("images", "masks") if not (folder / sub).is_dir()]
    if missing:
        names = " and ".join(f"{m}/" for m in missing)
        raise UserError(f"{where} has no {names} subfolder (it must hold images/ and masks/ with matching file names)")
    config.dataset.path = str(folder.resolve())


class _ObjectWithDuplicates(dict[str, Any]):
    """A parsed JSON object that remembers keys written more than once (json keeps only the last value)."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[str] = []


def _first_duplicate(value: Any, loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str] | None:
    """(location, key) of the first object, depth first, with a repeated key; None if there is none."""
    if isinstance(value, _ObjectWithDuplicates) and value.duplicates:
        return loc, value.duplicates[0]
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = _first_duplicate(child, (*loc, key))
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------------------------------- messages

_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}
_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list [...]",
    "tuple_type": "a list [...]",
    "dict_type": "an object {...}",
    "model_type": "an object {...}",
    "model_attributes_type": "an object {...}",
    "none_required": "null",
    "finite_number": "a finite number",
}


def _describe_error(err: ErrorDetails) -> str:
    """One pydantic error -> `key.path: what is wrong (got X)` in the user's JSON terms."""
    kind: str = err["type"]
    loc: tuple[Any, ...] = tuple(err["loc"])
    ctx: dict[str, Any] = err.get("ctx") or {}
    value = err.get("input")

    if kind == "extra_forbidden":
        return f"{_format_loc(loc)}: unknown key{_did_you_mean_key(loc)}"
    if kind == "missing" and loc and isinstance(loc[-1], int):
        size = _tuple_size(loc[:-1])
        need = f"exactly {size}" if size else "more"
        return f"{_format_loc(loc[:-1])}: must hold {need} values (got {_show(value)})"
    if kind in ("too_short", "too_long"):
        size = _tuple_size(loc)
        if size:
            return f"{_format_loc(loc)}: must hold exactly {size} values (got {_show(value)})"
        bound = f"at least {ctx.get('min_length')}" if kind == "too_short" else f"at most {ctx.get('max_length')}"
        return f"{_format_loc(loc)}: must hold {bound} items (got {ctx.get('actual_length', _show(value))})"
    if kind in _BOUNDS:
        key, symbol = _BOUNDS[kind]
        return f"{_format_loc(loc)}: must be {symbol} {ctx.get(key)} (got {_show(value)})"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'|(\d+)", str(ctx.get("expected", "")))
        choices = [a or b for a, b in options]
        listed = ", ".join(f'"{c}"' for c in choices)
        hint = ""
        if isinstance(value, str):
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
        return f"{_format_loc(loc)}: must be one of {listed} (got {_show(value)}){hint}"
    if kind in ("value_error", "assertion_error"):
        message = str(err.get("msg", ""))
        message = re.sub(r"^(Value error|Assertion failed), ", "", message)
        return f"{_format_loc(loc)}: {message}" if loc else message
    if kind in _TYPE_WORDS:
        what = _TYPE_WORDS[kind]
        if loc and loc[-1] == "[key]":
            return f"{_format_loc(loc[:-2])}: key {_show(loc[-2])} must be {what}"
        return f"{_format_loc(loc)}: must be {what} (got {_show(value)})"
    if kind == "missing":
        return f"{_format_loc(loc)}: required key is missing"
    message = str(err.get("msg", "invalid value"))
    message = message[:1].lower() + message[1:]
    return f"{_format_loc(loc)}: {message} (got {_show(value)})"


def _format_loc(loc: tuple[Any, ...]) -> str:
    """('search_space', 'operators', 2) -> 'search_space.operators[2]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _show(value: Any) -> str:
    """A value as the user wrote it in JSON, shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_kind(value: Any) -> str:
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _field_at(loc: tuple[Any, ...]) -> Any:
    """The FieldInfo a location points to (None where it leaves the schema, e.g. inside a list)."""
    model: Any = RunConfig
    field = None
    for part in loc:
        if not (isinstance(part, str) and isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = field.annotation
    return field


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model that owns the keys at `loc` (RunConfig for the top level)."""
    if not loc:
        return RunConfig
    field = _field_at(loc)
    ann = getattr(field, "annotation", None)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _tuple_size(loc: tuple[Any, ...]) -> int | None:
    ann = getattr(_field_at(loc), "annotation", None)
    if typing.get_origin(ann) is tuple:
        args = typing.get_args(ann)
        if args and Ellipsis not in args:
            return len(args)
    return None


def _all_key_paths(model: type[BaseModel] = RunConfig, prefix: str = "") -> dict[str, list[str]]:
    """Every key name in the schema -> the dotted paths where it is valid (for cross-section hints)."""
    found: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        found.setdefault(name, []).append(path)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for key, paths in _all_key_paths(ann, f"{path}.").items():
                found.setdefault(key, []).extend(paths)
    return found


def _did_you_mean_key(loc: tuple[Any, ...]) -> str:
    """A close key in the same section, else the section where this exact key belongs."""
    key = str(loc[-1])
    section = _section_at(loc[:-1])
    if section is not None:
        close = difflib.get_close_matches(key, list(section.model_fields), n=1, cutoff=0.6)
        if close:
            return f' (did you mean "{close[0]}"?)'
    elsewhere = _all_key_paths().get(key, [])
    if elsewhere:
        return f' (it belongs in "{elsewhere[0]}")'
    return ""
