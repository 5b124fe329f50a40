"""The search space: operator grammar and cell encodings (plain data, no Keras)."""

from popnas_seg.search_space.encoding import (
    Block,
    Cell,
    expand_cell,
    mutate_cell,
    random_cell,
    single_block_cells,
)
from popnas_seg.search_space.operators import KNOWN_FORMS, OperatorSpec, parse_operator

__all__ = [
    "Block",
    "Cell",
    "KNOWN_FORMS",
    "OperatorSpec",
    "expand_cell",
    "mutate_cell",
    "parse_operator",
    "random_cell",
    "single_block_cells",
]
