"""One optimiser step of deep supervision, exactly as the trainer runs it (and the benchmarks time it).

forward one supervision step (carry in, carry out) -> (loss / global_batch_size).backward() ->
gradients summed across ranks -> non-finite check -> sparse sign-SGD on the puzzle rows, then
AdamATan2, both at the scheduled lr -> EMA -> zero grads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from models import Carry, HaltingModel

from .config import OptimConfig
from .optim import EMA, AdamATan2, SparseSignSGD, lr_at


@dataclass
class StepResult:
    carry: Carry
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
    finite: bool
    lr: float


class TrainStep:
    """Owns the optimisers of one model; `__call__` performs one full training step."""

    def __init__(self, model: HaltingModel, opt: OptimConfig, total_steps: int, compile: bool = False,
                 distributed: bool = False):
        self.model, self.opt, self.total_steps, self.distributed = model, opt, total_steps, distributed
        self.adam = AdamATan2(model.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2),
                              weight_decay=opt.weight_decay)
        self.sparse = (SparseSignSGD(model.puzzle_emb, lr=opt.puzzle_emb_lr, weight_decay=opt.puzzle_emb_weight_decay)
                       if model.puzzle_emb is not None else None)
        self.ema = EMA(model, opt.ema_rate) if opt.ema else None
        self.forward = torch.compile(model) if compile else model

    def __call__(self, carry: Carry, batch: dict[str, torch.Tensor], step: int) -> StepResult:
        """`step` is the 1-based index of this optimiser step (drives the lr schedule)."""
        opt = self.opt
        carry, loss, metrics, _, _ = self.forward(carry, batch)
        (loss / opt.global_batch_size).backward()
        if self.distributed:
            for p in self.model.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
        finite = bool(torch.isfinite(loss).item())
        if self.distributed:  # every rank must agree to skip
            flag = torch.tensor([float(finite)], device=loss.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = bool(flag.item())
        lr = lr_at(step, opt.lr, opt.lr_warmup_steps, self.total_steps, opt.lr_min_ratio)
        if finite:
            if self.sparse is not None:
                self.sparse.param_groups[0]["lr"] = lr_at(step, opt.puzzle_emb_lr, opt.lr_warmup_steps,
                                                           self.total_steps, opt.lr_min_ratio)
                self.sparse.step()
            for group in self.adam.param_groups:
                group["lr"] = lr
            self.adam.step()
            if self.ema is not None:
                self.ema.update(self.model)
        self.adam.zero_grad(set_to_none=True)
        if self.sparse is not None:
            self.sparse.zero_grad()
        return StepResult(carry, loss, metrics, finite, lr)

    # checkpoint support
    def state_dict(self) -> dict:
        return {"adam": self.adam.state_dict(), "sparse": self.sparse.state_dict() if self.sparse else None,
                "ema": self.ema.state_dict() if self.ema else None}

    def load_state_dict(self, state: dict) -> None:
        self.adam.load_state_dict(state["adam"])
        if self.sparse is not None:
            self.sparse.load_state_dict(state["sparse"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
