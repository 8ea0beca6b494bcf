"""Optimisers, learning-rate schedule and weight EMA used by the trainer (reference section 4.9/4.10).

- `AdamATan2`: Adam with `atan2` instead of `m / (sqrt(v) + eps)` (no epsilon), decoupled weight
  decay on every parameter. Pure PyTorch (`torch._foreach_*`: one call per operation for all the
  parameters), so it runs on CPU, CUDA and MPS without the reference's CUDA extension; same rule as
  the `adam-atan2` 0.0.3 kernel. A step that would write a non-finite value is skipped (train/guard.py).
- `SparseSignSGD`: sign-SGD with weight decay for the sparse puzzle-embedding table; only the rows
  of the ids in the (global) batch move.
- `lr_at`: linear warm-up then cosine decay to `min_ratio * base_lr`.
- `EMA`: exponential moving average of the parameters, for evaluation.

Each update also has a masked form for the sync-free step (train/step.py): `ok`, a 0-dim bool on the
device, zeroes the coefficients (and gradients) of a skipped step, so every tensor keeps its value.

Check against the reference numbers with `python -m pytest -q tests/test_optim.py`.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Iterable

import torch
from torch import nn

from . import collectives
from .guard import Bound, stays_finite


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

    `step()` first decides, with one fused reduction over the gradients and parameters and the
    bounds in `guard_also` (updates made beside it: the trainer's loss and puzzle rows), whether
    the update stays finite; if not it changes nothing (no state made, no step counted) and
    `applied` is False. With `sync_free` the verdict stays on the device (`applied` is that
    tensor) and the step runs masked by it; step counts then live on the device too.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.95),
                 weight_decay: float = 0.1):
        if lr < 0:
            raise ValueError(f"AdamATan2: lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"AdamATan2: betas must be in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"AdamATan2: weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))
        self.guard_also: list[Bound] = []  # reset by each step
        self.sync_free = False
        self.applied: bool | torch.Tensor = True

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = evaluate_closure(closure)
        plan = [(g, [p for p in g["params"] if p.grad is not None]) for g in self.param_groups]
        if any(p.grad.is_sparse for _, params in plan for p in params):
            raise RuntimeError("AdamATan2 does not support sparse gradients")
        ok = collectives.all_ranks_(stays_finite(self.bounds(plan) + self.guard_also))
        self.guard_also = []
        self.applied = ok if self.sync_free else bool(ok)  # the host path's one read of the step
        if self.sync_free or self.applied:
            self.apply(plan, ok if self.sync_free else None)
        return loss

    def bounds(self, plan: list[tuple[dict, list[torch.Tensor]]]) -> list[Bound]:
        """The guard's view of each group's update: |step| <= lr / bc1 * pi <= lr / (1 - b1) * pi."""
        return [Bound([p.grad for p in params], params, 1.0 - g["lr"] * g["weight_decay"],
                      g["lr"] / (1.0 - g["betas"][0]) * math.pi) for g, params in plan if params]

    def apply(self, plan: list[tuple[dict, list[torch.Tensor]]], ok: torch.Tensor | None) -> None:
        for group, params in [(g, ps) for g, ps in plan if ps]:
            states = [self._state(p) for p in params]
            if ok is not None:
                _adam_atan2_masked(params, states, ok, group["lr"], group["betas"], group["weight_decay"])
            else:
                torch._foreach_add_([s["step"] for s in states], 1.0)
                buckets: dict[tuple, list[int]] = {}  # one set of foreach kernels per (device, step)
                for i, (p, s) in enumerate(zip(params, states)):
                    buckets.setdefault((p.device, float(s["step"])), []).append(i)
                for (_, t), index in buckets.items():
                    _adam_atan2_foreach([params[i] for i in index], [states[i] for i in index], t, group["lr"],
                                        group["betas"], group["weight_decay"])

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
        for k in ("exp_avg", "exp_avg_sq"):  # load_state_dict casts state to the param dtype
            if state[k].dtype != torch.float32:
                state[k] = state[k].float()
        return state


def _coefficients(t: float, lr: float, betas: tuple[float, float], wd: float) -> tuple[float, float, float]:
    bc1 = 1.0 - betas[0] ** t
    bc2 = 1.0 - betas[1] ** t
    return 1.0 - lr * wd, lr / bc1, math.sqrt(bc2)


def _adam_atan2_foreach(params: list[torch.Tensor], states: list[dict], t: float, lr: float,
                        betas: tuple[float, float], wd: float) -> None:
    decay, step_size, sqrt_bc2 = _coefficients(t, lr, betas, wd)
    grads = [p.grad.float() for p in params]
    p32 = [p.float() for p in params]  # the parameters themselves when float32, float32 copies otherwise
    m = [s["exp_avg"] for s in states]
    v = [s["exp_avg_sq"] for s in states]
    torch._foreach_mul_(p32, decay)
    torch._foreach_lerp_(m, grads, 1.0 - betas[0])
    torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), 1.0 - betas[1])
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, sqrt_bc2)
    # There is no foreach atan2; one kernel per tensor, written into `denom` to save memory.
    for m_i, d_i in zip(m, denom):
        torch.atan2(m_i, d_i, out=d_i)
    torch._foreach_add_(p32, denom, alpha=-step_size)
    _copy_back(params, p32)


def _adam_atan2_masked(params: list[torch.Tensor], states: list[dict], ok: torch.Tensor, lr: float,
                       betas: tuple[float, float], wd: float) -> None:
    """`_adam_atan2_foreach` with the step counts and the coefficients on the device, zero where not `ok`."""
    k = ok.double()  # float64 coefficients, rounded to float32 by each op as a Python float is
    for p, s in zip(params, states):
        if s["step"].device != p.device:
            s["step"] = s["step"].to(p.device)
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, ok.float())
    t = torch.stack(steps).double().clamp(min=1.0)  # a skipped first step: no division by zero
    bc1, bc2 = 1.0 - betas[0] ** t, 1.0 - betas[1] ** t
    grads = [torch.where(ok, p.grad, 0).float() for p in params]
    p32 = [p.float() for p in params]
    m = [s["exp_avg"] for s in states]
    v = [s["exp_avg_sq"] for s in states]
    torch._foreach_mul_(p32, (1.0 - lr * wd * k).float())
    torch._foreach_lerp_(m, grads, [((1.0 - betas[0]) * k).float()] * len(m))
    torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), [((1.0 - betas[1]) * k).float()] * len(v))
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, list(bc2.sqrt().float().unbind()))
    for m_i, d_i in zip(m, denom):
        torch.atan2(m_i, d_i, out=d_i)
    torch._foreach_mul_(denom, list((-lr / bc1 * k).float().unbind()))
    torch._foreach_add_(p32, denom)
    _copy_back(params, p32)


def _copy_back(params: list[torch.Tensor], p32: list[torch.Tensor]) -> None:
    """Write float32 results into low-precision parameters (float32 ones were updated in place)."""
    pairs = [(p, q) for p, q in zip(params, p32) if q is not p]
    if pairs:
        torch._foreach_copy_([p for p, _ in pairs], [q for _, q in pairs])


def first_occurrence(ids: torch.Tensor) -> torch.Tensor:
    """For each position of `ids`, the first position holding the same id. Fixed shapes (a stable
    sort, then the start of each run of equal ids), so no host read, unlike `torch.unique`."""
    order = torch.sort(ids, stable=True).indices
    ranked = ids[order]
    starts = torch.cat((torch.ones_like(ranked[:1], dtype=torch.bool), ranked[1:] != ranked[:-1]))
    run_start = torch.cummax(torch.where(starts, torch.arange(len(ids), device=ids.device), 0), dim=0).values
    return torch.empty_like(order).index_put_((order,), order[run_start])


class SparseSignSGD:
    """Sign-SGD with decoupled weight decay on the rows of a sparse embedding table.

    `embedding` is any object with `.weights` (N, D) (the table, a buffer), `.local_weights` (B, D)
    (the rows used by this batch; backward fills its `.grad`) and `.local_ids` (B,). Under
    torch.distributed the rows and ids of every rank are gathered first, so all ranks apply the
    same update. Duplicate ids have their gradients summed (at each id's first position, in batch
    order); then, for the ids present only, `row = row * (1 - lr * wd) - lr * sign(grad)` (every
    copy of a duplicate computes the same row). Mirrors the `param_groups` / `zero_grad` /
    `state_dict` surface of a torch optimiser.
    """

    def __init__(self, embedding: Any, lr: float = 1e-2, weight_decay: float = 0.1):
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"SparseSignSGD: lr and weight_decay must be >= 0, got {lr}, {weight_decay}")
        self.embedding = embedding
        self.param_groups = [dict(lr=lr, weight_decay=weight_decay)]

    def bound(self) -> Bound | None:
        """The guard's view of the next step (train/guard.py): this rank's rows and their gradients."""
        local, group = getattr(self.embedding, "local_weights", None), self.param_groups[0]
        return (None if local is None or local.grad is None else
                Bound([local.grad], [local.detach()], 1.0 - group["lr"] * group["weight_decay"], group["lr"]))

    @torch.no_grad()
    def step(self, ok: torch.Tensor | None = None) -> None:
        """`ok` (sync-free): rows keep their value where it is False."""
        local = getattr(self.embedding, "local_weights", None)
        if local is None or local.grad is None:
            return  # no forward in training mode since the last zero_grad: nothing to update
        grads, ids = local.grad, self.embedding.local_ids
        # every rank has the same local batch size (global // world): plain all_gather fits
        grads, ids = collectives.gather_cat(grads), collectives.gather_cat(ids).long()
        weights = self.embedding.weights
        first = first_occurrence(ids)
        summed = torch.zeros(grads.shape, dtype=torch.float32, device=grads.device).index_add_(0, first, grads.float())
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        rows, sign = weights[ids].float(), torch.sign(summed[first])
        if ok is None:
            weights[ids] = rows.mul_(1.0 - lr * wd).add_(sign, alpha=-lr).to(weights.dtype)
        else:  # float64 coefficients, zero when skipped: an lr the guard refused must not overflow a scalar
            k = ok.double()
            new = rows.mul(1.0 - lr * wd * k).sub_(sign * (lr * k))
            weights[ids] = torch.where(ok, new, rows).to(weights.dtype)

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
    def update(self, module: nn.Module, ok: torch.Tensor | None = None) -> None:
        """One foreach lerp for all parameters; `ok` (sync-free): a zero weight where it is False."""
        shadow, params = self._pairs(module)
        params = [p.detach().float() for p in params]
        if ok is None:
            torch._foreach_lerp_(shadow, params, 1.0 - self.decay)
        else:
            torch._foreach_lerp_(shadow, params, [ok.float() * (1.0 - self.decay)] * len(shadow))

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
