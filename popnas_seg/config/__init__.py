"""Run configuration: one JSON file, validated by pydantic, sections named as in POPNAS.

Every section forbids unknown keys so that a typo is an error naming the key, never a silently
ignored setting. `load_config` turns every validation problem into a `UserError` (exit code 2) with
one message that names the key path and, where it can, the fix (`did you mean ...?`).
Every field carries a `description`: `scripts/config_reference.py` turns them into the README table.

The package: schema.py (the root RunConfig) with the sections in search.py, data.py and analog.py on the
base of base.py; loading.py reads and validates a file, messages.py words the validation errors. Import
from `popnas_seg.config`, which re-exports the public names below.
"""

from popnas_seg.config.analog import (
    DEVICE_DRIFT_TIMES,
    G_MAX_LIMIT_US,
    MAX_DRIFT_SECONDS,
    AnalogConfig,
    unsupported_drift_time,
)
from popnas_seg.config.data import AugmentationConfig, DatasetConfig
from popnas_seg.config.loading import (
    DEFAULT_CONFIG,
    MAX_CONFIG_BYTES,
    config_from_dict,
    dump_config,
    load_config,
    parse_config_text,
)
from popnas_seg.config.schema import (
    ArchitectureConfig,
    InferenceConfig,
    OthersConfig,
    RunConfig,
    TrainingConfig,
)
from popnas_seg.config.search import SearchSpaceConfig, SearchStrategyConfig

__all__ = [
    "DEFAULT_CONFIG",
    "DEVICE_DRIFT_TIMES",
    "G_MAX_LIMIT_US",
    "MAX_CONFIG_BYTES",
    "MAX_DRIFT_SECONDS",
    "AnalogConfig",
    "ArchitectureConfig",
    "AugmentationConfig",
    "DatasetConfig",
    "InferenceConfig",
    "OthersConfig",
    "RunConfig",
    "SearchSpaceConfig",
    "SearchStrategyConfig",
    "TrainingConfig",
    "config_from_dict",
    "dump_config",
    "load_config",
    "parse_config_text",
    "unsupported_drift_time",
]
