"""The finalists stage: selection rules (selection.py) and the stage that retrains, exports and scores (stage.py,
with its context.py, analog_steps.py and tables.py)."""

from popnas_seg.finalists.selection import knee_distances, macro_variants, select_finalists
from popnas_seg.finalists.stage import FinalistsStage, run_finalists

__all__ = ["FinalistsStage", "knee_distances", "macro_variants", "run_finalists", "select_finalists"]
