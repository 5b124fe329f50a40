"""Data layer: data sources registered by name (data/sources.py: built-in synthetic nuclei, a user's images/ +
masks/ folder, or an extension's), and the split tf.data pipelines.

`generate_nuclei` and `read_folder` are plain numpy; the pipeline names import TensorFlow, so they are
loaded lazily: `from popnas_seg.data import generate_nuclei` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from popnas_seg.data.folder import read_folder
from popnas_seg.data.sources import LoadedImages, register_data_source
from popnas_seg.data.synthetic import generate_nuclei

if TYPE_CHECKING:
    from popnas_seg.data.pipeline import SegmentationData, load_data
    from popnas_seg.data.preview import save_preview

__all__ = [
    "LoadedImages",
    "SegmentationData",
    "generate_nuclei",
    "load_data",
    "read_folder",
    "register_data_source",
    "save_preview",
]

_LAZY = {"SegmentationData": "pipeline", "load_data": "pipeline", "save_preview": "preview"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"popnas_seg.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'popnas_seg.data' has no attribute {name!r}")
