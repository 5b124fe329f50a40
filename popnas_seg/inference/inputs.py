"""What a user hands `predict`: image files and folders, and a drift time in words ("1month", "30d").

Checked before any network is loaded, so a typo fails in a second with one message naming the path or value.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

from popnas_seg.errors import UserError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
    "mo": 2592000.0,
    "month": 2592000.0,
    "months": 2592000.0,  # 30 days, as the drift tables
    "y": 31536000.0,
    "year": 31536000.0,
    "years": 31536000.0,
}


def parse_duration(text: str | float) -> float:
    """Seconds of a drift time: a number of seconds or a number and a unit ("1month", "30d", "1 y", "3600")."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
        if match is None or match.group(2) not in ("", *_UNITS):
            raise UserError(
                f"cannot read drift time {text!r}: use seconds or a number with a unit, e.g. 1month, 30d, 1h, 1y"
            )
        seconds = float(match.group(1)) * _UNITS.get(match.group(2), 1.0)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise UserError(f"drift time must be positive, got {text!r}")
    return seconds


def collect_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Image files from files and folders (a folder's supported files, sorted); errors name the path."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not p.name.endswith((".probs.npy", ".overlay.png"))
            )
            if not found:
                raise UserError(f"no images in {path} (supported: {', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise UserError(f"unsupported image file {path}: use {', '.join(IMAGE_SUFFIXES)}")
            files.append(path)
        elif path.exists():  # a FIFO or a device: reading it could block forever
            raise UserError(f"input {path} is not a regular file or folder")
        else:
            raise UserError(f"input {path} does not exist")
    if not files:
        raise UserError("no input images given")
    names = [f.name for f in files]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"two inputs share the name {dup[0]}: outputs are written under the input names")
    return files
