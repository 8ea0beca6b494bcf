"""One optimiser step of deep supervision, exactly as the trainer runs it (and the benchmarks time it).

forward one supervision step (carry in, carry out) -> (loss / global_batch_size).backward() ->
gradients summed across ranks -> non-finite loss check -> sparse sign-SGD on the puzzle rows, then
AdamATan2, both at the scheduled lr -> EMA -> non-finite state check -> zero grads.

A finite loss does not make a finite update: a gradient can overflow while the loss stays finite,
and a huge lr multiplies finite weights into inf. So after every update the weights, the puzzle
table, Adam's moments and the EMA shadow are checked, and a non-finite update is undone from a
copy taken just before it (into buffers kept across steps: a memory copy, far cheaper than the step). A
skipped step also keeps the carry it was given, so nothing the trainer holds is ever non-finite.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models import Carry, HaltingModel

from . import collectives
from .config import OptimConfig
from .muon import MuonAdamATan2
from .optim import EMA, AdamATan2, SparseSignSGD, lr_at


@dataclass
class StepResult:
    carry: Carry
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
    finite: bool  # False: the step was skipped (non-finite loss) or undone (non-finite update)
    lr: float


class TrainStep:
    """Owns the optimisers of one model; `__call__` performs one full training step."""

    def __init__(self, model: HaltingModel, opt: OptimConfig, total_steps: int, compile: bool = False):
        self.model, self.opt, self.total_steps = model, opt, total_steps
        if opt.optimizer == "muon":  # Muon on the recursion's matrices, AdamATan2 on the rest (train/muon.py)
            self.adam = MuonAdamATan2(model, lr=opt.lr, betas=(opt.beta1, opt.beta2), weight_decay=opt.weight_decay,
                                      muon_lr=opt.muon_lr or opt.lr, momentum=opt.muon_momentum,
                                      nesterov=opt.muon_nesterov, ns_steps=opt.muon_ns_steps)
        else:
            self.adam = AdamATan2(model.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2),
                                  weight_decay=opt.weight_decay)
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
        finite = collectives.all_ranks(bool(torch.isfinite(loss).item()), loss.device)
        lr = lr_at(step, opt.lr, opt.lr_warmup_steps, self.total_steps, opt.lr_min_ratio)
        if finite:
            before, had_state = self._backup(), set(self.adam.state)
            if self.sparse is not None:
                self.sparse.param_groups[0]["lr"] = lr_at(step, opt.puzzle_emb_lr, opt.lr_warmup_steps,
                                                           self.total_steps, opt.lr_min_ratio)
                self.sparse.step()
            for group in self.adam.param_groups:
                group["lr"] = lr
            self.adam.step()
            if self.ema is not None:
                self.ema.update(self.model)
            finite = collectives.all_ranks(self.state_is_finite(), loss.device)
            if not finite:  # undo the update: back to the state before it
                for param in [p for p in self.adam.state if p not in had_state]:
                    del self.adam.state[param]  # first step: Adam made its moments during the update
                with torch.no_grad():
                    torch._foreach_copy_(self.state_tensors(), before)
        self.adam.zero_grad(set_to_none=True)
        if self.sparse is not None:
            self.sparse.zero_grad()
        return StepResult(carry if finite else carry_in, loss, metrics, finite, lr)

    @torch.no_grad()
    def _backup(self) -> list[torch.Tensor]:
        """A copy of `state_tensors()` into buffers kept across steps (no allocation per step)."""
        state = self.state_tensors()
        if [t.shape for t in state] != [t.shape for t in getattr(self, "_copies", [])]:
            self._copies = [torch.empty_like(t) for t in state]
        if state:
            torch._foreach_copy_(self._copies, state)
        return self._copies

    def state_tensors(self, counters: bool = True) -> list[torch.Tensor]:
        """Every tensor an update writes: parameters, the puzzle table, Adam's state, the EMA shadow.
        `counters=False` leaves out Adam's step counts (kept on the CPU even when training on a GPU)."""
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
        """A tensor's sum is inf or NaN when any value is (or when values are so large, ~1e32,
        that the sum overflows: weights that are broken anyway). One reduction per tensor is
        far cheaper than an elementwise isfinite mask. Step counts are counts: never inf or NaN."""
        sums = [t.sum() for t in self.state_tensors(counters=False) if t.is_floating_point()]
        return bool(torch.stack(sums).sum().isfinite().item()) if sums else True

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
