"""The weights of a trained *untied* TRM as a Relaxed Recursive Transformer (Bae et al. 2024):
`relax_state_dict`. The command that converts a run folder is `python -m train.relax` (train/relax.py).

The untied model: `arch.unique_layers` = (L_cycles + 1) * L_layers,
one distinct block per layer position of the H-cycle. The M shared blocks of the new model
(`--layers`, default L_layers, laid out in `--order`, models/share.py) start from
    stepwise  the untied blocks at evenly spaced positions (p = k * N / M)
    average   the mean of the untied blocks at the positions that share block k
    lower     the untied blocks at the first M positions
and every position's LoRA from the truncated SVD of its residual W_p - W_shared, rank R, with the
LoRA scale divided out of B so the initial correction *is* the truncated residual (at full rank the
new model computes the untied one). Block parameters that are not linear maps (the grid conv of
`ffn_conv`, the score bias of `attn_bias=pairwise`) get no LoRA: they are shared by the same rule.
"""
from __future__ import annotations

import dataclasses
import re

import torch

from puzzles.errors import UserError

from .config import ModelConfig
from .lora import lora_key, lora_scale
from .share import layer_order

INITS = ("stepwise", "average", "lower")
_BLOCK = re.compile(r"^core\.L_level\.layers\.(\d+)\.(.+)$")


def shared_positions(order: list[int], unique: int, init: str) -> list[list[int]]:
    """For each shared block k, the layer positions whose untied weights initialise it."""
    positions = len(order)
    if init == "stepwise":
        return [[k * positions // unique] for k in range(unique)]
    if init == "lower":
        return [[k] for k in range(unique)]
    if init == "average":
        return [[p for p in range(positions) if order[p] == k] for k in range(unique)]
    raise ValueError(f"--init {init!r}: choose one of {INITS}")


def relax_state_dict(untied: ModelConfig, state: dict[str, torch.Tensor], init: str, rank: int,
                     unique: int = 0, order: str = "cycle") -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(rrt config, rrt state dict) from an untied TRM's config and state dict (see module doc)."""
    positions = (untied.L_cycles + 1) * untied.L_layers
    if (untied.unique_layers or untied.L_layers) != positions:
        raise UserError(f"the run is not untied: arch.unique_layers={untied.unique_layers} but an untied model has "
                        f"one block per layer position, (L_cycles + 1) * L_layers = {positions}")
    unique = unique or untied.L_layers
    config = dataclasses.replace(untied, unique_layers=unique if unique != untied.L_layers else 0,
                                 share_order=order, rrt_rank=rank)  # validates rank, order, M
    old_order = layer_order(positions, positions, untied.share_order)
    new_order = layer_order(unique, positions, order)
    per_block: dict[str, dict[int, torch.Tensor]] = {}  # linear name -> untied block -> weight
    out = {}
    for key, value in state.items():
        match = _BLOCK.match(key)
        if match:
            per_block.setdefault(match.group(2), {})[int(match.group(1))] = value.float()
        else:
            out[key] = value
    scale = lora_scale(config)
    sources = shared_positions(new_order, unique, init)
    for name, blocks in per_block.items():
        W = torch.stack([blocks[old_order[p]] for p in range(positions)])  # (N, out, in) by position
        shared = torch.stack([W[src].mean(0) for src in sources])  # (M, out, in)
        for k in range(unique):
            out[f"core.L_level.layers.{k}.{name}"] = shared[k].clone()
        if rank == 0 or not name.endswith("_proj.weight"):  # LoRAs are for the linear layers only;
            continue  # other block parameters (grid conv, pairwise score bias) are shared as they are
        U, S, Vh = torch.linalg.svd(W - shared[new_order], full_matrices=False)  # (N, out, q), (N, q), (N, q, in)
        keep = min(rank, S.shape[-1])
        root = S[:, :keep].sqrt()
        A = torch.zeros(positions, rank, W.shape[2])
        B = torch.zeros(positions, W.shape[1], rank)
        A[:, :keep] = root[:, :, None] * Vh[:, :keep]
        B[:, :, :keep] = U[:, :, :keep] * root[:, None, :] / scale  # scale * B A = the truncated residual
        lin = name.removesuffix(".weight")
        out[f"core.lora_A.{lora_key(lin)}"], out[f"core.lora_B.{lora_key(lin)}"] = A, B
    return config, out


if __name__ == "__main__":  # the command moved with the run-folder code; say where
    import sys
    print("error: the conversion command is now python -m train.relax (same arguments)", file=sys.stderr)
    raise SystemExit(2)
