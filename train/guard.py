"""The non-finite guard: whether an optimiser step keeps every tensor it writes finite, decided
before it writes anything, from one fused reduction and no copies.

A finite loss does not make a finite update: a gradient can overflow while the loss stays finite,
and a huge lr multiplies finite weights into inf. So each update is described by a `Bound`: it
reads gradients and writes `value * decay + d` with |d| <= step (AdamATan2: |d| <= lr / (1 - b1) * pi,
atan2 being at most pi; sign-SGD: |d| = lr; Muon: |d| <= its scale * NS_BOUND). With every
gradient finite and at most GRAD_LIMIT (so Adam's g^2 and the moments, lerps toward g and g^2,
stay finite) and max |value| * |decay| + step <= STATE_LIMIT, all it writes is finite; so is the
EMA shadow, a lerp between values below STATE_LIMIT. One `torch._foreach_norm` over the gradients
and values bounds the maxima: a tensor's 2-norm is at least its largest |x| (NaN when a value is
NaN, inf when one is inf or the squares overflow: values past ~1e19, broken anyway). The exact
inf-norm is ~20x slower on the CPU, so it is kept for `max_abs`, checked only before checkpoints.

A step that fails the check is skipped whole (train/optim.py), so nothing needs restoring: the
weights, moments, EMA and puzzle table stay those of the last finite step. The verdict is a 0-dim
bool tensor on the device; the caller decides whether and when to read it on the host.
`LossWatch` watches what the guard lets through: a finite loss that climbs (one warning).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

STATE_LIMIT = 1e38  # float32 and bfloat16 overflow past ~3.4e38: room for the update's own rounding
GRAD_LIMIT = 1e18  # Adam squares gradients: 1e36 is still finite in float32


class Bound(NamedTuple):
    """One update as the guard sees it: `grads` must be finite and within GRAD_LIMIT; it writes
    `values * decay + d` with |d| <= `step`."""
    grads: list[torch.Tensor]
    values: list[torch.Tensor] = []
    decay: float = 1.0
    step: float = 0.0


def max_abs(tensors: list[torch.Tensor]) -> torch.Tensor:
    """max |x| over `tensors` as a 0-dim tensor (NaN if any value is NaN): one fused reduction."""
    tensors = [t for t in tensors if t.numel()]  # the inf-norm of an empty tensor is undefined
    if not tensors:
        return torch.zeros(())
    return torch.stack(torch._foreach_norm(tensors, math.inf)).amax()  # stack promotes mixed dtypes


def stays_finite(bounds: list[Bound]) -> torch.Tensor:
    """True (0-dim bool, on the tensors' device) when every update of `bounds` keeps what it writes
    finite (a sufficient condition). NaN fails every comparison, so a NaN anywhere gives False."""
    groups = [([t for t in b.grads if t.numel()], [t for t in b.values if t.numel()]) for b in bounds]
    flat = [t for grads, values in groups for t in grads + values]
    if not flat:
        return torch.ones((), dtype=torch.bool)
    norms = torch._foreach_norm(flat)  # 2-norms: >= max |x|
    maxima = torch.stack([n if n.dtype == torch.float32 else n.float() for n in norms])  # e.g. a float64 loss
    ok, i = torch.ones((), dtype=torch.bool, device=maxima.device), 0
    for b, (grads, values) in zip(bounds, groups):
        if grads:
            ok = ok & (maxima[i:i + len(grads)].amax() <= GRAD_LIMIT)
        i += len(grads)
        if not (abs(b.decay) <= STATE_LIMIT and 0 <= b.step <= STATE_LIMIT):  # known on the host: no read
            ok = torch.zeros_like(ok)
        elif values:
            ok = ok & (maxima[i:i + len(values)].amax() * abs(b.decay) + b.step <= STATE_LIMIT)
        i += len(values)
    return ok


class LossWatch:
    """Finite divergence, which the guard lets through: warns once when `RISE` logged training losses in
    a row are each at least twice the lowest logged loss and at least 0.5 nats above it. In a row,
    because a single high line is common in runs that recover (maze runs spike for one log interval
    and go on to solve 0.9 of their mazes); both bounds, because a loss near 0 (a solved Sudoku set)
    triples on noise alone, and 0.5 nats is a fifth of an untrained 10-way guess. Non-finite lines
    (skipped steps, the guard's business) neither count nor break the row. Checkpoints keep the lowest
    loss (`state_dict`); a resumed run, often resumed with a lower lr after this warning, is re-armed."""

    RISE = 3

    def __init__(self) -> None:
        self.lowest, self.lowest_step, self.high, self.warned = math.inf, 0, 0, False

    def state_dict(self) -> dict:
        return {"lowest": self.lowest, "lowest_step": self.lowest_step}

    def load_state_dict(self, state: dict) -> None:
        self.lowest, self.lowest_step = float(state["lowest"]), int(state["lowest_step"])

    def check(self, loss: float, step: int) -> str:
        """Record the loss logged at `step`; the warning, the first time it is due, else ""."""
        if not math.isfinite(loss):
            return ""
        if loss < self.lowest:  # kept up after the warning too: checkpoints carry it
            self.lowest, self.lowest_step = loss, step
        if self.warned:
            return ""
        self.high = self.high + 1 if loss >= max(2 * self.lowest, self.lowest + 0.5) else 0
        if self.high < self.RISE:
            return ""
        self.warned = True
        times = f"{loss / self.lowest:.1f}x" if self.lowest > 0 else "above"
        return (f"warning: the training loss {loss:.3f} at step {step} is {times} its lowest "
                f"({self.lowest:.3f} at step {self.lowest_step}), {self.RISE} log lines in a row: the run may "
                f"be diverging; to go on from a checkpoint with a lower lr: --resume optim.lr=<lower>")
