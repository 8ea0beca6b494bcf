"""Input embedding: token embedding, puzzle-embedding prefix, optional learned positions, scale.

`SparsePuzzleEmbedding` holds one vector per puzzle identifier in a buffer (`weights`, in the
state dict) that no dense optimiser sees. In training mode with grad enabled, the forward copies
the batch's rows into the scratch leaf `local_weights` (B, ndim) and remembers `local_ids` (B,),
so backward leaves gradient only on those rows; `train.optim.SparseSignSGD` reads `.weights`,
`.local_weights.grad` and `.local_ids` and updates just those rows (fixture README 4.10).
In eval mode, or with grad disabled (e.g. HRM's bootstrap pass), the table is read directly and
the scratch is left alone, so a no-grad second pass cannot steal the first pass's gradient.

`TaskPuzzleEmbedding` (`arch.puzzle_emb_keying=per_task`) keys the table by ARC task instead of by
augmented copy, with the copy's augmentation coded separately (its docstring says why and how).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import ModelConfig
from .layers import CastedEmbedding, grid_positions


class SparsePuzzleEmbedding(nn.Module):
    refs = 1  # table rows one identifier reads (and the scratch holds per batch row)

    def __init__(self, num_embeddings: int, ndim: int, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        # Zero init as the reference; a buffer so dense optimisers, EMA and DDP leave it alone.
        self.register_buffer("weights", torch.zeros(num_embeddings, ndim), persistent=True)
        # Per-batch scratch, allocated on first training forward (and again if B/device changes).
        self.local_weights: torch.Tensor | None = None
        self.local_ids: torch.Tensor | None = None

    def prepare(self, batch: int) -> torch.Tensor:
        """(Re)allocate the scratch rows for `batch` ids. `HaltingModel.initial_carry` calls this
        eagerly, so a compiled forward never has to create a leaf tensor (a graph break)."""
        lw, n = self.local_weights, batch * self.refs
        if lw is None or lw.shape[0] != n or lw.device != self.weights.device:
            self.local_weights = torch.zeros(n, self.weights.shape[1], device=self.weights.device,
                                             requires_grad=True)
            self.local_ids = torch.zeros(n, dtype=torch.int32, device=self.weights.device)
        return self.local_weights

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self.weights[ids].to(self.dtype)
        local = self.prepare(ids.shape[0])
        local.grad = None  # the rows change every forward, so an old gradient means nothing
        with torch.no_grad():  # in-place into the same leaf: the optimiser keeps one handle
            local.copy_(self.weights[ids])
            self.local_ids.copy_(ids)
        return local.to(self.dtype)


NUM_DIHEDRAL, NUM_COLOURS = 8, 10  # ARC: dihedral transforms of a grid; colours (perm[old] = new)


class TaskPuzzleEmbedding(SparsePuzzleEmbedding):
    """One vector per ARC task, shared by all its augmented copies, plus a code of the copy's augmentation:

        vector(copy) = task[k] + dihedral[t] + mean over colours c of pair[c, perm[c]]

    Why: keyed per copy (the reference), a task's vector is split over its augmented copies (8 in the
    quick set, 1001 in the paper's), each seen a handful of times in a short run; keyed per task, every
    copy trains the same vector. The copy still says how it was augmented, so one task vector can
    serve all frames: a learned vector per dihedral transform, and for the colour map a learned
    vector per (old colour -> new colour) pair, averaged over the ten colours. That is a linear map of
    the copy's 10x10 permutation matrix: each pair is shared by many copies (a vector per permutation
    would mostly be seen once), and the mean keeps the code at the scale of one vector.

    One table (`weights`, a buffer as per copy): rows [0, T) tasks, [T, T+8) dihedral transforms,
    [T+8, T+108) colour pairs (old * 10 + new). `rows` (identifiers, 12) holds the table rows each
    identifier reads (task, transform, one pair per colour); `set_keys` fills it from the dataset
    (the trainer does, for a fresh model) and checkpoints carry it in the state dict. In training the
    scratch holds the B * 12 rows read and `local_ids` their row numbers, so the sparse sign-SGD
    (`train.optim.SparseSignSGD`, unchanged) sums the gradients of a row read several times and
    moves exactly the rows of the batch's tasks and the augmentation vectors it used.
    """

    refs = 2 + NUM_COLOURS

    def __init__(self, num_identifiers: int, num_tasks: int, ndim: int, dtype: torch.dtype):
        super().__init__(num_tasks + NUM_DIHEDRAL + NUM_COLOURS ** 2, ndim, dtype)
        self.num_tasks = num_tasks
        self.register_buffer("rows", torch.zeros(num_identifiers, self.refs, dtype=torch.int32), persistent=True)
        self.keyed = False  # `rows` holds a dataset's keys (set_keys, or a loaded state dict)

    @torch.no_grad()
    def set_keys(self, task, dihedral, perm) -> None:
        """Each identifier's task index (N,), dihedral transform 0..7 (N,) and colour map (N, 10)."""
        task, dihedral, perm = (torch.as_tensor(x, dtype=torch.int64) for x in (task, dihedral, perm))
        n = self.rows.shape[0]
        if task.shape != (n,) or dihedral.shape != (n,) or perm.shape != (n, NUM_COLOURS):
            raise ValueError(f"set_keys: expected keys of {n} identifiers, got shapes {tuple(task.shape)}, "
                             f"{tuple(dihedral.shape)}, {tuple(perm.shape)}")
        if n and (task.min() < 0 or task.max() >= self.num_tasks or dihedral.min() < 0
                  or dihedral.max() >= NUM_DIHEDRAL or perm.min() < 0 or perm.max() >= NUM_COLOURS):
            raise ValueError(f"set_keys: a task index outside 0..{self.num_tasks - 1}, or a bad transform or colour")
        first_pair = self.num_tasks + NUM_DIHEDRAL
        pairs = first_pair + NUM_COLOURS * torch.arange(NUM_COLOURS) + perm  # (N, 10) rows of pair (c, perm[c])
        self.rows.copy_(torch.cat((task[:, None], self.num_tasks + dihedral[:, None], pairs), dim=1))
        self.keyed = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.keyed = self.keyed or prefix + "rows" in state_dict

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.keyed:
            raise ValueError("per_task puzzle embedding without keys: call set_keys with the dataset's copy keys "
                             "(puzzles.arc.copy_keys), or load a checkpoint")
        rows = self.rows[ids.long()].long()  # (B, 12)
        if not (self.training and torch.is_grad_enabled()):
            vecs = self.weights[rows]  # (B, 12, ndim)
        else:
            local = self.prepare(ids.shape[0])  # (B * 12, ndim)
            local.grad = None
            with torch.no_grad():
                local.copy_(self.weights[rows.reshape(-1)])
                self.local_ids.copy_(rows.reshape(-1))
            vecs = local.view(*rows.shape, -1)
        return (vecs[:, 0] + vecs[:, 1] + vecs[:, 2:].mean(1)).to(self.dtype)


class InputEmbedding(nn.Module):
    """(inputs (B,S), puzzle_identifiers (B,)) -> x (B, P+S, D) in the forward dtype (README 4.2)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        dtype, dim = config.dtype, config.hidden_size
        self.embed_tokens = CastedEmbedding(config.vocab_size, dim, init_std=dim ** -0.5, dtype=dtype)
        self.puzzle_emb = None
        if config.puzzle_emb_ndim > 0 and config.puzzle_emb_keying == "per_task":
            self.puzzle_emb = TaskPuzzleEmbedding(config.num_puzzle_identifiers, config.num_puzzle_tasks,
                                                  config.puzzle_emb_ndim, dtype)
        elif config.puzzle_emb_ndim > 0:
            self.puzzle_emb = SparsePuzzleEmbedding(config.num_puzzle_identifiers, config.puzzle_emb_ndim, dtype)
        self.embed_pos = (CastedEmbedding(config.total_len, dim, init_std=dim ** -0.5, dtype=dtype)
                          if config.pos_encodings == "learned" else None)
        if config.pos_encodings.endswith("learned2d"):  # a row vector + a column vector per cell
            rows, cols = config.grid_shape
            self.embed_row = CastedEmbedding(rows + 1, dim, init_std=dim ** -0.5, dtype=dtype)
            self.embed_col = CastedEmbedding(cols + 1, dim, init_std=dim ** -0.5, dtype=dtype)
            row_ids, col_ids = grid_positions(config.prefix_len, rows, cols)
            self.register_buffer("row_ids", row_ids, persistent=False)
            self.register_buffer("col_ids", col_ids, persistent=False)
        self.scale = math.sqrt(dim)

    def forward(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if inputs.shape[-1] != cfg.seq_len:
            raise ValueError(f"batch has sequence length {inputs.shape[-1]} but ModelConfig.seq_len="
                             f"{cfg.seq_len} (positions are sized for seq_len + puzzle_emb_len)")
        x = self.embed_tokens(inputs.to(torch.int32))
        if cfg.prefix_len:
            if self.puzzle_emb is not None:
                vec = self.puzzle_emb(puzzle_identifiers.to(torch.int32))
            else:  # explicit prefix without a puzzle table: zero inputs (scratch positions)
                vec = x.new_zeros(x.shape[0], 0)
            # Right-pad the vector to P*D values and lay it out as P prefix tokens.
            vec = F.pad(vec, (0, cfg.prefix_len * cfg.hidden_size - vec.shape[-1]))
            x = torch.cat((rearrange(vec, "b (p d) -> b p d", p=cfg.prefix_len), x), dim=-2)
        if self.embed_pos is not None:
            x = 0.707106781 * (x + self.embed_pos.embedding_weight.to(x.dtype))
        elif hasattr(self, "embed_row"):  # same scale as 1-D learned positions: the sum of 3 terms
            x = 0.57735027 * (x + self.embed_row(self.row_ids) + self.embed_col(self.col_ids))
        return self.scale * x
