"""Cell encodings: canonical form against a brute-force oracle, round trip, enumeration, mutation."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from popnas_seg.search_space.encoding import (
    Block,
    Cell,
    expand_cell,
    mutate_cell,
    random_cell,
    single_block_cells,
)

OPS = ["identity", "3x3 conv", "2x2 maxpool"]


def cell(text: str) -> Cell:
    return Cell.from_string(text)


def test_string_round_trip() -> None:
    text = "[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-1,3x3 conv)]"
    c = cell(text)
    assert str(c) == text
    assert c.blocks == (Block(-1, "3x3 conv", -2, "identity"), Block(0, "2x2 maxpool", -1, "3x3 conv"))
    assert str(Cell.from_string("[]")) == "[]"
    assert Cell.from_string(" [ ( -1 , 3x3:2dr conv , -2 , 2r SE ) ] ").blocks == (
        Block(-1, "3x3:2dr conv", -2, "2r SE"),
    )
    assert Cell.from_string(c.key()) == c


@pytest.mark.parametrize("text", ["", "(-1,a,-1,b)", "[(-1,a,-1)]", "[(x,a,-1,b)]", "[(-1,a,-1,b);]", 7])
def test_from_string_rejects_malformed_text(text: object) -> None:
    with pytest.raises(ValueError, match="cannot parse"):
        Cell.from_string(text)  # type: ignore[arg-type]


def test_forward_references_are_rejected() -> None:
    with pytest.raises(ValueError, match="earlier blocks"):
        cell("[(0,3x3 conv,-1,identity)]")
    with pytest.raises(ValueError, match="earlier blocks"):
        Cell((Block(-1, "identity", -1, "identity"), Block(1, "identity", -1, "identity")))


def test_swapped_operands_are_equal() -> None:
    a = cell("[(-1,3x3 conv,-2,identity)]")
    b = cell("[(-2,identity,-1,3x3 conv)]")
    assert a == b and hash(a) == hash(b) and a.key() == b.key()
    assert len({a, b}) == 1


def test_reordered_independent_blocks_are_equal() -> None:
    a = cell("[(-1,3x3 conv,-2,identity);(-2,2x2 maxpool,-1,3x3 conv);(0,identity,1,identity)]")
    b = cell("[(-1,3x3 conv,-2,2x2 maxpool);(-2,identity,-1,3x3 conv);(1,identity,0,identity)]")
    assert a == b


def test_nested_swaps_are_equal() -> None:
    # POPNAS replaces a block input by the referenced block in stored order, so it misses this one
    a = cell("[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-1,3x3 conv)]")
    b = cell("[(-2,identity,-1,3x3 conv);(-1,3x3 conv,0,2x2 maxpool)]")
    c = cell("[(-2,2x2 maxpool,-2,2x2 maxpool);(-2,identity,-1,3x3 conv);(-1,3x3 conv,1,2x2 maxpool)]")
    d = cell("[(-1,3x3 conv,-2,identity);(-2,2x2 maxpool,-2,2x2 maxpool);(-1,3x3 conv,0,2x2 maxpool)]")
    assert a == b
    assert c == d
    assert a != c


def test_really_different_cells_differ() -> None:
    base = cell("[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-1,3x3 conv)]")
    assert base != cell("[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-2,3x3 conv)]")
    assert base != cell("[(-1,3x3 conv,-2,identity);(0,identity,-1,3x3 conv)]")
    assert base != cell("[(-1,3x3 conv,-2,identity)]")
    assert base != cell("[(-1,3x3 conv,-1,identity);(0,2x2 maxpool,-1,3x3 conv)]")
    # which twin a block reads decides which twin is unused (and concatenated): different networks
    twins_shared = cell("[(-1,3x3 conv,-1,3x3 conv);(-1,3x3 conv,-1,3x3 conv);(0,identity,0,identity)]")
    twins_both = cell("[(-1,3x3 conv,-1,3x3 conv);(-1,3x3 conv,-1,3x3 conv);(0,identity,1,identity)]")
    assert twins_shared != twins_both
    # ...but reading one twin or the other is the same network
    assert twins_shared == cell("[(-1,3x3 conv,-1,3x3 conv);(-1,3x3 conv,-1,3x3 conv);(1,identity,1,identity)]")
    assert base != "not a cell"


def _brute_force_key(c: Cell) -> str:
    """Oracle: the smallest rendering over every topological relabelling with sorted operands."""
    n = len(c.blocks)
    best = None
    for perm in itertools.permutations(range(n)):  # perm[new] = old
        new_of = {old: new for new, old in enumerate(perm)}
        rendered = []
        for new, old in enumerate(perm):
            blk = c.blocks[old]
            operands = sorted((new_of[v] if v >= 0 else v, op) for v, op in ((blk.in1, blk.op1), (blk.in2, blk.op2)))
            if operands[-1][0] >= new:
                break
            rendered.append(str(operands))
        else:
            text = ";".join(rendered)
            best = text if best is None or text < best else best
    assert best is not None
    return best


def test_canonical_key_agrees_with_a_brute_force_oracle_exhaustively() -> None:
    ops = ["identity", "3x3 conv"]
    cells = [Cell()]
    for blocks in (1, 2, 3):
        per_block = [list(itertools.product(range(-1, i), ops, range(-1, i), ops)) for i in range(blocks)]
        cells += [Cell(tuple(Block(*b) for b in combo)) for combo in itertools.product(*per_block)]
    assert len(cells) == 1 + 4 + 4 * 16 + 4 * 16 * 36
    ours: dict[str, set[str]] = {}
    oracle: dict[str, set[str]] = {}
    for c in cells:
        ours.setdefault(c.key(), set()).add(str(c))
        oracle.setdefault(_brute_force_key(c), set()).add(str(c))
    assert sorted(map(sorted, ours.values())) == sorted(map(sorted, oracle.values()))
    assert len(ours) < len(cells) / 3  # the space really has many equivalent encodings


def test_relabelled_cells_keep_their_key() -> None:
    rng = np.random.default_rng(0)
    ops = ["identity", "3x3 conv", "2x2 maxpool"]
    checked = 0
    for _ in range(150):
        c = random_cell(rng, int(rng.integers(1, 5)), ops, 2)
        for perm in itertools.permutations(range(len(c.blocks))):
            inverse = {old: new for new, old in enumerate(perm)}
            blocks: list[Block] = []
            for old in perm:
                blk = c.blocks[old]
                ins = [inverse[v] if v >= 0 else v for v in blk.inputs]
                if any(v >= len(blocks) for v in ins):
                    break  # not a topological order: not a valid encoding
                if rng.integers(2):
                    blocks.append(Block(ins[1], blk.op2, ins[0], blk.op1))
                else:
                    blocks.append(Block(ins[0], blk.op1, ins[1], blk.op2))
            else:
                relabelled = Cell(tuple(blocks))
                assert relabelled == c and hash(relabelled) == hash(c)
                assert _brute_force_key(relabelled) == _brute_force_key(c)
                checked += 1
    assert checked > 300


def test_canonical_is_idempotent_and_valid() -> None:
    rng = random.Random(1)
    for _ in range(50):
        c = random_cell(rng, 3, OPS, 2)
        canon = c.canonical()
        assert canon.canonical().blocks == canon.blocks
        canon.validate(OPS, 2, 3)


def test_structure_queries() -> None:
    c = cell("[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-1,3x3 conv);(-2,identity,-2,identity)]")
    assert c.used_lookbacks() == (-2, -1)
    assert c.unused_blocks() == (1, 2)
    assert c.operators_used() == ("2x2 maxpool", "3x3 conv", "identity")
    assert c.heights() == (1, 2, 1)
    empty = Cell()
    assert empty.used_lookbacks() == () and empty.unused_blocks() == () and empty.operators_used() == ()


def test_validate() -> None:
    c = cell("[(-1,3x3 conv,-2,identity);(0,2x2 maxpool,-1,3x3 conv)]")
    c.validate(OPS, 2, 2)
    c.validate(None, 2, None)  # any parseable operator
    with pytest.raises(ValueError, match="outside"):
        c.validate(OPS, 1, 2)
    with pytest.raises(ValueError, match="not in the search space"):
        c.validate(["identity", "3x3 conv"], 2, 2)
    with pytest.raises(ValueError, match="more than the maximum"):
        c.validate(OPS, 2, 1)
    with pytest.raises(ValueError, match="cannot parse"):
        cell("[(-1,3x3 cnv,-1,identity)]").validate(None, 2)
    with pytest.raises(ValueError, match="outside"):
        cell("[(-3,identity,-1,identity)]").validate(OPS, 2)


@pytest.mark.parametrize("ops,depth", [(OPS, 2), (OPS[:1], 1), (OPS, 1), (OPS + ["3x3 dconv", "2r SE"], 3)])
def test_single_block_cells_count(ops: list[str], depth: int) -> None:
    cells = single_block_cells(ops, depth)
    i, o = depth, len(ops)
    assert len(cells) == (i * i * o * o + i * o) // 2
    assert len({c.key() for c in cells}) == len(cells)
    for c in cells:
        c.validate(ops, depth, 1)


def test_expand_cell_children_are_valid_unique_and_complete() -> None:
    parent = cell("[(-1,3x3 conv,-2,identity)]")
    children = expand_cell(parent, OPS, 2)
    keys = [c.key() for c in children]
    assert len(set(keys)) == len(keys)
    for child in children:
        child.validate(OPS, 2, 2)
        assert child.blocks[:1] == parent.blocks
    everything = {
        Cell(parent.blocks + (Block(a, p, b, q),)).key()
        for a, b in itertools.product(range(-2, 1), repeat=2)
        for p, q in itertools.product(OPS, repeat=2)
    }
    assert set(keys) == everything
    n = 3 * len(OPS)  # inputs -2, -1, 0
    assert len(children) == (n * n + n) // 2
    # a parent with twins has children that coincide: they are deduplicated
    twins = cell("[(-1,identity,-1,identity);(-1,identity,-1,identity)]")
    twin_children = expand_cell(twins, OPS, 2)
    assert len(twin_children) < (5 * 3) * (5 * 3 + 1) // 2
    assert len({c.key() for c in twin_children}) == len(twin_children)
    assert [c.key() for c in expand_cell(Cell(), OPS, 2)] == [c.key() for c in single_block_cells(OPS, 2)]


def test_random_cell_is_valid_and_seeded() -> None:
    for rng_a, rng_b in ((np.random.default_rng(3), np.random.default_rng(3)), (random.Random(3), random.Random(3))):
        a = [random_cell(rng_a, 3, OPS, 2) for _ in range(10)]
        b = [random_cell(rng_b, 3, OPS, 2) for _ in range(10)]
        assert [str(c) for c in a] == [str(c) for c in b]
        for c in a:
            c.validate(OPS, 2, 3)
            assert len(c.blocks) == 3
    with pytest.raises(ValueError):
        random_cell(random.Random(0), 2, [], 2)


def test_mutate_changes_exactly_one_field_and_the_network() -> None:
    rng = np.random.default_rng(5)
    for _ in range(60):
        parent = random_cell(rng, int(rng.integers(1, 4)), OPS, 2)
        child = mutate_cell(parent, rng, OPS, 2)
        child.validate(OPS, 2, 3)
        assert child != parent
        changed = [
            (i, f)
            for i, (p, c) in enumerate(zip(parent.blocks, child.blocks))
            for f in ("in1", "op1", "in2", "op2")
            if getattr(p, f) != getattr(c, f)
        ]
        assert len(changed) == 1


def test_mutate_raises_when_no_different_network_exists() -> None:
    only = cell("[(-1,identity,-1,identity)]")
    with pytest.raises(ValueError, match="no single-change mutation"):
        mutate_cell(only, random.Random(0), ["identity"], 1)
    with pytest.raises(ValueError):
        mutate_cell(Cell(), random.Random(0), OPS, 2)


def test_a_block_that_only_rescales_its_parent_is_recognised() -> None:
    from popnas_seg.search_space.encoding import rescales_its_parent

    parent = Cell.from_string("[(-2,3x3 conv,-2,3x3 conv)]")
    assert rescales_its_parent(Cell.from_string("[(-2,3x3 conv,-2,3x3 conv);(0,identity,0,identity)]"))
    # not a rescale: a lookback read twice (a skip connection), another operator, two inputs, or block 0
    # already read by block 1 (then block 0 joins the cell output: a different function)
    for text in (
        "[(-2,3x3 conv,-2,3x3 conv);(-1,identity,-1,identity)]",
        "[(-2,3x3 conv,-2,3x3 conv);(0,2x2 maxpool,0,2x2 maxpool)]",
        "[(-2,3x3 conv,-2,3x3 conv);(0,identity,-1,identity)]",
        "[(-2,3x3 conv,-2,identity);(0,3x3 conv,-1,identity);(0,identity,0,identity)]",
    ):
        assert not rescales_its_parent(Cell.from_string(text)), text
    assert rescales_its_parent(
        Cell.from_string("[(-2,3x3 conv,-2,identity);(0,3x3 conv,-1,identity);(1,identity,1,identity)]")
    )
    assert not rescales_its_parent(parent) and not rescales_its_parent(Cell(()))
