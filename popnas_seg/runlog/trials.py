"""Trial states read from the journal: planned, running, finished, failed, retried.

A network's life is written as events (runlog/events.py): `step_planned` lists it, each attempt at training
it appends `network_started` (with its `attempt` number; journals from before it count the lines), and its
result appends `network_finished`. Resume and `run.py summary` read the states from those events alone, so
old run folders are read the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from popnas_seg.runlog.events import NetworkFinished, NetworkStarted, StepPlanned

__all__ = ["TrialStatus", "trial_attempts", "trial_states"]


class TrialStatus(StrEnum):
    """Where a trial stands. RUNNING/RETRIED in a stopped run mean the attempt was interrupted: a resume
    trains it again from scratch (the next attempt). FINISHED and FAILED are final: never trained again."""

    PLANNED = "planned"  # in a step plan, no attempt yet
    RUNNING = "running"  # first attempt started, no result
    RETRIED = "retried"  # a later attempt started (the one before was interrupted), no result
    FINISHED = "finished"  # result with status ok
    FAILED = "failed"  # result with status nan or failed (a network failure is a result, not a crash)


def trial_attempts(events: Iterable[dict[str, Any]], rung: int = 0) -> dict[int, int]:
    """network id -> attempts at its training to `rung` started so far (`network_started` events of that rung;
    their `attempt` when written). Rung 0 trains from scratch; higher rungs are multi-fidelity continuations."""
    attempts: dict[int, int] = {}
    for e in events:
        if e.get("event") == NetworkStarted.kind and int(e.get("rung", 0)) == rung:
            nid = int(e["network_id"])
            attempts[nid] = max(attempts.get(nid, 0) + 1, int(e.get("attempt", 0)))
    return attempts


def trial_states(events: Iterable[dict[str, Any]]) -> dict[int, TrialStatus]:
    """network id -> its state after `events` (the whole journal, in order)."""
    states: dict[int, TrialStatus] = {}
    started: dict[int, int] = {}
    for e in events:
        kind = e.get("event")
        if kind == StepPlanned.kind:
            for net in e["networks"]:
                states.setdefault(int(net["network_id"]), TrialStatus.PLANNED)
        elif kind == NetworkStarted.kind and not e.get("rung"):  # a continuation: its network stays finished
            nid = int(e["network_id"])
            started[nid] = max(started.get(nid, 0) + 1, int(e.get("attempt", 0)))
            states[nid] = TrialStatus.RUNNING if started[nid] == 1 else TrialStatus.RETRIED
        elif kind == NetworkFinished.kind:
            ok = e["result"].get("status", "ok") == "ok"
            states[int(e["network_id"])] = TrialStatus.FINISHED if ok else TrialStatus.FAILED
    return states
