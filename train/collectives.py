"""Every collective call of the trainer and the evaluator, in one place.

Each helper works on one process too (it returns its input, or does nothing), so a caller needs no
`if distributed` branch of its own. Process groups are made and torn down in train/setup.py; a
test (tests/test_layout_train.py) checks that no other module calls a torch.distributed collective.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.distributed as dist


def active() -> bool:
    """More than one process in the default group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_(t: torch.Tensor) -> torch.Tensor:
    """`t` summed over ranks, in place."""
    if active():
        dist.all_reduce(t)
    return t


def sum_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum every gradient over ranks with one collective per dtype and device (one flat buffer),
    not one per tensor: the same sums element by element, a handful of calls instead of dozens."""
    if not active():
        return
    groups: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        torch._foreach_copy_(grads, [part.view_as(g) for part, g in zip(flat.split([g.numel() for g in grads]), grads)])


def all_ranks(flag: bool, device: torch.device) -> bool:
    """True when `flag` holds on every rank (e.g. a finite step: all must agree to skip one)."""
    return _flag(flag, device, "MIN")


def all_ranks_(flag: torch.Tensor) -> torch.Tensor:
    """`all_ranks` for a 0-dim bool tensor, kept on the device (no host read: the sync-free step)."""
    if not active():
        return flag
    t = flag.to(torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.bool()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` holds on some rank (e.g. Ctrl-C reached one: all stop at the same step)."""
    return _flag(flag, device, "MAX")


def _flag(flag: bool, device: torch.device, op: str) -> bool:
    if not active():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    return bool(t.item())


def gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every rank's `t` (all of the same shape), concatenated along the first axis in rank order."""
    if not active():
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank `src`'s `t` on every rank, in place."""
    if active():
        dist.broadcast(t, src=src)
    return t


def barrier() -> None:
    if active():
        dist.barrier()
