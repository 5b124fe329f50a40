"""CSV tables derived from the journal. Rewritten whole and atomically, so a kill never leaves half a row."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from popnas_seg.atomic import atomic_write_text


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(round(value, 8))
    return value


def finite_float(value: Any) -> float | None:
    """A CSV cell as a finite float, or None for an empty, non-numeric, NaN or infinite cell."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write `rows` to `path` (temp file + rename); columns default to the union of keys in first-seen order."""
    rows = list(rows)
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(key, None)
        columns = list(seen)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    atomic_write_text(Path(path), buffer.getvalue())
    return Path(path)


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV written by `write_csv` ([] when the file does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
