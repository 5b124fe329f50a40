"""The search's score predictor ranks cells it has not seen, on recorded results of real benchmark runs (issue 12).

Fixture `fixtures/search_results_e8.csv`: every network of seeds 1-4 of the 8-epochs-per-network search benchmark in
docs/benchmarks_log.md (progressive, random and evolution runs of both tasks), written by
`python -m benchmarks.search.bench_search --analyse-only ... --fixture tests/fixtures/search_results_e8.csv`;
`fixtures/search_e8_<task>.json` are those runs' configs. A cell trained by several runs counts once, with its
mean Dice (a less noisy label than one training), and train and held-out cells never share a cell.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from popnas_seg.config import load_config
from popnas_seg.predictors.quality import rank_quality
from popnas_seg.runlog.tables import read_csv
from popnas_seg.search.strategies import ProgressiveStrategy
from popnas_seg.search_space.encoding import Cell

FIXTURES = Path(__file__).parent / "fixtures"
TASKS = ("default", "hard")


def _strategy(task: str) -> ProgressiveStrategy:
    config = load_config(FIXTURES / f"search_e8_{task}.json")
    height, width = config.dataset.crop
    return ProgressiveStrategy(config, (height, width, 1), config.dataset.classes_count)


def _cells(task: str) -> tuple[list[Cell], np.ndarray, list[int]]:
    """Distinct cells of the task's recorded networks, their mean Dice and the recorded params."""
    dice: dict[str, list[float]] = defaultdict(list)
    cells: dict[str, Cell] = {}
    params: dict[str, int] = {}
    for row in read_csv(FIXTURES / "search_results_e8.csv"):
        if row["task"] != task or row["status"] != "ok":
            continue
        cell = Cell.from_string(row["encoding"])
        cells[cell.key()] = cell
        dice[cell.key()].append(float(row["dice"]))
        params[cell.key()] = int(row["params"])
    keys = sorted(cells)
    return [cells[k] for k in keys], np.array([np.mean(dice[k]) for k in keys]), [params[k] for k in keys]


@pytest.mark.parametrize("task", TASKS)
def test_the_fixture_matches_its_config(task: str) -> None:
    """The features the predictor sees (exact params from the encoding) are those the recorded runs had."""
    strategy = _strategy(task)
    cells, dice, params = _cells(task)
    assert len(cells) >= 100 and np.all((dice >= 0) & (dice <= 1))
    assert [strategy.cost(c)[0] for c in cells] == params


def _held_out_spearman(task: str, train_size: int, repeats: int) -> tuple[list[float], str]:
    strategy = _strategy(task)
    cells, dice, _ = _cells(task)
    spearman, kinds = [], set()
    for rep in range(repeats):
        order = np.random.default_rng([train_size, rep]).permutation(len(cells))
        train, test = order[:train_size], order[train_size:]
        predictor, kind = strategy.score_predictor(train_size, seed=rep)
        kinds.add(kind)
        predictor.fit([cells[i] for i in train], dice[train])
        spearman.append(rank_quality(predictor.predict([cells[i] for i in test]), dice[test])["spearman"])
    assert len(kinds) == 1
    return spearman, kinds.pop()


def test_the_search_predictor_ranks_unseen_cells_of_the_hard_task() -> None:
    """At 20 trained networks (the search's default "auto" predictor: the cheap-feature ridge) the median
    Spearman on every other recorded cell of the hard task was 0.45 when this fixture was recorded
    (docs/benchmarks_log.md), below the issue's 0.5 bar: at that size the labels' own noise (one 8-epoch training per
    cell; two trainings of a cell agree at Spearman 0.23) bounds it, so this guards the measured level against
    regressions (a predictor that ranks no better than chance fails it). The default task is not asserted: its
    cells' Dice spread (interquartile 0.88-0.91) lies within one training's noise."""
    spearman, kind = _held_out_spearman("hard", 20, repeats=10)
    assert kind == "ridge"
    assert np.median(spearman) >= 0.35, spearman


def test_with_60_networks_the_search_predictor_reaches_the_issues_bar_on_the_hard_task() -> None:
    """The issue's bar, Spearman >= 0.5 on held-out networks of recorded runs, at 60 trained networks, where the
    "auto" predictor is still the ridge (measured 0.52; POPNAS's GIN ensemble, 3 members x 80 epochs, reached 0.37
    on 6 of these splits, which is why "auto" keeps the ridge up to 60 networks)."""
    spearman, kind = _held_out_spearman("hard", 60, repeats=10)
    assert kind == "ridge"
    assert np.median(spearman) >= 0.5, spearman
