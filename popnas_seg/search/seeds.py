"""The seeds of a searched network: per run (common random numbers) or per cell, never by order of training,
so a resumed run reproduces its scores; the finalists and the benchmarks seed their trainings the same way."""

from __future__ import annotations

import zlib


def network_seed(base_seed: int, encoding_key: str) -> int:
    """A per-network seed that depends on the cell, not on the order of training, so resume reproduces scores."""
    return (base_seed * 1_000_003 + zlib.crc32(encoding_key.encode())) % (2**31 - 1)


def search_network_seeds(base_seed: int, encoding: str, seeding: str) -> tuple[int, int]:
    """(training seed, probe seed) of a searched network.

    "common" gives every network of a run the same seeds (common random numbers): the same batches,
    augmentations and probe programmings, so the Dice the search and its predictors see differ by cell, not by
    SGD luck. "per_network" (the old behaviour) derives both from the cell. Neither depends on the order of
    training, so a resumed run reproduces its scores.
    """
    from popnas_seg.search_space.encoding import Cell

    if seeding == "common":
        seed = network_seed(base_seed, "")
        return seed, seed
    if seeding == "per_network":
        return network_seed(base_seed, Cell.from_string(encoding).key()), network_seed(base_seed, encoding)
    raise ValueError(f"unknown network_seeding {seeding!r}")
