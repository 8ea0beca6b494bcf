"""Training configuration: a tree of dataclasses, and the named presets that fill it.

    cfg = PRESETS["quick"]("sudoku", "trm-mlp")            # a CPU-sized run
    cfg = apply_overrides(cfg, ["arch.L_cycles=4", "lr=3e-4"])

`paper` holds the published recipes (TRM and HRM papers / reference READMEs) per task and model;
`quick` holds runs sized for a 2-core CPU that finish in minutes. `arch` is the architecture the
user chooses (`models.ArchConfig`); what the dataset dictates (sequence length, vocabulary, puzzle
identifiers) is read from the dataset and the compute dtype from `system.dtype`, and
`models.build_model(name, arch, shape, dtype)` puts them together.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Literal

from models import ArchConfig
from puzzles.families import FAMILIES

from . import curriculum
from .sampling import NOISE, check_options

MODEL_NAMES = ("hrm", "trm", "trm-mlp", "transformer", "ut", "rrt", "mor")
ATTENTION = ("hrm", "trm", "transformer", "ut", "rrt", "mor")  # every model but trm-mlp mixes cells by attention


@dataclass
class DataConfig:
    family: str = "sudoku"  # sudoku | maze | arc
    path: str = ""  # dataset directory; "" = data/<family>-<preset>
    build: str = ""  # `python -m puzzles.build <family>` options used when `path` does not exist yet

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"data.family must be one of {FAMILIES}, got {self.family!r}")


@dataclass
class OptimConfig:
    global_batch_size: int = 768
    epochs: int = 50000  # passes over the training groups (reference meaning: one puzzle per group)
    max_steps: int = 0  # > 0 caps the number of optimiser steps (CPU-sized runs)
    lr: float = 1e-4
    lr_warmup_steps: int = 2000
    lr_min_ratio: float = 1.0  # cosine decay floor; 1.0 = constant after warm-up (reference default)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    puzzle_emb_lr: float = 1e-2
    puzzle_emb_weight_decay: float = 0.1
    ema: bool = False  # evaluate with an exponential moving average of the weights
    ema_rate: float = 0.999
    max_bad_steps: int = 10  # stop after this many non-finite losses in a row
    # adam: AdamATan2 on every weight; muon: Muon on the recursion's matrix weights, AdamATan2 on the
    # rest (train/muon.py). muon_lr 0 = lr (Muon's updates are scaled to Adam's RMS).
    optimizer: Literal["adam", "muon"] = "adam"
    muon_lr: float = 0.0
    muon_momentum: float = 0.95
    muon_nesterov: bool = True
    muon_ns_steps: int = 5
    # depth that grows during training, e.g. "H_cycles:1->2@0.3" (train/curriculum.py); "" = none
    curriculum: str = ""

    def __post_init__(self):
        # A NaN or infinite rate would train "successfully" into NaN weights: refuse it here.
        for name in ("lr", "puzzle_emb_lr", "weight_decay", "puzzle_emb_weight_decay"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                need = "a finite number > 0" if name == "lr" else "a finite number >= 0"
                raise ValueError(f"optim.{name} must be {need}, got {value}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"optim.{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("global_batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"optim.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps < 0 or self.lr_warmup_steps < 0 or self.max_bad_steps < 1:
            raise ValueError("optim.max_steps and optim.lr_warmup_steps must be >= 0, optim.max_bad_steps >= 1")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ValueError(f"optim.lr_min_ratio must be in [0, 1], got {self.lr_min_ratio}")
        if not 0.0 < self.ema_rate < 1.0:
            raise ValueError(f"optim.ema_rate must be in (0, 1), got {self.ema_rate}")
        if self.optimizer not in ("adam", "muon"):
            raise ValueError(f"optim.optimizer must be adam or muon, got {self.optimizer!r}")
        if not math.isfinite(self.muon_lr) or self.muon_lr < 0:
            raise ValueError(f"optim.muon_lr must be a finite number >= 0 (0 = optim.lr), got {self.muon_lr}")
        if not 0.0 <= self.muon_momentum < 1.0:
            raise ValueError(f"optim.muon_momentum must be in [0, 1), got {self.muon_momentum}")
        if self.muon_ns_steps < 1:
            raise ValueError(f"optim.muon_ns_steps must be >= 1, got {self.muon_ns_steps}")
        curriculum.parse(self.curriculum)


@dataclass
class EvalConfig:
    interval: int = 5000  # epochs between evaluations (one always runs at the end); 0 = only at the end
    interval_steps: int = 0  # > 0: evaluate every N optimiser steps instead of `interval` (learning curves)
    batch_size: int = 0  # 0 = optim.global_batch_size
    mode: str = "fixed"  # fixed: every sample runs halt_max_steps (reference); adaptive: stop at halting;
    # continuous: adaptive with halted slots refilled at once (continuous depth-wise batching, train/infer.py)
    threshold: float = 0.0  # adaptive/continuous: halt at sigmoid(q_halt) >= threshold; 0 = the model's rule
    max_examples: int = 0  # > 0 evaluates only the first N examples of the split (quick looks)
    save_predictions: int = 512  # rows of predictions.npz kept for pictures and reports
    # Test-time sampling (train/trajectories.py): K trajectories per puzzle through the slot engine,
    # one answer chosen; 1 = one pass. "checked" is reported apart from the model's own rules.
    samples: int = 1
    diversity: Literal["aug", "noise", "both"] = "aug"  # aug: puzzle symmetries; noise: on the latent
    select: Literal["vote", "confidence", "first-halt", "checked"] = "vote"
    noise: float = NOISE  # latent noise scale for diversity noise|both
    seed: int = 0  # seed of the augmentations and the noise

    def __post_init__(self):
        if self.mode not in ("fixed", "adaptive", "continuous"):
            raise ValueError(f"eval.mode must be fixed, adaptive or continuous, got {self.mode!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"eval.threshold must be a probability in (0, 1] (0 = the model's rule), got {self.threshold}")
        if self.threshold and self.mode == "fixed":
            raise ValueError("eval.threshold needs eval.mode adaptive or continuous (fixed runs every step)")
        if self.interval < 0 or self.batch_size < 0 or self.max_examples < 0 or self.save_predictions < 0:
            raise ValueError("eval.interval, eval.batch_size, eval.max_examples and eval.save_predictions must be >= 0")
        if self.interval_steps < 0:
            raise ValueError(f"eval.interval_steps must be >= 0, got {self.interval_steps}")
        try:
            check_options(self.samples, self.diversity, self.noise, self.select)
        except ValueError as err:
            raise ValueError(f"eval.{err}") from None


@dataclass
class LogConfig:
    logger: str = "none"  # none | wandb (offline unless WANDB_MODE says otherwise)
    project: str = "recursive-reasoning"
    interval: int = 10  # steps between metrics.jsonl lines
    progress: bool = True  # tqdm bar

    def __post_init__(self):
        if self.logger not in ("none", "wandb"):
            raise ValueError(f"log.logger must be none or wandb, got {self.logger!r}")
        if self.interval < 1:
            raise ValueError(f"log.interval must be >= 1, got {self.interval}")


@dataclass
class SystemConfig:
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (bf16 where it measures faster: CUDA with bf16, CPUs with bf16 hardware) | float32 | bfloat16
    compile: str = "auto"  # auto (on for CUDA, and CPUs with a C++ compiler) | on | off
    seed: int = 0
    run_dir: str = ""  # "" = runs/<family>-<model>-<preset>
    checkpoint_interval: int = 500  # steps between checkpoints (one is always written at the end)
    threads: int = 0  # > 0 sets torch's intra-op threads (CPU)

    def __post_init__(self):  # before any work: torch answers these only with a traceback, or later
        for name, low in (("checkpoint_interval", 1), ("threads", 0), ("seed", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"system.{name} must be >= {low}, got {getattr(self, name)}")


@dataclass
class TrainConfig:
    model: str = "trm"
    preset: str = "quick"
    data: DataConfig = field(default_factory=DataConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    system: SystemConfig = field(default_factory=SystemConfig)

    def __post_init__(self):
        if self.model not in MODEL_NAMES:
            raise ValueError(f"model must be one of {MODEL_NAMES}, got {self.model!r}")
        curriculum.check_against(curriculum.parse(self.optim.curriculum), self.model, self.arch)


# --- presets ---------------------------------------------------------------------------------
def _paper_arch(model: str, family: str) -> ArchConfig:
    common = dict(hidden_size=512, num_heads=8, expansion=4.0, puzzle_emb_ndim=512,
                  halt_max_steps=16, halt_exploration_prob=0.1)
    if model == "hrm":  # HRM paper: H/L 4 layers each, 2 x 2 cycles
        return ArchConfig(**common, H_layers=4, L_layers=4, H_cycles=2, L_cycles=2)
    if model == "transformer":  # same budget as HRM's 8 blocks, no recursion
        return ArchConfig(**common, L_layers=8, H_cycles=1, L_cycles=1)
    l_cycles = 6 if family == "sudoku" else 4  # TRM paper: n=6 on Sudoku, 4 on Maze and ARC
    mlp = model == "trm-mlp"
    arch = ArchConfig(**common, puzzle_emb_len=16, L_layers=2, H_cycles=3, L_cycles=l_cycles,
                 mlp_t=mlp, pos_encodings="none" if mlp else "rope")
    # ut, rrt, mor take TRM's recipe (docs/variants.md); ut's T_max: TRM's FLOPs per step (see quick)
    return dataclasses.replace(arch, ut_max_steps=round(5 * (l_cycles + 1) / 3)) if model == "ut" else arch


def paper(family: str, model: str) -> TrainConfig:
    """The published recipes: TRM (Jolicoeur-Martineau 2025) and HRM (Wang et al. 2025)."""
    arch = _paper_arch(model, family)
    if family == "arc":  # reference defaults: lr 1e-4, puzzle-emb lr 1e-2, wd 0.1
        optim = OptimConfig(epochs=100000, lr=1e-4, puzzle_emb_lr=1e-2, weight_decay=0.1,
                            puzzle_emb_weight_decay=0.1, ema=model != "hrm")
        ev = EvalConfig(interval=10000)
    elif model == "hrm":  # HRM README: Sudoku lr 7e-5 batch 384, Maze lr 1e-4; 20k epochs, wd 1.0
        lr = 7e-5 if family == "sudoku" else 1e-4
        optim = OptimConfig(global_batch_size=384 if family == "sudoku" else 768, epochs=20000,
                            lr=lr, puzzle_emb_lr=lr, weight_decay=1.0, puzzle_emb_weight_decay=1.0)
        ev = EvalConfig(interval=2000)
    else:  # TRM README: Sudoku / Maze lr 1e-4 for both, wd 1.0 for both, 50k epochs, EMA 0.999
        optim = OptimConfig(epochs=50000, lr=1e-4, puzzle_emb_lr=1e-4, weight_decay=1.0,
                            puzzle_emb_weight_decay=1.0, ema=True)
        ev = EvalConfig(interval=5000)
    return TrainConfig(model=model, preset="paper", data=DataConfig(family=family, build="--preset paper"),
                       arch=arch, optim=optim, eval=ev)


def quick(family: str, model: str) -> TrainConfig:
    """CPU-sized runs that finish in minutes on 2 cores (6x6 Sudoku, 11x11 mazes, ARC on a 10x10 canvas)."""
    arch = ArchConfig(hidden_size=128, num_heads=4, expansion=4.0, puzzle_emb_ndim=0, L_layers=2,
                 H_cycles=3, L_cycles=4, halt_max_steps=8, halt_exploration_prob=0.1,
                 mlp_t=model == "trm-mlp", pos_encodings="none" if model == "trm-mlp" else "rope")
    if model == "hrm":
        arch = dataclasses.replace(arch, H_layers=2, L_layers=2, H_cycles=2, L_cycles=2)
    elif model == "transformer":
        arch = dataclasses.replace(arch, L_layers=4, H_cycles=1, L_cycles=1)
    elif model == "ut":  # equal FLOPs per step when no cell halts early: TRM runs 15 net calls, the last
        # 5 differentiated (x3): 10 + 15 = 25 call-units; UT differentiates all: 8 x 3 = 24
        arch = dataclasses.replace(arch, ut_max_steps=8)
    # lr 2e-3, constant after warm-up, evaluated with an EMA of the weights (rate 0.99, ~100 steps):
    # at this lr the raw weights swing between evaluations while their average climbs steadily.
    # lr 1e-3 learns more slowly; a cosine decay to 0.1x learned markedly slower in a run this short.
    optim = OptimConfig(global_batch_size=128, epochs=80, lr=2e-3, lr_warmup_steps=50,
                        weight_decay=1.0, puzzle_emb_lr=1e-2, puzzle_emb_weight_decay=1.0,
                        ema=True, ema_rate=0.99)
    if model == "hrm":
        optim = dataclasses.replace(optim, lr=5e-4)
    ev = EvalConfig(interval=20)
    if family == "sudoku":
        # More, smaller updates reach a given accuracy with far fewer examples (batch 32 beats
        # 128 per example), and T=2 learns as fast per step as T=3 at 2/3 of the cost (docs/results.md).
        # Few evaluations: each runs all 8 supervision steps on 500 puzzles.
        if model in ("trm", "trm-mlp", "rrt", "mor"):
            arch = dataclasses.replace(arch, H_cycles=2)
        elif model == "ut":  # TRM at T=2 is 10 net calls, 5 differentiated: 20 call-units; UT 7 x 3 = 21
            arch = dataclasses.replace(arch, ut_max_steps=7)
        if model == "trm-mlp":
            # Width 64 reaches 0.95 held-out exact in the same steps as 128 (1000-1250, two seeds)
            # and ends no lower, at 55% of the bf16 step time and 44% of the float32 one
            # (docs/time_to_accuracy.md); 6x6 Sudoku does not need the width.
            arch = dataclasses.replace(arch, hidden_size=64)
        optim = dataclasses.replace(optim, global_batch_size=32, epochs=56)
        ev = dataclasses.replace(ev, batch_size=256)
        if model in ATTENTION:
            # Attention must find rows, columns and boxes itself: absolute row + column vectors
            # (boxes are a function of them) and 2-D RoPE let it, where 1-D RoPE or 2-D RoPE
            # alone plateau at ~0.7 cell accuracy (docs/ablation.md). lr 2e-3 diverges with
            # attention; 7e-4 does not. HRM's step is cheaper, so it gets more of them.
            # A learned score bias per head (attn_bias=pairwise) adds a little more, and attention
            # needs more steps than TRM-MLP (docs/ablation.md).
            arch = dataclasses.replace(arch, pos_encodings="rope2d+learned2d", attn_bias="pairwise")
            optim = dataclasses.replace(optim, lr=7e-4, epochs=100 if model == "hrm" else 80)
        if model in ATTENTION and model != "transformer":
            # A cosine decay to 0.1x over the run: markedly higher held-out exact accuracy for
            # trm and hrm in the same number of steps (docs/ablation.md); the variants follow trm.
            optim = dataclasses.replace(optim, lr_min_ratio=0.1)
        if model == "transformer":
            # Equal compute to trm per supervision step: 12 blocks forward and backward (~36
            # block-passes) against trm's 20 forward calls of which 10 are differentiated (~40).
            arch = dataclasses.replace(arch, L_layers=12)
    if family == "maze":  # 11x11 mazes, shortest path > 12 steps (puzzles/build_options.py, preset quick)
        # A path is found by spreading outwards from S and G cell by cell: the depthwise 3x3
        # convolution in the feed-forward block does one such step per layer; 2-D RoPE lets
        # attention address neighbours by (row, column) offset, learned rows/columns add where a
        # cell is (absolute positions helped attention on Sudoku). lr 2e-3 made attention's loss
        # climb again after step 120; a decay to 0.1x beat a constant lr at every batch size.
        # Batch 64 at lr 8e-4: 0.654 exact after 3000 steps on a GPU where batch 32 at 4e-4 had
        # 0.198 after 4000; batch 128 at 8e-4 reached 0.59 in half the steps for the same
        # examples, lr 1.2e-3 at batch 128 collapsed (docs/maze_arc.md).
        if model in ATTENTION:
            arch = dataclasses.replace(arch, pos_encodings="rope2d+learned2d", ffn_conv=3)
            optim = dataclasses.replace(optim, lr=min(optim.lr, 8e-4), lr_min_ratio=0.1)
        optim = dataclasses.replace(optim, global_batch_size=64, epochs=96)  # 3000 steps
        ev = dataclasses.replace(ev, interval=32, batch_size=250)  # at steps 1000, 2000, 3000
    elif family == "arc":  # 10x10 canvas: ARC-AGI-1 (+ ConceptARC) tasks whose grids all fit it
        # ARC needs the per-task puzzle embedding to say which task it is solving; translation
        # augmentation moves grids around the canvas, so relative 2-D positions suit it.
        arch = dataclasses.replace(arch, puzzle_emb_ndim=128, puzzle_emb_len=1)
        if model in ATTENTION:
            arch = dataclasses.replace(arch, pos_encodings="rope2d", ffn_conv=3)
            optim = dataclasses.replace(optim, lr=min(optim.lr, 7e-4))
        optim = dataclasses.replace(optim, global_batch_size=32, epochs=20, weight_decay=0.1,
                                    puzzle_emb_weight_decay=0.1)
        ev = dataclasses.replace(ev, interval=0, batch_size=256)  # every augmented test row: voting
    build = "--preset quick" if family in ("maze", "arc") else "--preset cpu"
    return TrainConfig(model=model, preset="quick", data=DataConfig(family=family, build=build),
                       arch=arch, optim=optim, eval=ev,
                       system=SystemConfig(checkpoint_interval=200))


PRESETS: dict[str, Callable[[str, str], TrainConfig]] = {"paper": paper, "quick": quick}
