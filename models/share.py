"""Layer-sharing orders (Takase & Kiyono 2021, "Lessons on parameter sharing across layers").

M distinct blocks fill the N layer positions of one H-cycle of the TRM schedule,
N = (L_cycles + 1) * L_layers (every net call of the cycle runs L_layers blocks in a row):
    sequence   AABBCC   each block fills a run of consecutive positions
    cycle      ABCABC   blocks in turn (TRM: M = L_layers, the default)
    cycle_rev  ABCCBA   cycle, with the last round in reverse order
The same order repeats in every H-cycle: a block indexed over all H_cycles * N positions would be
used only in the no-grad cycles of `last_cycle` and never train (docs/variants.md, the trap).
"""
from __future__ import annotations

import math


def layer_order(unique: int, positions: int, order: str) -> list[int]:
    """Block index at each of `positions` layer positions, for `unique` (M) distinct blocks."""
    if not 1 <= unique <= positions:
        raise ValueError(f"ModelConfig.unique_layers={unique}: need 1 <= M <= {positions} positions")
    if order == "sequence":
        return [p * unique // positions for p in range(positions)]
    indices = [p % unique for p in range(positions)]
    if order == "cycle":
        return indices
    if order == "cycle_rev":  # paper: f_i = f_{M - ((i - 1) mod M)} after the first M * (ceil(N/M) - 1) positions
        last_round = unique * (math.ceil(positions / unique) - 1)
        return indices[:last_round] + [unique - 1 - p % unique for p in range(last_round, positions)]
    raise ValueError(f"ModelConfig.share_order={order!r}: must be one of sequence, cycle, cycle_rev")


def order_letters(indices: list[int]) -> str:
    """[0, 0, 1] -> 'AAB' (how the paper writes an order)."""
    return "".join(chr(ord("A") + i) for i in indices)
