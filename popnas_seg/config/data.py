"""The `dataset` section and its `augmentation` subsection: where images come from and how they are prepared."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, model_validator

from popnas_seg.config.base import Section, registered
from popnas_seg.registry import DATA_SOURCES


class AugmentationConfig(Section):
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


class DatasetConfig(Section):
    """Where images come from and how they are split, cropped and normalised."""

    name: Annotated[str, registered(DATA_SOURCES, excluded=("folder",))] | None = Field(
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
