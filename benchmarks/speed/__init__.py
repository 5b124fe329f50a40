"""Speed benchmarks: what the trainer, the analog probe, inference tiles, Ray workers and devices cost."""
