"""POPNAS exploration step (POPNAS_FACTS.md section 2): a few extra children that use what the front neglects.

After the Pareto children of step b are chosen, operators and inputs that the front under-uses (count below
total / (n * 5)) form the *exploration sets*. Candidates earn points for every input and operator they draw
from those sets, more for elements still rare among the exploration picks, and a bonus for the group (inputs or
operators) explored less so far; a candidate with enough points is eligible. The first eligible candidate in
score order that is not equivalent to a chosen cell is taken, then the scan adds eligible candidates that no
exploration pick dominates, until `k`.

One deliberate fix: the reference scores each block's in1, in2 and op1 *twice* (op2 is never read); here both
operators count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A candidate with at least this many points is eligible; halved when one exploration set is empty.
SCORE_THRESHOLD = 8
UNDERUSE_DIVISOR = 5


def _key(cell: Any) -> str:
    return cell.key() if hasattr(cell, "key") else str(cell)


@dataclass
class ExplorationCounter:
    """Usage counts restricted to a fixed set of inputs and operators (other values are ignored)."""

    inputs: Counter = field(default_factory=Counter)
    ops: Counter = field(default_factory=Counter)

    @classmethod
    def over(cls, inputs: Sequence[int], ops: Sequence[str]) -> ExplorationCounter:
        return cls(Counter({i: 0 for i in inputs}), Counter({o: 0 for o in ops}))

    def add(self, cell: Any) -> None:
        for b in cell.blocks:
            for inp in (b.in1, b.in2):
                if inp in self.inputs:
                    self.inputs[inp] += 1
            for op in (b.op1, b.op2):
                if op in self.ops:
                    self.ops[op] += 1

    @property
    def inputs_total(self) -> int:
        return sum(self.inputs.values())

    @property
    def ops_total(self) -> int:
        return sum(self.ops.values())


def exploration_sets(
    front_cells: Sequence[Any], operators: Sequence[str], lookback_depth: int, blocks: int
) -> tuple[list[int], list[str]]:
    """Inputs and operators used by the front less than total / (count * 5) times.

    `blocks` is the block count of the candidates: their inputs range over [-lookback_depth, blocks - 2].
    """
    valid_inputs = list(range(-lookback_depth, max(blocks - 1, 0)))
    counter = ExplorationCounter.over(valid_inputs, list(operators))
    for cell in front_cells:
        counter.add(cell)
    op_threshold = counter.ops_total / (len(operators) * UNDERUSE_DIVISOR)
    input_threshold = counter.inputs_total / (len(valid_inputs) * UNDERUSE_DIVISOR)
    inputs = [i for i in valid_inputs if counter.inputs[i] < input_threshold]
    ops = [o for o in operators if counter.ops[o] < op_threshold]
    return inputs, ops


def _element_score(value: Any, counts: Counter, total: int, bonus: bool) -> int:
    if value not in counts:
        return 0
    score = 1
    if total == 0 or counts[value] <= total / len(counts):  # still rare among the exploration picks
        score += 2
    if bonus:
        score += 1
    return score


def exploration_score(cell: Any, counter: ExplorationCounter) -> int:
    """Points of `cell` given the exploration picks so far (both operators of every block are read)."""
    inputs_total, ops_total = counter.inputs_total, counter.ops_total
    op_bonus = ops_total <= inputs_total
    input_bonus = inputs_total <= ops_total
    score = 0
    for b in cell.blocks:
        score += _element_score(b.in1, counter.inputs, inputs_total, input_bonus)
        score += _element_score(b.in2, counter.inputs, inputs_total, input_bonus)
        score += _element_score(b.op1, counter.ops, ops_total, op_bonus)
        score += _element_score(b.op2, counter.ops, ops_total, op_bonus)
    return score


def is_eligible(cell: Any, counter: ExplorationCounter) -> bool:
    threshold = SCORE_THRESHOLD if (counter.inputs and counter.ops) else SCORE_THRESHOLD // 2
    return exploration_score(cell, counter) >= threshold


def exploration_picks(
    candidates: Sequence[Any],
    scores: Sequence[float],
    front_cells: Sequence[Any],
    operators: Sequence[str],
    lookback_depth: int,
    k: int,
    dominated_fn: Callable[[int, int], bool],
) -> list[int]:
    """Indices into `candidates` of up to `k` exploration children (empty when nothing is under-used).

    `scores` orders the scan (highest first, ties by position); `front_cells` are the Pareto children already
    chosen (never picked again, equivalence by `cell.key()`); `dominated_fn(i, j)` says whether candidate i is
    dominated by candidate j on the predicted objectives.
    """
    if k <= 0 or len(candidates) == 0:
        return []
    blocks = max(len(c.blocks) for c in candidates)
    inputs, ops = exploration_sets(front_cells, operators, lookback_depth, blocks)
    if not inputs and not ops:
        return []
    counter = ExplorationCounter.over(inputs, ops)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    taken = {_key(c) for c in front_cells}
    picks: list[int] = []
    # first: the best-scoring eligible cell not equivalent to a chosen one
    for i in order:
        cell = candidates[i]
        if _key(cell) not in taken and is_eligible(cell, counter):
            picks.append(int(i))
            taken.add(_key(cell))
            counter.add(cell)
            break
    if not picks:
        return []
    # then: eligible cells that no exploration pick dominates (counts change after every pick)
    for i in order:
        if len(picks) >= k:
            break
        cell = candidates[i]
        if _key(cell) in taken:
            continue
        if any(dominated_fn(int(i), p) for p in picks) or not is_eligible(cell, counter):
            continue
        picks.append(int(i))
        taken.add(_key(cell))
        counter.add(cell)
    return picks
