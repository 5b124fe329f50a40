"""Reading a config: the file's checks, JSON parsing (duplicate keys are errors), strict validation, the default
config and the frozen absolute data path; every problem becomes one `UserError` (messages.py words it)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from popnas_seg.config.messages import describe_error, format_loc, json_kind
from popnas_seg.config.schema import RunConfig
from popnas_seg.errors import UserError
from popnas_seg.pathcheck import not_a_folder_reason

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent.parent / "configs" / "run.json"


# A run config is a few KB; a 50 MB operator list took 60 s and 1.27 GB to be refused item by item.
MAX_CONFIG_BYTES = 1_000_000


def load_config(path: str | Path | None) -> RunConfig:
    """Read, parse and validate a JSON config file (None: DEFAULT_CONFIG); every problem is a `UserError`.

    Also checks that `dataset.path` is an existing folder holding images/ and masks/ and stores it as an
    absolute path, so a run folder's frozen config still points at the data when resumed from elsewhere.
    """
    if path is None:
        path = DEFAULT_CONFIG
    source = str(path)
    file = Path(path).expanduser()
    if not file.exists():
        raise UserError(f"config error in {source}: file not found")
    if file.is_dir():
        raise UserError(f"config error in {source}: is a folder, not a JSON file")
    if not file.is_file():
        raise UserError(f"config error in {source}: not a regular file (a FIFO or device would block the read)")
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(
            f"config error in {source}: the file is {file.stat().st_size:,} bytes, over the "
            f"{MAX_CONFIG_BYTES:,} a config may have (a run config is a few KB)"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"config error in {source}: cannot read the file ({exc})") from None
    data = parse_config_text(text, source)
    config = config_from_dict(data, source=source)
    _check_dataset_path(config, source)
    return config


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    """JSON text -> dict; syntax errors name line and column, duplicate keys are errors (JSON keeps the last)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # The hook cannot know where its object sits; it marks the object and the walk below names the path.
        seen = _ObjectWithDuplicates()
        for key, value in pairs:
            if key in seen and key not in seen.duplicates:
                seen.duplicates.append(key)
            seen[key] = value
        return seen

    if not text.strip():
        raise UserError(f"config error in {source}: the file is empty (expected a JSON object)")
    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        lines = text.splitlines()
        shown = lines[exc.lineno - 1].strip() if 0 < exc.lineno <= len(lines) else ""
        near = f' near "{shown[:60]}"' if shown else ""
        before = text[: exc.pos].rstrip()
        if before.endswith(",") and exc.msg.startswith(("Expecting property name", "Expecting value")):
            near += " (JSON allows no comma before a closing } or ])"
        raise UserError(
            f"config error in {source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{near}"
        ) from None
    except RecursionError:
        raise UserError(f"config error in {source}: the JSON is nested too deeply to be a config") from None
    try:
        duplicate = _first_duplicate(data, ())
    except RecursionError:
        raise UserError(f"config error in {source}: the JSON is nested too deeply to be a config") from None
    if duplicate is not None:
        loc, key = duplicate
        where = f"in {format_loc(loc)}" if loc else "at the top level"
        raise UserError(f'config error in {source}: key "{key}" appears twice {where} (JSON would keep only the last)')
    if not isinstance(data, dict):
        raise UserError(
            f"config error in {source}: the top level must be a JSON object with sections such as "
            f'"search_space" and "dataset" (got {json_kind(data)})'
        )
    return data


def _note_deprecated_resize(d: dict[str, Any], where: str) -> None:
    """`dataset.resize` is the old name of `dataset.crop` (it always cropped, never resized): it is still read
    (the field's alias), with a warning; both at once is an error."""
    dataset = d.get("dataset")
    if not isinstance(dataset, dict) or "resize" not in dataset:
        return
    if "crop" in dataset:
        raise UserError(f'{where}: dataset: set "crop" only; "resize" is its deprecated old name')
    logging.getLogger("popnas_seg.config").warning(
        "dataset.resize is deprecated: it is read as dataset.crop (the networks train on random crops of this "
        "size and whole images are tiled with it); rename the key. dataset.rescale is the option that resizes"
    )


def config_from_dict(d: dict[str, Any], source: str | None = None) -> RunConfig:
    """Validate a plain dict (e.g. parsed JSON) into a RunConfig; errors become one `UserError` message."""
    where = f"config error in {source}" if source else "config error"
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a JSON object of sections (got {json_kind(d)})")
    try:
        # Through JSON text in strict mode: "2" or true is not an integer, 2.0 is not a count, while lists still
        # fill tuple fields and string keys integer-keyed maps, exactly as a JSON file is read.
        text = json.dumps(d)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: not representable as JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{where}: nested too deeply to be a config") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise UserError(f"{where}: {len(text):,} bytes of JSON, over the {MAX_CONFIG_BYTES:,} a config may have")
    _note_deprecated_resize(d, where)
    try:
        return RunConfig.model_validate_json(text, strict=True)
    except ValidationError as exc:
        problems = [describe_error(err) for err in exc.errors()]
    if len(problems) == 1:
        raise UserError(f"{where}: {problems[0]}")
    listed = "\n".join(f"  {p}" for p in problems)
    raise UserError(f"{where}: {len(problems)} problems:\n{listed}")


def dump_config(cfg: RunConfig) -> dict[str, Any]:
    """JSON-ready dict of every setting (defaults included); `config_from_dict` reads it back unchanged."""
    return cfg.model_dump(mode="json")


def _check_dataset_path(config: RunConfig, source: str) -> None:
    """Fail before anything is created if the data folder is missing; freeze it as an absolute path."""
    raw = config.dataset.path
    if raw is None:
        return
    folder = Path(raw).expanduser()
    if not folder.is_absolute():
        folder = Path.cwd() / folder
    where = f'config error in {source}: dataset.path: folder "{raw}"'
    resolved = "" if Path(raw).is_absolute() else f" (looked in {folder})"
    reason = not_a_folder_reason(folder)
    if reason is not None:
        raise UserError(f"{where} {reason}{resolved}")
    missing = [sub for sub in ("images", "masks") if not (folder / sub).is_dir()]
    if missing:
        names = " and ".join(f"{m}/" for m in missing)
        raise UserError(f"{where} has no {names} subfolder (it must hold images/ and masks/ with matching file names)")
    config.dataset.path = str(folder.resolve())


class _ObjectWithDuplicates(dict[str, Any]):
    """A parsed JSON object that remembers keys written more than once (json keeps only the last value)."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[str] = []


def _first_duplicate(value: Any, loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str] | None:
    """(location, key) of the first object, depth first, with a repeated key; None if there is none."""
    if isinstance(value, _ObjectWithDuplicates) and value.duplicates:
        return loc, value.duplicates[0]
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = _first_duplicate(child, (*loc, key))
        if found is not None:
            return found
    return None
