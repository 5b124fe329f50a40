"""Cell encodings: blocks, canonical form (equivalence), string round-trip and enumeration.

A cell is a tuple of blocks `(in1, op1, in2, op2)`. Inputs < 0 are lookbacks (-1 the previous cell, -2 the
one before, ...); inputs >= 0 index an earlier block of the same cell. Many encodings describe the same
network: the two operands of a block can be swapped, independent blocks can be reordered, and a block input
can point at a block whose own operands are swapped. The canonical form makes all of those compare and hash
equal, so the search never trains one network twice under two names:

1. every block gets a representation: the sorted pair of `(input representation, op)`, where a lookback is
   represented by its number and a block input by that block's representation (recursively, so a nested
   swap is invisible -- POPNAS compares nested blocks in stored order and misses it);
2. blocks are ordered by (DAG height, representation), which is topological; among interchangeable twins
   (same height and representation) every permutation is tried and the smallest rendering wins (up to
   `_MAX_TWIN_PERMUTATIONS`, beyond which the first order is kept: only cells with 7+ identical blocks);
3. inside a block the operands are ordered by (representation, op, new index).

`cell.key()` is `str(cell.canonical())`.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from popnas_seg.search_space.operators import parse_operator

_MAX_TWIN_PERMUTATIONS = 720
Rng = np.random.Generator | random.Random


@dataclass(frozen=True)
class Block:
    """Two operators applied to two inputs, joined (add / avg) into the block output."""

    in1: int
    op1: str
    in2: int
    op2: str

    def __str__(self) -> str:
        return f"({self.in1},{self.op1},{self.in2},{self.op2})"

    @property
    def inputs(self) -> tuple[int, int]:
        return self.in1, self.in2

    @property
    def operators(self) -> tuple[str, str]:
        return self.op1, self.op2


@dataclass(frozen=True, eq=False)
class Cell:
    """An ordered tuple of blocks; equality and hashing use the canonical key (see module docstring)."""

    blocks: tuple[Block, ...] = ()

    def __post_init__(self) -> None:
        blocks = tuple(self.blocks)
        for i, b in enumerate(blocks):
            if not isinstance(b, Block):
                raise ValueError(f"block {i} is a {type(b).__name__}, not a Block")
            for value in b.inputs:
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise ValueError(f"block {i} input {value!r} is not an integer")
                if value >= i:
                    raise ValueError(
                        f"block {i} reads input {value}: a block can only read lookbacks (< 0) "
                        f"or earlier blocks (0..{i - 1})"
                    )
            for op in b.operators:
                if not isinstance(op, str) or not op:
                    raise ValueError(f"block {i} operator {op!r} is not a non-empty string")
        object.__setattr__(self, "blocks", tuple(Block(int(b.in1), b.op1, int(b.in2), b.op2) for b in blocks))

    # -- identity ----------------------------------------------------------------------------------
    def __str__(self) -> str:
        return "[" + ";".join(str(b) for b in self.blocks) + "]"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cell):
            return NotImplemented
        return self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def key(self) -> str:
        """Canonical string: equal for equivalent cells."""
        return self._key

    @cached_property
    def _key(self) -> str:
        return str(self.canonical())

    def canonical(self) -> Cell:
        """The canonical representative of this cell's equivalence class."""
        return _canonical(self.blocks)

    @classmethod
    def from_string(cls, text: str) -> Cell:
        """Inverse of `str(cell)`: `"[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-1,3x3 conv)]"`, `"[]"`."""
        s = text.strip() if isinstance(text, str) else ""
        if not (s.startswith("[") and s.endswith("]")):
            raise ValueError(f'cannot parse cell {text!r}: expected "[(in1,op1,in2,op2);...]" or "[]"')
        inner = s[1:-1].strip()
        if not inner:
            return cls(())
        blocks = []
        for part in inner.split(";"):
            m = _BLOCK_RE.fullmatch(part.strip())
            if not m:
                raise ValueError(f"cannot parse block {part.strip()!r} of cell {text!r}: expected (in1,op1,in2,op2)")
            blocks.append(Block(int(m[1]), m[2], int(m[3]), m[4]))
        return cls(tuple(blocks))

    # -- structure ---------------------------------------------------------------------------------
    def validate(
        self, operators: Sequence[str] | None = None, lookback_depth: int = 2, max_blocks: int | None = None
    ) -> None:
        """Raise ValueError unless the cell belongs to the search space (None: any parseable operator/size)."""
        if max_blocks is not None and len(self.blocks) > max_blocks:
            raise ValueError(f"cell {self} has {len(self.blocks)} blocks, more than the maximum {max_blocks}")
        known = set(operators) if operators is not None else None
        for i, b in enumerate(self.blocks):
            for value in b.inputs:
                if not -lookback_depth <= value <= i - 1:
                    raise ValueError(f"cell {self}: block {i} input {value} is outside [-{lookback_depth}, {i - 1}]")
            for op in b.operators:
                if known is not None and op not in known:
                    raise ValueError(f"cell {self}: operator {op!r} is not in the search space {sorted(known)}")
                if known is None:
                    parse_operator(op)

    def used_lookbacks(self) -> tuple[int, ...]:
        """Lookbacks read by some block, ascending (e.g. (-2, -1)); () for the empty cell (it reads -1)."""
        return tuple(sorted({v for b in self.blocks for v in b.inputs if v < 0}))

    def unused_blocks(self) -> tuple[int, ...]:
        """Blocks no later block reads: the ones concatenated into the cell output."""
        used = {v for b in self.blocks for v in b.inputs if v >= 0}
        return tuple(i for i in range(len(self.blocks)) if i not in used)

    def operators_used(self) -> tuple[str, ...]:
        """Distinct operators of the cell, sorted."""
        return tuple(sorted({op for b in self.blocks for op in b.operators}))

    def heights(self) -> tuple[int, ...]:
        """Per block, 1 + the longest chain of blocks feeding it (a block reading only lookbacks: 1)."""
        out: list[int] = []
        for b in self.blocks:
            out.append(1 + max((out[v] for v in b.inputs if v >= 0), default=0))
        return tuple(out)


_BLOCK_RE = re.compile(r"\(\s*(-?\d+)\s*,\s*([^,;()]+?)\s*,\s*(-?\d+)\s*,\s*([^,;()]+?)\s*\)")


# -- canonical form ----------------------------------------------------------------------------------


def _representations(blocks: Sequence[Block]) -> list[str]:
    reprs: list[str] = []
    for b in blocks:
        pair = sorted(f"{_input_repr(v, reprs)}>{op}" for v, op in ((b.in1, b.op1), (b.in2, b.op2)))
        reprs.append("[" + "|".join(pair) + "]")
    return reprs


def _input_repr(value: int, reprs: list[str]) -> str:
    return str(value) if value < 0 else reprs[value]


def _render(blocks: Sequence[Block], reprs: list[str], order: Sequence[int]) -> tuple[Block, ...]:
    new_index = {old: new for new, old in enumerate(order)}
    out = []
    for old in order:
        b = blocks[old]
        operands = sorted(
            (_input_repr(v, reprs), op, new_index[v] if v >= 0 else v) for v, op in ((b.in1, b.op1), (b.in2, b.op2))
        )
        (_, op_a, in_a), (_, op_b, in_b) = operands
        out.append(Block(in_a, op_a, in_b, op_b))
    return tuple(out)


def _canonical(blocks: tuple[Block, ...]) -> Cell:
    if not blocks:
        return Cell(())
    reprs = _representations(blocks)
    heights = Cell(blocks).heights()
    order = sorted(range(len(blocks)), key=lambda i: (heights[i], reprs[i]))
    groups = [list(g) for _, g in itertools.groupby(order, key=lambda i: (heights[i], reprs[i]))]
    variants = math.prod(math.factorial(len(g)) for g in groups)
    if variants == 1 or variants > _MAX_TWIN_PERMUTATIONS:
        return Cell(_render(blocks, reprs, order))
    best: tuple[Block, ...] | None = None
    best_text = ""
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        rendered = _render(blocks, reprs, [i for p in perms for i in p])
        text = ";".join(str(b) for b in rendered)
        if best is None or text < best_text:
            best, best_text = rendered, text
    assert best is not None
    return Cell(best)


# -- enumeration -------------------------------------------------------------------------------------


def _operands(inputs: Iterable[int], operators: Sequence[str]) -> list[tuple[int, str]]:
    return [(v, op) for v in inputs for op in operators]


def _unique(cells: Iterable[Cell]) -> list[Cell]:
    seen: set[str] = set()
    out = []
    for c in cells:
        if c.key() not in seen:
            seen.add(c.key())
            out.append(c)
    return out


def single_block_cells(operators: Sequence[str], lookback_depth: int) -> list[Cell]:
    """Every distinct one-block cell on lookback inputs: (I^2 O^2 + I O) / 2 of them."""
    return expand_cell(Cell(()), operators, lookback_depth)


def expand_cell(cell: Cell, operators: Sequence[str], lookback_depth: int) -> list[Cell]:
    """All distinct children with one more block reading inputs in [-lookback_depth, b-1]."""
    b = len(cell.blocks)
    items = _operands(range(-lookback_depth, b), operators)
    children = (
        Cell(cell.blocks + (Block(items[i][0], items[i][1], items[j][0], items[j][1]),))
        for i in range(len(items))
        for j in range(i, len(items))
    )
    return _unique(children)


def rescales_its_parent(cell: Cell) -> bool:
    """True when the last block only rescales the rest of the cell: `(j, identity, j, identity)` on a block j
    that no other block reads. With the cell output concatenating only unused blocks (the default), the new
    block replaces block j in the output by 2x block j (add join) or by block j itself (avg join), which the
    layers after the cell absorb: the cell computes what its parent computes, so training it again only
    measures training noise."""
    if not cell.blocks:
        return False
    last = cell.blocks[-1]
    j = last.in1
    if j < 0 or last.in2 != j or last.op1 != "identity" or last.op2 != "identity":
        return False
    return all(j not in b.inputs for b in cell.blocks[:-1])


def _randint(rng: Rng, n: int) -> int:
    """Uniform integer in [0, n) from either a numpy Generator or a random.Random."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(n))
    return rng.randrange(n)


def random_cell(rng: Rng, blocks: int, operators: Sequence[str], lookback_depth: int) -> Cell:
    """A uniformly sampled encoding with `blocks` blocks (used by the random baseline)."""
    if not operators:
        raise ValueError("random_cell needs at least one operator")
    out = []
    for i in range(blocks):
        inputs = list(range(-lookback_depth, i))
        in1, op1 = inputs[_randint(rng, len(inputs))], operators[_randint(rng, len(operators))]
        in2, op2 = inputs[_randint(rng, len(inputs))], operators[_randint(rng, len(operators))]
        out.append(Block(in1, op1, in2, op2))
    return Cell(tuple(out))


def mutate_cell(cell: Cell, rng: Rng, operators: Sequence[str], lookback_depth: int) -> Cell:
    """Change exactly one input or one operator, uniformly among the mutations giving a different network."""
    candidates: list[Cell] = []
    for i, b in enumerate(cell.blocks):
        variants = [Block(v, b.op1, b.in2, b.op2) for v in range(-lookback_depth, i) if v != b.in1]
        variants += [Block(b.in1, b.op1, v, b.op2) for v in range(-lookback_depth, i) if v != b.in2]
        variants += [Block(b.in1, op, b.in2, b.op2) for op in operators if op != b.op1]
        variants += [Block(b.in1, b.op1, b.in2, op) for op in operators if op != b.op2]
        for variant in variants:
            candidates.append(Cell(cell.blocks[:i] + (variant,) + cell.blocks[i + 1 :]))
    distinct = [c for c in _unique(candidates) if c.key() != cell.key()]
    if not distinct:
        raise ValueError(f"cell {cell} has no single-change mutation that gives a different network")
    return distinct[_randint(rng, len(distinct))]
