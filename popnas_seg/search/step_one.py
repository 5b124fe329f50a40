"""Step 1 of the progressive search: which single-block cells it trains (all, or a params-stratified sample
under `b1_max_networks`) and in which order (bisection over cost, so every prefix spans the cost range)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from popnas_seg.config import RunConfig
from popnas_seg.search_space.encoding import (
    Cell,
    single_block_cells,
)

T = TypeVar("T")


def b1_cells(config: RunConfig, params_of: Callable[[Cell], int] | None = None) -> list[Cell]:
    """The step-1 cells: every distinct single-block cell (POPNAS), or `b1_max_networks` of them stratified
    over exact params, so that a capped step 1 still covers the whole cost range.

    The cap keeps the cheapest and the costliest cell, then draws one cell uniformly from each of the
    remaining equal-count params strata (seeded by `others.seed`); if no drawn cell reads one lookback twice
    or uses one operator twice, such a cell replaces the draw of its own stratum. Every cell is reachable for
    some seed (a greedy spread could never pick a same-input or same-operator cell). `params_of` gives exact
    params (the progressive strategy passes its cost cache); by default they are computed from the config.
    Either way the cells come cheapest first, ties by key.
    """
    space = config.search_space
    if params_of is None:
        from popnas_seg.models.cost import count_params

        arch, data = config.architecture_hyperparameters, config.dataset
        params_of = lambda c: count_params(c, arch, data.generated_channels, data.classes_count)  # noqa: E731
    cells = single_block_cells(space.operators, space.lookback_depth)
    ranked = sorted(cells, key=lambda c: (int(params_of(c)), c.key()))  # cheapest first, ties by key
    cap = config.search_strategy.b1_max_networks
    if cap is None or cap >= len(cells):
        return ranked
    rng = np.random.default_rng([config.others.seed, 1])
    picked = [ranked[0]] if cap == 1 else [ranked[0], ranked[-1]]
    middle = ranked[1:-1]
    slots = cap - len(picked)
    strata = [list(s) for s in np.array_split(np.arange(len(middle)), slots)] if slots > 0 else []
    draws = [int(rng.choice(s)) for s in strata]

    def single_lookback(cell: Cell) -> bool:
        return cell.blocks[0].in1 == cell.blocks[0].in2

    def same_operator(cell: Cell) -> bool:
        return cell.blocks[0].op1 == cell.blocks[0].op2

    def holds(rule: Callable[[Cell], bool], chosen: list[int]) -> bool:
        return any(rule(c) for c in picked) or any(rule(middle[i]) for i in chosen)

    rules = (single_lookback, same_operator)
    stratum_of = {int(i): k for k, s in enumerate(strata) for i in s}
    for n, wanted in enumerate(rules):
        if holds(wanted, draws):
            continue
        for choice in rng.permutation([i for i, c in enumerate(middle) if wanted(c)]):
            trial = list(draws)
            trial[stratum_of[int(choice)]] = int(choice)
            if all(holds(rule, trial) for rule in rules[:n]):  # keep what an earlier swap secured
                draws = trial
                break
    return sorted(picked + [middle[i] for i in draws], key=lambda c: (int(params_of(c)), c.key()))


def spread_order(items: Sequence[T]) -> list[T]:
    """`items` (sorted by cost) in bisection order: the first and the last, then the midpoint of every gap left,
    breadth-first, so that every prefix spans the whole cost range.

    Why: a capped step 1 used to train its cells cheapest first, so until its last few networks the measured
    front held only small cells; a run stopped or read early (and the "networks needed to reach a hypervolume"
    measure of benchmarks/search/bench_search.py) saw none of the costly, higher-Dice ones. The set of cells is
    unchanged.
    """
    n = len(items)
    if n <= 2:
        return list(items)
    order = [0, n - 1]
    gaps = deque([(0, n - 1)])
    while gaps:
        lo, hi = gaps.popleft()
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        order.append(mid)
        gaps.extend(((lo, mid), (mid, hi)))
    return [items[i] for i in order]
