"""One optimiser step of deep supervision, exactly as the trainer runs it (and the benchmarks time it).

forward one supervision step (carry in, carry out) -> (loss / global_batch_size).backward() ->
gradients summed across ranks -> the guard -> AdamATan2, then sparse sign-SGD on the puzzle rows,
both at the scheduled lr -> EMA -> zero grads.

The guard (train/guard.py) decides before anything is written whether the update keeps every
tensor finite: one fused reduction over the loss, the gradients, the weights and the puzzle rows,
run inside AdamATan2's step. A step that fails it is skipped whole (it also keeps the carry it was
given), so nothing the trainer holds is ever non-finite and nothing needs undoing: no copies.

Two paths. The host path reads the verdict once per step (a bool: skipped steps do no work). The
sync-free path (`sync_free`, `system.sync_free`; for CUDA) never reads a device value: the verdict
stays a 0-dim bool tensor, every update runs masked by it (train/optim.py), the carry is chosen on
the device, and `StepResult.finite` is that tensor (the loop counts bad steps at log intervals).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models import Carry, HaltingModel

from . import collectives
from .config import OptimConfig
from .guard import Bound, max_abs
from .muon import MuonAdamATan2
from .optim import EMA, AdamATan2, SparseSignSGD, lr_at


@dataclass
class StepResult:
    carry: Carry
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
    finite: bool | torch.Tensor  # False: the step was skipped (sync-free: a 0-dim bool tensor)
    lr: float


class TrainStep:
    """Owns the optimisers of one model; `__call__` performs one full training step."""

    def __init__(self, model: HaltingModel, opt: OptimConfig, total_steps: int, compile: bool = False,
                 sync_free: bool = False):
        self.model, self.opt, self.total_steps, self.sync_free = model, opt, total_steps, sync_free
        if opt.optimizer == "muon":  # Muon on the recursion's matrices, AdamATan2 on the rest (train/muon.py)
            self.adam = MuonAdamATan2(model, lr=opt.lr, betas=(opt.beta1, opt.beta2), weight_decay=opt.weight_decay,
                                      muon_lr=opt.muon_lr or opt.lr, momentum=opt.muon_momentum,
                                      nesterov=opt.muon_nesterov, ns_steps=opt.muon_ns_steps)
        else:
            self.adam = AdamATan2(model.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2),
                                  weight_decay=opt.weight_decay)
        self.adam.sync_free = sync_free
        self.sparse = (SparseSignSGD(model.puzzle_emb, lr=opt.puzzle_emb_lr, weight_decay=opt.puzzle_emb_weight_decay)
                       if model.puzzle_emb is not None else None)
        self.ema = EMA(model, opt.ema_rate) if opt.ema else None
        self.forward = torch.compile(model) if compile else model

    def __call__(self, carry: Carry, batch: dict[str, torch.Tensor], step: int) -> StepResult:
        """`step` is the 1-based index of this optimiser step (drives the lr schedule)."""
        opt, carry_in = self.opt, carry
        carry, loss, metrics, _, _ = self.forward(carry, batch)
        (loss / opt.global_batch_size).backward()
        collectives.sum_grads(self.model.parameters())
        lr = lr_at(step, opt.lr, opt.lr_warmup_steps, self.total_steps, opt.lr_min_ratio)
        for group in self.adam.param_groups:
            group["lr"] = lr
        if self.sparse is not None:
            self.sparse.param_groups[0]["lr"] = lr_at(step, opt.puzzle_emb_lr, opt.lr_warmup_steps,
                                                       self.total_steps, opt.lr_min_ratio)
        # what AdamATan2 does not see itself joins its guard: the loss and the puzzle rows
        rows = self.sparse.bound() if self.sparse is not None else None
        self.adam.guard_also = [Bound([loss.detach()])] + ([rows] if rows is not None else [])
        self.adam.step()
        finite = self.adam.applied
        if self.sync_free:
            if self.sparse is not None:
                self.sparse.step(finite)
            if self.ema is not None:
                self.ema.update(self.model, finite)
            carry = choose(finite, carry, carry_in)
        elif finite:
            if self.sparse is not None:
                self.sparse.step()
            if self.ema is not None:
                self.ema.update(self.model)
        else:
            carry = carry_in
        self.adam.zero_grad(set_to_none=True)
        if self.sparse is not None:
            self.sparse.zero_grad()
        return StepResult(carry, loss, metrics, finite, lr)

    def state_tensors(self, counters: bool = True) -> list[torch.Tensor]:
        """Every tensor an update writes: parameters, the puzzle table, Adam's state, the EMA shadow.
        `counters=False` leaves out Adam's step counts."""
        tensors = [p.data for p in self.model.parameters()]
        if self.model.puzzle_emb is not None:
            tensors.append(self.model.puzzle_emb.weights)
        for state in self.adam.state.values():
            tensors += [v for k, v in state.items() if isinstance(v, torch.Tensor) and (counters or k != "step")]
        if self.ema is not None:
            tensors += list(self.ema.shadow.values())
        return tensors

    @torch.no_grad()
    def state_is_finite(self) -> bool:
        """Every value finite (checked before a checkpoint is written): one fused reduction."""
        return bool(max_abs([t for t in self.state_tensors(counters=False) if t.is_floating_point()]).isfinite())

    # checkpoint support
    def state_dict(self) -> dict:
        return {"adam": self.adam.state_dict(), "sparse": self.sparse.state_dict() if self.sparse else None,
                "ema": self.ema.state_dict() if self.ema else None}

    def load_state_dict(self, state: dict) -> None:
        """The saved moments and EMA; the rates stay this config's (a resume may lower them)."""
        self.adam.load_state_dict(state["adam"])
        for group in self.adam.param_groups:
            group["weight_decay"] = self.opt.weight_decay
        if self.sparse is not None:
            self.sparse.load_state_dict(state["sparse"])
            self.sparse.param_groups[0]["weight_decay"] = self.opt.puzzle_emb_weight_decay
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def choose(ok: torch.Tensor, new: Carry, old: Carry) -> Carry:
    """`new` where `ok`, else `old`, field by field on the device (the sync-free step's carry)."""
    def pick(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(ok, a, b)
    return Carry(z_H=pick(new.z_H, old.z_H), z_L=pick(new.z_L, old.z_L), steps=pick(new.steps, old.steps),
                 halted=pick(new.halted, old.halted),
                 current_data={k: pick(v, old.current_data[k]) for k, v in new.current_data.items()})
