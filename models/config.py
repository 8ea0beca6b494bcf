"""Model configuration: what the user chooses (ArchConfig), what the dataset dictates (DataShape),
and the two together with the compute dtype (ModelConfig, what a model holds as `model.config`).

    config = ModelConfig.of(ArchConfig(hidden_size=128), DataShape(seq_len=81, vocab_size=11), "float32")

Field names follow the reference (HRM / TRM `*_ACTV1Config`) so a reference config dict maps
over almost unchanged (see `models.reference.config_from_reference`). Everything is validated in
`__post_init__`; a bad value raises ValueError naming the field.

`models.build_model(name, arch, shape, dtype)` is the one way the trainer, the evaluator and the
tools make a model from the parts. `halt_rule` and `grad_mode` may be left as None: each model in `models.MODELS` then fills in its
reference default (HRM: q_halt_vs_continue + one_step; TRM: q_halt + last_cycle).

Sequence length: every model sees P + S positions (P = `prefix_len`, the puzzle prefix). Batches
must have exactly `seq_len` tokens; this matters most for `mlp_t`, whose token-mixing weights
are (.., P + S) matrices, and for learned positions. Pad shorter puzzles to seq_len.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

import torch

POS_ENCODINGS = ("rope", "learned", "none", "rope2d", "learned2d", "rope2d+learned2d", "rope3d")
HALT_RULES = ("q_halt", "q_halt_vs_continue")
GRAD_MODES = ("one_step", "last_cycle", "full")
FORWARD_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
LOSSES = ("stablemax", "softmax")
ATTN_BIASES = ("none", "pairwise")
SHARE_ORDERS = ("sequence", "cycle", "cycle_rev")  # Takase & Kiyono 2021 (models/share.py)
MOR_ROUTERS = ("expert", "token", "oracle", "random")  # models/mor.py
MOR_ATTENDS = ("active", "all")
PUZZLE_EMB_KEYINGS = ("per_copy", "per_task")  # models/embedding.py


def dtype_name(dtype: torch.dtype) -> str:
    """The `forward_dtype` name of a compute dtype ("float32", "bfloat16"): FORWARD_DTYPES inverted."""
    return next(name for name, value in FORWARD_DTYPES.items() if value == dtype)


@dataclass(frozen=True)
class DataShape:
    """What the dataset dictates (its dataset.json): the model cannot choose these."""

    seq_len: int  # S: tokens per example (81 for 9x9 Sudoku, 900 for ARC)
    vocab_size: int  # V
    num_puzzle_identifiers: int = 1  # rows of the puzzle-embedding table
    num_puzzle_tasks: int = 0  # tasks behind the identifiers (ARC; per_task keying); 0 = not known
    grid_slots: int = 0  # grids per example in equal slots (in-context ARC: 2K + 2); 0 = not laid out in slots


@dataclass
class ArchConfig:
    """The architecture: everything about a model the user chooses (presets, `arch.key=value`)."""

    puzzle_emb_ndim: int = 0  # width of one puzzle vector; 0 = no puzzle embedding
    puzzle_emb_len: int = 0  # P, prefix positions; 0 = derive ceil(puzzle_emb_ndim / hidden_size)
    # per_copy: one vector per puzzle identifier (each augmented copy; the reference); per_task: one
    # per task plus codes of the copy's dihedral transform and colour map (models/embedding.py)
    puzzle_emb_keying: Literal["per_copy", "per_task"] = "per_copy"
    hidden_size: int = 512  # D
    num_heads: int = 8
    expansion: float = 4.0  # SwiGLU width factor (before the reference's 2/3 and rounding to 256)
    H_cycles: int = 3  # T in the TRM paper (outer cycles)
    L_cycles: int = 6  # n in the TRM paper (latent updates per cycle)
    H_layers: int = 4  # blocks of HRM's H net (unused by TRM / transformer)
    L_layers: int = 2  # blocks of the L net (TRM's only net; the transformer baseline's stack)
    # 'rope' | 'learned' | 'none' (1-D) | 'rope2d' | 'learned2d' | 'rope2d+learned2d' | 'rope3d' (row, column, slot)
    pos_encodings: str = "rope"
    grid_width: int = 0  # cells per grid row for the 2-D/3-D options and ffn_conv; 0 = square grid
    ffn_conv: int = 0  # k > 0: depthwise k x k convolution over the grid in the feed-forward block
    attn_bias: str = "none"  # 'none' | 'pairwise': a learned (P+S) x (P+S) score bias per head and layer
    mlp_t: bool = False  # TRM-MLP: replace attention by an MLP over positions (needs fixed P + S)
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    halt_max_steps: int = 16  # N_sup: supervision (ACT) steps at most
    halt_exploration_prob: float = 0.1
    halt_rule: str | None = None  # 'q_halt' | 'q_halt_vs_continue'; None = model default
    grad_mode: str | None = None  # 'one_step' | 'last_cycle' | 'full'; None = model default
    loss: str = "stablemax"  # 'stablemax' | 'softmax' cross-entropy
    # --- recursion variants (docs/variants.md): layer sharing, ut, rrt, mor ---------------------
    unique_layers: int = 0  # M distinct blocks over the (L_cycles+1)*L_layers positions of one H-cycle; 0 = L_layers
    share_order: str = "cycle"  # 'sequence' AABB | 'cycle' ABAB | 'cycle_rev' ABBA over those positions
    ut_max_steps: int = 8  # T_max: UT block applications per supervision step at most
    ut_halt_eps: float = 0.01  # a cell halts once its halting sum would pass 1 - eps
    ut_ponder_cost: float = 0.01  # tau: weight of the ponder loss mean(N + R)
    ut_halt_bias_init: float = -3.0  # halting unit bias; -3 -> p ~ 0.05 (the T2T default +1 collapses, notes)
    ut_freeze_halted: bool = True  # halted cells keep their state (still attended to), as the paper says
    rrt_rank: int = 8  # r: LoRA rank per depth position; 0 = plain tying
    rrt_alpha: float = 0.0  # LoRA alpha, scale alpha / r; 0 = alpha equals r (scale 1)
    mor_router: str = "expert"  # 'expert' | 'token' | 'oracle' (givens retire first) | 'random'
    mor_capacity: float = 1 / 3  # share of cells kept at the last recursion (H-cycle); linear from 1
    mor_attend: str = "active"  # 'active': kept cells attend to kept cells; 'all': to every cell
    mor_alpha: float = 1.0  # gate scale: kept cells get z + alpha * sigmoid(router) * 2 * (f(z) - z)
    mor_aux_weight: float = 0.01  # weight of the router BCE (expert) or balancing loss (token)

    def __post_init__(self) -> None:
        bad = self._bad
        for name in ("hidden_size", "num_heads", "H_cycles", "L_cycles", "L_layers", "halt_max_steps",
                     "ut_max_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "must be a positive integer")
        for name in ("puzzle_emb_ndim", "puzzle_emb_len", "H_layers", "grid_width", "ffn_conv", "unique_layers",
                     "rrt_rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(name, "must be a non-negative integer")
        if self.hidden_size % self.num_heads:
            raise bad("hidden_size", f"must be divisible by num_heads={self.num_heads}")
        if self.pos_encodings not in POS_ENCODINGS:
            raise bad("pos_encodings", f"must be one of {POS_ENCODINGS}")
        if self.pos_encodings == "rope" and self.head_dim % 2:
            raise bad("num_heads", f"RoPE needs an even head dim, got {self.head_dim}")
        if self.mlp_t and self.rope_kind != "none":
            raise bad("pos_encodings", "mlp_t has no attention, so RoPE would be silently unused; "
                                       "use 'none' (the paper's TRM-MLP), 'learned' or 'learned2d'")
        if self.rope_kind in ("2d", "3d") and self.head_dim % 4:
            raise bad("num_heads", f"{self.rope_kind[0]}-D RoPE needs a head dim divisible by 4, "
                                   f"got {self.head_dim}")
        if self.ffn_conv % 2 == 0 and self.ffn_conv:
            raise bad("ffn_conv", "must be 0 (off) or an odd kernel size (3, 5, ...)")
        if self.attn_bias not in ATTN_BIASES:
            raise bad("attn_bias", f"must be one of {ATTN_BIASES}")
        if self.attn_bias != "none" and self.mlp_t:
            raise bad("attn_bias", "mlp_t has no attention scores to bias")
        if self.halt_rule is not None and self.halt_rule not in HALT_RULES:
            raise bad("halt_rule", f"must be one of {HALT_RULES} (or None for the model default)")
        if self.grad_mode is not None and self.grad_mode not in GRAD_MODES:
            raise bad("grad_mode", f"must be one of {GRAD_MODES} (or None for the model default)")
        if self.loss not in LOSSES:
            raise bad("loss", f"must be one of {LOSSES}")
        if not 0 < self.expansion < math.inf:
            raise bad("expansion", "must be positive and finite")
        if not 0.0 <= self.halt_exploration_prob <= 1.0:
            raise bad("halt_exploration_prob", "must be a probability in [0, 1]")
        if not 0 < self.rms_norm_eps < math.inf:
            raise bad("rms_norm_eps", "must be positive and finite")
        if self.puzzle_emb_keying not in PUZZLE_EMB_KEYINGS:
            raise bad("puzzle_emb_keying", f"must be one of {PUZZLE_EMB_KEYINGS}")
        if self.puzzle_emb_keying == "per_task" and not self.puzzle_emb_ndim:
            raise bad("puzzle_emb_keying", "there is no puzzle embedding to key (puzzle_emb_ndim=0)")
        if self.puzzle_emb_len and self.puzzle_emb_len * self.hidden_size < self.puzzle_emb_ndim:
            raise bad("puzzle_emb_len", f"{self.puzzle_emb_len} prefix positions x hidden_size "
                                        f"{self.hidden_size} cannot hold puzzle_emb_ndim={self.puzzle_emb_ndim}")
        self._check_variants(bad)

    def _bad(self, name: str, why: str) -> ValueError:
        return ValueError(f"{type(self).__name__}.{name}={getattr(self, name)!r}: {why}")

    def _check_variants(self, bad) -> None:
        """The recursion variants' fields (docs/variants.md)."""
        positions = (self.L_cycles + 1) * self.L_layers
        if self.unique_layers > positions:
            raise bad("unique_layers", f"at most (L_cycles + 1) * L_layers = {positions} layer positions "
                                       f"per H-cycle; more layers would never be used")
        if self.share_order not in SHARE_ORDERS:
            raise bad("share_order", f"must be one of {SHARE_ORDERS}")
        if not 0.0 <= self.ut_halt_eps < 1.0:
            raise bad("ut_halt_eps", "must be in [0, 1)")
        for name in ("ut_ponder_cost", "rrt_alpha", "mor_aux_weight"):
            if not 0.0 <= getattr(self, name) < math.inf:
                raise bad(name, "must be finite and >= 0")
        if not math.isfinite(self.ut_halt_bias_init):
            raise bad("ut_halt_bias_init", "must be finite")
        if self.rrt_rank > self.hidden_size:
            raise bad("rrt_rank", f"must be at most the width hidden_size={self.hidden_size}")
        if self.mor_router not in MOR_ROUTERS:
            raise bad("mor_router", f"must be one of {MOR_ROUTERS}")
        if not 0.0 < self.mor_capacity <= 1.0:
            raise bad("mor_capacity", "must be in (0, 1]")
        if self.mor_attend not in MOR_ATTENDS:
            raise bad("mor_attend", f"must be one of {MOR_ATTENDS}")
        if not 0.0 < self.mor_alpha < math.inf:
            raise bad("mor_alpha", "must be positive and finite")

    # Derived sizes -------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def prefix_len(self) -> int:
        """P: puzzle-embedding prefix positions (explicit puzzle_emb_len, else ceil(ndim / D))."""
        return self.puzzle_emb_len or math.ceil(self.puzzle_emb_ndim / self.hidden_size)

    @property
    def rope_kind(self) -> str:
        """Rotary position code in attention: 'none', '1d' (flattened sequence), '2d' (axial) or '3d'
        (axial plus the grid slot)."""
        return {"rope": "1d", "rope2d": "2d", "rope2d+learned2d": "2d", "rope3d": "3d"}.get(self.pos_encodings, "none")



@dataclass
class ModelConfig(ArchConfig):
    """An architecture fitted to a dataset, in a compute dtype: what a built model holds."""

    seq_len: int = field(kw_only=True)  # DataShape.seq_len
    vocab_size: int = field(kw_only=True)  # DataShape.vocab_size
    num_puzzle_identifiers: int = field(default=1, kw_only=True)  # DataShape.num_puzzle_identifiers
    num_puzzle_tasks: int = field(default=0, kw_only=True)  # DataShape.num_puzzle_tasks
    grid_slots: int = field(default=0, kw_only=True)  # DataShape.grid_slots
    forward_dtype: str = field(default="bfloat16", kw_only=True)  # compute dtype; weights always stay float32

    @classmethod
    def of(cls, arch: ArchConfig, shape: DataShape, dtype: str | torch.dtype) -> "ModelConfig":
        """The architecture fitted to `shape`; ValueError when they do not fit (e.g. 2-D positions
        on a sequence that is not a grid)."""
        return cls(**{f.name: getattr(arch, f.name) for f in fields(ArchConfig)},
                   seq_len=shape.seq_len, vocab_size=shape.vocab_size,
                   num_puzzle_identifiers=shape.num_puzzle_identifiers, num_puzzle_tasks=shape.num_puzzle_tasks,
                   grid_slots=shape.grid_slots,
                   forward_dtype=dtype if isinstance(dtype, str) else dtype_name(dtype))

    @property
    def arch(self) -> ArchConfig:
        return ArchConfig(**{f.name: getattr(self, f.name) for f in fields(ArchConfig)})

    @property
    def shape(self) -> DataShape:
        return DataShape(self.seq_len, self.vocab_size, self.num_puzzle_identifiers, self.num_puzzle_tasks,
                         self.grid_slots)

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = self._bad
        for name in ("seq_len", "vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "must be a positive integer")
        for name in ("num_puzzle_identifiers", "num_puzzle_tasks", "grid_slots"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(name, "must be a non-negative integer")
        if self.forward_dtype not in FORWARD_DTYPES:
            raise bad("forward_dtype", f"must be one of {tuple(FORWARD_DTYPES)}")
        if self.rope_kind == "3d" and not self.grid_slots:
            raise bad("pos_encodings", "rope3d needs a dataset laid out in grid slots (in-context ARC, built with "
                                       "context K > 0); this one records none: use rope2d")
        if self.pos_encodings.endswith(("2d", "3d")) or self.ffn_conv:
            self.slot_shape  # raises if seq_len is not a grid
        if self.puzzle_emb_ndim > 0 and self.num_puzzle_identifiers < 1:
            raise bad("num_puzzle_identifiers", "must be >= 1 when puzzle_emb_ndim > 0")
        if self.puzzle_emb_keying == "per_task" and self.num_puzzle_tasks < 1:
            raise bad("num_puzzle_tasks", "puzzle_emb_keying='per_task' needs a dataset whose identifiers name "
                                          "each copy's task and augmentation (ARC)")

    @property
    def total_len(self) -> int:
        """P + S: positions the recursion sees (also the width of TRM-MLP's token mixer)."""
        return self.prefix_len + self.seq_len

    @property
    def slot_shape(self) -> tuple[int, int, int]:
        """(slots, rows, columns): the flattened seq_len tokens as `grid_slots` equal grids one after
        another (one grid when the dataset records no slots), each row-major."""
        slots = max(self.grid_slots, 1)
        cells = self.seq_len // slots
        width = self.grid_width or math.isqrt(cells)
        if slots * cells != self.seq_len or width * (cells // width) != cells:
            what = f"grid_width={self.grid_width}" if self.grid_width else "a square grid"
            raise ValueError(f"ModelConfig.grid_width: seq_len={self.seq_len} in {slots} grid slot(s) is not {what}; "
                             f"set grid_width to the number of cells per row")
        return slots, cells // width, width

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(rows, columns) of the puzzle grid behind the flattened seq_len tokens (row-major); grid
        slots are stacked top to bottom, which is the same flattening."""
        slots, rows, cols = self.slot_shape
        return slots * rows, cols

    @property
    def dtype(self) -> torch.dtype:
        return FORWARD_DTYPES[self.forward_dtype]
