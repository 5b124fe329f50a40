"""The mean oracle of bench_search_oracle.py: it must know the means the cheap features can state, draw the
luck with the residuals' spread and correlation, and pick by expected gain, not by the means alone."""

from __future__ import annotations

import numpy as np

from benchmarks.search import bench_search_oracle as O  # noqa: E402
from popnas_seg.search.pareto import hypervolume  # noqa: E402


def _pool(seed: int = 0, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells whose mean Dice rises with params (one feature) plus luck shared by Dice and analog Dice."""
    rng = np.random.default_rng(seed)
    params = rng.uniform(100, 10_000, n)
    mean = 0.80 + 0.1 * params / 10_000
    luck = rng.normal(0, 0.02, n)
    values = np.stack([mean + luck, params, mean - 0.01 + luck + rng.normal(0, 0.005, n)], axis=1)
    return params[:, None], values, mean


def test_mean_model_states_the_means_and_the_luck() -> None:
    features, values, mean = _pool()
    means, cov = O.mean_model(features, values, [0, 2])
    assert np.abs(means[:, 0] - mean).max() < 0.01
    np.testing.assert_array_equal(means[:, 1], values[:, 1])  # params are exact
    sd = np.sqrt(np.diag(cov))
    assert 0.017 < sd[0] < 0.023 and cov[0, 1] / (sd[0] * sd[1]) > 0.9


def test_oracle_picks_by_expected_gain() -> None:
    """With luck of sd 0.02, the expected gain spreads picks along the front by params; the picks are distinct,
    fixed by the seed, and their measured hypervolume beats that of as many random cells of the pool."""
    features, values, _ = _pool()
    means, cov = O.mean_model(features, values, [0, 2])
    maximise, reference = [True, False, True], np.array([0.0, 11_000.0, 0.0])
    picks = O.oracle_picks(means, cov, [0, 2], maximise, reference, [12], 16, seed=1)
    assert len(set(picks)) == 12
    assert picks == O.oracle_picks(means, cov, [0, 2], maximise, reference, [12], 16, seed=1)
    # in steps against the measured earlier picks: the first step is the same, the rest see what it measured
    stepped = O.oracle_picks(means, cov, [0, 2], maximise, reference, [4, 4, 4], 16, seed=1, measured=values)
    assert len(set(stepped)) == 12
    assert stepped[:4] == O.oracle_picks(means, cov, [0, 2], maximise, reference, [4], 16, seed=1)
    oracle = hypervolume(values[picks], maximise, reference)
    rng = np.random.default_rng(0)
    randoms = [hypervolume(values[rng.choice(len(values), 12, replace=False)], maximise, reference) for _ in range(20)]
    assert oracle > np.median(randoms)
    assert np.ptp(values[picks, 1]) > 5_000  # cheap and costly cells, not a cluster


def test_step_sizes_are_the_progressive_budget() -> None:
    """b1, then K plus the exploration child on every step but the last: 10 + 8 + 7 = 25 at the defaults."""
    from argparse import Namespace

    assert O.step_sizes(Namespace(b1=10, max_children=7, exploration=1, blocks=3)) == [10, 8, 7]
    assert O.step_sizes(Namespace(b1=6, max_children=2, exploration=0, blocks=2)) == [6, 2]


def test_inherited_luck_pairs_each_child_with_its_parent() -> None:
    """Children carry their parent's luck here (r 1 over 3 pairs); a cell whose parent is not in the pool is
    left out."""
    from popnas_seg.search_space.encoding import Block, Cell

    a, b = Block(-1, "identity", -2, "3x3 conv"), Block(0, "3x3 conv", -1, "identity")
    c, d = Block(-2, "identity", -2, "identity"), Block(-1, "3x3 conv", -1, "3x3 conv")
    cells = [Cell((a,)), Cell((a, b)), Cell((c,)), Cell((c, b)), Cell((a, c)), Cell((d, b))]
    luck = np.array([0.02, 0.03, -0.01, 0.0, 0.025, 5.0])
    pairs, r, _ = O.inherited_luck(cells, luck)
    assert pairs == 3 and r > 0.9
