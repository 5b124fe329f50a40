"""Markdown pieces of report.md: numbers, mean ± std, tables, durations and figure links, each rendered one way."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers as fixed decimals, integers with thousands separators, missing values as '-'."""
    if value is None or value == "":
        return "-"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return "-"
    if f.is_integer() and abs(f) >= 1000:
        return f"{int(f):,}"
    if f.is_integer() and digits == 0:
        return str(int(f))
    return f"{f:.{digits}f}"


def plus_minus(mean: Any, std: Any) -> str:
    if mean in (None, ""):
        return "-"
    return f"{fmt(mean)} ± {fmt(std)}" if std not in (None, "") else fmt(mean)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def image_link(run_path: Path, rel: str, alt: str) -> str:
    return f"![{alt}]({rel})" if (run_path / rel).exists() else f"*({alt}: figure not available)*"
