"""Puzzle vectors for ARC tasks a model never saw: room in the puzzle table, and fitting them.

    new = NewTask(run.model, run.name, copies=8)     # the model again, its table one task larger
    new.start(dihedral, perm)                        # fresh vector(s) for the next task's copies
    losses = fit(new, inputs, labels, copy_ids, FitOptions(steps=50))   # its demonstration pairs
    engine.solve(test_inputs, new.ids(copy_ids))     # answer its test inputs

TRM and HRM with a puzzle embedding read a task only through its learned vector, so a task that
was not in the training set has none. Like the trainer, we learn it from the task's demonstration
pairs (in their augmented copies), through the model's own loss with deep supervision (one
supervision step per optimiser step, the carry kept across steps so each example gets several),
while the network stays frozen: only the new vector(s) train, unless `FitOptions.all`.

New rows. `per_copy` keying (one vector per augmented copy) gets one row per copy; `per_task`
keying gets one task row and reuses the trained dihedral and colour-pair vectors as they are (the
copies' augmentations are already known codes). The model is rebuilt once with the larger table
(`models.build_model`, the trainer's call) and every other weight loaded as it was.

Initialisation: the mean of the trained rows (the `<blank>` row 0 left out). The trainer starts
every row at zero, but a frozen network has been trained only on trained vectors, never on zero;
their mean is the vector of an "average task", which keeps the new task's prefix in the range the
network has seen, and it is what the model answers with at `--fit-steps 0`.

Optimiser: Adam (no weight decay) on the fitted rows alone. Its early steps move each coordinate by
about lr, as the trainer's sparse sign-SGD does, and it needs none of the weight decay that the
trainer tunes for many steps over a whole dataset; a fit is a few dozen steps of one task.
Gradients come from the embedding's scratch rows (`local_weights.grad`, `local_ids`), as the
trainer's sparse optimiser reads them, so the table itself never needs a gradient. With `all`, the
network trains too (Adam, `network_lr`); `reset` puts its weights back before the next task.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models import DataShape, HaltingModel, build_model
from models.embedding import NUM_COLOURS, NUM_DIHEDRAL, TaskPuzzleEmbedding
from models.losses import IGNORE_LABEL_ID

TABLE = "embedding.puzzle_emb.weights"


@dataclass
class FitOptions:
    steps: int = 50  # optimiser steps per task
    lr: float = 1e-2  # Adam learning rate of the new puzzle vectors
    network_lr: float = 1e-4  # Adam learning rate of the network's weights (only with `all`)
    batch: int = 32  # examples per step (at most the task's augmented demonstration pairs)
    all: bool = False  # fine-tune every weight too, not only the new task's vectors
    seed: int = 0  # batch draws and the halting exploration


class NewTask:
    """`model` rebuilt with table rows for one more task of `copies` augmented copies."""

    def __init__(self, model: HaltingModel, name: str, copies: int):
        cfg, emb = model.config, model.puzzle_emb
        if emb is None:
            raise ValueError("the model has no puzzle embedding")
        self.copies, self.first_id = copies, cfg.num_puzzle_identifiers
        self.per_task = isinstance(emb, TaskPuzzleEmbedding)
        state = dict(model.state_dict())  # references: load_state_dict copies them into the new model
        old = state[TABLE]
        if self.per_task:  # rows: tasks [0, T), then the 8 dihedral and 100 colour-pair vectors
            T = cfg.num_puzzle_tasks
            self.init = old[1:T].mean(0) if T > 1 else torch.zeros_like(old[0])
            state[TABLE] = torch.cat((old[:T], self.init[None], old[T:]))
            self.new_rows = torch.tensor([T])
            self.aug_rows = torch.arange(T + 1, T + 1 + NUM_DIHEDRAL + NUM_COLOURS ** 2)
            rows = emb.rows.long().cpu()  # each old identifier's keys, read back from its table rows
            pairs = rows[:, 2:] - (T + NUM_DIHEDRAL) - NUM_COLOURS * torch.arange(NUM_COLOURS)
            self.keys = [torch.cat((rows[:, 0], torch.full((copies,), T))),
                         torch.cat((rows[:, 1] - T, torch.zeros(copies, dtype=torch.long))),
                         torch.cat((pairs, torch.zeros(copies, NUM_COLOURS, dtype=torch.long)))]
            state["embedding.puzzle_emb.rows"] = torch.zeros(self.first_id + copies, emb.refs, dtype=torch.int32)
            shape = DataShape(cfg.seq_len, cfg.vocab_size, self.first_id + copies, T + 1, cfg.grid_slots)
        else:
            self.init = old[1:].mean(0) if len(old) > 1 else torch.zeros_like(old[0])
            state[TABLE] = torch.cat((old, self.init.expand(copies, -1)))
            self.new_rows = torch.arange(len(old), len(old) + copies)
            self.aug_rows = torch.zeros(0, dtype=torch.long)
            shape = DataShape(cfg.seq_len, cfg.vocab_size, self.first_id + copies, cfg.num_puzzle_tasks,
                              cfg.grid_slots)
        device = next(model.parameters()).device
        self.model = build_model(name, cfg.arch, shape, cfg.forward_dtype)
        self.model.load_state_dict(state)  # per_task `rows` (zeros here) are set by `start`
        self.model.to(device)
        # What `reset` restores: every weight but the table, and the table rows a task may move.
        self.base = {k: v.to(device) for k, v in state.items() if k != TABLE}
        self.base_aug = state[TABLE][self.aug_rows].to(device)

    @property
    def table(self) -> torch.Tensor:
        return self.model.puzzle_emb.weights

    def start(self, dihedral: np.ndarray, perm: np.ndarray) -> None:
        """Fresh vectors for a new task whose copies 1.. have these augmentations (dihedral (c,),
        colour maps (c, 10), c <= copies), every other weight back to the checkpoint's."""
        self.model.load_state_dict(self.base, strict=False)
        with torch.no_grad():
            self.table[self.new_rows.to(self.table.device)] = self.init.to(self.table.device)
            self.table[self.aug_rows.to(self.table.device)] = self.base_aug
        if self.per_task:
            c = len(dihedral)
            task, t, pairs = (k.clone() for k in self.keys)
            t[self.first_id:self.first_id + c] = torch.as_tensor(np.asarray(dihedral), dtype=torch.long)
            pairs[self.first_id:self.first_id + c] = torch.as_tensor(np.asarray(perm), dtype=torch.long)
            self.model.puzzle_emb.set_keys(task, t, pairs)

    def ids(self, copy_ids: np.ndarray) -> np.ndarray:
        """Model identifiers of the new task's copies 1..copies (the task's own numbering)."""
        return (self.first_id - 1 + np.asarray(copy_ids)).astype(np.int32)

    def fitted_rows(self, all_: bool) -> torch.Tensor:
        """Table rows a fit moves: the new task's; with `all_` the augmentation codes too."""
        return torch.cat((self.new_rows, self.aug_rows)) if all_ else self.new_rows


def fit(new: NewTask, inputs: np.ndarray, labels: np.ndarray, copy_ids: np.ndarray,
        opt: FitOptions) -> list[float]:
    """Fit the new task's vectors on its augmented demonstration pairs (inputs, labels: (n, S)
    dataset tokens; copy_ids: (n,) the copy of each). Returns the loss per example of each step."""
    model, emb = new.model, new.model.puzzle_emb
    device = emb.weights.device
    rows = new.fitted_rows(opt.all).to(device)
    vecs = emb.weights[rows].clone().requires_grad_(True)  # (R, ndim): the fitted rows, as one leaf
    where = torch.full((emb.weights.shape[0],), -1, dtype=torch.long, device=device)
    where[rows] = torch.arange(len(rows), device=device)  # table row -> its place in vecs
    for p in model.parameters():
        p.requires_grad_(opt.all)
    groups = [{"params": [vecs], "lr": opt.lr}]
    if opt.all:
        groups.append({"params": list(model.parameters()), "lr": opt.network_lr})
    adam = torch.optim.Adam(groups)
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.int32, device=device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=device)
    y = torch.where(y == 0, IGNORE_LABEL_ID, y)  # PAD (0) is the dataset's ignore label
    ids = torch.as_tensor(new.ids(copy_ids), device=device)
    n, b = len(x), min(opt.batch, len(x))
    gen = torch.Generator().manual_seed(opt.seed)
    torch.manual_seed(opt.seed)  # the halting exploration draws from the global generator
    model.train()
    carry, losses = None, []
    for _ in range(opt.steps):
        pick = torch.randperm(n, generator=gen)[:b].to(device)
        batch = {"inputs": x[pick], "labels": y[pick], "puzzle_identifiers": ids[pick]}
        carry = model.initial_carry(batch) if carry is None else carry
        carry, loss, _, _, _ = model(carry, batch)
        if not torch.isfinite(loss):
            losses.append(float("nan"))
            break
        adam.zero_grad(set_to_none=True)
        (loss / b).backward()
        at = where[emb.local_ids.long()]
        keep = at >= 0
        vecs.grad = torch.zeros_like(vecs).index_add_(0, at[keep], emb.local_weights.grad[keep].float())
        adam.step()
        with torch.no_grad():
            emb.weights[rows] = vecs
        losses.append(float(loss.detach()) / b)
    model.eval()
    return losses
