"""Training configuration: a tree of dataclasses, each field with its default and its check.

    cfg = PRESETS["quick"]("sudoku", "trm-mlp")            # the named presets: train/presets.py
    cfg = apply_overrides(cfg, ["arch.L_cycles=4", "lr=3e-4"])

`arch` is the architecture the user chooses (`models.ArchConfig`); what the dataset dictates
(sequence length, vocabulary, puzzle identifiers) is read from the dataset and the compute dtype
from `system.dtype`, and `models.build_model(name, arch, shape, dtype)` puts them together.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from models import ArchConfig
from puzzles.families import FAMILIES

from . import curriculum
from .allocator import MODES as MALLOC_MODES
from .sampling import NOISE, check_options

MODEL_NAMES = ("hrm", "trm", "trm-mlp", "transformer", "ut", "rrt", "mor")
ATTENTION = ("hrm", "trm", "transformer", "ut", "rrt", "mor")  # every model but trm-mlp mixes cells by attention


@dataclass
class BuildConfig:
    """The dataset a run builds when data.path does not exist: the typed options of
    `python -m puzzles.build <family>` (puzzles/build_options.py) that a run may set; None takes the
    builder preset's value. Imported puzzle files and other ARC sources: build the folder with
    `python -m puzzles.build` and point data.path at it."""
    preset: str = "paper"  # the builder's preset: paper, cpu, quick or tiny (not every family has each)
    seed: int | None = None  # generation and augmentation seed
    train: int | None = None  # train puzzles / mazes
    test: int | None = None  # test puzzles / mazes
    aug: int | None = None  # augmented copies per train puzzle (maze: dihedral copies, 0..7)
    size: int | None = None  # maze side in cells
    min_path: int | None = None  # maze: shortest path longer than this
    box: str | None = None  # sudoku box shape RxC, e.g. "2x3" (a 6x6 grid)
    min_rating: int | None = None  # sudoku: minimum difficulty rating
    canvas: int | None = None  # arc: canvas side, 2..30
    fit_only: bool | None = None  # arc: only the tasks whose grids fit the canvas
    context: int | None = None  # arc: demonstration pairs in each example's input (0 = off; puzzles/arc/context.py)
    tasks: int | None = None  # arc: only the first N tasks by id (0 = all)

    def given(self) -> dict:
        """The options set (the preset always), in field order."""
        return {k: v for k, v in vars(self).items() if v is not None}

    def options(self, family: str):
        """The family's typed builder options; a field the family does not take, or a bad value,
        raises ValueError with one line."""
        from puzzles.build_options import OPTIONS
        from puzzles.errors import PuzzleError
        from puzzles.sudoku import parse_box
        cls = OPTIONS[family]
        allowed = {f.name for f in dataclasses.fields(cls)}
        wrong = [k for k in self.given() if k not in allowed]
        if wrong:
            takes = ", ".join(k for k in vars(self) if k in allowed)
            raise ValueError(f"data.build.{wrong[0]} is not an option of {family} datasets (they take {takes})")
        try:
            given = self.given() | ({"box": parse_box(self.box)} if self.box is not None else {})
            return cls(**given)
        except (PuzzleError, argparse.ArgumentTypeError, ValueError) as err:
            raise ValueError(f"data.build: {err}") from None

    @classmethod
    def from_text(cls, family: str, text: str) -> BuildConfig:
        """The options of an older config's command string (`--preset quick --aug 0`)."""
        from puzzles.build import parse_build_options
        options = parse_build_options(family, text, where="data.build")
        fields = {f.name for f in dataclasses.fields(cls)}
        given = {k: getattr(options, k) for k in fields if getattr(options, k, None) is not None}
        if isinstance(given.get("box"), tuple):
            given["box"] = "x".join(map(str, given["box"]))
        return cls(**given)


@dataclass
class DataConfig:
    family: str = "sudoku"  # sudoku | maze | arc
    path: str = ""  # dataset directory; "" = data/<family>-<preset>[-<options that differ from it>]
    build: BuildConfig = field(default_factory=BuildConfig)  # how to build it when `path` does not exist

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"data.family must be one of {FAMILIES}, got {self.family!r}")
        self.build.options(self.family)


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
    train_examples: int = 0  # > 0: also score N train-split rows spread over it (ARC: demonstrations), as train_*
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
        if min(self.interval, self.batch_size, self.max_examples, self.save_predictions, self.train_examples) < 0:
            raise ValueError("eval.interval, eval.batch_size, eval.max_examples, eval.save_predictions and "
                             "eval.train_examples must be >= 0")
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
    sync_free: bool = False  # no host read inside a step (train/step.py); bad steps counted at log lines
    malloc: str = "auto"  # auto (glibc keeps freed tensor memory for reuse: train/allocator.py) | default

    def __post_init__(self):  # before any work: torch answers these only with a traceback, or later
        for name, low in (("checkpoint_interval", 1), ("threads", 0), ("seed", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"system.{name} must be >= {low}, got {getattr(self, name)}")
        if self.malloc not in MALLOC_MODES:
            raise ValueError(f"system.malloc must be {' or '.join(MALLOC_MODES)}, got {self.malloc!r}")


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
