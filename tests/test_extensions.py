"""Extension points (issue 33 item 4): a toy strategy, a toy predictor and a toy data source are added through
the registries docs/ARCHITECTURE.md documents, without editing the runner, and run; `analog.device` picks the
AIHWKit noise model."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from popnas_seg.atomic import atomic_write_json
from popnas_seg.config import RunConfig, config_from_dict
from popnas_seg.data.sources import LoadedImages, register_data_source
from popnas_seg.errors import UserError
from popnas_seg.models.cost import count_params
from popnas_seg.predictors.registry import PredictorSpec, register_predictor
from popnas_seg.registry import DATA_SOURCES, PREDICTORS, STRATEGIES
from popnas_seg.results import TrainingResult
from popnas_seg.runlog.folder import RunFolder
from popnas_seg.search.runner import SearchRunner
from popnas_seg.search.strategies import PlannedNetwork, StepPlan, StrategyContext, register_strategy
from popnas_seg.search_space.encoding import Cell, expand_cell, single_block_cells

SEARCH = {
    "search_space": {"blocks": 2, "lookback_depth": 1, "operators": ["identity", "3x3 conv"]},
    "search_strategy": {"max_children": 2, "max_exploration_children": 0, "additional_pareto_objectives": ["params"]},
    "architecture_hyperparameters": {"filters": 4, "motifs": 1, "normal_cells_per_motif": 0},
    "dataset": {"crop": [16, 16]},
    "analog": {"probe": False},
    "others": {"seed": 5},
}


class FakeData:
    input_shape = (16, 16, 1)
    classes_count = 2


class FakeEvaluator:
    """Trains nothing: Dice grows with the cell's exact params, as a real search roughly measures."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    def evaluate(self, job: Any) -> TrainingResult:
        cell = Cell.from_string(job.encoding)
        params = int(count_params(cell, self.config.architecture_hyperparameters, 1, 2))
        Path(job.out_dir).mkdir(parents=True, exist_ok=True)
        dice = params / (params + 2000.0)
        return TrainingResult(
            network_id=job.network_id,
            encoding=job.encoding,
            blocks=len(cell.blocks),
            dice=dice,
            miou=dice,
            params=params,
            flops=params * 256,
            train_time_s=1.0 + len(cell.blocks),
            inference_time_ms=1.0,
            epochs=1,
            origin=job.origin,
            step=job.step,
        )


def _search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **strategy: Any) -> tuple[RunFolder, list[TrainingResult]]:
    raw = json.loads(json.dumps(SEARCH))
    raw["search_strategy"].update(strategy)
    config = config_from_dict(raw)
    run = RunFolder.create(tmp_path / "logs", "x", config)
    monkeypatch.setattr(SearchRunner, "_evaluator", lambda self: FakeEvaluator(self.config))
    monkeypatch.setattr(SearchRunner, "_plots", lambda self: None)  # figures are not what these tests check
    try:
        results = SearchRunner(run, config, FakeData(), logging.getLogger("test")).run_search()
    finally:
        run.close()
    return run, results


# ------------------------------------------------------------------------------------------ a toy strategy


class CheapestFirst:
    """Toy strategy: every single-block cell in step 1, one block added to the cheapest of them in step 2."""

    def __init__(self, context: StrategyContext) -> None:
        self.space = context.config.search_space

    def planned_total(self) -> int:
        return 5

    def plan_step(self, step: int, history: list[TrainingResult]) -> StepPlan | None:
        if step == 1:
            cells = single_block_cells(self.space.operators, self.space.lookback_depth)
            return StepPlan(1, [PlannedNetwork(c, "toy") for c in cells], [], [])
        if step == 2:
            cheapest = Cell.from_string(min(history, key=lambda r: (r.params, r.network_id)).encoding)
            child = expand_cell(cheapest, self.space.operators, self.space.lookback_depth)[0]
            return StepPlan(2, [PlannedNetwork(child, "toy")], [], [])
        return None


@pytest.fixture
def toy_strategy() -> Iterator[str]:
    register_strategy("toy_cheapest_first")(CheapestFirst)
    yield "toy_cheapest_first"
    STRATEGIES.remove("toy_cheapest_first")


def test_a_registered_strategy_is_a_valid_config_name_and_runs_through_the_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy_strategy: str
) -> None:
    run, results = _search(tmp_path, monkeypatch, strategy=toy_strategy)
    assert [r.step for r in results] == [1, 1, 1, 2]  # 3 single-block cells (2 ops, 1 lookback), then 1 child
    assert {r.origin for r in results} == {"toy"}
    cheapest = min(results[:3], key=lambda r: r.params)
    child = Cell.from_string(results[3].encoding)
    assert len(child.blocks) == 2 and set(Cell.from_string(cheapest.encoding).blocks) <= set(child.blocks)
    events = [json.loads(line)["event"] for line in (run.path / "restore" / "journal.jsonl").read_text().splitlines()]
    assert events.count("step_finished") == 2 and events[-1] == "search_finished"


def test_a_strategy_name_nothing_registered_is_one_config_error_listing_the_registered_ones(toy_strategy: str) -> None:
    with pytest.raises(UserError) as caught:
        config_from_dict({"search_strategy": {"strategy": "toy_cheapest"}})
    message = str(caught.value)
    assert message.count("\n") == 0
    assert (
        'search_strategy.strategy: must be a registered search strategy, one of "evolution", "progressive", '
        '"random", "toy_cheapest_first" (got "toy_cheapest") (did you mean "toy_cheapest_first"?)' in message
    )
    with pytest.raises(ValueError, match='"random" is already registered'):
        register_strategy("random")(CheapestFirst)


# ------------------------------------------------------------------------------------------ a toy predictor


class BlocksPredictor:
    """Toy score predictor: the mean measured score plus 0.01 per block (it ranks bigger cells higher)."""

    def __init__(self, seed: int) -> None:
        self.seed, self.mean = seed, 0.0

    def fit(self, cells: Sequence[Any], targets: Sequence[float]) -> BlocksPredictor:
        self.mean = float(np.mean(targets))
        return self

    def predict(self, cells: Sequence[Any]) -> np.ndarray:
        return np.array([self.mean + 0.01 * len(c.blocks) for c in cells])

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_json(path, {"mean": self.mean, "seed": self.seed})


@pytest.fixture
def toy_predictor() -> Iterator[str]:
    register_predictor("toy_blocks")(
        PredictorSpec(lambda context: BlocksPredictor(context.seed), lambda target: f"toy_blocks_{target}.json")
    )
    yield "toy_blocks"
    PREDICTORS.remove("toy_blocks")


def test_a_registered_predictor_scores_the_progressive_search_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy_predictor: str
) -> None:
    run, results = _search(tmp_path, monkeypatch, score_predictor=toy_predictor)
    step1 = [r for r in results if r.step == 1]
    assert len(step1) == 3 and any(r.step == 2 for r in results)
    saved = json.loads((run.predictors_dir / "b2" / "toy_blocks_score.json").read_text())
    assert saved["mean"] == pytest.approx(np.mean([r.dice for r in step1]))
    with (run.path / "csv" / "predictions_b2.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["blocks"] == "2" for row in rows)
    assert [float(row["predicted_dice"]) for row in rows] == pytest.approx([saved["mean"] + 0.02] * len(rows))
    assert not list((run.predictors_dir / "b2").glob("ridge_*"))  # the toy, not the default "auto" ridge


def test_an_unregistered_predictor_name_is_refused_and_the_default_stays_auto() -> None:
    assert RunConfig().search_strategy.score_predictor == "auto"
    with pytest.raises(ValueError, match='"auto" is the rule'):
        register_predictor("auto")
    with pytest.raises(
        UserError,
        match=r'score_predictor: must be a registered score predictor, one of "auto", '
        r'"forest", "gin", "ridge" \(got "gcn"\)',
    ):
        config_from_dict({"search_strategy": {"score_predictor": "gcn"}})


# ------------------------------------------------------------------------------------------ a toy data source


def _squares(cfg: Any, seed: int) -> LoadedImages:
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(cfg.samples or 12):
        mask = np.zeros((20, 20), np.int32)
        y, x = rng.integers(2, 12, 2)
        mask[y : y + 6, x : x + 6] = 1
        images.append((mask * 2.0 + rng.normal(0, 0.3, mask.shape))[..., None].astype(np.float32))
        masks.append(mask)
    return LoadedImages(images, masks, [f"square_{i:02d}" for i in range(len(masks))], f"squares(seed={seed})")


@pytest.fixture
def toy_source() -> Iterator[str]:
    register_data_source("toy_squares")(_squares)
    yield "toy_squares"
    DATA_SOURCES.remove("toy_squares")


def test_a_registered_data_source_is_loaded_split_and_cropped_like_the_built_ins(toy_source: str) -> None:
    from popnas_seg.data.pipeline import load_data

    config = config_from_dict({"dataset": {"name": toy_source, "samples": 12, "crop": [16, 16]}})
    data = load_data(config.dataset, seed=4)
    assert data.source == "squares(seed=4)"
    assert data.input_shape == (16, 16, 1)
    assert sum(data.split_sizes().values()) == 12
    x, y = data.val_arrays()
    assert x.shape[1:] == (16, 16, 1) and abs(float(x.mean())) < 0.2  # normalised per image ("standard")
    assert set(np.unique(y)) <= {0, 1}


def test_data_source_names_are_checked_and_the_folder_is_chosen_by_path_only(toy_source: str) -> None:
    with pytest.raises(
        UserError,
        match=r"dataset.name: must be a registered data source, one of "
        r'"synthetic_nuclei", "synthetic_nuclei_hard", "toy_squares" '
        r'\(got "squares"\) \(did you mean "toy_squares"\?\)',
    ):
        config_from_dict({"dataset": {"name": "squares"}})
    with pytest.raises(UserError, match='got "folder"'):
        config_from_dict({"dataset": {"name": "folder"}})


# ------------------------------------------------------------------------------------------ analog.device


@pytest.mark.parametrize(
    "device, model",
    [("pcm", "PCMLikeNoiseModel"), ("reram_wan2022", "ReRamWan2022NoiseModel"), ("reram_cmo", "ReRamCMONoiseModel")],
)
def test_analog_device_picks_the_noise_model_of_every_tile_configuration(device: str, model: str) -> None:
    from popnas_seg.analog.rpu import TILES, hwa_rpu_config, inference_rpu_config

    cfg = config_from_dict(
        {"analog": {"device": device, "g_max": 20.0, "t_inference": 86400.0, "eval_times": [1.0, 86400.0]}}
    ).analog
    for make, tiles in [(make, tiles) for make in (inference_rpu_config, hwa_rpu_config) for tiles in TILES]:
        noise = make(cfg, tiles).noise_model
        assert type(noise).__name__ == model
        assert float(noise.g_max) == 20.0


def test_analog_device_defaults_to_pcm_and_refuses_unknown_devices() -> None:
    assert RunConfig().analog.device == "pcm"
    with pytest.raises(
        UserError,
        match=r'analog.device: must be one of "pcm", "reram_wan2022", "reram_cmo" '
        r'\(got "reram"\)',
    ):
        config_from_dict({"analog": {"device": "reram"}})


# ------------------------------------------------------------------------------------------ the documented examples


def _documented_examples() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Extension points", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


@pytest.fixture
def documented_extensions() -> Iterator[None]:
    examples = _documented_examples()
    assert len(examples) == 2, "docs/ARCHITECTURE.md should show one strategy and one predictor"
    try:
        for code in examples:
            exec(compile(code, "docs/ARCHITECTURE.md", "exec"), {"__name__": "architecture_example"})
        yield
    finally:
        STRATEGIES.remove("cheapest_random")
        PREDICTORS.remove("nearest")


def test_the_architecture_doc_examples_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, documented_extensions: None
) -> None:
    _, results = _search(tmp_path / "strategy", monkeypatch, strategy="cheapest_random")
    assert len(results) == 20 and {r.origin for r in results} == {"cheapest_random"}
    assert len({r.encoding for r in results}) == 20
    run, results = _search(tmp_path / "predictor", monkeypatch, score_predictor="nearest")
    assert any(r.step == 2 for r in results)
    saved = json.loads((run.predictors_dir / "b2" / "nearest_score.json").read_text())
    assert saved["k"] == 3 and len(saved["y"]) == sum(r.step == 1 for r in results)


def test_a_device_measured_at_few_drift_times_refuses_others_in_the_config() -> None:
    with pytest.raises(UserError) as caught:
        config_from_dict({"analog": {"device": "reram_wan2022"}})  # the default horizon is 30 days
    assert str(caught.value) == (
        'config error: analog: t_inference 2,592,000 s: analog.device "reram_wan2022" is '
        "characterised at drift times 1, 86,400, 172,800 s only"
    )
    with pytest.raises(UserError, match=r"eval_times 3,600 s: analog.device"):
        config_from_dict({"analog": {"device": "reram_wan2022", "t_inference": 86400, "eval_times": [1, 3600]}})
    measured = {"device": "reram_wan2022", "t_inference": 86400, "eval_times": [1, 86400, 172800]}
    assert config_from_dict({"analog": measured}).analog.eval_times == [1.0, 86400.0, 172800.0]
    assert (
        config_from_dict({"analog": {"device": "reram_cmo", "eval_times": [3600, 31536000]}}).analog.device
        == "reram_cmo"
    )
