"""Name registries of the extension points: search strategies, score predictors and data sources.

Why a bottom-floor module: the config validates `search_strategy.strategy`, `search_strategy.score_predictor`
and `dataset.name` against these names, and the config must not import the search, predictor or data layers
(which import the config). So the built-in implementations are listed here by module path ("module:attribute",
imported on first use, as Optuna's samplers and MONAI's components are found by name), and an extension
registers its own object from anywhere with the `register_*` decorators of search/strategies.py,
predictors/registry.py and data/sources.py (docs/ARCHITECTURE.md, "Extension points").
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib import import_module
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> implementations; a built-in may be a "module:attribute" path resolved on first `get`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "search strategy", ... (used in messages)
        self._entries: dict[str, T | str] = {}

    def add(self, name: str, target: T | str, *, replace: bool = False) -> None:
        """Register `target` (an object, or a "module:attribute" path) as `name`; a taken name is an error
        unless `replace` (so two extensions cannot silently shadow each other or a built-in)."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} name must be a non-empty string (got {name!r})")
        if name in self._entries and not replace:
            raise ValueError(f'{self.kind} "{name}" is already registered (pass replace=True to override it)')
        self._entries[name] = target

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator form of `add`: `@REGISTRY.register("name")` above a class or factory function."""

        def decorate(target: T) -> T:
            self.add(name, target, replace=replace)
            return target

        return decorate

    def remove(self, name: str) -> None:
        """Forget `name` (tests that register a toy implementation clean up with this)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> T:
        """The implementation registered as `name`; an unknown name is a ValueError listing the known ones."""
        if name not in self._entries:
            raise ValueError(self.unknown_message(name))
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            loaded: T = getattr(import_module(module), attribute)
            self._entries[name] = loaded
            return loaded
        return target

    def unknown_message(self, name: Any, extra: tuple[str, ...] = (), excluded: tuple[str, ...] = ()) -> str:
        """`must be a registered <kind>, one of "a", "b" (got "x") (did you mean "a"?)`: the config's wording
        for a bad choice; `extra` names accepted beside the entries ("auto"), `excluded` entries not chosen by
        name (the folder source, chosen by dataset.path)."""
        choices = sorted(c for c in {*extra, *self._entries} if c not in excluded)
        listed = ", ".join(f'"{c}"' for c in choices)
        shown = f'"{name}"' if isinstance(name, str) else repr(name)
        hint = ""
        if isinstance(name, str):
            close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
        return f"must be a registered {self.kind}, one of {listed} (got {shown}){hint}"


STRATEGIES: Registry[Any] = Registry("search strategy")
STRATEGIES.add("progressive", "popnas_seg.search.strategies:progressive")
STRATEGIES.add("random", "popnas_seg.search.strategies:random_search")
STRATEGIES.add("evolution", "popnas_seg.search.strategies:evolution")

# "auto" is not an entry: it is the rule in predictors/registry.py that picks "ridge" or "gin" by training size.
PREDICTORS: Registry[Any] = Registry("score predictor")
PREDICTORS.add("gin", "popnas_seg.predictors.registry:GIN")
PREDICTORS.add("ridge", "popnas_seg.predictors.registry:RIDGE")
PREDICTORS.add("forest", "popnas_seg.predictors.registry:FOREST")

# A folder of images/ and masks/ is chosen by dataset.path, every other source by dataset.name.
DATA_SOURCES: Registry[Any] = Registry("data source")
DATA_SOURCES.add("synthetic_nuclei", "popnas_seg.data.sources:SYNTHETIC")
DATA_SOURCES.add("synthetic_nuclei_hard", "popnas_seg.data.sources:SYNTHETIC_HARD")
DATA_SOURCES.add("folder", "popnas_seg.data.sources:FOLDER_SOURCE")
