"""Append-only JSON-lines journal: the run's source of truth, replayed on resume.

Each event is one line, written with a single `write` then flushed and fsynced, so a kill loses at
most the line being written. A torn last line (no newline, or not valid JSON) is ignored by readers
and cut away before the next append, so it never becomes a damaged line in the middle of the file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from popnas_seg.atomic import fsync_dir, naming_path
from popnas_seg.errors import UserError
from popnas_seg.runlog.events import Event, event_problem

_TAIL_CHUNK = 64 * 1024


class Journal:
    """One `restore/journal.jsonl`; every event is a dict with at least `event` and `time` (UNIX seconds)."""

    def __init__(self, path: str | os.PathLike[str], schema: dict[str, type[Event]] | None = None) -> None:
        """`schema`: event kind -> the model its lines must satisfy (see runlog.events.RUN_EVENTS); checked on
        every read, so replay code can index the fields it needs."""
        self.path = Path(path)
        self.schema = schema

    def append(self, event: Event) -> dict[str, Any]:
        """Durably append one event (a `runlog.events` model); returns the record written: `event` (the model's
        kind), `time`, then the model's fields as JSON keys."""
        kind = type(event).kind
        if not kind:
            raise ValueError(f"{type(event).__name__} has no event kind")
        fields = event.model_dump()
        reserved = {"event", "time"} & fields.keys()
        if reserved:
            raise ValueError(f"journal fields {sorted(reserved)} are reserved (event kind and timestamp)")
        record: dict[str, Any] = {"event": kind, "time": round(time.time(), 3), **fields}
        line = json.dumps(record, default=_jsonable, separators=(",", ":")) + "\n"
        if "\n" in line[:-1]:  # json.dumps never emits raw newlines; guard against a custom default()
            raise ValueError("journal records must serialise to a single line")
        created = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
            try:
                self._cut_torn_tail(fd)
                data = line.encode("utf-8")
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:  # e.g. a full disk: a torn line is cut on the next append, the rest stays valid
            raise naming_path(exc, self.path) from exc
        if created:
            fsync_dir(self.path.parent)
        return record

    def events(self, kind: type[Event] | None = None) -> list[dict[str, Any]]:
        """All complete events in order, as written (only those of the model `kind` if given).

        A damaged line that is not the last one means the file was edited or the disk failed: that is
        reported as a UserError rather than silently dropping history the resume depends on.
        """
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        # After split, the final element is b"" when the file ends with a newline, else the torn tail.
        complete, tail = lines[:-1], lines[-1]
        records: list[dict[str, Any]] = []
        for number, chunk in enumerate(complete, start=1):
            if not chunk.strip():
                continue
            record = _parse(chunk)
            if record is None:
                if number == len(complete) and not tail:
                    break  # a last line that was cut inside the data but still ends in a newline
                raise UserError(
                    f"journal {self.path} is damaged at line {number}; it cannot be replayed "
                    "(restore it from a backup or start a new run)"
                )
            problem = event_problem(record, self.schema) if self.schema is not None else None
            if problem is not None:
                raise UserError(
                    f"journal {self.path} is damaged at line {number}: {problem}; it cannot be replayed "
                    "(restore it from a backup or start a new run)"
                )
            records.append(record)
        if kind is None:
            return records
        return [r for r in records if r.get("event") == kind.kind]

    def torn_tail(self) -> int:
        """Bytes of an incomplete or unparsable last line (a crash mid-append), 0 if none; the next append cuts
        them. Read-only, so a resume can say so before it writes."""
        if not self.path.exists():
            return 0
        raw = self.path.read_bytes()
        if not raw:
            return 0
        body = raw[:-1] if raw.endswith(b"\n") else raw
        last = body[body.rfind(b"\n") + 1 :]
        if raw.endswith(b"\n") and (not last.strip() or _parse(last) is not None):
            return 0
        return len(raw) - (len(body) - len(last))

    def _cut_torn_tail(self, fd: int) -> None:
        """Truncate an incomplete or unparsable last line left by a crash (called under O_APPEND)."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        last_byte = os.pread(fd, 1, size - 1)
        body_end = size - 1 if last_byte == b"\n" else size
        start = body_end  # becomes the offset just after the newline that precedes the last line
        while start > 0:
            lo = max(0, start - _TAIL_CHUNK)
            cut = os.pread(fd, start - lo, lo).rfind(b"\n")
            if cut >= 0:
                start = lo + cut + 1
                break
            start = lo
        last = os.pread(fd, body_end - start, start)
        if last_byte == b"\n" and (not last.strip() or _parse(last) is not None):
            return  # the file ends with a complete, valid line
        os.ftruncate(fd, start)
        os.fsync(fd)


def _parse(chunk: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(chunk.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays and paths appear in event fields; store them as plain JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"journal field of type {type(value).__name__} is not JSON-serialisable")
