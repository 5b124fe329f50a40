"""The data-source extension point: where a run's images and masks come from, before any preprocessing.

A data source is a callable `(DatasetConfig, seed) -> LoadedImages` registered by name; `data/pipeline.py`'s
`load_data` asks the registry for `dataset.name` (or for "folder" when `dataset.path` is set) and then
normalises, splits and crops whatever it returns the same way for every source. The built-ins are the
synthetic nuclei generators ("synthetic_nuclei", "synthetic_nuclei_hard") and a folder of images/ and masks/
("folder"). A new source is registered with `register_data_source("name")` and is then a valid `dataset.name`
(docs/ARCHITECTURE.md). A named source must be a pure function of the dataset section and the seed: a resumed
run compares those (data/fingerprint.py), not the images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from popnas_seg.config import DatasetConfig
from popnas_seg.errors import UserError
from popnas_seg.registry import DATA_SOURCES

DEFAULT_SYNTHETIC_SAMPLES = 192  # synthetic images generated when dataset.samples is null
FOLDER = "folder"


@dataclass
class LoadedImages:
    """Raw images ([H, W, C], any size and dtype) and masks ([H, W] class indices), one unique name each, and a
    line that says where they came from (run.log, the data preview)."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    names: list[str]
    description: str


class DataSource(Protocol):
    def __call__(self, cfg: DatasetConfig, seed: int) -> LoadedImages:
        """Every image of the data set; user-caused problems raise popnas_seg.errors.UserError."""


def register_data_source(name: str, *, replace: bool = False) -> Callable[[DataSource], DataSource]:
    """Decorator that makes `name` a valid `dataset.name`: `@register_data_source("mine") def load(cfg, seed)`."""
    return DATA_SOURCES.register(name, replace=replace)


def source_name(cfg: DatasetConfig) -> str:
    """The registered source a dataset section selects: "folder" for `path`, else `name`."""
    if cfg.path is not None:
        return FOLDER
    if cfg.name is None:
        raise UserError('dataset: set "name" to "synthetic_nuclei" or "path" to a folder with images/ and masks/')
    return cfg.name


def load_images(cfg: DatasetConfig, seed: int) -> LoadedImages:
    """The images and masks of the source `cfg` selects."""
    source: DataSource = DATA_SOURCES.get(source_name(cfg))
    return source(cfg, seed)


# ------------------------------------------------------------------------------------------ built-ins


def _synthetic(hard: bool) -> DataSource:
    def load(cfg: DatasetConfig, seed: int) -> LoadedImages:
        from popnas_seg.data.folder import remap_labels
        from popnas_seg.data.synthetic import generate_nuclei

        count = cfg.samples if cfg.samples is not None else DEFAULT_SYNTHETIC_SAMPLES
        images, masks_arr = generate_nuclei(
            count, cfg.generated_size, cfg.generated_channels, seed=seed, classes_count=cfg.classes_count, hard=hard
        )
        masks = [remap_labels(m, cfg.class_labels_remapping) for m in masks_arr]
        bad = sorted({int(v) for m in masks for v in np.unique(m) if v >= cfg.classes_count})
        if bad:
            raise UserError(
                f"dataset.class_labels_remapping maps synthetic labels to {bad}, which are >= "
                f"classes_count={cfg.classes_count}; fix the remapping or raise classes_count"
            )
        names = [f"synthetic_{i:05d}" for i in range(count)]
        return LoadedImages(list(images), masks, names, f"{cfg.name}(seed={seed})")

    return load


def _folder(cfg: DatasetConfig, seed: int) -> LoadedImages:
    from popnas_seg.data.folder import read_folder

    if cfg.path is None:
        raise UserError('dataset: the folder source needs "path" (a folder with images/ and masks/)')
    images, masks, names = read_folder(cfg.path, cfg.classes_count, cfg.class_labels_remapping, cfg.samples)
    return LoadedImages(list(images), list(masks), list(names), str(cfg.path))


SYNTHETIC: DataSource = _synthetic(hard=False)
SYNTHETIC_HARD: DataSource = _synthetic(hard=True)
FOLDER_SOURCE: DataSource = _folder
