"""Typed journal events (runlog/events.py): one reader, a malformed line is one UserError naming line and field."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_config as cli_tiny_config

from popnas_seg import cli
from popnas_seg.errors import UserError
from popnas_seg.results import TrainingResult
from popnas_seg.runlog.events import RUN_EVENTS, Event, NetworkFinished, Result, StepPlanned
from popnas_seg.runlog.journal import Journal

ROOT = Path(__file__).resolve().parent.parent


def _result(network_id: int = 1, **changes: Any) -> dict[str, Any]:
    """A result exactly as the runner journals it (`TrainingResult.to_dict()`)."""
    row = TrainingResult(
        network_id=network_id,
        encoding="[(-1,3x3 conv,-1,identity)]",
        blocks=1,
        dice=0.5,
        miou=0.4,
        params=120,
        flops=3000,
        train_time_s=1.5,
        inference_time_ms=0.2,
        epochs=1,
        origin="random",
        step=1,
    ).to_dict()
    row.update(changes)
    return row


# One well-formed line of every typed kind, with the fields the writers in search/, finalists/ and pipeline.py add.
GOOD: dict[str, dict[str, Any]] = {
    "run_started": {"argv": ["-j", "configs/quick.json"]},
    "run_resumed": {"argv": ["-r", "logs/run"]},
    "data_changed": {"change": "2 images added", "superseded": "superseded/20261208-031300"},
    "stage_finished": {"stage": "search", "seconds": 1.5},
    "search_finished": {"networks": 1},
    "finalists_finished": {"finalists": ["1", "unet"]},
    "step_planned": {
        "step": 1,
        "networks": [{"network_id": 1, "encoding": "[(-1,3x3 conv,-1,identity)]", "origin": "random", "blocks": 1}],
        "predicted_times": [None],
    },
    "step_finished": {"step": 1},
    "network_started": {"network_id": 1, "encoding": "[(-1,3x3 conv,-1,identity)]", "step": 1},
    "network_finished": {"network_id": 1, "result": _result(dice=float("nan"), analog_dice=None)},
    "rung_promoted": {"step": 1, "rung": 1, "network_ids": [1, 3]},
    "finalists_selected": {"candidates": [_result(1), _result(2)]},
    "model_selection_done": {
        "variant": "f4m2",
        "network_id": 1,
        "encoding": "[(-1,3x3 conv,-1,identity)]",
        "filters": 4,
        "motifs": 2,
        "arch": {"filters": 4},
        "dice": 0.5,
        "miou": 0.4,
        "params": 120,
        "flops": 3000,
        "epochs": 1,
        "train_time_s": 2.0,
        "status": "ok",
    },
    "finalist_trained": {"name": "finalist_1", "result": _result(), "arch": {"filters": 4}},
    "finalist_exported": {
        "name": "finalist_1",
        "torch_max_abs_diff": 1e-6,
        "onnxruntime_max_abs_diff": 2e-6,
        "keras_test_dice": 0.5,
        "torch_test_dice": 0.5,
        "equivalent": True,
        "onnxruntime_latency_ms": None,
        "test_images": 4,
    },
    "finalist_drift_done": {"name": "finalist_1", "report": {"times": [1.0]}},
    "finalist_done": {"name": "finalist_1", "row": {"status": "ok"}},
}


def _journal(tmp_path: Path, *records: dict[str, Any]) -> Journal:
    journal = Journal(tmp_path / "journal.jsonl", schema=RUN_EVENTS)
    journal.path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return journal


def test_every_typed_kind_has_a_well_formed_example_and_readers_get_the_line_itself(tmp_path: Path) -> None:
    assert set(GOOD) == set(RUN_EVENTS)
    records = [{"event": "a_later_kind", "time": 1.0, "anything": [1, "x"]}]  # kinds without a model pass
    records += [
        {"event": kind, "time": 2.0 + i, **fields, "extra_field": i} for i, (kind, fields) in enumerate(GOOD.items())
    ]
    events = _journal(tmp_path, *records).events()
    assert [e["event"] for e in events] == [r["event"] for r in records]
    finished = events[[r["event"] for r in records].index("network_finished")]
    assert math.isnan(finished["result"]["dice"]) and finished["extra_field"] == list(GOOD).index("network_finished"), (
        "the dict as written (extra fields kept), not the model's copy"
    )
    assert TrainingResult.from_dict(finished["result"]).network_id == 1


def test_lines_written_by_journal_append_read_back(tmp_path: Path) -> None:
    """The writer's own serialisation (numpy scalars, tuples) satisfies the models: resume of a fresh run."""
    import numpy as np

    journal = Journal(tmp_path / "journal.jsonl", schema=RUN_EVENTS)
    result = Result.model_validate(_result(3, params=np.int64(7), dice=np.float32(0.25)))
    journal.append(NetworkFinished(network_id=3, result=result))
    journal.append(StepPlanned(step=2, networks=GOOD["step_planned"]["networks"], predicted_times=[np.float64(1.5)]))
    assert [e["event"] for e in journal.events()] == ["network_finished", "step_planned"]
    finished = journal.events(NetworkFinished)[0]["result"]
    assert finished["params"] == 7 and finished["dice"] == 0.25 and finished["extra"] == {}


@pytest.mark.parametrize(
    "kind, change, expected",
    [
        ("network_finished", {"result": None}, 'event "network_finished": field "result" must be an object (got null)'),
        (
            "network_finished",
            {"result": {**_result(), "encoding": 5}},
            'event "network_finished", field "result": field "encoding" must be a string (got 5)',
        ),
        (
            "network_finished",
            {"result": {**_result(), "dice": "0.5"}},
            'event "network_finished", field "result": field "dice" must be a number or null (got "0.5")',
        ),
        ("network_finished", {"network_id": True}, 'event "network_finished": field "network_id" must be an integer'),
        ("network_finished", {"network_id": "1"}, 'event "network_finished": field "network_id" must be an integer'),
        (
            "finalists_selected",
            {"candidates": {"1": _result()}},
            'event "finalists_selected": field "candidates" must be a list',
        ),
        (
            "finalists_selected",
            {"candidates": [_result(1), {k: v for k, v in _result(2).items() if k != "blocks"}]},
            'event "finalists_selected", field "candidates"[1] lacks the field "blocks"',
        ),
        (
            "finalists_selected",
            {"candidates": [_result(1), 2]},
            'event "finalists_selected": field "candidates"[1] must be an object (got 2)',
        ),
        (
            "step_planned",
            {"networks": [{"network_id": 1, "encoding": "x", "blocks": 1}]},
            'event "step_planned", field "networks"[0] lacks the field "origin"',
        ),
        ("step_planned", {"step": 1.0}, 'event "step_planned": field "step" must be an integer (got 1.0)'),
        ("step_finished", {"step": None}, 'event "step_finished": field "step" must be an integer (got null)'),
        ("network_started", {"step": "2"}, 'event "network_started": field "step" must be an integer (got "2")'),
        ("stage_finished", {"stage": 3}, 'event "stage_finished": field "stage" must be a string (got 3)'),
        (
            "model_selection_done",
            {"filters": "4"},
            'event "model_selection_done": field "filters" must be an integer (got "4")',
        ),
        ("model_selection_done", {"arch": [4, 2]}, 'event "model_selection_done": field "arch" must be an object'),
        (
            "finalist_trained",
            {"result": {**_result(), "network_id": None}},
            'event "finalist_trained", field "result": field "network_id" must be an integer (got null)',
        ),
        (
            "finalist_exported",
            {"equivalent": "yes"},
            'event "finalist_exported": field "equivalent" must be true or false (got "yes")',
        ),
        (
            "finalist_drift_done",
            {"report": "done"},
            'event "finalist_drift_done": field "report" must be an object (got "done")',
        ),
    ],
)
def test_a_malformed_event_names_its_line_and_field(tmp_path: Path, kind: str, change: dict, expected: str) -> None:
    bad = {"event": kind, "time": 5.0, **GOOD[kind], **change}
    journal = _journal(
        tmp_path,
        {"event": "run_started", "time": 1.0, **GOOD["run_started"]},
        {"event": kind, "time": 2.0, **GOOD[kind]},
        bad,
        {"event": "run_resumed", "time": 6.0, **GOOD["run_resumed"]},
    )
    with pytest.raises(UserError) as err:
        journal.events()
    message = str(err.value)
    assert f"is damaged at line 3: {expected}" in message, message
    assert "\n" not in message and "pydantic" not in message and "errors.pydantic.dev" not in message


@pytest.mark.parametrize("kind", sorted(RUN_EVENTS))
def test_a_missing_required_field_of_each_kind_is_named(tmp_path: Path, kind: str) -> None:
    field = next(iter(RUN_EVENTS[kind].model_fields))
    fields = {k: v for k, v in GOOD[kind].items() if k != field}
    with pytest.raises(UserError, match=re.escape(f'line 1: event "{kind}" lacks the field "{field}"')):
        _journal(tmp_path, {"event": kind, "time": 1.0, **fields}).events()


def test_every_event_model_is_a_checked_kind_and_no_code_names_a_kind_as_text() -> None:
    """Writers and readers name kinds by their model only, so a kind written cannot drift from the one read."""
    models = {m for m in Event.__subclasses__() if m.__module__ == Event.__module__}  # not tests' own kinds
    assert set(RUN_EVENTS.values()) == models and all(RUN_EVENTS[m.kind] is m for m in models)
    text_kinds = []
    for path in (ROOT / "popnas_seg").rglob("*.py"):
        source = path.read_text()
        text_kinds += [
            f"{path.name}: {m}" for m in re.findall(r'(?:journal\.append|\.events|_events|_last)\(\s*"[^"]*"', source)
        ]
    assert text_kinds == []


FIXTURE = ROOT / "tests" / "fixtures" / "journal_before_typed_events.jsonl"
# Fields added to a model after the fixture was written, with the default a re-written old line gets.
ADDED_SINCE = {"network_started": {"attempt": 1}}


def test_a_journal_written_before_the_typed_events_reads_back_unchanged(tmp_path: Path) -> None:
    """restore/journal.jsonl of `run.py -j configs/quick.json` from before the models (2026-12-08): every line
    passes the reader, and every line written again through its model is the same JSON but for the time (and the
    fields added since, ADDED_SINCE)."""
    old = Journal(FIXTURE, schema=RUN_EVENTS).events()
    # rung_promoted: only multi-fidelity runs write it (quick.json had one rung then)
    assert {e["event"] for e in old} >= set(RUN_EVENTS) - {"run_resumed", "data_changed", "rung_promoted"}
    again = Journal(tmp_path / "journal.jsonl", schema=RUN_EVENTS)
    for record in old:
        fields = {k: v for k, v in record.items() if k not in ("event", "time")}
        written = again.append(RUN_EVENTS[record["event"]](**fields))
        expected = {**record, **ADDED_SINCE.get(record["event"], {}), "time": 0}
        assert json.dumps({**written, "time": 0}, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert len(again.events()) == len(old)


def test_old_result_extra_maps_onto_the_typed_fields_and_back(tmp_path: Path) -> None:
    """`TrainingResult.extra` was a free dict: its keys in old journals are the typed diagnostics now."""
    rows = [e["result"] for e in Journal(FIXTURE, schema=RUN_EVENTS).events(NetworkFinished)]
    results = [TrainingResult.from_dict(row) for row in rows]
    first = results[0]
    assert first.best_epoch == rows[0]["extra"]["best_epoch"] == 1
    assert first.epoch_times_s == rows[0]["extra"]["epoch_times_s"]
    assert first.probe_digital_dice == rows[0]["extra"]["probe_digital_dice"] is not None
    assert first.probe_time_s is not None and first.digital_layers == [] and first.probe_error is None
    for row, result in zip(rows, results):
        assert result.to_dict() == row  # the journal's form, `extra` included, is what it was
    failed = TrainingResult.from_dict(
        _result(extra={"error": "OOM", "traceback": "tb", "failed_fold": 1, "fold_dice": [0.5], "unknown": 3})
    )
    assert (failed.error, failed.traceback, failed.failed_fold, failed.fold_dice) == ("OOM", "tb", 1, [0.5])
    assert failed.to_dict()["extra"] == {"error": "OOM", "traceback": "tb", "failed_fold": 1, "fold_dice": [0.5]}
    assert TrainingResult.from_dict({k: v for k, v in _result().items() if k != "extra"}).to_dict() == _result()


def test_a_malformed_finalists_selected_line_stops_the_resume_with_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], write_json: Any
) -> None:
    class FakeData:
        input_shape = (16, 16, 1)
        classes_count = 2

    monkeypatch.setattr(cli, "_load_data", lambda config: FakeData())
    logs = tmp_path / "logs"
    assert cli.main(["-j", str(write_json(cli_tiny_config())), "--logs-dir", str(logs), "--name", "d"]) == 0
    journal = logs / "d" / "restore" / "journal.jsonl"
    lines = journal.read_text().splitlines()
    bad = {"event": "finalists_selected", "time": 9.0, "candidates": [{"network_id": 1, "encoding": "x"}]}
    journal.write_text("\n".join(lines + [json.dumps(bad)]) + "\n")
    capsys.readouterr()
    assert cli.main(["-r", str(logs / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "Traceback" not in err, err
    assert (
        f"is damaged at line {len(lines) + 1}: "
        'event "finalists_selected", field "candidates"[0] lacks the field "blocks"'
    ) in err, err


def test_a_run_folder_with_a_journal_from_before_the_typed_events_resumes(tmp_path: Path) -> None:
    """The fixture journal in a run folder: the search replays as finished (no training: no data needed), the
    finalists stage keeps its journaled candidates, and the resume appends after the old lines."""
    import shutil

    from popnas_seg.config import load_config
    from popnas_seg.finalists.stage import FinalistsStage
    from popnas_seg.runlog.events import RunResumed
    from popnas_seg.runlog.folder import RunFolder
    from popnas_seg.search.runner import SearchRunner

    config = load_config(ROOT / "configs" / "quick.json")
    run = RunFolder.create(tmp_path / "logs", "old", config)
    path = run.path
    run.close()
    shutil.copyfile(FIXTURE, path / "restore" / "journal.jsonl")
    resumed = RunFolder.open(path)
    try:
        assert any("no folder for 6 trained network(s)" in w for w in resumed.resume_warnings())
        resumed.journal.append(RunResumed(argv=["-r", str(path)]))
        results = SearchRunner(resumed, config, data=None).run_search()
        assert [r.network_id for r in results] == [1, 2, 3, 4, 5, 6]
        assert all(r.best_epoch == 1 and r.probe_time_s is not None for r in results)
        picked = FinalistsStage(resumed, config, data=None).select()
        assert [r.network_id for r in picked] == [6]
        assert picked[0].probe_digital_dice == results[5].probe_digital_dice
        written = resumed.journal.path.read_bytes()
        assert written.startswith(FIXTURE.read_bytes())
        assert [e["event"] for e in resumed.journal.events()][-1] == "run_resumed"
    finally:
        resumed.close()
