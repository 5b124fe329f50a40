"""Validation errors in the user's JSON terms: one pydantic error -> `key.path: what is wrong (got X)`, with
`did you mean ...?` hints from the schema's own key names."""

from __future__ import annotations

import difflib
import json
import re
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from popnas_seg.config.schema import RunConfig

_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}
_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list [...]",
    "tuple_type": "a list [...]",
    "dict_type": "an object {...}",
    "model_type": "an object {...}",
    "model_attributes_type": "an object {...}",
    "none_required": "null",
    "finite_number": "a finite number",
}


def describe_error(err: ErrorDetails) -> str:
    """One pydantic error -> `key.path: what is wrong (got X)` in the user's JSON terms."""
    kind: str = err["type"]
    loc: tuple[Any, ...] = tuple(err["loc"])
    ctx: dict[str, Any] = err.get("ctx") or {}
    value = err.get("input")

    if kind == "extra_forbidden":
        return f"{format_loc(loc)}: unknown key{_did_you_mean_key(loc)}"
    if kind == "missing" and loc and isinstance(loc[-1], int):
        size = _tuple_size(loc[:-1])
        need = f"exactly {size}" if size else "more"
        return f"{format_loc(loc[:-1])}: must hold {need} values (got {_show(value)})"
    if kind in ("too_short", "too_long"):
        size = _tuple_size(loc)
        if size:
            return f"{format_loc(loc)}: must hold exactly {size} values (got {_show(value)})"
        bound = f"at least {ctx.get('min_length')}" if kind == "too_short" else f"at most {ctx.get('max_length')}"
        return f"{format_loc(loc)}: must hold {bound} items (got {ctx.get('actual_length', _show(value))})"
    if kind in _BOUNDS:
        key, symbol = _BOUNDS[kind]
        return f"{format_loc(loc)}: must be {symbol} {ctx.get(key)} (got {_show(value)})"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'|(\d+)", str(ctx.get("expected", "")))
        choices = [a or b for a, b in options]
        listed = ", ".join(f'"{c}"' for c in choices)
        hint = ""
        if isinstance(value, str):
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
        return f"{format_loc(loc)}: must be one of {listed} (got {_show(value)}){hint}"
    if kind in ("value_error", "assertion_error"):
        message = str(err.get("msg", ""))
        message = re.sub(r"^(Value error|Assertion failed), ", "", message)
        return f"{format_loc(loc)}: {message}" if loc else message
    if kind in _TYPE_WORDS:
        what = _TYPE_WORDS[kind]
        if loc and loc[-1] == "[key]":
            return f"{format_loc(loc[:-2])}: key {_show(loc[-2])} must be {what}"
        return f"{format_loc(loc)}: must be {what} (got {_show(value)})"
    if kind == "missing":
        return f"{format_loc(loc)}: required key is missing"
    message = str(err.get("msg", "invalid value"))
    message = message[:1].lower() + message[1:]
    return f"{format_loc(loc)}: {message} (got {_show(value)})"


def format_loc(loc: tuple[Any, ...]) -> str:
    """('search_space', 'operators', 2) -> 'search_space.operators[2]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _show(value: Any) -> str:
    """A value as the user wrote it in JSON, shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def json_kind(value: Any) -> str:
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _field_at(loc: tuple[Any, ...]) -> Any:
    """The FieldInfo a location points to (None where it leaves the schema, e.g. inside a list)."""
    model: Any = RunConfig
    field = None
    for part in loc:
        if not (isinstance(part, str) and isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = field.annotation
    return field


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model that owns the keys at `loc` (RunConfig for the top level)."""
    if not loc:
        return RunConfig
    field = _field_at(loc)
    ann = getattr(field, "annotation", None)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _tuple_size(loc: tuple[Any, ...]) -> int | None:
    ann = getattr(_field_at(loc), "annotation", None)
    if typing.get_origin(ann) is tuple:
        args = typing.get_args(ann)
        if args and Ellipsis not in args:
            return len(args)
    return None


def _all_key_paths(model: type[BaseModel] = RunConfig, prefix: str = "") -> dict[str, list[str]]:
    """Every key name in the schema -> the dotted paths where it is valid (for cross-section hints)."""
    found: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        found.setdefault(name, []).append(path)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for key, paths in _all_key_paths(ann, f"{path}.").items():
                found.setdefault(key, []).extend(paths)
    return found


def _did_you_mean_key(loc: tuple[Any, ...]) -> str:
    """A close key in the same section, else the section where this exact key belongs."""
    key = str(loc[-1])
    section = _section_at(loc[:-1])
    if section is not None:
        close = difflib.get_close_matches(key, list(section.model_fields), n=1, cutoff=0.6)
        if close:
            return f' (did you mean "{close[0]}"?)'
    elsewhere = _all_key_paths().get(key, [])
    if elsewhere:
        return f' (it belongs in "{elsewhere[0]}")'
    return ""
