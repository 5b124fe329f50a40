"""Every figure of a run, drawn from plain data (numbers, rows, arrays) and written atomically as PNG.

The functions never read Keras or torch objects: the search, the finalists stage and the report hand them rows,
so the same figures can be re-drawn from the CSVs of an old or still-running run (`plot_search`).
Matplotlib is used through its object API with the Agg canvas (no pyplot global state, no display needed).
style.py holds what every figure shares, search.py and finalists.py the figures of each stage, run_folder.py
the re-drawing from a run folder's CSVs; every public name is re-exported here.
"""

from popnas_seg.plots.finalists import (
    plot_drift_curves,
    plot_finalists_size_analog,
    plot_learning_curves,
    plot_sample_predictions,
)
from popnas_seg.plots.run_folder import (
    hypervolume_series,
    load_results,
    measured_front_ids,
    plot_search,
    predicted_vs_measured,
)
from popnas_seg.plots.search import (
    operator_counts,
    plot_dice_params_analog,
    plot_front_projections,
    plot_hypervolume,
    plot_hypervolume_spread,
    plot_operator_frequency,
    plot_predicted_vs_measured,
    spearman,
)
from popnas_seg.plots.style import LABEL_ALL_MAX, time_label

__all__ = [
    "LABEL_ALL_MAX",
    "hypervolume_series",
    "load_results",
    "measured_front_ids",
    "operator_counts",
    "plot_dice_params_analog",
    "plot_drift_curves",
    "plot_finalists_size_analog",
    "plot_front_projections",
    "plot_hypervolume",
    "plot_hypervolume_spread",
    "plot_learning_curves",
    "plot_operator_frequency",
    "plot_predicted_vs_measured",
    "plot_sample_predictions",
    "plot_search",
    "predicted_vs_measured",
    "spearman",
    "time_label",
]
