"""Input embedding: token embedding, puzzle-embedding prefix, optional learned positions, scale.

`SparsePuzzleEmbedding` holds one vector per puzzle identifier in a buffer (`weights`, in the
state dict) that no dense optimiser sees. In training mode with grad enabled, the forward copies
the batch's rows into the scratch leaf `local_weights` (B, ndim) and remembers `local_ids` (B,),
so backward leaves gradient only on those rows; `train.optim.SparseSignSGD` reads `.weights`,
`.local_weights.grad` and `.local_ids` and updates just those rows (fixture README 4.10).
In eval mode, or with grad disabled (e.g. HRM's bootstrap pass), the table is read directly and
the scratch is left alone, so a no-grad second pass cannot steal the first pass's gradient.
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
        lw = self.local_weights
        if lw is None or lw.shape[0] != batch or lw.device != self.weights.device:
            self.local_weights = torch.zeros(batch, self.weights.shape[1], device=self.weights.device,
                                             requires_grad=True)
            self.local_ids = torch.zeros(batch, dtype=torch.int32, device=self.weights.device)
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


class InputEmbedding(nn.Module):
    """(inputs (B,S), puzzle_identifiers (B,)) -> x (B, P+S, D) in the forward dtype (README 4.2)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        dtype, dim = config.dtype, config.hidden_size
        self.embed_tokens = CastedEmbedding(config.vocab_size, dim, init_std=dim ** -0.5, dtype=dtype)
        self.puzzle_emb = (SparsePuzzleEmbedding(config.num_puzzle_identifiers, config.puzzle_emb_ndim, dtype)
                           if config.puzzle_emb_ndim > 0 else None)
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
