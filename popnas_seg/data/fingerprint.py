"""What data a run was started on, so that `-r` can refuse to continue a search on different data.

A resumed search that silently reads a changed folder scores its networks on two different validation
sets. The run folder therefore keeps `restore/data_fingerprint.json` from its creation: for a data folder
the name, size and SHA-256 of every file in images/ and masks/ (hidden files are skipped, as the loader
skips them); for built-in data the generator's parameters (the data is a pure function of them and the seed).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from popnas_seg.config import DatasetConfig
from popnas_seg.errors import UserError

FINGERPRINT_VERSION = 1
_SUBFOLDERS = ("images", "masks")
_SHOWN = 3


def data_fingerprint(dataset: DatasetConfig, seed: int) -> dict[str, Any]:
    """A JSON-ready description of the data `dataset` names; equal fingerprints mean equal input data."""
    if dataset.path is None:
        generator = dataset.model_dump(mode="json", exclude={"path", "augmentation", "seed"})  # the seed used is below
        return {"version": FINGERPRINT_VERSION, "kind": "generated", "seed": seed, "generator": generator}
    root = Path(dataset.path)
    files: dict[str, dict[str, Any]] = {}
    for sub in _SUBFOLDERS:
        folder = root / sub
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            raise UserError(f"cannot read the data folder {folder}: {exc.strerror or exc}") from None
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            files[f"{sub}/{entry.name}"] = _file_digest(entry)
    return {"version": FINGERPRINT_VERSION, "kind": "folder", "path": str(root), "files": files}


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """None if the fingerprints match; else one line saying what changed (files added, removed, modified)."""
    if old == new:
        return None
    if old.get("kind") != new.get("kind"):
        return f"the data source changed from {old.get('kind')} to {new.get('kind')} data"
    if new.get("kind") == "generated":
        before, after = old.get("generator") or {}, new.get("generator") or {}
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if old.get("seed") != new.get("seed"):
            keys.append("seed")
        return "the generated data's parameters changed: " + ", ".join(keys or ["version"])
    if old.get("path") != new.get("path"):
        return f'the data folder changed from "{old.get("path")}" to "{new.get("path")}"'
    before, after = old.get("files") or {}, new.get("files") or {}
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    modified = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = [
        f"{len(names)} file(s) {what} ({_few(names)})"
        for what, names in (("added", added), ("removed", removed), ("modified", modified))
        if names
    ]
    return f'in the data folder "{new.get("path")}": ' + "; ".join(parts or ["the fingerprint format changed"])


def _file_digest(file: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    try:
        with open(file, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise UserError(f"cannot read the data file {file}: {exc.strerror or exc}") from None
    return {"size": size, "sha256": digest.hexdigest()}


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
