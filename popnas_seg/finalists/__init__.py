"""The finalists stage: selection rules (selection.py) and the stage that retrains, exports and scores (stage.py)."""
from popnas_seg.finalists.selection import knee_distances, macro_variants, select_finalists
from popnas_seg.finalists.stage import FinalistsStage, drift_rows, run_finalists, seconds_per_drift_eval

__all__ = ["FinalistsStage", "drift_rows", "knee_distances", "macro_variants", "run_finalists",
           "seconds_per_drift_eval", "select_finalists"]
