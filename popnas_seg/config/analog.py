"""The `analog` section (AIHWKit settings) and the physical limits of the analog settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from popnas_seg.config.base import Section

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


class AnalogConfig(Section):
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
    hwa_noise_type: Literal["additive", "multiplicative"] = Field(
        "additive",
        description="additive: Gaussian noise of hwa_noise_std x the layer's largest weight; multiplicative: each "
        "weight times 1 + hwa_noise_std x a Gaussian, the form of PCM drift's device-to-device spread",
    )
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
