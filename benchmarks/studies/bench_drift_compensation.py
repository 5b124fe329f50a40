"""Global vs per-column drift compensation on one analog layer: relative output error after drift.

Why: `analog.drift_compensation` offers AIHWKit's global compensation (one factor per tile, read with an
all-ones input) or none. AIHWKit also has `PerColumnDriftCompensation` (one factor per column, read with
one-hot inputs), which in principle follows columns whose devices drift faster. This script measures it on a
64 x 16 linear layer whose half of the columns hold a few large and many small weights (small conductances
drift faster on PCM), with the project's inference tiles (`inference_rpu_config`: PCM noise model, column
weight mapping, output noise and ADC), and prints the relative mean squared output error against the digital
layer after each drift time, mean ± std over programmings.

    python -m benchmarks.studies.bench_drift_compensation [--repetitions 6] [--times 86400 31536000]
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=6)
    parser.add_argument("--times", type=float, nargs="+", default=[86400.0, 31536000.0])
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from aihwkit.inference import GlobalDriftCompensation
    from aihwkit.inference.compensation.drift import PerColumnDriftCompensation

    from popnas_seg.analog.rpu import inference_rpu_config, program_and_drift, to_analog
    from popnas_seg.config import AnalogConfig

    torch.manual_seed(0)
    rows, cols = 64, 16
    weights = torch.randn(cols, rows) * 0.05
    weights[: cols // 2] *= (torch.rand(cols // 2, rows) < 0.1).float() * 10 + 0.2
    layer = torch.nn.Sequential(torch.nn.Linear(rows, cols, bias=False))
    with torch.no_grad():
        layer[0].weight.copy_(weights)
    x = torch.randn(256, rows)
    reference = layer(x).detach()
    compensations = {"global": GlobalDriftCompensation, "per_column": PerColumnDriftCompensation, "none": None}
    print("| compensation | " + " | ".join(f"t = {t:g} s" for t in args.times) + " |")
    print("| --- |" + " --- |" * len(args.times))
    for name, make in compensations.items():
        rpu = inference_rpu_config(AnalogConfig())
        rpu.drift_compensation = None if make is None else make()
        cells = []
        for t in args.times:
            errors = []
            for rep in range(args.repetitions):
                analog = to_analog(layer, rpu)
                torch.manual_seed(rep)
                program_and_drift(analog, t)
                with torch.no_grad():
                    errors.append(float(((analog(x) - reference) ** 2).mean() / (reference**2).mean()))
            cells.append(f"{np.mean(errors):.3f} ± {np.std(errors):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
