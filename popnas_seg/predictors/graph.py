"""A cell as a small DAG for the GIN predictor (POPNAS_FACTS.md section 3), padded to a fixed node count.

Nodes: one per *used* lookback (-1 first), three per block (op1, op2, join), and a concat node when more than
one block feeds the cell output. Edges: input (a lookback node, or the join of the referenced block) -> op node
-> its block's join; joins of the output blocks -> concat. The empty cell is one all-zero node.

Node features: one-hot over [operators | lookbacks -1..-depth | join | concat], plus two numeric operator
features from the operator grammar (receptive field / 7 and "has weights"), which let the GIN relate
e.g. a 3x3 and a 5x5 conv instead of seeing two unrelated symbols.

The adjacency is returned symmetric (undirected) without self-loops: a GIN layer adds the node's own state
through its (1 + eps) term, and with only 3 layers the undirected graph lets every node see both its inputs and
its consumers (node types keep the direction readable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from popnas_seg.search_space.operators import parse_operator


def operator_numeric_features(op: str) -> tuple[float, float]:
    """(receptive field / 7, has weights) of an operator, from the project's operator grammar."""
    spec = parse_operator(op)
    field = 1
    if spec.kernel is not None:
        field = (max(spec.kernel) - 1) * spec.dilation + 1
        if spec.kernel2 is not None:  # stacked convs grow the field additively
            field += max(spec.kernel2) - 1
        if spec.zoom:  # a zoomed conv sees `zoom` times further
            field *= spec.zoom
    return field / 7.0, 1.0 if spec.has_weights else 0.0


@dataclass(frozen=True)
class CellGraph:
    """One cell's graph, unpadded: features [n, F], adjacency [n, n] (symmetric, zero diagonal)."""

    features: np.ndarray
    adjacency: np.ndarray

    @property
    def nodes(self) -> int:
        return int(self.features.shape[0])


class CellGraphEncoder:
    """Turns cells into padded graph tensors with a fixed node count, so any cells batch together."""

    def __init__(
        self, operators: Sequence[str], lookback_depth: int, max_blocks: int, concat_all_blocks: bool = False
    ) -> None:
        if not operators:
            raise ValueError("operators must not be empty")
        self.operators = list(operators)
        self.lookback_depth = int(lookback_depth)
        self.max_blocks = int(max_blocks)
        self.concat_all_blocks = bool(concat_all_blocks)
        self._op_index = {op: i for i, op in enumerate(self.operators)}
        self._op_numeric = {op: operator_numeric_features(op) for op in self.operators}
        n_ops = len(self.operators)
        self._lookback_offset = n_ops
        self._join_index = n_ops + self.lookback_depth
        self._concat_index = self._join_index + 1
        self._numeric_offset = self._concat_index + 1

    @property
    def feature_size(self) -> int:
        return len(self.operators) + self.lookback_depth + 2 + 2

    @property
    def max_nodes(self) -> int:
        return self.lookback_depth + 3 * self.max_blocks + 1

    def _op_features(self, op: str) -> np.ndarray:
        if op not in self._op_index:
            raise ValueError(f"operator {op!r} is not in the search space {self.operators}")
        row = np.zeros(self.feature_size, dtype=np.float32)
        row[self._op_index[op]] = 1.0
        row[self._numeric_offset : self._numeric_offset + 2] = self._op_numeric[op]
        return row

    def encode(self, cell: Any) -> CellGraph:
        """The graph of one cell (anything with `.blocks` of `(in1, op1, in2, op2)` blocks)."""
        blocks = list(cell.blocks)
        if len(blocks) > self.max_blocks:
            raise ValueError(f"cell has {len(blocks)} blocks, the encoder was built for at most {self.max_blocks}")
        if not blocks:
            return CellGraph(np.zeros((1, self.feature_size), np.float32), np.zeros((1, 1), np.float32))
        for i, b in enumerate(blocks):
            for inp in (b.in1, b.in2):
                if inp < -self.lookback_depth or inp >= i:
                    raise ValueError(f"block {i} input {inp} outside [-{self.lookback_depth}, {i - 1}]")
        used_lookbacks = sorted({inp for b in blocks for inp in (b.in1, b.in2) if inp < 0}, reverse=True)
        referenced = {inp for b in blocks for inp in (b.in1, b.in2) if inp >= 0}
        outputs = (
            list(range(len(blocks)))
            if self.concat_all_blocks
            else [i for i in range(len(blocks)) if i not in referenced]
        )
        has_concat = len(outputs) > 1
        n = len(used_lookbacks) + 3 * len(blocks) + int(has_concat)
        feats = np.zeros((n, self.feature_size), dtype=np.float32)
        adj = np.zeros((n, n), dtype=np.float32)
        lookback_node = {}
        for k, lb in enumerate(used_lookbacks):
            lookback_node[lb] = k
            feats[k, self._lookback_offset + (-lb - 1)] = 1.0
        base = len(used_lookbacks)

        def join_node(i: int) -> int:
            return base + 3 * i + 2

        for i, b in enumerate(blocks):
            op1, op2, join = base + 3 * i, base + 3 * i + 1, join_node(i)
            feats[op1] = self._op_features(b.op1)
            feats[op2] = self._op_features(b.op2)
            feats[join, self._join_index] = 1.0
            for inp, op_node in ((b.in1, op1), (b.in2, op2)):
                src = lookback_node[inp] if inp < 0 else join_node(inp)
                adj[src, op_node] = adj[op_node, src] = 1.0
                adj[op_node, join] = adj[join, op_node] = 1.0
        if has_concat:
            concat = n - 1
            feats[concat, self._concat_index] = 1.0
            for i in outputs:
                adj[join_node(i), concat] = adj[concat, join_node(i)] = 1.0
        return CellGraph(feats, adj)

    def batch(self, cells: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded (features [N, max_nodes, F], adjacency [N, max_nodes, max_nodes], node mask [N, max_nodes])."""
        n, size, f = len(cells), self.max_nodes, self.feature_size
        x = np.zeros((n, size, f), dtype=np.float32)
        a = np.zeros((n, size, size), dtype=np.float32)
        mask = np.zeros((n, size), dtype=np.float32)
        for i, cell in enumerate(cells):
            g = self.encode(cell)
            k = g.nodes
            x[i, :k] = g.features
            a[i, :k, :k] = g.adjacency
            mask[i, :k] = 1.0
        return x, a, mask
