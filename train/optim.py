"""Optimisers, learning-rate schedule and weight EMA used by the trainer (reference section 4.9/4.10).

- `AdamATan2`: Adam with `atan2` instead of `m / (sqrt(v) + eps)` (no epsilon), decoupled weight
  decay on every parameter. Pure PyTorch (vectorised with `torch._foreach_*`), so it runs on CPU,
  CUDA and MPS without the reference's CUDA extension; same rule as the `adam-atan2` 0.0.3 kernel.
- `SparseSignSGD`: sign-SGD with weight decay for the sparse puzzle-embedding table; only the rows
  of the ids in the (global) batch move.
- `lr_at`: linear warm-up then cosine decay to `min_ratio * base_lr`.
- `EMA`: exponential moving average of the parameters, for evaluation.

Check against the reference numbers with `python -m pytest -q tests/test_optim.py`.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Iterable

import torch
from torch import nn

from . import collectives


def evaluate_closure(closure):
    """torch.optim's contract: step(closure) re-evaluates the loss with gradients on and returns it."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class AdamATan2(torch.optim.Optimizer):
    """Per element, with step t (from 1), bc1 = 1 - b1^t, bc2 = 1 - b2^t:

        p *= 1 - lr * wd
        m = lerp(m, g, 1 - b1);  v = lerp(v, g^2, 1 - b2)
        p -= (lr / bc1) * atan2(m, sqrt(v) / sqrt(bc2))

    State (m, v) and the maths are float32 whatever the parameter dtype.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.95),
                 weight_decay: float = 0.1, foreach: bool | None = None):
        if lr < 0:
            raise ValueError(f"AdamATan2: lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"AdamATan2: betas must be in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"AdamATan2: weight_decay must be >= 0, got {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            # Bucket by (device, dtype, step) so each bucket is one set of foreach kernels.
            buckets: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamATan2 does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
                for k in ("exp_avg", "exp_avg_sq"):  # load_state_dict casts state to the param dtype
                    if state[k].dtype != torch.float32:
                        state[k] = state[k].float()
                state["step"] += 1
                key = (p.device, p.dtype, float(state["step"]))
                buckets.setdefault(key, []).append(p)
            for (_, dtype, t), params in buckets.items():
                use_foreach = group["foreach"]
                if use_foreach is None:
                    use_foreach = dtype == torch.float32 and hasattr(torch, "_foreach_lerp_")
                update = _adam_atan2_foreach if use_foreach and dtype == torch.float32 else _adam_atan2_loop
                update(params, [self.state[p] for p in params], t, group["lr"], group["betas"], group["weight_decay"])
        return loss


def _coefficients(t: float, lr: float, betas: tuple[float, float], wd: float) -> tuple[float, float, float]:
    bc1 = 1.0 - betas[0] ** t
    bc2 = 1.0 - betas[1] ** t
    return 1.0 - lr * wd, lr / bc1, math.sqrt(bc2)


def _adam_atan2_foreach(params: list[torch.Tensor], states: list[dict], t: float, lr: float,
                        betas: tuple[float, float], wd: float) -> None:
    decay, step_size, sqrt_bc2 = _coefficients(t, lr, betas, wd)
    grads = [p.grad.float() for p in params]
    m = [s["exp_avg"] for s in states]
    v = [s["exp_avg_sq"] for s in states]
    torch._foreach_mul_(params, decay)
    torch._foreach_lerp_(m, grads, 1.0 - betas[0])
    torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), 1.0 - betas[1])
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, sqrt_bc2)
    # There is no foreach atan2; one kernel per tensor, written into `denom` to save memory.
    for m_i, d_i in zip(m, denom):
        torch.atan2(m_i, d_i, out=d_i)
    torch._foreach_add_(params, denom, alpha=-step_size)


def _adam_atan2_loop(params: list[torch.Tensor], states: list[dict], t: float, lr: float,
                     betas: tuple[float, float], wd: float) -> None:
    decay, step_size, sqrt_bc2 = _coefficients(t, lr, betas, wd)
    for p, s in zip(params, states):
        g = p.grad.float()
        p32 = p.float()  # a copy for low-precision params, `p` itself for float32
        p32.mul_(decay)
        s["exp_avg"].lerp_(g, 1.0 - betas[0])
        s["exp_avg_sq"].lerp_(g * g, 1.0 - betas[1])
        p32.add_(torch.atan2(s["exp_avg"], s["exp_avg_sq"].sqrt() / sqrt_bc2), alpha=-step_size)
        if p32 is not p:
            p.copy_(p32)


class SparseSignSGD:
    """Sign-SGD with decoupled weight decay on the rows of a sparse embedding table.

    `embedding` is any object with `.weights` (N, D) (the table, a buffer), `.local_weights` (B, D)
    (the rows used by this batch; backward fills its `.grad`) and `.local_ids` (B,). Under
    torch.distributed the rows and ids of every rank are gathered first, so all ranks apply the
    same update. Duplicate ids have their gradients summed; then, for the ids present only,
    `row = row * (1 - lr * wd) - lr * sign(grad)`.
    Mirrors the `param_groups` / `zero_grad` / `state_dict` surface of a torch optimiser.
    """

    def __init__(self, embedding: Any, lr: float = 1e-2, weight_decay: float = 0.1):
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"SparseSignSGD: lr and weight_decay must be >= 0, got {lr}, {weight_decay}")
        self.embedding = embedding
        self.param_groups = [dict(lr=lr, weight_decay=weight_decay)]

    @torch.no_grad()
    def step(self) -> None:
        local = getattr(self.embedding, "local_weights", None)
        if local is None or local.grad is None:
            return  # no forward in training mode since the last zero_grad: nothing to update
        grads, ids = local.grad, self.embedding.local_ids
        # every rank has the same local batch size (global // world): plain all_gather fits
        grads, ids = collectives.gather_cat(grads), collectives.gather_cat(ids)
        weights = self.embedding.weights
        unique_ids, inverse = torch.unique(ids.long(), return_inverse=True)
        summed = torch.zeros(len(unique_ids), grads.shape[-1], dtype=torch.float32, device=grads.device)
        summed.index_add_(0, inverse, grads.float())
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        rows = weights[unique_ids].float()
        rows.mul_(1.0 - lr * wd).add_(torch.sign(summed), alpha=-lr)
        weights[unique_ids] = rows.to(weights.dtype)

    def zero_grad(self, set_to_none: bool = True) -> None:
        local = getattr(self.embedding, "local_weights", None)
        if local is not None and local.grad is not None:
            if set_to_none:
                local.grad = None
            else:
                local.grad.zero_()

    def state_dict(self) -> dict:
        return {"param_groups": [dict(g) for g in self.param_groups]}

    def load_state_dict(self, state: dict) -> None:
        self.param_groups = [dict(g) for g in state["param_groups"]]


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 1.0) -> float:
    """Learning rate at 1-based `step`: linear warm-up to `base_lr` over `warmup_steps`, then a
    half cosine from `base_lr` down to `min_ratio * base_lr` at `total_steps` (held there after)."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


class EMA:
    """`shadow = decay * shadow + (1 - decay) * param` for the parameters only (buffers such as the
    puzzle-embedding table are not averaged; evaluation copies take them from the live model)."""

    def __init__(self, module: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA: decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.shadow = {name: p.detach().float().clone() for name, p in module.named_parameters()}

    def _pairs(self, module: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params = dict(module.named_parameters())
        if params.keys() != self.shadow.keys():
            missing = sorted(set(self.shadow) ^ set(params))
            raise ValueError(f"EMA: module parameters differ from the shadow's: {missing[:5]}")
        names = list(self.shadow)
        return [self.shadow[n] for n in names], [params[n] for n in names]

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        shadow, params = self._pairs(module)
        for s, p in zip(shadow, params):
            s.lerp_(p.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite `module`'s parameters with the shadow weights."""
        shadow, params = self._pairs(module)
        for s, p in zip(shadow, params):
            p.copy_(s)

    def averaged_copy(self, module: nn.Module) -> nn.Module:
        """A deep copy of `module` carrying the shadow weights (and `module`'s current buffers)."""
        clone = copy.deepcopy(module)
        self.copy_to(clone)
        return clone

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        if state["shadow"].keys() != self.shadow.keys():
            raise ValueError("EMA: saved shadow parameter names differ from this model's")
        self.decay = float(state["decay"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
