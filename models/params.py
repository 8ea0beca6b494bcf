"""Parameter counts of the paper configurations, next to the figures the papers report.

Run: python -m models.params [--identifiers N]

"Trainable" counts every nn.Parameter (what the dense optimiser updates). The puzzle-embedding
table is a buffer updated by the sparse optimiser; its size is puzzle_emb_ndim floats per
puzzle identifier, so it is printed separately for N identifiers (default 1: Sudoku and
mazes use one shared vector; ARC with augmentations has hundreds of thousands).
"""
from __future__ import annotations

import argparse
from typing import Sequence

import torch

from .config import ModelConfig
from .registry import MODELS

PAPER_CONFIGS: list[tuple[str, str, str, dict]] = [
    # (label, model, paper figure, config)
    ("TRM (attention), ARC-AGI", "trm", "7M", dict(
        seq_len=900, vocab_size=12, hidden_size=512, num_heads=8, expansion=4, L_layers=2,
        H_cycles=3, L_cycles=4, puzzle_emb_ndim=512, puzzle_emb_len=16)),
    ("TRM-MLP, Sudoku-Extreme", "trm-mlp", "5M", dict(
        seq_len=81, vocab_size=11, hidden_size=512, num_heads=8, expansion=4, L_layers=2,
        H_cycles=3, L_cycles=6, puzzle_emb_ndim=512, puzzle_emb_len=16)),
    ("HRM, ARC-AGI", "hrm", "27M", dict(
        seq_len=900, vocab_size=12, hidden_size=512, num_heads=8, expansion=4, H_layers=4,
        L_layers=4, H_cycles=2, L_cycles=2, puzzle_emb_ndim=512)),
]


def count(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable parameters, puzzle-table floats per identifier)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    table = model.puzzle_emb.weights.shape[1] if model.puzzle_emb is not None else 0
    return trainable, table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identifiers", type=int, default=1, help="puzzle identifiers for the table size")
    args = parser.parse_args(argv)
    print(f"{'configuration':28s} {'model':8s} {'trainable':>12s} {'paper':>6s} {'puzzle table (floats)':>28s}")
    for label, name, paper, fields in PAPER_CONFIGS:
        config = ModelConfig(num_puzzle_identifiers=args.identifiers, forward_dtype="float32", **fields)
        with torch.device("meta"):  # counts only: no memory, no init cost
            model = MODELS[name](config)
        trainable, per_id = count(model)
        table = f"{per_id} x {args.identifiers:,} = {per_id * args.identifiers:,}"
        print(f"{label:28s} {name:8s} {trainable / 1e6:11.2f}M {paper:>6s} {table:>28s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
