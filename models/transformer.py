"""Plain (non-recursive) transformer baseline core.

One stack of `L_layers` blocks runs ONCE per supervision step: z_H = net(z_H, x). There is no
inner recursion, so H_cycles, L_cycles and grad_mode do not apply (the single call is always
differentiated) and z_L is carried through unchanged. The carried z_H still lets the halting
wrapper's deep supervision refine the answer across steps; with halt_max_steps = 1 this is an
ordinary feed-forward transformer over (puzzle prefix + tokens).

Parameter budget: with the same L_layers it has exactly TRM's parameters; to compare with HRM
at equal size set L_layers = H_layers + L_layers of that HRM. Its depth per step is L_layers,
against TRM's H_cycles * (L_cycles + 1) * L_layers effective layers.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import ReasoningModule
from .recursion import RopeTables


class TransformerCore(nn.Module):
    default_halt_rule = "q_halt"
    default_grad_mode = "full"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.L_level = ReasoningModule(config.L_layers, config)

    def forward(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor,
                cos_sin: RopeTables) -> tuple[torch.Tensor, torch.Tensor]:
        return self.L_level(z_H, x, cos_sin), z_L
