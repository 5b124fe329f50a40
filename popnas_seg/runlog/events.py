"""The journal's event kinds as small pydantic models: what writers write and what replay code may rely on.

Writers build one model per event and hand it to `Journal.append`, which writes its fields beside `event` (the
model's `kind`) and `time`, as JSON keys exactly as before the models existed, so older run folders resume
unchanged. `Journal.events` (the one reader of restore/journal.jsonl) checks every line against `RUN_EVENTS`,
derived from the same models, so a line that is valid JSON but lacks a field, or holds the wrong type, is one
UserError naming the line and the field instead of a KeyError deep inside a resumed stage. Readers get the
line's own dict (fields beyond the model, from older or newer writers, pass). Fields that older journals may
lack have a default; the others were always written.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from popnas_seg.results import TrainingResult

__all__ = [
    "RUN_EVENTS",
    "DataChanged",
    "Event",
    "FinalistDone",
    "FinalistDriftDone",
    "FinalistExported",
    "FinalistTrained",
    "FinalistsFinished",
    "FinalistsSelected",
    "ModelSelectionDone",
    "NetworkFinished",
    "NetworkStarted",
    "PlannedNetwork",
    "Result",
    "RunResumed",
    "RunStarted",
    "RungPromoted",
    "SearchFinished",
    "StageFinished",
    "StepFinished",
    "StepPlanned",
    "event_problem",
]


def _number(value: Any) -> Any:
    """Metrics are JSON numbers, NaN (written by json.dumps) or null (not measured); never text or booleans.
    A numpy scalar (a writer's metric straight from numpy) becomes the plain number it holds."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise PydanticCustomError("number_type", "must be a number or null")
    return value


Number = Annotated[Any, BeforeValidator(_number)]


class _Fields(BaseModel):
    """Strict JSON types (no "1" for 1, no true for 1); fields beyond the model pass (older or newer writers)."""

    model_config = ConfigDict(strict=True, extra="allow")


class Event(_Fields):
    """Base of every kind; `kind` is the line's `event` name, one constant per model."""

    kind: ClassVar[str] = ""


class Result(_Fields):
    """`TrainingResult.to_dict()` as journaled: what `TrainingResult.from_dict` reads without a default."""

    network_id: int
    encoding: str
    blocks: int
    dice: Number
    miou: Number
    params: Number
    flops: Number
    train_time_s: Number
    inference_time_ms: Number
    epochs: Number

    @classmethod
    def of(cls, result: TrainingResult) -> Result:
        """The journal's form of a measured network (`TrainingResult.to_dict()`, diagnostics under `extra`)."""
        return cls.model_validate(result.to_dict())


class PlannedNetwork(_Fields):
    network_id: int
    encoding: str
    origin: str
    blocks: int


class RunStarted(Event):
    kind = "run_started"
    argv: list[str]


class RunResumed(Event):
    kind = "run_resumed"
    argv: list[str]


class DataChanged(Event):
    """`--accept-changed-data`: what changed, and where the earlier results went (relative to the run folder)."""

    kind = "data_changed"
    change: str
    superseded: str


class StageFinished(Event):
    kind = "stage_finished"
    stage: str
    seconds: Number = None


class StepPlanned(Event):
    kind = "step_planned"
    step: int
    networks: list[PlannedNetwork]
    predicted_times: list[Number] | None = None


class StepFinished(Event):
    kind = "step_finished"
    step: int


class SearchFinished(Event):
    kind = "search_finished"
    networks: int


def _rung_above_0_only(self: Event, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
    """Multi-fidelity (search/promotion.py): `rung` 0, the training from scratch, is not written, so a single-rung
    run's journal is as it always was (readers default to 0)."""
    data = handler(self)
    if data.get("rung") == 0:
        del data["rung"]
    return data


class NetworkStarted(Event):
    """One attempt at training a network (runlog/trials.py); journals from before `attempt` count the lines."""

    kind = "network_started"
    network_id: int
    step: int
    encoding: str | None = None
    attempt: int = 1
    rung: int = 0  # the rung this training reaches (0: from scratch)
    _rung = model_serializer(mode="wrap")(_rung_above_0_only)


class NetworkFinished(Event):
    """`result` is the network's whole record after `rung` (search/promotion.py `rung_record`)."""

    kind = "network_finished"
    network_id: int
    result: Result
    rung: int = 0
    _rung = model_serializer(mode="wrap")(_rung_above_0_only)


class RungPromoted(Event):
    """The networks of `step` that train on to `rung` (search/promotion.py), decided once and replayed on resume."""

    kind = "rung_promoted"
    step: int
    rung: int
    network_ids: list[int]


class FinalistsSelected(Event):
    kind = "finalists_selected"
    candidates: list[Result]
    rule: str | None = None
    objectives: list[str] | None = None
    max_params: Number = None


class ModelSelectionDone(Event):
    kind = "model_selection_done"
    variant: str
    network_id: int
    encoding: str
    filters: int
    motifs: int
    arch: dict
    dice: Number
    miou: Number
    params: Number
    flops: Number
    epochs: Number
    train_time_s: Number
    status: str


class FinalistTrained(Event):
    """`test_dice`/`test_miou` are null when the final training failed (no export or analog scores follow)."""

    kind = "finalist_trained"
    name: str
    result: Result
    arch: dict
    test_dice: Number = None
    test_miou: Number = None
    start_weights: str | None = None


class FinalistExported(Event):
    """The export checks are read with .get (a report cell may stay empty); the name is how a resume finds it."""

    kind = "finalist_exported"
    name: str
    equivalent: bool
    torch_max_abs_diff: Number = None
    onnxruntime_max_abs_diff: Number = None
    keras_test_dice: Number = None
    torch_test_dice: Number = None
    onnxruntime_latency_ms: Number = None
    test_images: int | None = None


class FinalistDriftDone(Event):
    kind = "finalist_drift_done"
    name: str
    report: dict
    wall_s: Number = None


class FinalistDone(Event):
    kind = "finalist_done"
    name: str
    row: dict


class FinalistsFinished(Event):
    kind = "finalists_finished"
    finalists: list[str]


# Event kind -> the model its lines must satisfy (the journal checks every line it reads against it).
RUN_EVENTS: dict[str, type[Event]] = {
    model.kind: model
    for model in (
        RunStarted,
        RunResumed,
        DataChanged,
        StageFinished,
        StepPlanned,
        StepFinished,
        SearchFinished,
        NetworkStarted,
        NetworkFinished,
        RungPromoted,
        FinalistsSelected,
        ModelSelectionDone,
        FinalistTrained,
        FinalistExported,
        FinalistDriftDone,
        FinalistDone,
        FinalistsFinished,
    )
}

_EXPECTED = {
    "int_type": "an integer",
    "string_type": "a string",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "a list",
    "float_type": "a number",
    "bool_type": "true or false",
    "number_type": "a number or null",
}


def event_problem(record: dict[str, Any], models: dict[str, type[Event]]) -> str | None:
    """Why a parsed line is not a usable event (None if it is): `event`, `time`, then the kind's model."""
    kind = record.get("event")
    if not isinstance(kind, str) or not kind:
        return 'no "event" name'
    when = record.get("time")
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        return f'event "{kind}" has no numeric "time"'
    model = models.get(kind)
    if model is None:
        return None
    try:
        model.model_validate(record)
    except ValidationError as exc:
        return _describe(kind, exc.errors(include_url=False)[0])
    return None


def _describe(kind: str, error: ErrorDetails) -> str:
    """One pydantic error as `event "k", field "a"[0] lacks the field "b"` / `...: field "b" must be ...`."""
    labels: list[str] = []
    for part in error["loc"]:
        if isinstance(part, int) and labels:
            labels[-1] += f"[{part}]"
        else:
            labels.append(f'field "{part}"')
    where = ", ".join([f'event "{kind}"', *labels[:-1]])
    if error["type"] == "missing":
        return f"{where} lacks the {labels[-1]}"
    expected = _EXPECTED.get(error["type"], f"valid ({error['msg']})")
    got = json.dumps(error.get("input"), default=str)[:40]
    return f"{where}: {labels[-1]} must be {expected} (got {got})"
