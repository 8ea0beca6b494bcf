"""The shared recursion schedule of HRM and TRM, with the gradient mode as a parameter.

Both models run, per supervision step, `H_cycles` outer cycles of
    repeat L_cycles times:  z_L = L_net(z_L, z_H + x)
    z_H = H_net(z_H, z_L)
(TRM uses one net for both: z_L is its latent z, z_H its answer y). They differ in which of
those calls are differentiated; counting calls from the end of the schedule:
    one_step   - the last L call and the last H call (HRM's 1-step gradient approximation)
    last_cycle - the whole last outer cycle: L_cycles L calls + the H call (TRM)
    full       - every call (plain backpropagation through the recursion)
Calls before that run with grad disabled. The result is the same computation as the
references' "no_grad loop, then a grad tail", only written once.

`L_net` may also be a list of L_cycles nets, one per slot of the H-cycle (layer-sharing orders and
per-depth LoRA index their weights by slot: models/share.py). Slots repeat in every H-cycle, so a
slot's weights are used in the differentiated last cycle too (the gradient-mode trap).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

RopeTables = tuple[torch.Tensor, torch.Tensor] | None


def num_differentiated_calls(grad_mode: str, H_cycles: int, L_cycles: int) -> int:
    total = H_cycles * (L_cycles + 1)
    return {"one_step": 2, "last_cycle": L_cycles + 1, "full": total}[grad_mode]


Net = nn.Module | Callable[..., torch.Tensor]


def recurse(L_net: Net | Sequence[Net], H_net: Net, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor,
            cos_sin: RopeTables, H_cycles: int, L_cycles: int, grad_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    total = H_cycles * (L_cycles + 1)
    first_grad = total - num_differentiated_calls(grad_mode, H_cycles, L_cycles)
    outer_grad = torch.is_grad_enabled()  # never switch grad *on* inside a caller's no_grad
    L_nets = list(L_net) if isinstance(L_net, (list, tuple)) else [L_net] * L_cycles
    call = 0
    for _ in range(H_cycles):
        for slot in range(L_cycles):
            with torch.set_grad_enabled(outer_grad and call >= first_grad):
                z_L = L_nets[slot](z_L, z_H + x, cos_sin)
            call += 1
        with torch.set_grad_enabled(outer_grad and call >= first_grad):
            z_H = H_net(z_H, z_L, cos_sin)
        call += 1
    return z_H, z_L
