"""Universal Transformer core with per-cell adaptive computation time (Dehghani et al. 2018).

One shared net (L_layers blocks) is applied up to T_max = `ut_max_steps` times per supervision
step to s = z_H + x, with a sinusoidal timestep signal added before every application. Each cell
has a halting unit p_t = sigmoid(w . s_t + b) on the state entering step t and a running sum; when
sum + p_t would pass 1 - eps the cell halts and spends the remainder R = 1 - sum. The new z_H is
the p/R-weighted sum of the states the cell produced, so each cell's weights sum to exactly 1 (at
T_max every running cell is forced to halt). The ponder loss adds tau * mean(N + R) per row.

Choices (docs/variants.md): halted cells are frozen by default (`ut_freeze_halted`, the paper's
text) but stay visible to the others' attention; the work of halted cells is still done, with
masks, so shapes stay static for torch.compile: the saving is counted (`mean_ut_steps`), not
realised. Position 0 (read by the Q head) never halts before T_max. Default gradient mode 'full':
the halting units only learn through the weights of every step. z_L is carried unchanged.
The per-puzzle Q-halting of the wrapper still decides across supervision steps.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from .config import ModelConfig
from .layers import CastedLinear, ReasoningModule
from .recursion import RopeTables


def timestep_signal(steps: int, dim: int) -> torch.Tensor:
    """(steps, dim) sinusoids of the step index (the Transformer's position signal, over depth)."""
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angles = torch.outer(torch.arange(steps, dtype=torch.float32), inv_freq)
    return rearrange(torch.stack((angles.sin(), angles.cos()), dim=-1), "t f two -> t (f two)")[:, :dim]


class UTCore(nn.Module):
    default_halt_rule = "q_halt"
    default_grad_mode = "full"

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.grad_mode not in (None, "full"):
            raise ValueError(f"ModelConfig.grad_mode={config.grad_mode!r}: ut trains its halting units through "
                             f"every step; use 'full'")
        self.config = config
        self.L_level = ReasoningModule(config.L_layers, config)  # the shared transition
        self.halt = CastedLinear(config.hidden_size, 1, bias=True)  # per-cell halting unit
        with torch.no_grad():
            self.halt.bias.fill_(config.ut_halt_bias_init)
        self.register_buffer("timing", timestep_signal(config.ut_max_steps, config.hidden_size), persistent=False)

    def transition(self, s: torch.Tensor, cos_sin: RopeTables) -> torch.Tensor:
        """The shared net: L_layers blocks (no injection; x entered once, in s = z_H + x)."""
        for layer in self.L_level.layers:
            s = layer(s, cos_sin)
        return s

    def forward(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor,
                cos_sin: RopeTables) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        s = z_H + x  # (B, T, D)
        B, T, _ = s.shape
        total = s.new_zeros(B, T, dtype=torch.float32)  # running sum of p
        remainder = torch.zeros_like(total)
        steps = torch.zeros_like(total)  # N: steps each cell took
        out = torch.zeros(s.shape, dtype=torch.float32, device=s.device)
        running = torch.ones(B, T, dtype=torch.bool, device=s.device)
        keep_open = torch.arange(T, device=s.device) == 0  # the Q head's position halts only at T_max
        for t in range(cfg.ut_max_steps):
            s = s + self.timing[t].to(s.dtype)
            p = torch.sigmoid(self.halt(s).float()).squeeze(-1).masked_fill(keep_open, 0.0)
            if t == cfg.ut_max_steps - 1:
                halting = running  # forced halt: every remaining cell spends its remainder
            else:
                halting = running & (total + p > 1.0 - cfg.ut_halt_eps)
            going_on = running & ~halting
            weight = torch.where(going_on, p, torch.where(halting, 1.0 - total, 0.0))
            remainder = torch.where(halting, 1.0 - total, remainder)
            total = total + torch.where(going_on, p, 0.0)
            steps = steps + running.float()
            new = self.transition(s, cos_sin)
            out = out + weight.unsqueeze(-1) * new.float()
            s = torch.where(running.unsqueeze(-1), new, s) if cfg.ut_freeze_halted else new
            running = going_on
        ponder = steps + remainder  # N + R per cell
        aux = {"ponder_loss": cfg.ut_ponder_cost * ponder.mean(-1).sum(),
               "mean_ut_steps": steps.detach().mean(-1).sum()}
        return out.to(z_H.dtype), z_L, aux
