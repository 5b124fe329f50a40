"""The search sections: `search_space` (which cells exist) and `search_strategy` (how cells are chosen)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator

from popnas_seg.config.base import Section, registered
from popnas_seg.objectives import OBJECTIVE_ALIASES, OBJECTIVES
from popnas_seg.registry import PREDICTORS, STRATEGIES


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


class SearchSpaceConfig(Section):
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


def _default_objectives() -> list[ParetoObjective]:
    return ["params", "analog_dice"]


class SearchStrategyConfig(Section):
    """How cells are chosen: progressive Pareto (POPNAS), PNAS top-K, or the random/evolution baselines."""

    strategy: Annotated[str, registered(STRATEGIES)] = Field(
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
    score_predictor: Annotated[str, registered(PREDICTORS, "auto")] = Field(
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
