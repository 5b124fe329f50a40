"""The search replay (benchmarks/search/bench_search_replay.py): planned cells are looked up in the task's measured
networks, new ones are trained once and cached, and a replay that left its recorded run is flagged.

Training is replaced by a deterministic stand-in (a cell's score is a function of its encoding), which is the
premise the replay rests on; the benchmark's `--verify` checks that premise on real training."""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.search import bench_search as B  # noqa: E402
from benchmarks.search import bench_search_replay as R  # noqa: E402
from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.results import TrainingResult  # noqa: E402
from popnas_seg.search.strategies import ProgressiveStrategy  # noqa: E402
from popnas_seg.search_space.encoding import Cell  # noqa: E402


def _strategy() -> ProgressiveStrategy:
    bench = B.parse_args(["--quick", "--no-probe"])
    cfg = RunConfig.model_validate(B.build_config(bench, "default", "progressive", 1, None))
    return ProgressiveStrategy(cfg, (bench.size, bench.size, cfg.dataset.generated_channels), cfg.dataset.classes_count)


def _stand_in(calls: list[str]):
    strategy = _strategy()

    def train(encoding: str) -> TrainingResult:
        calls.append(encoding)
        cell = Cell.from_string(encoding)
        dice = 0.5 + (zlib.crc32(encoding.encode()) % 1000) / 4000
        return TrainingResult(
            network_id=0,
            encoding=encoding,
            blocks=len(cell.blocks),
            dice=dice,
            miou=dice,
            params=strategy.cost(cell)[0],
            flops=1,
            train_time_s=1.0,
            inference_time_ms=1.0,
            epochs=1,
        )

    return train


def _journal(folder: Path, results: list[TrainingResult]) -> Path:
    (folder / "restore").mkdir(parents=True)
    lines = [
        json.dumps({"event": "network_finished", "network_id": r.network_id, "result": r.to_dict()}) for r in results
    ]
    (folder / "restore" / "journal.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_replay_trains_each_new_cell_once_and_caches_it(tmp_path) -> None:
    calls: list[str] = []
    history, _ = R.replay(_strategy(), R.Table(tmp_path, "default", []), _stand_in(calls))
    assert len(history) > 3 and sorted(calls) == sorted(r.encoding for r in history)  # each cell trained once
    assert [r.network_id for r in history] == list(range(1, len(history) + 1))
    assert history[0].origin == "b1" and history[-1].step > 1

    def must_not_train(encoding: str) -> TrainingResult:
        raise AssertionError(f"{encoding} was cached and must not train again")

    again, _ = R.replay(_strategy(), R.Table(tmp_path, "default", []), must_not_train)
    assert R.same_as_recorded(again, history) == "yes"


def test_replay_reads_recorded_runs_and_flags_where_it_leaves_them(tmp_path) -> None:
    calls: list[str] = []
    recorded, _ = R.replay(_strategy(), R.Table(tmp_path / "first", "default", []), _stand_in(calls))
    run = _journal(tmp_path / "default_progressive_s1", recorded)
    assert R.journal_results(run) == recorded  # full precision, training order
    calls.clear()
    replayed, _ = R.replay(_strategy(), R.Table(tmp_path, "default", [run]), _stand_in(calls))
    assert calls == [] and R.same_as_recorded(replayed, recorded) == "yes"
    changed = recorded[:2] + [replace(recorded[2], dice=recorded[2].dice + 0.01)] + recorded[3:]
    assert R.same_as_recorded(replayed, changed) == "no (from network 3)"
    assert R.same_as_recorded(replayed[:-1], recorded) == f"no ({len(recorded) - 1} vs {len(recorded)} networks)"


def test_replay_refuses_runs_that_are_not_one_table(tmp_path) -> None:
    """Runs made with --vary-networks train a cell differently per seed: no single table to replay against."""
    bench = B.parse_args(["--quick", "--no-probe", "--vary-networks"])
    for strategy in B.STRATEGIES:
        folder = _journal(tmp_path / B.run_name("default", strategy, 2), [])
        (folder / "csv").mkdir()
        B.write_csv(
            folder / "csv" / "training_results.csv",
            [
                TrainingResult(
                    network_id=1,
                    encoding="[(-1,identity,-1,identity)]",
                    blocks=1,
                    dice=0.5,
                    miou=0.5,
                    params=10,
                    flops=1,
                    train_time_s=1.0,
                    inference_time_ms=1.0,
                    epochs=1,
                ).to_row()
            ],
            TrainingResult.COLUMNS,
        )
        cfg = B.build_config(bench, "default", strategy, 2, 1)
        (tmp_path / f"{folder.name}.json").write_text(json.dumps(cfg))
    args = R.argparse.Namespace(logs_dir=tmp_path, seeds=[2], verify=0)
    with pytest.raises(SystemExit, match="other network_seed than these settings"):
        R.replay_task(args, B.parse_args(["--quick", "--no-probe"]), "default", tmp_path)


def test_a_cache_line_cut_by_a_kill_only_costs_that_cell(tmp_path) -> None:
    calls: list[str] = []
    history, _ = R.replay(_strategy(), R.Table(tmp_path, "default", []), _stand_in(calls))
    cache = tmp_path / "replay_cache_default.jsonl"  # Table without a measurement key
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1] + [lines[-1][:20]]) + "\n")  # the last write was cut short
    calls.clear()
    again, _ = R.replay(_strategy(), R.Table(tmp_path, "default", []), _stand_in(calls))
    assert calls == [history[-1].encoding] and R.same_as_recorded(again, history) == "yes"
