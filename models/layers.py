"""Building blocks shared by every recursion core: casted linear/embedding layers, RMSNorm,
SwiGLU, RoPE, attention, the post-norm transformer block (attention or TRM-MLP token mixer)
and the reasoning module `net(h, injection)`.

Numerics follow the reference (fixture README section 4): weights are float32 parameters cast
to the activation dtype at use, norms have no gain and run in float32, the block is post-norm.
Module and parameter names match the reference so its state dicts map over by prefix only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def trunc_normal_(tensor: torch.Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0) -> torch.Tensor:
    """Fill `tensor` with a normal truncated to [lower, upper] *standard deviations*, rescaled so
    the truncated distribution's actual std equals `std` (JAX's truncated LeCun normal)."""
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        # Inverse-CDF sampling of the standard normal restricted to [lower, upper].
        cdf_lo = math.erf(lower / math.sqrt(2))
        cdf_hi = math.erf(upper / math.sqrt(2))
        mass = (cdf_hi - cdf_lo) / 2
        pdf_lo = math.exp(-0.5 * lower ** 2) / math.sqrt(2 * math.pi)
        pdf_hi = math.exp(-0.5 * upper ** 2) / math.sqrt(2 * math.pi)
        # Variance of the truncated standard normal; divide it out so the result has std `std`.
        var = 1 - (upper * pdf_hi - lower * pdf_lo) / mass - ((pdf_hi - pdf_lo) / mass) ** 2
        scale = std / math.sqrt(var)
        tensor.uniform_(cdf_lo, cdf_hi).erfinv_().mul_(math.sqrt(2) * scale)
        return tensor.clamp_(lower * scale, upper * scale)


class CastedLinear(nn.Module):
    """y = x W^T (+ b) with float32 W cast to x's dtype. Init: truncated LeCun normal, std 1/sqrt(in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features), std=in_features ** -0.5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding table kept in float32, looked up and cast to `dtype`."""

    def __init__(self, num_embeddings: int, dim: int, init_std: float, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self.embedding_weight = nn.Parameter(trunc_normal_(torch.empty(num_embeddings, dim), std=init_std))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight.to(self.dtype))


def rms_norm(x: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    """RMSNorm over axis `dim` (the last by default) without a gain, in float32, returned in x's dtype."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.square().mean(dim, keepdim=True) + eps)).to(x.dtype)


def swiglu_width(n: int, expansion: float) -> int:
    """The reference's intermediate width: round(expansion * n * 2/3) up to a multiple of 256."""
    return 256 * math.ceil(round(expansion * n * 2 / 3) / 256)


class SwiGLU(nn.Module):
    """down(silu(gate) * up); gate is the first half of the fused gate_up projection.

    With `conv` = (kernel, prefix, rows, cols, slots) the hidden activations of the grid cells also pass
    through a depthwise k x k convolution over the grid (`GridConv`), so each cell's feed-forward
    sees its neighbours (cf. the short convolution of the Universal Reasoning Model)."""

    def __init__(self, n: int, expansion: float, conv: tuple[int, int, int, int, int] | None = None):
        super().__init__()
        width = swiglu_width(n, expansion)
        self.gate_up_proj = CastedLinear(n, 2 * width)
        self.down_proj = CastedLinear(width, n)
        if conv is not None:
            self.conv = GridConv(width, *conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        h = F.silu(gate) * up
        if hasattr(self, "conv"):
            h = self.conv(h)
        return self.down_proj(h)

    def forward_columns(self, x: torch.Tensor) -> torch.Tensor:
        """The same map applied to every column of x (n features x m columns): W x instead of x W^T
        (the projections have no bias and no conv here: the token mixer's SwiGLU)."""
        gate, up = torch.mm(self.gate_up_proj.weight.to(x.dtype), x).chunk(2, dim=0)
        return torch.mm(self.down_proj.weight.to(x.dtype), F.silu(gate) * up)


class GridConv(nn.Module):
    """h + depthwise_conv_kxk(h) on the grid cells of (B, P + slots*rows*cols, C); the P prefix
    positions pass through unchanged, and each grid slot (in-context ARC) is convolved on its own,
    so no cell mixes with the edge of the grid before or after it. Zero-initialised, so a model
    starts as without it."""

    def __init__(self, channels: int, kernel: int, prefix: int, rows: int, cols: int, slots: int = 1):
        super().__init__()
        self.layout = (kernel, prefix, rows, cols, slots)
        self.weight = nn.Parameter(torch.zeros(channels, 1, kernel, kernel))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        kernel, prefix, rows, cols, slots = self.layout
        grid = rearrange(h[:, prefix:], "b (s r c) ch -> (b s) ch r c", s=slots, r=rows, c=cols)
        mixed = F.conv2d(grid, self.weight.to(h.dtype), padding=kernel // 2, groups=grid.shape[1])
        mixed = rearrange(mixed, "(b s) ch r c -> b (s r c) ch", s=slots)
        return torch.cat((h[:, :prefix], h[:, prefix:] + mixed), dim=1)


def grid_positions(prefix: int, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) indices (P + rows*cols,) of every position: prefix positions sit at (0, 0),
    grid cell i (row-major) at (i // cols + 1, i % cols + 1). A pure function of the grid shape,
    so a cell's position code never depends on what the grid holds."""
    cell = torch.arange(rows * cols)
    head = torch.zeros(prefix, dtype=torch.long)
    return torch.cat((head, cell // cols + 1)), torch.cat((head, cell % cols + 1))


def slot_positions(prefix: int, slots: int, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, column, slot) indices (P + slots*rows*cols,) of `slots` grids laid one after another:
    row and column as `grid_positions` within each grid, the slot counted from 0, prefix positions
    at (0, 0, 0). With one slot the rows and columns are exactly `grid_positions`."""
    rows_, cols_ = grid_positions(0, rows, cols)
    head = torch.zeros(prefix, dtype=torch.long)
    slot = torch.arange(slots).repeat_interleave(rows * cols)
    return (torch.cat((head, rows_.repeat(slots))), torch.cat((head, cols_.repeat(slots))),
            torch.cat((head, slot)))


class RotaryEmbedding(nn.Module):
    """cos/sin tables (T, head_dim) for split-halves RoPE; positions 0..T-1 include the prefix.

    With `grid` = (prefix, rows, cols), axial 2-D RoPE instead: half the rotary frequencies turn
    with the row index, half with the column index (`grid_positions`), so attention scores
    depend on (row, column) offsets rather than on distances in the flattened sequence.

    With `slots` S >= 1 as well, 3-D RoPE over (row, column, slot) of S grids of rows x cols
    (`slot_positions`; in-context ARC): every plane's angle is the 2-D one plus slot * g, g being
    the same frequencies in reverse order. Why so: at slot 0 it is exactly 2-D RoPE, so a single
    grid keeps its code; a plane that turns fast with the row turns slowly with the slot and the
    other way round, so the highest and lowest planes each read one axis while scores still depend
    only on the (row, column, slot) offsets."""

    def __init__(self, head_dim: int, max_len: int, theta: float, grid: tuple[int, int, int] | None = None,
                 slots: int = 0):
        super().__init__()
        if grid is None:
            inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
            angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        else:
            half = head_dim // 2
            inv_freq = 1.0 / (theta ** (torch.arange(0, half, 2, dtype=torch.float32) / half))
            prefix, height, width = grid
            rows, cols, slot = slot_positions(prefix, max(slots, 1), height, width)
            angles = torch.cat((torch.outer(rows.float(), inv_freq), torch.outer(cols.float(), inv_freq)), dim=-1)
            if slots:  # exact zeros at slot 0, so one grid is 2-D RoPE bit for bit
                angles = angles + torch.outer(slot.float(), inv_freq.flip(0).repeat(2))
        angles = torch.cat((angles, angles), dim=-1)
        # Not persistent: recomputed on construction, so checkpoints stay free of derived tables.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos, self.sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, T, H, d) -> x*cos + rot(x)*sin with rot([x1, x2]) = [-x2, x1], in float32.
    Tables are (T, d), or (B, T, d) when each row has its own positions (gathered cells, MoR)."""
    x32 = x.float()
    x1, x2 = x32.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x32 * cos.unsqueeze(-2) + rotated * sin.unsqueeze(-2)).to(x.dtype)


class Attention(nn.Module):
    """Non-causal multi-head self-attention with a fused QKV projection and no mask.

    With `bias_len` = T > 0, each head also adds a learned (T, T) bias to its scores (zero at
    init): attention can then learn which positions matter to which directly, as TRM-MLP's token
    mixer does, instead of deriving it from position codes (`attn_bias='pairwise'`)."""

    def __init__(self, hidden_size: int, num_heads: int, bias_len: int = 0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv_proj = CastedLinear(hidden_size, 3 * hidden_size)
        self.o_proj = CastedLinear(hidden_size, hidden_size)
        if bias_len:
            self.score_bias = nn.Parameter(torch.zeros(num_heads, bias_len, bias_len))

    def forward(self, h: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        qkv = rearrange(self.qkv_proj(h), "b t (three n d) -> three b t n d", three=3, n=self.num_heads)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if cos_sin is not None:
            q, k = apply_rope(q, *cos_sin), apply_rope(k, *cos_sin)
        q, k, v = (rearrange(t, "b t n d -> b n t d") for t in (q, k, v))
        bias = self.score_bias.to(q.dtype) if hasattr(self, "score_bias") else None
        return self.o_proj(rearrange(attend(q, k, v, bias), "b n t d -> b t (n d)"))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over (B, H, T, d), no mask, not causal.

    On CPU in bf16 the explicit form wins: for these short sequences (T ~ 100, d 32-64) PyTorch's
    CPU flash kernel is as fast forward but much slower backward, and under torch.compile the
    explicit form fuses scale + softmax around two oneDNN batched matmuls. In float32, and off the
    CPU, the fused kernel wins. Measure with `python -m bench.train_step --config A --all`.

    The core runs in float32 on bf16 inputs, as the fused kernel accumulates: scores rounded to
    bf16 before the softmax (and bf16 probabilities) gave 8x the fused kernel's error (1.2% against
    0.16% on random (8, 4, 121, 32) inputs at q, k scale 3; tests/test_attention_precision.py),
    so a bf16 CPU run trained a different model than a GPU run of the same recipe."""
    if q.device.type != "cpu" or q.dtype == torch.float32:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    # Scaling q (T x d) is cheaper than scaling the scores (T x T), and keeps inductor from
    # pattern-matching this back into the slower flash kernel.
    scores = torch.matmul(q.float() * (q.shape[-1] ** -0.5), k.float().transpose(-1, -2))
    if bias is not None:
        scores = scores + bias
    return torch.matmul(scores.softmax(dim=-1), v.float()).to(v.dtype)


class Block(nn.Module):
    """Post-norm block: h = norm(h + mix(h)); h = norm(h + SwiGLU(h)).

    mix is attention, or with `mlp_t` a SwiGLU over the position axis (weights shared across
    channels, normalised over positions), which fixes the sequence length to `total_len`.
    """

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, eps: float,
                 mlp_t: bool = False, total_len: int = 0, conv: tuple[int, int, int, int] | None = None,
                 attn_bias: bool = False):
        super().__init__()
        self.eps = eps
        if mlp_t:
            self.mlp_t = SwiGLU(total_len, expansion)
        else:
            self.self_attn = Attention(hidden_size, num_heads, total_len if attn_bias else 0)
        self.mlp = SwiGLU(hidden_size, expansion, conv)

    def forward(self, h: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if hasattr(self, "mlp_t"):
            h = self.mix_positions(h)
        else:
            h = rms_norm(h + self.self_attn(h, cos_sin), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)

    def mix_positions(self, h: torch.Tensor) -> torch.Tensor:
        """TRM-MLP's token mixer on (B, T, C): h + SwiGLU over the T positions of each channel,
        normalised over positions. One map; the layout of its products is chosen by speed on a CPU
        (quick shape, 2-core Xeon, the trainer's step driven alone, alternating, quiet):
        float32 runs position-major: the weights multiply a (T, B*C) matrix from the left, which
        leaves its backward fewer transposed operands (step 0.066 -> 0.057 s);
        bf16 runs channel-major as the reference writes it ((B*C, T) rows times the weights; AMX
        kernels are faster that way), and without autograd on explicit 2-D rows, which inductor
        would otherwise turn into a batched product against a broadcast weight (step 36 -> 32 ms)."""
        if h.dtype == torch.float32:
            hp = rearrange(h, "b t c -> t (b c)")
            mixed = rms_norm(hp + self.mlp_t.forward_columns(hp), self.eps, dim=0)
            # contiguous: a carry with other strides than the last step's would make torch.compile recompile
            return rearrange(mixed, "t (b c) -> b t c", b=h.shape[0]).contiguous()
        if torch.is_grad_enabled():
            ht = rearrange(h, "b t c -> b c t")
            return rearrange(rms_norm(ht + self.mlp_t(ht), self.eps), "b c t -> b t c")
        rows = rearrange(h, "b t c -> (b c) t")
        mixed = rms_norm(rows + self.mlp_t(rows), self.eps)
        return rearrange(mixed, "(b c) t -> b t c", b=h.shape[0]).contiguous()


class ReasoningModule(nn.Module):
    """net(h, injection): add the injection once, then run the blocks in order."""

    def __init__(self, num_layers: int, config) -> None:
        super().__init__()
        slots, rows, cols = config.slot_shape if config.ffn_conv else (1, 0, 0)
        conv = (config.ffn_conv, config.prefix_len, rows, cols, slots) if config.ffn_conv else None
        self.layers = nn.ModuleList(
            Block(config.hidden_size, config.num_heads, config.expansion, config.rms_norm_eps,
                  mlp_t=config.mlp_t, total_len=config.total_len, conv=conv,
                  attn_bias=config.attn_bias == "pairwise")
            for _ in range(num_layers))

    def forward(self, h: torch.Tensor, injection: torch.Tensor,
                cos_sin: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        h = h + injection
        for layer in self.layers:
            h = layer(h, cos_sin)
        return h
