"""Predictors: cell graphs, the GIN ensemble (learns, deterministic, tiny data, save/load), the SVR, quality."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from popnas_seg.predictors.graph import CellGraphEncoder, operator_numeric_features
from popnas_seg.predictors.quality import mape, rank_quality
from popnas_seg.predictors.time_svr import TimePredictor, cell_time_features, dag_depth
from popnas_seg.search_space.encoding import Block, Cell, random_cell

OPS = ["identity", "3x3 conv", "3x3:2dr conv", "1x5-5x1 conv", "2x2 maxpool"]


def _random_cells(n: int, seed: int, max_blocks: int = 3) -> list[Cell]:
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    while len(out) < n:
        cell = random_cell(rng, int(rng.integers(1, max_blocks + 1)), OPS, 2)
        if cell.key() not in seen:
            seen.add(cell.key())
            out.append(cell)
    return out


# ------------------------------------------------------------------------------------------------ graph
def test_graph_of_a_chained_cell() -> None:
    enc = CellGraphEncoder(OPS, lookback_depth=2, max_blocks=3)
    cell = Cell.from_string("[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-1,3x3 conv)]")
    g = enc.encode(cell)
    # 2 used lookbacks + 2 blocks x (op1, op2, join); block 0 feeds block 1, so one output: no concat node
    assert g.nodes == 8
    assert g.features.shape == (8, enc.feature_size) == (8, len(OPS) + 2 + 2 + 2)
    assert np.array_equal(g.adjacency, g.adjacency.T) and np.all(np.diag(g.adjacency) == 0)
    assert g.adjacency.sum() == 2 * 8  # each block: 2 inputs -> ops, 2 ops -> join
    # node types: lookback -1 first, then op / op / join per block
    assert g.features[0, len(OPS)] == 1 and g.features[1, len(OPS) + 1] == 1
    assert g.features[2, OPS.index("3x3 conv")] == 1 and g.features[4, len(OPS) + 2] == 1
    # block 1's first op (maxpool) reads block 0's join
    assert g.adjacency[4, 5] == 1 and g.features[5, OPS.index("2x2 maxpool")] == 1


def test_graph_concat_node_and_empty_cell() -> None:
    enc = CellGraphEncoder(OPS, lookback_depth=2, max_blocks=3)
    parallel = Cell((Block(-1, "3x3 conv", -1, "identity"), Block(-1, "2x2 maxpool", -1, "3x3 conv")))
    g = enc.encode(parallel)
    assert g.nodes == 1 + 6 + 1
    concat = g.nodes - 1
    assert g.features[concat, len(OPS) + 3] == 1
    assert g.adjacency[concat].sum() == 2  # both joins feed the concat
    empty = enc.encode(Cell(()))
    assert empty.nodes == 1 and not empty.features.any()
    x, a, mask = enc.batch([parallel, Cell(())])
    assert x.shape == (2, enc.max_nodes, enc.feature_size) and a.shape == (2, enc.max_nodes, enc.max_nodes)
    assert mask.sum(axis=1).tolist() == [8, 1]
    with pytest.raises(ValueError, match="not in the search space"):
        enc.encode(Cell((Block(-1, "7x7 conv", -1, "identity"),)))


def test_operator_numeric_features() -> None:
    assert operator_numeric_features("3x3 conv") == (3 / 7, 1.0)
    assert operator_numeric_features("3x3:2dr conv") == (5 / 7, 1.0)
    assert operator_numeric_features("1x5-5x1 conv") == (9 / 7, 1.0)
    assert operator_numeric_features("2x2 maxpool") == (2 / 7, 0.0)
    assert operator_numeric_features("identity") == (1 / 7, 0.0)


# ------------------------------------------------------------------------------------------------ GIN
def _conv_fraction(cell: Cell) -> float:
    ops = [op for b in cell.blocks for op in (b.op1, b.op2)]
    return 0.15 + 0.7 * sum("conv" in op for op in ops) / len(ops)


def test_gin_learns_a_structural_target() -> None:
    from popnas_seg.predictors.gin import GINPredictor

    cells = _random_cells(110, seed=1)
    y = np.array([_conv_fraction(c) for c in cells])
    gin = GINPredictor(OPS, 2, 3, ensemble_units=2, epochs=15, seed=0).fit(cells[:80], y[:80])
    pred = gin.predict(cells[80:])
    assert pred.shape == (30,) and np.all((pred >= 0) & (pred <= 1))
    assert rank_quality(pred, y[80:])["spearman"] > 0.8
    # graph pooling is permutation invariant: an equivalent encoding gets the same prediction
    swapped = [Cell(tuple(Block(b.in2, b.op2, b.in1, b.op1) for b in c.blocks)) for c in cells[80:90]]
    np.testing.assert_allclose(gin.predict(swapped), pred[:10], atol=1e-5)


def test_gin_tiny_sets_determinism_and_save_load(tmp_path) -> None:
    from popnas_seg.predictors.gin import GINPredictor

    cells = _random_cells(12, seed=2)
    y = [_conv_fraction(c) for c in cells]
    for n in (1, 3):  # 1: every member trains on the one sample; 3: KFold with one sample held out each
        gin = GINPredictor(OPS, 2, 3, ensemble_units=3, epochs=2, seed=n).fit(cells[:n], y[:n])
        assert len(gin.members) == 3
        assert np.all(np.isfinite(gin.predict(cells)))
    first = GINPredictor(OPS, 2, 3, ensemble_units=2, epochs=3, seed=5).fit(cells, y).predict(cells)
    again = GINPredictor(OPS, 2, 3, ensemble_units=2, epochs=3, seed=5).fit(cells, y)
    np.testing.assert_array_equal(again.predict(cells), first)
    other_seed = GINPredictor(OPS, 2, 3, ensemble_units=2, epochs=3, seed=6).fit(cells, y).predict(cells)
    assert not np.allclose(other_seed, first)
    again.save(tmp_path / "gin")
    loaded = GINPredictor.load(tmp_path / "gin")
    np.testing.assert_allclose(loaded.predict(cells), first, atol=1e-7)
    assert loaded.operators == OPS and loaded.train_size == 12
    with pytest.raises(ValueError):
        GINPredictor(OPS, 2, 3).fit(cells[:2], [float("nan"), float("nan")])
    with pytest.raises(RuntimeError):
        GINPredictor(OPS, 2, 3).predict(cells)


# ------------------------------------------------------------------------------------------------ SVR
def _fake_cost(cell: Cell) -> tuple[float, float]:
    convs = sum("conv" in op for b in cell.blocks for op in (b.op1, b.op2))
    return 1000.0 + 900.0 * convs, 1e5 * (1 + 2 * convs + len(cell.blocks))


def _fake_seconds(cell: Cell, rng: np.random.Generator) -> float:
    convs = sum("conv" in op for b in cell.blocks for op in (b.op1, b.op2))
    return (2.0 + 1.5 * convs + 0.8 * len(cell.blocks)) * float(rng.uniform(0.97, 1.03))


def test_time_features() -> None:
    cell = Cell.from_string("[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-1,3x3 conv)]")
    f = cell_time_features(cell, OPS, 2, _fake_cost)
    # blocks, 5 op counts, 2 lookback uses, block inputs, depth, concat inputs, log params, log flops
    assert f[:11] == [2, 1, 2, 0, 0, 1, 2, 1, 1, 2, 1]
    assert len(f) == 13 and f[11] == pytest.approx(math.log1p(1000 + 1800))
    assert dag_depth(cell) == 2 and dag_depth(Cell(())) == 0


def test_time_predictor_learns_and_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(0)
    cells = _random_cells(70, seed=3)
    seconds = np.array([_fake_seconds(c, rng) for c in cells])

    def features(c: Cell) -> list[float]:
        return cell_time_features(c, OPS, 2, _fake_cost)

    svr = TimePredictor(features, seed=0).fit(cells[:50], seconds[:50])
    pred = svr.predict(cells[50:])
    assert rank_quality(pred, seconds[50:])["spearman"] > 0.9
    assert mape(pred, seconds[50:]) < 15.0
    assert svr.best_params  # enough samples: the grid search ran
    svr.save(tmp_path / "time.joblib")
    np.testing.assert_allclose(TimePredictor.load(tmp_path / "time.joblib", features).predict(cells[50:]), pred)
    # tiny sets: constant for one sample, a fixed SVR for a few
    one = TimePredictor(features).fit(cells[:1], seconds[:1])
    np.testing.assert_allclose(one.predict(cells[:3]), seconds[0])
    few = TimePredictor(features).fit(cells[:3], seconds[:3])
    assert np.all(np.isfinite(few.predict(cells))) and not few.best_params


# ------------------------------------------------------------------------------------------------ quality
def test_rank_quality_and_mape() -> None:
    q = rank_quality([1, 2, 3, 4], [10, 20, 30, 40])
    assert q["spearman"] == pytest.approx(1.0) and q["kendall"] == pytest.approx(1.0)
    q = rank_quality([1, 2, 3, 4], [40, 30, 20, 10])
    assert q["spearman"] == pytest.approx(-1.0)
    assert rank_quality([1, 2, 3, 4, np.nan], [1, 3, 2, 4, 5])["spearman"] == pytest.approx(0.8)
    # below MIN_RANK_POINTS (4) finite pairs no correlation is reported: at n = 3 one swap decides it
    assert math.isnan(rank_quality([1, 2, 3, np.nan], [1, 3, 2, 5])["spearman"])
    assert math.isnan(rank_quality([1, 2], [2, 1])["kendall"])
    assert math.isnan(rank_quality([1.0], [2.0])["spearman"])
    assert math.isnan(rank_quality([], [])["kendall"])
    assert math.isnan(rank_quality([1, 1, 1], [1, 2, 3])["spearman"])
    assert mape([110, 90], [100, 100]) == pytest.approx(10.0)
    assert mape([1, 5], [0, 10]) == pytest.approx(50.0)  # a measured zero is skipped
    assert math.isnan(mape([], []))


def test_gin_stays_float32_under_mixed_precision() -> None:
    """The trainer may set a mixed_float16 global policy; the predictor must still train (no NaN) in float32."""
    import keras

    from popnas_seg.predictors.gin import GINPredictor

    cells = _random_cells(8, seed=4)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        pred = (
            GINPredictor(OPS, 2, 3, ensemble_units=1, epochs=2, seed=0)
            .fit(cells, [_conv_fraction(c) for c in cells])
            .predict(cells)
        )
        assert np.all(np.isfinite(pred))
        assert keras.config.dtype_policy().name == "mixed_float16"  # the caller's policy is left alone
    finally:
        keras.config.set_dtype_policy(previous)


# ------------------------------------------------------------------------------------------------ cheap features
@pytest.mark.parametrize("kind", ["ridge", "forest"])
def test_feature_score_predictor_ranks_and_round_trips(tmp_path, kind) -> None:
    from popnas_seg.predictors.features import FeatureScorePredictor

    rng = np.random.default_rng(1)
    cells = _random_cells(40, seed=5)
    # Dice grows with capacity (convs), saturating, plus noise: what short-trained nets show
    dice = np.array(
        [
            0.9
            - 0.5 * np.exp(-0.6 * sum("conv" in op for b in c.blocks for op in (b.op1, b.op2)))
            + rng.normal(0, 0.02)
            for c in cells
        ]
    )

    def features(c: Cell) -> list[float]:
        return cell_time_features(c, OPS, 2, _fake_cost)

    model = FeatureScorePredictor(features, kind, seed=0).fit(cells[:15], dice[:15])
    pred = model.predict(cells[15:])
    assert rank_quality(pred, dice[15:])["spearman"] > 0.6 and np.all((pred >= 0) & (pred <= 1))
    model.save(tmp_path / "f.joblib")
    np.testing.assert_allclose(FeatureScorePredictor.load(tmp_path / "f.joblib", features).predict(cells[15:]), pred)
    tiny = FeatureScorePredictor(features, kind).fit(cells[:2], [0.4, 0.6])  # too few: the mean
    np.testing.assert_allclose(tiny.predict(cells[:3]), 0.5)
    with pytest.raises(ValueError, match="unknown feature predictor kind"):
        FeatureScorePredictor(features, "svm")


def test_ridge_leave_one_out_error_matches_refitting() -> None:
    """The search's optimism is the ridge's leave-one-out RMS error: RidgeCV's shortcut must equal refitting
    without each network (up to the scaler, which the shortcut fits once on all of them)."""
    from popnas_seg.predictors.features import FeatureScorePredictor

    rng = np.random.default_rng(3)
    cells = list(range(24))
    x = rng.normal(size=(24, 4))
    y = 0.6 + 0.05 * x[:, 0] - 0.02 * x[:, 1] + rng.normal(0, 0.015, 24)

    def features(c: int) -> list[float]:
        return list(x[c])

    model = FeatureScorePredictor(features, "ridge").fit(cells, y)
    errors = [
        FeatureScorePredictor(features, "ridge").fit([c for c in cells if c != i], np.delete(y, i)).predict([i])[0]
        - y[i]
        for i in cells
    ]
    assert model.loo_rmse == pytest.approx(float(np.sqrt(np.mean(np.square(errors)))), rel=0.05)
    assert 0.01 < model.loo_rmse < 0.03  # about the noise put in
    assert FeatureScorePredictor(features, "ridge").fit(cells[:2], y[:2]).loo_rmse is None
    assert FeatureScorePredictor(features, "forest").fit(cells, y).loo_rmse is None
