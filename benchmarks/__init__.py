"""The benchmark suite: measurements behind docs/BENCHMARKS.md, grouped by purpose.

- `benchmarks.speed`: what a run costs (trainer, probe, tiles, Ray workers, GPU vs CPU);
- `benchmarks.search`: how well the search finds fronts (strategies, replays, oracle, predictors, rank noise);
- `benchmarks.studies`: analog and data studies (drift, HWA, noise sources, normalisation, input outliers).

Every script runs as a module from the repository root, e.g. `python -m benchmarks.search.bench_search --help`,
so the package imports (`popnas_seg`, `benchmarks._common`, sibling scripts) resolve without path edits.
"""
