"""bench_fidelity's table: the test-retest Spearman and top-3 agreement of two seeds' ranked scores."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.search import bench_fidelity as F


def _run(scores: list[float], rung0: list[float], top: list[int]) -> dict:
    cells = [f"c{i}" for i in range(len(scores))]
    return {
        "score": dict(zip(cells, scores)),
        "rung0": dict(zip(cells, rung0)),
        "top": dict(zip(cells, top)),
        "epochs": 32,
        "seconds": 10.0,
    }


def test_table_reports_both_seeds_agreement() -> None:
    a = _run([0.9, 0.8, 0.7, 0.6, 0.5], [0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 0, 0])
    b = _run([0.9, 0.8, 0.7, 0.5, 0.6], [0.5, 0.6, 0.7, 0.8, 0.9], [1, 0, 1, 0, 0])
    row = F.table({("default", "2,5"): [a, b]}, argparse.Namespace(eta=3)).splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["default", "rungs 2,5; eta 3", "32", "2"]
    assert float(cells[4]) == pytest.approx(0.9) and cells[5] == "1.00" and float(cells[6]) == -1.0


def test_settings_are_increasing_epochs() -> None:
    assert F.parse_setting("3") == [3] and F.parse_setting("2,5") == [2, 5]
    with pytest.raises(argparse.ArgumentTypeError):
        F.parse_setting("5,2")
    assert F.top_agreement({"a": 3, "b": 2, "c": 1, "d": 0}, {"a": 0, "b": 2, "c": 1, "d": 3}) == pytest.approx(2 / 3)
