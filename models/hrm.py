"""HRM recursion core (Hierarchical Reasoning Model, Wang et al. 2025): a fast low-level net L
updated L_cycles times per cycle from (z_L, z_H + x), and a slow high-level net H updated once
per cycle from (z_H, z_L), for H_cycles cycles.

Default gradient mode 'one_step': only the final L call and the final H call are
differentiated (the paper's one-step gradient approximation); everything before runs without
grad. H has `H_layers` blocks, L has `L_layers`.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import ReasoningModule
from .recursion import RopeTables, recurse


class HRMCore(nn.Module):
    default_halt_rule = "q_halt_vs_continue"
    default_grad_mode = "one_step"

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.H_layers < 1:
            raise ValueError(f"ModelConfig.H_layers={config.H_layers}: HRM needs at least one H block")
        self.config = config
        self.H_level = ReasoningModule(config.H_layers, config)
        self.L_level = ReasoningModule(config.L_layers, config)

    def forward(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor,
                cos_sin: RopeTables) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        return recurse(self.L_level, self.H_level, z_H, z_L, x, cos_sin, cfg.H_cycles, cfg.L_cycles, cfg.grad_mode)
