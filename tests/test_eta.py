"""The search ETA (search/eta.py): measured per-network time by cell size, honest when it cannot know."""

from __future__ import annotations

import pytest

from popnas_seg.config import RunConfig
from popnas_seg.search.eta import Estimate, NetworkTimes, format_eta, progressive_future_blocks, search_remaining
from popnas_seg.search.strategies import progressive_budget


def _config(strategy: str = "progressive") -> RunConfig:
    return RunConfig.model_validate(
        {
            "search_space": {"blocks": 3, "operators": ["identity", "3x3 conv"]},
            "search_strategy": {
                "strategy": strategy,
                "max_children": 4,
                "max_exploration_children": 2,
                "b1_max_networks": 5,
            },
        }
    )


def test_nothing_measured_gives_no_estimate() -> None:
    times = NetworkTimes()
    assert times.remaining([1, 1]) is None
    assert format_eta(times.remaining([1])) == "?"
    assert format_eta(search_remaining(times, _config(), [1, 1], [], 1, 0)) == "?"


def test_step_one_gets_an_eta_after_its_first_network_and_the_search_a_lower_bound() -> None:
    times = NetworkTimes()
    times.add(1, 10.0)
    step = times.remaining([1, 1, 1])
    assert step == Estimate(30.0) and format_eta(step) == "30s"
    search = search_remaining(times, _config(), [1, 1, 1], [], 1, 0)
    assert search is not None and search.lower_bound, "bigger cells were never measured: at least, not about"
    # 3 left in step 1, then step 2: 4 children + 2 exploration, step 3: 4 children, each >= 10 s
    assert search.seconds == pytest.approx(10.0 * (3 + 6 + 4))
    assert format_eta(search) == "≥2m10s"


def test_estimates_converge_to_the_measured_mean_per_size() -> None:
    times = NetworkTimes()
    for seconds in (8.0, 12.0, 10.0, 10.0):
        times.add(1, seconds)
    for seconds in (30.0, 34.0):
        times.add(2, seconds)
    assert times.per_network(1) == Estimate(10.0)
    assert times.per_network(2) == Estimate(32.0)
    three = times.per_network(3)  # two sizes measured: extrapolated along the line through the means
    assert three is not None and not three.lower_bound and three.seconds == pytest.approx(54.0)
    search = search_remaining(times, _config(), [2, 2], [], 2, 0)
    assert search is not None and not search.lower_bound
    assert search.seconds == pytest.approx(2 * 32.0 + 4 * 54.0)


def test_a_size_measured_as_faster_never_extrapolates_below_zero() -> None:
    times = NetworkTimes()
    times.add(1, 50.0)
    times.add(2, 5.0)
    three = times.per_network(3)
    assert three is not None and three.seconds >= 0.0
    assert three.seconds == pytest.approx(27.5), "a falling trend is clipped to flat (slope >= 0)"


def test_future_progressive_steps_match_the_budget() -> None:
    config = _config()
    future = progressive_future_blocks(config, 1)
    assert future == [2] * 6 + [3] * 4
    assert 5 + len(future) == progressive_budget(config)
    assert progressive_future_blocks(config, 3) == []


def test_random_search_counts_unplanned_networks_at_the_overall_mean() -> None:
    times = NetworkTimes()
    times.add(1, 10.0)
    times.add(3, 30.0)
    search = search_remaining(times, _config("random"), [2], [], 1, unplanned_count=5)
    assert search is not None
    assert search.seconds == pytest.approx(20.0 + 5 * 20.0)


def test_format() -> None:
    assert format_eta(None) == "?"
    assert format_eta(Estimate(59.4)) == "59s"
    assert format_eta(Estimate(3725.0)) == "1h02m"
    assert format_eta(Estimate(61.0, lower_bound=True)) == "≥1m01s"
