"""TRM recursion core (Tiny Recursive Model, Jolicoeur-Martineau 2025): one small net, used
both to refine the latent z (= z_L) from (z, y + x) and the answer y (= z_H) from (y, z).

Default gradient mode 'last_cycle': H_cycles - 1 cycles without grad, then the full last cycle
(L_cycles + 1 calls) with backpropagation. The mixer is attention, or with `mlp_t` the
token-mixing MLP (TRM-MLP, `MODELS['trm-mlp']`).

Layer sharing (models/share.py): the net's `unique_layers` M blocks fill the (L_cycles + 1) *
L_layers layer positions of one H-cycle in `share_order`; the default (M = L_layers, cycle) is
the paper's TRM, the same blocks in the same order in every call.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .config import ModelConfig
from .layers import ReasoningModule
from .recursion import RopeTables, recurse
from .share import layer_order


class TRMCore(nn.Module):
    default_halt_rule = "q_halt"
    default_grad_mode = "last_cycle"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        unique = config.unique_layers or config.L_layers
        self.L_level = ReasoningModule(unique, config)  # the reference's name for the one net
        self.order = layer_order(unique, (config.L_cycles + 1) * config.L_layers, config.share_order)
        # the paper's TRM: every call runs the one net's blocks in order (and no subclass changes a block)
        self.plain = (self.order == list(range(config.L_layers)) * (config.L_cycles + 1)
                      and type(self).block is TRMCore.block)

    def block(self, position: int, h: torch.Tensor, cos_sin: RopeTables) -> torch.Tensor:
        """The block at layer `position` of the H-cycle (RRT overrides this to add its LoRA)."""
        return self.L_level.layers[self.order[position]](h, cos_sin)

    def net(self, slot: int, h: torch.Tensor, injection: torch.Tensor, cos_sin: RopeTables) -> torch.Tensor:
        """Net call number `slot` (0..L_cycles) of an H-cycle: add the injection, run its blocks."""
        h = h + injection
        for j in range(self.config.L_layers):
            h = self.block(slot * self.config.L_layers + j, h, cos_sin)
        return h

    def forward(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor,
                cos_sin: RopeTables) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        if self.plain:
            return recurse(self.L_level, self.L_level, z_H, z_L, x, cos_sin, cfg.H_cycles, cfg.L_cycles,
                           cfg.grad_mode)
        nets = [partial(self.net, slot) for slot in range(cfg.L_cycles + 1)]
        return recurse(nets[:-1], nets[-1], z_H, z_L, x, cos_sin, cfg.H_cycles, cfg.L_cycles, cfg.grad_mode)
