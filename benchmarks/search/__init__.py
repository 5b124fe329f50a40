"""Search-quality benchmarks: strategies at equal budget, replays, the mean oracle, predictors, rank noise."""
