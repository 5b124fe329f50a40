"""The journal's event kinds as small pydantic models: what replay code may rely on in each line.

`Journal.events` (the one reader of restore/journal.jsonl) checks every line against `RUN_EVENTS`, so a line
that is valid JSON but lacks a field, or holds the wrong type, is one UserError naming the line and the field,
instead of a KeyError or TypeError deep inside a resumed stage. The models only check: readers still get the
line's own dict (extra fields and unknown kinds pass), so the on-disk format is unchanged and old run folders
still resume. Writers keep calling `Journal.append(kind, **fields)`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = ["RUN_EVENTS", "Event", "event_problem"]


def _number(value: Any) -> Any:
    """Metrics are JSON numbers, NaN (written by json.dumps) or null (not measured); never text or booleans."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise PydanticCustomError("number_type", "must be a number or null")
    return value


Number = Annotated[Any, AfterValidator(_number)]


class Event(BaseModel):
    """Base of every kind: strict JSON types (no "1" for 1, no true for 1); fields beyond the model pass."""

    model_config = ConfigDict(strict=True, extra="allow")


class Result(Event):
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


class PlannedNetwork(Event):
    network_id: int
    encoding: str
    origin: str
    blocks: int


class StageFinished(Event):
    stage: str


class StepPlanned(Event):
    step: int
    networks: list[PlannedNetwork]


class StepFinished(Event):
    step: int


class NetworkStarted(Event):
    network_id: int
    step: int
    rung: int = 0  # multi-fidelity: the rung this training reaches (0: from scratch; older journals have none)


class NetworkFinished(Event):
    """`result` is the network's whole record after that rung (search/promotion.py `rung_record`)."""

    network_id: int
    result: Result
    rung: int = 0


class RungPromoted(Event):
    """The networks of `step` that train on to `rung` (search/promotion.py), decided once and replayed on resume."""

    step: int
    rung: int
    network_ids: list[int]


class FinalistsSelected(Event):
    candidates: list[Result]


class ModelSelectionDone(Event):
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
    name: str
    result: Result
    arch: dict


class FinalistExported(Event):
    """The export checks are read with .get (a report cell may stay empty); the name is how a resume finds it."""

    name: str
    equivalent: bool


class FinalistDriftDone(Event):
    name: str
    report: dict


class FinalistDone(Event):
    name: str
    row: dict


# Event kind -> the model its lines must satisfy (search runner, finalists stage, pipeline replay these).
RUN_EVENTS: dict[str, type[Event]] = {
    "stage_finished": StageFinished,
    "step_planned": StepPlanned,
    "step_finished": StepFinished,
    "network_started": NetworkStarted,
    "network_finished": NetworkFinished,
    "rung_promoted": RungPromoted,
    "finalists_selected": FinalistsSelected,
    "model_selection_done": ModelSelectionDone,
    "finalist_trained": FinalistTrained,
    "finalist_exported": FinalistExported,
    "finalist_drift_done": FinalistDriftDone,
    "finalist_done": FinalistDone,
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
