"""Mixture-of-Recursions core (Bae et al. 2025) over TRM's schedule: recursion r = H-cycle r.

A router decides per cell how many of the H_cycles recursions it takes part in. A kept cell runs
the TRM cycle (L_cycles latent updates + one answer update) and gets z + g * (f(z) - z); the others
keep their states. The gate g is alpha * (the router's weight / its value for an undecided router),
so g = alpha at the start and the update is TRM's; the router learns through g.
    expert  at recursion r a router (one per recursion) keeps the top k_r of the cells kept at r - 1
            (nested sets), k_r = capacity_r x cells with capacities linear from 1 down to
            `mor_capacity` (3 recursions, 1/3: 1, 2/3, 1/3); g = 2 alpha sigmoid(logit); an
            auxiliary BCE pushes each logit toward "was kept". k_r is a constant, so kept cells are
            gathered, run, and scattered back: the saving is real and it compiles.
    token   a softmax router picks each cell's depth once per supervision step; masks (depths are
            data-dependent, the saving is counted, not realised); g = alpha R p_depth; a balancing
            loss R sum_j f_j P_j keeps all depths in use.
    oracle  baselines for expert choice without a learned router (g = alpha): givens (input tokens
    random  other than blank 1, Sudoku's encoding) retire first, or cells retire at random.
`mor_attend`: 'active' lets kept cells attend only to kept cells (recursion-wise caching); 'all'
lets them attend to every cell, the others at their current states (on Sudoku the settled givens
are what the open cells must see). Position 0 (read by the Q head) is always kept.
Routers are evaluated with grad even in the no-grad cycles of `last_cycle`, so the aux loss trains
every recursion's router (the gradient-mode trap). Needs attention (not mlp_t).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import ModelConfig
from .layers import Block, CastedLinear, ReasoningModule, apply_rope, attend, rms_norm
from .recursion import RopeTables, num_differentiated_calls

BLANK = 1  # Sudoku / maze token of an open cell (puzzles encoding: pad 0, blank 1, values 2..)


def capacities(config: ModelConfig) -> list[float]:
    """Share of cells kept at each recursion: linear from 1 down to mor_capacity."""
    R, last = config.H_cycles, config.mor_capacity
    return [last] if R == 1 else [1.0 - (1.0 - last) * r / (R - 1) for r in range(R)]


def kept_counts(config: ModelConfig) -> list[int]:
    """k_r: cells kept at recursion r (at least 1: position 0)."""
    return [max(1, round(c * config.total_len)) for c in capacities(config)]


def routed_block(block: Block, h: torch.Tensor, rope_q: RopeTables, kv: torch.Tensor | None = None,
                 rope_kv: RopeTables = None, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """`Block.forward` for queries h (B, k, D) attending to `kv` (B, T, D; default h itself), with
    per-cell RoPE tables (B, ., d) and an optional key mask (B, T); the same weights as the block."""
    attn, D = block.self_attn, h.shape[-1]
    weight = attn.qkv_proj.weight.to(h.dtype)
    if kv is None:
        q, k, v = rearrange(F.linear(h, weight), "b t (three n d) -> three b t n d", three=3, n=attn.num_heads)
        rope_kv = rope_q
    else:
        q = rearrange(F.linear(h, weight[:D]), "b t (n d) -> b t n d", n=attn.num_heads)
        k, v = rearrange(F.linear(kv, weight[D:]), "b t (two n d) -> two b t n d", two=2, n=attn.num_heads)
    if rope_q is not None:
        q, k = apply_rope(q, *rope_q), apply_rope(k, *rope_kv)
    q, k, v = (rearrange(t, "b t n d -> b n t d") for t in (q, k, v))
    if key_mask is None:
        mixed = attend(q, k, v)
    else:
        scores = torch.matmul(q * (q.shape[-1] ** -0.5), k.transpose(-1, -2)).float()
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        mixed = torch.matmul(scores.softmax(-1).to(v.dtype), v)
    h = rms_norm(h + attn.o_proj(rearrange(mixed, "b n t d -> b t (n d)")), block.eps)
    return rms_norm(h + block.mlp(h), block.eps)


def _take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx (B, k) of t (B, T, D) -> (B, k, D)."""
    return torch.gather(t, 1, idx[:, :, None].expand(-1, -1, t.shape[-1]))


def _put(t: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return t.scatter(1, idx[:, :, None].expand(-1, -1, t.shape[-1]), rows)


class MoRCore(nn.Module):
    default_halt_rule = "q_halt"
    default_grad_mode = "last_cycle"
    needs_inputs = True  # the oracle router and the "are givens retired?" statistic read the tokens

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.mlp_t:
            raise ValueError("ModelConfig.mlp_t=True: mor routes cells through attention; use mlp_t=False")
        if config.ffn_conv:  # a routed block sees only its kept cells, not the grid a convolution needs
            raise ValueError(f"ffn_conv={config.ffn_conv}: mor passes only the routed cells through a block, so "
                             f"there is no grid to convolve; use ffn_conv=0")
        self.config = config
        self.L_level = ReasoningModule(config.L_layers, config)
        learned = config.mor_router in ("expert", "token")
        # expert: column r is recursion r's router; token: the logits of depths 1..R
        self.router = CastedLinear(config.hidden_size, config.H_cycles, bias=True) if learned else None

    # --- one TRM cycle on some cells ------------------------------------------------------------
    def net(self, h: torch.Tensor, rope_q: RopeTables, kv_of, rope_kv: RopeTables,
            key_mask: torch.Tensor | None) -> torch.Tensor:
        """The net's blocks on h (the kept cells). `kv_of(h)`, when given, is every cell's input to
        a block: the kept ones at their current layer, the others at their unchanged state."""
        for layer in self.L_level.layers:
            h = routed_block(layer, h, rope_q, None if kv_of is None else kv_of(h), rope_kv, key_mask)
        return h

    def forward(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, cos_sin: RopeTables,
                inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        B, T, _ = z_H.shape
        R = cfg.H_cycles
        total = R * (cfg.L_cycles + 1)
        first_grad = total - num_differentiated_calls(cfg.grad_mode, R, cfg.L_cycles)
        outer_grad = torch.is_grad_enabled()
        given = torch.zeros(B, T, dtype=torch.bool, device=z_H.device)
        if inputs is not None:
            given[:, cfg.prefix_len:] = inputs != BLANK
        first = torch.arange(T, device=z_H.device) == 0
        aux: dict[str, torch.Tensor] = {}
        aux_loss = z_H.new_zeros((), dtype=torch.float32)
        token = cfg.mor_router == "token"
        if token:
            probs = torch.softmax(self.router(z_H + x).float(), dim=-1)  # (B, T, R)
            depth = probs.argmax(-1).masked_fill(first, R - 1)
            gate_all = cfg.mor_alpha * R * torch.gather(probs, -1, depth[..., None]).squeeze(-1)
            share = F.one_hot(depth, R).float().mean(1)  # f_j per row
            aux_loss = aux_loss + cfg.mor_aux_weight * R * (share * probs.mean(1)).sum()
        kept = torch.ones(B, T, dtype=torch.bool, device=z_H.device)
        call = 0
        for r, k in enumerate(kept_counts(cfg)):
            if token:
                kept = depth >= r
                idx, gate = None, gate_all
            else:
                if cfg.mor_router == "expert":
                    logits = self.router(z_H + x)[..., r].float()
                    score = logits
                elif cfg.mor_router == "oracle":  # open cells outrank givens; random order within each
                    score = (~given).float() + 0.5 * torch.rand(B, T, device=z_H.device)
                else:
                    score = torch.rand(B, T, device=z_H.device)
                score = score.masked_fill(~kept, float("-inf")).masked_fill(first, float("inf"))
                idx = score.topk(k, dim=-1).indices  # (B, k_r), a constant k_r: static shapes
                kept = torch.zeros_like(kept).scatter(1, idx, True)
                if cfg.mor_router == "expert":
                    aux_loss = aux_loss + cfg.mor_aux_weight * F.binary_cross_entropy_with_logits(
                        logits, kept.float(), reduction="none").mean(-1).sum()
                    gate = 2 * cfg.mor_alpha * torch.sigmoid(torch.gather(logits, 1, idx))
                else:
                    gate = torch.full((B, k), cfg.mor_alpha, device=z_H.device)
            aux[f"mean_active_r{r}"] = kept.float().mean(-1).sum()
            z_H, z_L, call = self.cycle(z_H, z_L, x, cos_sin, idx, kept, gate, call, first_grad, outer_grad)
        retired = ~kept
        aux["mean_retired_given"] = ((retired & given).sum(-1) / retired.sum(-1).clamp_min(1)).sum()
        if self.router is not None:
            aux["router_loss"] = aux_loss
        return z_H, z_L, aux

    def cycle(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, cos_sin: RopeTables,
              idx: torch.Tensor | None, kept: torch.Tensor, gate: torch.Tensor, call: int, first_grad: int,
              outer_grad: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One recursion: the TRM cycle on the kept cells (gathered by idx, or masked when idx is
        None), gated, written back. Returns (z_H, z_L, next call number)."""
        cfg = self.config
        attend_all = cfg.mor_attend == "all"
        rope_all = None if cos_sin is None else tuple(t.expand(z_H.shape[0], -1, -1) for t in cos_sin)
        if idx is None:  # token choice: every cell computed, kept ones masked in
            zH_a, zL_a, x_a, rope = z_H, z_L, x, rope_all
            key_mask = None if attend_all else kept
        else:
            zH_a, zL_a, x_a = _take(z_H, idx), _take(z_L, idx), _take(x, idx)
            rope = None if cos_sin is None else tuple(t[idx] for t in cos_sin)
            key_mask = None
        new_H, new_L = zH_a, zL_a
        for slot in range(cfg.L_cycles + 1):
            with torch.set_grad_enabled(outer_grad and call >= first_grad):
                if slot < cfg.L_cycles:  # z_L = net(z_L, z_H + x);  last slot: z_H = net(z_H, z_L)
                    h, frozen = new_L + new_H + x_a, z_L + z_H + x
                else:
                    h, frozen = new_H + new_L, z_H + z_L
                kv_of = None
                if attend_all and idx is not None:
                    kv_of = lambda h_, frozen=frozen: _put(frozen, idx, h_)  # noqa: E731
                elif attend_all:
                    kv_of = lambda h_, frozen=frozen: torch.where(kept[..., None], h_, frozen)  # noqa: E731
                out = self.net(h, rope, kv_of, rope_all, key_mask)
                if slot < cfg.L_cycles:
                    new_L = out
                else:
                    new_H = out
            call += 1
        g = gate.to(z_H.dtype)[..., None]
        upd_H, upd_L = zH_a + g * (new_H - zH_a), zL_a + g * (new_L - zL_a)
        if idx is None:
            return (torch.where(kept[..., None], upd_H, z_H), torch.where(kept[..., None], upd_L, z_L), call)
        return _put(z_H, idx, upd_H), _put(z_L, idx, upd_L), call
