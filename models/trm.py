"""TRM recursion core (Tiny Recursive Model, Jolicoeur-Martineau 2025): one small net, used
both to refine the latent z (= z_L) from (z, y + x) and the answer y (= z_H) from (y, z).

Default gradient mode 'last_cycle': H_cycles - 1 cycles without grad, then the full last cycle
(L_cycles + 1 calls) with backpropagation. The mixer is attention, or with `mlp_t` the
token-mixing MLP (TRM-MLP, `MODELS['trm-mlp']`).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import ReasoningModule
from .recursion import RopeTables, recurse


class TRMCore(nn.Module):
    default_halt_rule = "q_halt"
    default_grad_mode = "last_cycle"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.L_level = ReasoningModule(config.L_layers, config)  # the reference's name for the one net

    def forward(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor,
                cos_sin: RopeTables) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        return recurse(self.L_level, self.L_level, z_H, z_L, x, cos_sin, cfg.H_cycles, cfg.L_cycles, cfg.grad_mode)
