"""The presets: `paper` (the published recipes) and `quick` (CPU-sized runs that finish in minutes on
2 cores: 6x6 Sudoku, 7x7 mazes, ARC on a 10x10 canvas).

    cfg = PRESETS["quick"]("sudoku", "trm")      # then key=value overrides (train/overrides.py)

`quick` is data: a base config, then the rows of QUICK applied in order to every (family, model)
they match. Each row says why its values are what they are and where that was measured.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from models import ArchConfig

from .config import ATTENTION, MODEL_NAMES, BuildConfig, DataConfig, EvalConfig, OptimConfig, SystemConfig, TrainConfig

ALL = MODEL_NAMES
FAMILIES_ALL = ("sudoku", "maze", "arc")


# --- paper ------------------------------------------------------------------------------------
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
    return TrainConfig(model=model, preset="paper", data=DataConfig(family=family, build=BuildConfig(preset="paper")),
                       arch=arch, optim=optim, eval=ev)


# --- quick ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """Overrides for the (family, model) pairs it matches, with the reason and the measurement."""
    families: tuple[str, ...]
    models: tuple[str, ...]
    why: str
    arch: dict = field(default_factory=dict)
    optim: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)


NOT_HRM = tuple(m for m in ATTENTION if m != "hrm")
QUICK: tuple[Row, ...] = (
    Row(FAMILIES_ALL, ("hrm",), "HRM's two modules of 2 layers, 2 x 2 cycles; a lower lr suits it",
        arch=dict(H_layers=2, L_layers=2, H_cycles=2, L_cycles=2), optim=dict(lr=5e-4)),
    Row(FAMILIES_ALL, ("transformer",), "a plain 4-layer stack, no recursion",
        arch=dict(L_layers=4, H_cycles=1, L_cycles=1)),
    Row(FAMILIES_ALL, ("ut",), "equal FLOPs per step when no cell halts early: TRM runs 15 net calls, the "
        "last 5 differentiated (x3): 10 + 15 = 25 call-units; UT differentiates all: 8 x 3 = 24 "
        "(docs/variants.md)", arch=dict(ut_max_steps=8)),
    # --- 6x6 Sudoku
    Row(("sudoku",), ("trm", "trm-mlp", "rrt", "mor"), "T=2 learns as fast per step as T=3 at 2/3 of the "
        "cost (docs/results.md)", arch=dict(H_cycles=2)),
    Row(("sudoku",), ("ut",), "TRM at T=2 is 10 net calls, 5 differentiated: 20 call-units; UT 7 x 3 = 21",
        arch=dict(ut_max_steps=7)),
    Row(("sudoku",), ("trm-mlp",), "width 64 reaches 0.95 held-out exact in the same steps as 128 and ends "
        "no lower, at 55% of the bf16 step time (docs/time_to_accuracy.md)", arch=dict(hidden_size=64)),
    Row(("sudoku",), ALL, "more, smaller updates reach a given accuracy with far fewer examples (batch 32 "
        "beats 128 per example, docs/results.md); few evaluations, each runs all 8 supervision steps on "
        "500 puzzles", optim=dict(global_batch_size=32, epochs=56), eval=dict(batch_size=256)),
    Row(("sudoku",), ("trm", "transformer", "ut", "rrt", "mor"), "attention must find rows, columns and "
        "boxes itself: 2-D RoPE plus learned rows and columns, and a learned score bias per head; lr 2e-3 "
        "diverges with attention, 7e-4 does not; attention needs more steps than TRM-MLP "
        "(docs/ablation.md)", arch=dict(pos_encodings="rope2d+learned2d", attn_bias="pairwise"),
        optim=dict(lr=7e-4, epochs=80)),
    Row(("sudoku",), ("hrm",), "as the other attention models; HRM's step is cheaper, so it gets more of "
        "them (docs/ablation.md)", arch=dict(pos_encodings="rope2d+learned2d", attn_bias="pairwise"),
        optim=dict(lr=7e-4, epochs=100)),
    Row(("sudoku",), ("hrm", "trm", "ut", "rrt", "mor"), "a cosine decay to 0.1x: markedly higher held-out "
        "exact accuracy for trm and hrm in the same steps (docs/ablation.md); the variants follow trm",
        optim=dict(lr_min_ratio=0.1)),
    Row(("sudoku",), ("transformer",), "equal compute to trm per supervision step: 12 blocks forward and "
        "backward (~36 block-passes) against trm's 20 forward calls, 10 differentiated (~40)",
        arch=dict(L_layers=12)),
    # --- 7x7 mazes, shortest path > 6 steps, 16000 distinct mazes, no augmentation
    Row(("maze",), ATTENTION, "a path spreads from S and G cell by cell: a depthwise 3x3 conv in the "
        "feed-forward does one such step per layer; 2-D RoPE addresses neighbours by offset, learned "
        "rows/columns say where a cell is; a decay to 0.1x beat a constant lr at every batch size "
        "(docs/maze_arc.md)", arch=dict(pos_encodings="rope2d+learned2d", ffn_conv=3),
        optim=dict(lr_min_ratio=0.1)),
    Row(("maze",), NOT_HRM, "lr 2e-3 made attention's loss climb again after step 120; 8e-4 at batch 64 "
        "(docs/maze_arc.md)", optim=dict(lr=8e-4)),
    Row(("maze",), ALL, "batch 64 at lr 8e-4: 0.654 exact after 3000 steps on a GPU where batch 32 at "
        "4e-4 had 0.198 after 4000; 16 epochs of the 16000 mazes = 4000 steps (3000 left seed 0 at "
        "0.896), evaluations every 1000 steps (docs/maze_arc.md)",
        optim=dict(global_batch_size=64, epochs=16), eval=dict(interval=4, batch_size=250)),
    Row(("maze",), ("trm",), "Muon on the recursion's matrices at the same lr: 0.862 exact at step 1000 "
        "where AdamATan2 had 0.248, same step time; 8 epochs = 2000 steps, evaluated where the halting "
        "head stops (1.3 of 8 steps): 0.934 / 0.922 / 0.932 exact on three seeds at 2 threads, where all "
        "8 steps give 0.762 / 0.668 / 0.944; evaluations every 500 steps (docs/maze_arc.md)",
        optim=dict(optimizer="muon", epochs=8), eval=dict(interval=2, mode="adaptive")),
    # --- ARC on a 10x10 canvas: ARC-AGI-1 (+ ConceptARC) tasks whose grids all fit it
    Row(("arc",), ALL, "the per-task puzzle embedding says which task is being solved; every augmented "
        "test row is evaluated once, at the end, for voting", arch=dict(puzzle_emb_ndim=128, puzzle_emb_len=1),
        optim=dict(global_batch_size=32, epochs=20, weight_decay=0.1, puzzle_emb_weight_decay=0.1),
        eval=dict(interval=0, batch_size=256)),
    Row(("arc",), ATTENTION, "translation augmentation moves grids around the canvas, so relative 2-D "
        "positions suit it (docs/maze_arc.md)", arch=dict(pos_encodings="rope2d", ffn_conv=3)),
    Row(("arc",), NOT_HRM, "lr 2e-3 diverges with attention (docs/ablation.md)", optim=dict(lr=7e-4)),
    Row(("maze", "arc"), ("mor",), "a routed block sees only its kept cells, not the grid the feed-forward "
        "convolution needs", arch=dict(ffn_conv=0)),
)


def quick(family: str, model: str) -> TrainConfig:
    """CPU-sized runs: the base below, then every row of QUICK that matches (family, model)."""
    # lr 2e-3, constant after warm-up, evaluated with an EMA of the weights (rate 0.99, ~100 steps):
    # at this lr the raw weights swing between evaluations while their average climbs steadily.
    arch = ArchConfig(hidden_size=128, num_heads=4, expansion=4.0, puzzle_emb_ndim=0, L_layers=2,
                      H_cycles=3, L_cycles=4, halt_max_steps=8, halt_exploration_prob=0.1,
                      mlp_t=model == "trm-mlp", pos_encodings="none" if model == "trm-mlp" else "rope")
    optim = OptimConfig(global_batch_size=128, epochs=80, lr=2e-3, lr_warmup_steps=50,
                        weight_decay=1.0, puzzle_emb_lr=1e-2, puzzle_emb_weight_decay=1.0,
                        ema=True, ema_rate=0.99)
    ev = EvalConfig(interval=20)
    for row in QUICK:
        if family in row.families and model in row.models:
            arch = dataclasses.replace(arch, **row.arch)
            optim = dataclasses.replace(optim, **row.optim)
            ev = dataclasses.replace(ev, **row.eval)
    build = BuildConfig(preset="quick" if family in ("maze", "arc") else "cpu")
    return TrainConfig(model=model, preset="quick", data=DataConfig(family=family, build=build),
                       arch=arch, optim=optim, eval=ev, system=SystemConfig(checkpoint_interval=200))


PRESETS: dict[str, Callable[[str, str], TrainConfig]] = {"paper": paper, "quick": quick}
