"""The run folder and its journal: everything a run writes, and everything a resume reads back."""

from popnas_seg.runlog.folder import RunFolder
from popnas_seg.runlog.journal import Journal

__all__ = ["Journal", "RunFolder"]
