"""The base of every config section, and the check that a name is registered (used by several sections)."""

from __future__ import annotations

from typing import Any

from pydantic import AfterValidator, BaseModel, ConfigDict

from popnas_seg.registry import Registry


class Section(BaseModel):
    # allow_inf_nan=False: NaN and Infinity (which Python's json accepts) are errors in every float field.
    # Strictness of types (no "2" or true for an integer) comes from `config_from_dict`, which validates in
    # pydantic's strict JSON mode; sections built in code keep lax Python-mode validation.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def registered(registry: Registry[Any], *extra: str, excluded: tuple[str, ...] = ()) -> AfterValidator:
    """A name the registry knows (an extension registered before the config is read counts too)."""

    def check(name: str) -> str:
        if (name in registry or name in extra) and name not in excluded:
            return name
        raise ValueError(registry.unknown_message(name, extra, excluded))

    return AfterValidator(check)
