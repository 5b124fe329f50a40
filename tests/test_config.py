"""Config loading: every kind of mistake becomes one UserError naming the key path and the fix."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from popnas_seg.config import (
    DEFAULT_CONFIG,
    RunConfig,
    config_from_dict,
    dump_config,
    load_config,
)
from popnas_seg.errors import UserError

ROOT = Path(__file__).resolve().parent.parent

# (id, file content: dict -> JSON, str -> verbatim, None -> no file, expected fragments of the message)
CONFIG_ERROR_CASES: list[tuple[str, Any, list[str]]] = [
    (
        "unknown_key",
        {"search_strategy": {"max_childs": 3}},
        ['search_strategy.max_childs: unknown key (did you mean "max_children"?)'],
    ),
    ("key_in_wrong_section", {"epochs": 3}, ['epochs: unknown key (it belongs in "training_hyperparameters.epochs")']),
    (
        "wrong_type",
        {"training_hyperparameters": {"epochs": "three"}},
        ['training_hyperparameters.epochs: must be an integer (got "three")'],
    ),
    ("section_not_object", {"search_space": 5}, ["search_space: must be an object {...} (got 5)"]),
    (
        "out_of_range",
        {"training_hyperparameters": {"epochs": 0}},
        ["training_hyperparameters.epochs: must be >= 1 (got 0)"],
    ),
    (
        "bad_operator",
        {"search_space": {"operators": ["identity", "3x3 conv", "3x3 cnv"]}},
        ['search_space.operators[2]: cannot parse "3x3 cnv"', 'unknown operator "cnv"'],
    ),
    (
        "bad_choice",
        {"training_hyperparameters": {"optimizer": "adamww"}},
        [
            'training_hyperparameters.optimizer: must be one of "adamw", "adam", "sgd" (got "adamww")',
            '(did you mean "adamw"?)',
        ],
    ),
    (
        "missing_dataset_folder",
        {"dataset": {"name": None, "path": "/nope/no-such-data"}},
        ['dataset.path: folder "/nope/no-such-data" does not exist'],
    ),
    (
        "bad_json",
        '{\n  "dataset": {\n    "samples": 12,\n  }\n}\n',
        ["invalid JSON at line 4, column 3", "no comma before a closing"],
    ),
    ("missing_file", None, ["file not found"]),
    (
        "nan_drift_time",
        '{"analog": {"eval_times": [1.0, NaN]}}',
        ["analog.eval_times[1]: must be a finite number (got NaN)"],
    ),
    (
        "bool_as_integer",
        {"training_hyperparameters": {"epochs": True}},
        ["training_hyperparameters.epochs: must be an integer (got true)"],
    ),
]


def _write_case(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


@pytest.mark.parametrize("case_id,content,expected", CONFIG_ERROR_CASES, ids=[c[0] for c in CONFIG_ERROR_CASES])
def test_every_error_class_is_one_user_error_naming_the_key(
    tmp_path: Path, case_id: str, content: Any, expected: list[str]
) -> None:
    path = _write_case(tmp_path, content)
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"config error in {path}: "), message
    for fragment in expected:
        assert fragment in message, message
    assert "\n" not in message, "a single problem must be a single line"
    assert "pydantic" not in message.lower() and "errors.pydantic.dev" not in message


def test_several_problems_are_listed_in_one_message() -> None:
    with pytest.raises(UserError) as info:
        config_from_dict({"training_hyperparameters": {"epochs": 0, "optimizer": "x"}, "dataset": {"crop": [32]}})
    message = str(info.value)
    assert message.startswith("config error: 3 problems:")
    assert "training_hyperparameters.epochs: must be >= 1 (got 0)" in message
    assert "training_hyperparameters.optimizer: must be one of" in message
    assert "dataset.crop: must hold exactly 2 values (got [32])" in message


@pytest.mark.parametrize(
    "data,expected",
    [
        ({"dataset": {"crop": [32, 32, 32]}}, "dataset.crop: must hold exactly 2 values (got [32, 32, 32])"),
        ({"dataset": {"name": "synthetic_nuclei", "path": "x"}}, 'dataset: set exactly one of "name"'),
        (
            {"dataset": {"crop": [36, 36]}, "architecture_hyperparameters": {"motifs": 3}},
            "dataset.crop [36, 36] must be divisible by 2**motifs = 8",
        ),
        (
            {"search_space": {"operators": ["3x3 conv", "3x3 conv"]}},
            "search_space.operators: operators contain duplicates",
        ),
        ({"search_space": {"operators": []}}, "search_space.operators: must hold at least 1 items (got 0)"),
        ({"others": {"pipeline": ["serch"]}}, 'others.pipeline[0]: must be one of "search", "finalists", "report"'),
        (
            {"dataset": {"class_labels_remapping": {"x": 1}}},
            'dataset.class_labels_remapping: key "x" must be an integer',
        ),
        ({"analog": {"probe": "maybe"}}, 'analog.probe: must be true or false (got "maybe")'),
        ({"search_strategy": {"b1_max_networks": 0}}, "search_strategy.b1_max_networks: must be >= 1 (got 0)"),
        (
            {"search_strategy": {"hypervolume_reference": {"dise": 0.1}}},
            "search_strategy.hypervolume_reference: unknown objective(s) ['dise']",
        ),
        ({"search_strategy": {"selection": "crowding"}}, "search_strategy.selection"),
        ({"analog": {"preset": "pcm"}}, "analog.preset: unknown key"),
        ({"others": {"train_strategy": "cpu"}}, "others.train_strategy: unknown key"),
        ({"training_hyperparameters": {"learning_rate": 0}}, "training_hyperparameters.learning_rate: must be > 0"),
        (
            {"dataset": {"augmentation": {"flip": True}}},
            'dataset.augmentation.flip: unknown key (did you mean "flips"?)',
        ),
    ],
)
def test_value_errors_name_the_key(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(UserError) as info:
        config_from_dict(data, source="x.json")
    assert expected in str(info.value)
    assert str(info.value).startswith("config error in x.json: ")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", "the file is empty"),
        ("[1, 2]", "the top level must be a JSON object"),
        ('{"others": {"seed": 1, "seed": 2}}', 'key "seed" appears twice'),
        ('{"others": {"seed": 1}', "invalid JSON at line 1, column 23"),
    ],
)
def test_file_level_problems(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(UserError, match="config error in") as info:
        load_config(path)
    assert expected in str(info.value)


def test_a_folder_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is a folder, not a JSON file"):
        load_config(tmp_path)


def test_dataset_folder_needs_images_and_masks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset": {"name": None, "path": "data"}}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r'dataset.path: folder "data" has no masks/ subfolder'):
        load_config(cfg)
    (data / "masks").mkdir()
    loaded = load_config(cfg)
    # relative paths are resolved from the working folder and frozen as absolute paths
    assert loaded.dataset.path == str(data.resolve())
    assert config_from_dict(dump_config(loaded)).dataset.path == str(data.resolve())


def test_missing_relative_dataset_folder_shows_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset": {"name": None, "path": "nowhere"}}))
    with pytest.raises(UserError) as info:
        load_config(cfg)
    assert f'folder "nowhere" does not exist (looked in {tmp_path / "nowhere"})' in str(info.value)


def test_shipped_configs_validate() -> None:
    quick = load_config(ROOT / "configs" / "quick.json")
    assert quick.dataset.crop == (32, 32)
    assert quick.training_hyperparameters.epochs == 1
    assert quick.search_space.blocks == 2
    assert quick.analog.finalists == 1
    default = load_config(None)
    assert DEFAULT_CONFIG == ROOT / "configs" / "run.json"
    assert default.dataset.name == "synthetic_nuclei"
    assert default.others.pipeline == ["search", "finalists", "report"]


def _keys(obj: Any, prefix: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.add(prefix + key)
            if isinstance(value, dict) and key not in ("class_labels_remapping", "hypervolume_reference"):
                found |= _keys(value, prefix + key + ".")
    return found


def test_run_json_writes_out_every_key_of_the_schema() -> None:
    written = json.loads((ROOT / "configs" / "run.json").read_text())
    assert _keys(written) == _keys(dump_config(RunConfig())), "configs/run.json must list every schema key"


def test_run_json_dataset_holds_the_defaults() -> None:
    """run.json claims to hold the defaults: `samples` is null (all folder images / 192 synthetic), not 192."""
    written = json.loads((ROOT / "configs" / "run.json").read_text())["dataset"]
    defaults = dump_config(RunConfig())["dataset"]
    assert written["samples"] is None and defaults["samples"] is None
    assert written["crop"] == defaults["crop"] and written["rescale"] == defaults["rescale"]


def test_resize_is_a_deprecated_alias_of_crop(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="popnas_seg.config"):
        cfg = config_from_dict({"dataset": {"resize": [32, 48]}})
    assert cfg.dataset.crop == (32, 48)
    assert "dataset.resize is deprecated" in caplog.text and "dataset.crop" in caplog.text
    assert "resize" not in dump_config(cfg)["dataset"]  # frozen configs are written with the new name
    with pytest.raises(UserError, match="deprecated"):
        config_from_dict({"dataset": {"resize": [32, 32], "crop": [32, 32]}})


def test_dump_round_trips_through_json() -> None:
    cfg = config_from_dict(
        {
            "dataset": {"class_labels_remapping": {255: 1}, "crop": [32, 48]},
            "search_strategy": {"hypervolume_reference": {"params": 1e6}},
        }
    )
    dumped = json.loads(json.dumps(dump_config(cfg)))
    again = config_from_dict(dumped)
    assert again == cfg
    assert again.dataset.class_labels_remapping == {255: 1}
    assert again.dataset.crop == (32, 48)


def test_partial_config_takes_defaults() -> None:
    cfg = config_from_dict({"training_hyperparameters": {"epochs": 5}})
    assert cfg.training_hyperparameters.epochs == 5
    assert cfg.training_hyperparameters.optimizer == "adamw"
    assert cfg.search_space == RunConfig().search_space


def test_empty_pipeline_is_allowed() -> None:
    assert config_from_dict({"others": {"pipeline": []}}).others.pipeline == []


def test_readme_config_reference_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    block = module.readme_block()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert block in readme, "README.md is stale: run .venv/bin/python scripts/config_reference.py --write-readme"
    for name in RunConfig.model_fields:
        for key in getattr(RunConfig.model_fields[name].annotation, "model_fields", {}):
            assert f"`{name}.{key}`" in block or key == "augmentation"
    assert "`dataset.augmentation.flips`" in block


def test_deprecated_analog_objective_name_is_read_as_analog_dice() -> None:
    config = config_from_dict(
        {
            "search_strategy": {
                "additional_pareto_objectives": ["params", "analog_robustness"],
                "hypervolume_reference": {"analog_robustness": 0.1},
            }
        },
        source="x.json",
    )
    assert config.search_strategy.additional_pareto_objectives == ["params", "analog_dice"]
    assert config.search_strategy.hypervolume_reference == {"analog_dice": 0.1}
    assert config.search_strategy.deprecation_notes() == [
        'search_strategy: objective "analog_robustness" is deprecated, read as "analog_dice"'
    ]
    assert config_from_dict({}, source="x.json").search_strategy.deprecation_notes() == []


def test_dataset_seed_fixes_the_data_apart_from_the_search_seed() -> None:
    """dataset.seed null: the data follows others.seed (as before the key existed); set: it alone does."""
    assert config_from_dict({"others": {"seed": 7}}).data_seed == 7
    fixed = config_from_dict({"others": {"seed": 7}, "dataset": {"seed": 3}})
    assert fixed.data_seed == 3 and fixed.others.seed == 7
    with pytest.raises(UserError, match="dataset.seed"):
        config_from_dict({"dataset": {"seed": -1}})


def test_network_seed_rejects_what_numpy_cannot_seed() -> None:
    with pytest.raises(UserError, match="network_seed"):
        config_from_dict({"search_strategy": {"network_seed": -1}})
    assert config_from_dict({"search_strategy": {"network_seed": 2**32 - 1}}).network_seed == 2**32 - 1
