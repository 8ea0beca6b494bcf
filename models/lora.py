"""Relaxed Recursive Transformer core (Bae et al. 2024): TRM's tied blocks, relaxed by one low-rank
(LoRA) correction per layer position of the H-cycle.

At layer position p (models/share.py: the N = (L_cycles + 1) * L_layers positions of one H-cycle,
block `order[p]` of the M shared ones) every linear map of the block uses
    W_p = W_shared + (alpha / r) * B_p A_p        A_p: (r, in), B_p: (out, r)
The corrections are indexed by position within one H-cycle, so they repeat in every cycle and the
differentiated last cycle trains all of them (the gradient-mode trap). Rank 0 is plain tying
(TRM with `unique_layers`); full rank can hold any untied model (models/relax.py converts one).
The corrected weight is formed once per call (r * in * out MACs, fewer than r * (in + out) per
token at these sizes) and the block runs unchanged through `torch.func.functional_call`.
Fresh LoRAs start as the usual B = 0 (the start equals the tied model).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from .config import ModelConfig
from .layers import CastedLinear, trunc_normal_
from .recursion import RopeTables
from .trm import TRMCore


def block_linears(block: nn.Module) -> dict[str, CastedLinear]:
    """The block's linear maps by their dotted names ('self_attn.qkv_proj', 'mlp.down_proj', ...)."""
    return {name: mod for name, mod in block.named_modules() if isinstance(mod, CastedLinear)}


def lora_key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not hold dots


def lora_scale(config: ModelConfig) -> float:
    """alpha / r, applied once, in the forward only (conversion divides it out of B)."""
    return (config.rrt_alpha or config.rrt_rank) / max(config.rrt_rank, 1)


class RRTCore(TRMCore):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        r, positions = config.rrt_rank, len(self.order)
        self.scale = lora_scale(config)
        self.lora_A, self.lora_B = nn.ParameterDict(), nn.ParameterDict()
        if r == 0:
            return
        for name, lin in block_linears(self.L_level.layers[0]).items():
            out_f, in_f = lin.weight.shape
            self.lora_A[lora_key(name)] = nn.Parameter(trunc_normal_(torch.empty(positions, r, in_f), std=in_f ** -0.5))
            self.lora_B[lora_key(name)] = nn.Parameter(torch.zeros(positions, out_f, r))

    def block(self, position: int, h: torch.Tensor, cos_sin: RopeTables) -> torch.Tensor:
        layer = self.L_level.layers[self.order[position]]
        if not len(self.lora_A):
            return layer(h, cos_sin)
        weights = {f"{name}.weight": lin.weight + self.scale * (self.lora_B[lora_key(name)][position]
                                                                @ self.lora_A[lora_key(name)][position])
                   for name, lin in block_linears(layer).items()}
        return functional_call(layer, weights, (h, cos_sin))
