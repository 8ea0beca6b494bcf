"""Muon for the blocks' matrix weights, AdamATan2 for everything else, in one optimiser.

    optim.optimizer=muon            # train/config.py; optim.muon_lr, optim.muon_momentum, ...

Muon (Jordan et al. 2024, "Muon: MomentUm Orthogonalized by Newton-schulz") replaces a matrix's
update by the nearest semi-orthogonal matrix to its momentum: all singular values set to ~1, so
rare directions move as fast as the dominant one. Per 2-D weight W (out x in), with step t:

    m = mu * m + g                        (momentum buffer; Nesterov: u = g + mu * m, else u = m)
    O = NS5(u)                            (quintic Newton-Schulz: ~U V^T of u = U S V^T)
    W *= 1 - lr * wd                      (decoupled decay at the scheduled lr, as AdamATan2 does)
    W -= lr * muon_scale * 0.2 * sqrt(max(out, in)) * O

The factor 0.2 * sqrt(max(out, in)) gives the update the RMS of a typical Adam update (Liu et
al. 2025, "Muon is scalable"), so `muon_scale = optim.muon_lr / optim.lr` near 1 is a sane start
and the lr schedule, warm-up and decay drive both parts alike. Embeddings, heads, norms, biases,
3-D tensors (score biases, convolutions) and the sparse puzzle table are not matrices of the
recursion and keep AdamATan2 (the table its sign-SGD).

NS5: X = u / ||u||_F (transposed so rows <= columns), then 5 times
    A = X X^T;  X = a X + (b A + c A A) X,   (a, b, c) = (3.4445, -4.7750, 2.0315)
coefficients chosen (Jordan) so singular values in (0, 1] are driven quickly into ~[0.7, 1.2];
exact orthogonality is not needed. Computed in float32 (the matrices are at most 1024 x 512).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .guard import Bound
from .optim import AdamATan2

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
RMS_MATCH = 0.2  # Adam's typical update RMS
NS_BOUND = 1.25  # |entries| of NS5's output: its singular values stay in [0, 1.2025], the quintic's maximum


def newton_schulz(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """~U V^T of a 2-D `g` = U S V^T by `steps` quintic Newton-Schulz iterations (float32)."""
    a, b, c = NS_COEFFICIENTS
    x = g.float()
    tall = x.shape[0] > x.shape[1]
    if tall:  # iterate on the smaller Gram matrix
        x = x.T
    x = x / (x.norm() + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def muon_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The matrix weights of the recursion: 2-D parameters of `model.core` (its blocks' linear maps)."""
    core = getattr(model, "core", None)
    if core is None:
        raise ValueError("optim.optimizer=muon needs a model with a `core` (the recursion's blocks)")
    return [p for p in core.parameters() if p.ndim == 2 and p.requires_grad]


class MuonAdamATan2(AdamATan2):
    """AdamATan2 on groups without "muon", Muon on the group marked `muon=True`.

    Every group's "lr" is the scheduled lr the trainer sets (train/step.py sets it on all groups);
    the Muon group multiplies it by its "lr_scale". State: AdamATan2's for its groups, a float32
    "momentum_buffer" per Muon matrix. Save/load via the torch Optimizer state_dict, like Adam.
    """

    def __init__(self, model: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float,
                 muon_lr: float, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Muon: momentum must be in [0, 1), got {momentum}")
        if ns_steps < 1:
            raise ValueError(f"Muon: ns_steps must be >= 1, got {ns_steps}")
        matrices = muon_parameters(model)
        chosen = {id(p) for p in matrices}
        rest = [p for p in model.parameters() if id(p) not in chosen]
        groups = [dict(params=rest, muon=False),
                  dict(params=matrices, muon=True, lr_scale=muon_lr / lr, momentum=momentum,
                       nesterov=nesterov, ns_steps=ns_steps)]
        super().__init__(groups, lr=lr, betas=betas, weight_decay=weight_decay)

    def bounds(self, plan: list[tuple[dict, list[torch.Tensor]]]) -> list[Bound]:
        """AdamATan2's, plus each Muon group's: |step| <= scale * NS_BOUND, the largest scale of its matrices."""
        out = super().bounds([(g, ps) for g, ps in plan if not g.get("muon")])
        for g, params in plan:
            if g.get("muon") and params:
                scale = max(g["lr"] * g["lr_scale"] * RMS_MATCH * math.sqrt(max(p.shape)) for p in params)
                out.append(Bound([p.grad for p in params], params, 1.0 - g["lr"] * g["weight_decay"], scale * NS_BOUND))
        return out

    def apply(self, plan: list[tuple[dict, list[torch.Tensor]]], ok: torch.Tensor | None) -> None:
        for group, params in plan:
            if group.get("muon"):
                self._muon_step(group, params, ok)
        super().apply([(g, ps) for g, ps in plan if not g.get("muon")], ok)

    def _muon_step(self, group: dict, params: list[torch.Tensor], ok: torch.Tensor | None) -> None:
        """`ok` (sync-free): a skipped step keeps the momentum (x 1 + 0) and the weight (x 1 - 0)."""
        lr, mu = group["lr"], group["momentum"]
        for p in params:
            g = p.grad.float() if ok is None else torch.where(ok, p.grad, 0).float()
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, dtype=torch.float32)
            if state["momentum_buffer"].dtype != torch.float32:  # load_state_dict casts to the param dtype
                state["momentum_buffer"] = state["momentum_buffer"].float()
            buf = state["momentum_buffer"]
            buf.mul_(mu if ok is None else torch.where(ok, mu, 1.0)).add_(g)
            u = g.add(buf, alpha=mu) if group["nesterov"] else buf
            update = newton_schulz(u, group["ns_steps"])
            scale = lr * group["lr_scale"] * RMS_MATCH * math.sqrt(max(p.shape))
            p32 = p.float()  # `p` itself for float32 weights
            if ok is None:
                p32.mul_(1.0 - lr * group["weight_decay"]).add_(update, alpha=-scale)
            else:  # float64 coefficients: an lr the guard refused must not overflow a float32 scalar
                k = ok.double()
                p32.mul_(1.0 - lr * group["weight_decay"] * k).sub_(update * (scale * k))
            if p32 is not p:
                p.copy_(p32)
