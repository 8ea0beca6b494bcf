"""What a run needs besides the loop: its directory, dataset, model and checkpoint payload.

Shared by the trainer (train/loop.py), the evaluator (train/evaluate.py) and the inference tools,
so that "build the model this config describes for this dataset" exists once.
"""
from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import torch

from models import HaltingModel, ModelConfig, build_model
from models.config import dtype_name
from puzzles.dataset import Split, families_of, grid_spec, load_split
from puzzles.errors import PuzzleError, UserError

from .config import DERIVED_KEYS, TrainConfig
from .overrides import ConfigError, apply_overrides, config_from_dict, config_leaves, diff_configs

CHECKPOINT = "checkpoint.pt"


class TrainError(UserError):
    """A run that cannot start or continue (mismatched dataset, foreign run directory, ...)."""


def run_dir_of(cfg: TrainConfig) -> Path:
    return Path(cfg.system.run_dir or f"runs/{cfg.data.family}-{cfg.model}-{cfg.preset}")


def data_dir_of(cfg: TrainConfig) -> Path:
    return Path(cfg.data.path or f"data/{cfg.data.family}-{cfg.preset}")


def apply_user_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    for item in overrides:
        key = item.lstrip("-").split("=", 1)[0]
        if key in DERIVED_KEYS or f"arch.{key}" in DERIVED_KEYS:
            raise ConfigError(f"{key} cannot be overridden: {DERIVED_KEYS.get(key) or DERIVED_KEYS['arch.' + key]}")
    return apply_overrides(cfg, overrides)


def ensure_dataset(cfg: TrainConfig, is_main: bool = True) -> Path:
    """Build the dataset with the preset's builder options when its directory does not exist yet."""
    path = data_dir_of(cfg)
    if not path.exists() and is_main:
        from puzzles.build import parse_build_options  # the flags of `python -m puzzles.build`, typed
        from puzzles.builders import build_dataset
        options = parse_build_options(cfg.data.family, cfg.data.build, where="data.build")
        print(f"building dataset: python -m puzzles.build {cfg.data.family} --out {shlex.quote(str(path))} "
              f"{cfg.data.build}".rstrip(), flush=True)
        print(build_dataset(cfg.data.family, path, options).summary())
    return path


def model_config_for(arch: ModelConfig, split: Split, dtype: torch.dtype) -> ModelConfig:
    """The architecture with the dataset-derived fields filled in."""
    meta = split.meta
    try:
        return dataclasses.replace(
            arch, seq_len=int(meta["seq_len"]), vocab_size=int(meta["vocab_size"]),
            num_puzzle_identifiers=int(meta.get("num_puzzle_identifiers", 1)),
            forward_dtype=dtype_name(dtype))
    except ValueError as err:
        raise ConfigError(f"arch does not fit dataset {split.root}: {err}") from None


def check_dataset_matches(model_cfg: ModelConfig, split: Split) -> None:
    """One-line error when a dataset cannot feed a model built for another one."""
    meta = split.meta
    for key, have in (("vocab_size", model_cfg.vocab_size), ("seq_len", model_cfg.seq_len)):
        if int(meta[key]) != have:
            raise TrainError(f"dataset {split.root} has {key}={meta[key]} but the model expects {have}")
    ids = int(meta.get("num_puzzle_identifiers", 1))
    if model_cfg.puzzle_emb_ndim and ids > model_cfg.num_puzzle_identifiers:
        raise TrainError(f"dataset {split.root} uses {ids} puzzle identifiers but the model's puzzle "
                         f"embedding has {model_cfg.num_puzzle_identifiers} rows")


def check_family(family: str, split: Split, grid: dict | None = None, what: str = "the model") -> None:
    """One-line error when a dataset holds another puzzle family (or grid) than the model's.

    A 4x4 Sudoku and a 4x4 maze both have 16 cells and 6 tokens, so shapes alone let a model of one
    run on the other. Datasets without a "family" field (the reference builders') are judged by
    the families their shape can describe. `grid` (a checkpoint's dataset spec) also checks the
    Sudoku box shape or maze size."""
    possible = families_of(split.meta)
    if possible and family not in possible:
        raise TrainError(f"dataset {split.root} holds {possible[0]} puzzles, not the {family} puzzles {what} "
                         f"needs; choose a {family} dataset")
    if grid and "family" in split.meta:
        have = grid_spec(split.meta)
        if grid.get("family") == "arc":  # checkpoints written before the canvas was a parameter: 30
            grid = {**grid, "canvas": int(grid.get("canvas", 30))}
        if have != grid:
            raise TrainError(f"dataset {split.root} holds {_grid_text(have)} puzzles but {what} was trained on "
                             f"{_grid_text(grid)} puzzles")


def _grid_text(spec: dict) -> str:
    if "box" in spec:
        return f"{spec['size']}x{spec['size']} {spec['family']} (boxes {spec['box'][0]}x{spec['box'][1]})"
    if "canvas" in spec:
        return f"{spec['family']} ({spec['canvas']}x{spec['canvas']} canvas)"
    return f"{spec['size']}x{spec['size']} {spec['family']}" if "size" in spec else spec["family"]


def dataset_grid(split: Split) -> dict | None:
    """The dataset's grid spec for a checkpoint, or None when it does not say."""
    try:
        return grid_spec(split.meta) if "family" in split.meta else None
    except PuzzleError:
        return None


def make_model(name: str, model_cfg: ModelConfig, device: torch.device, seed: int) -> HaltingModel:
    torch.manual_seed(seed)  # the same initial weights on every rank and every rerun
    return build_model(name, model_cfg).to(device)


def config_from_checkpoint(payload: dict) -> TrainConfig:
    try:
        return config_from_dict(TrainConfig, payload["config"])
    except (KeyError, ConfigError, TypeError, ValueError) as err:
        raise TrainError(f"checkpoint holds no usable config ({err})") from None


# Keys that may differ between a run and its resumption: how long, how often, where it runs, and
# the optimiser's rates (after a non-finite stop, continue with a lower lr).
RESUMABLE_CHANGES = ("optim.epochs", "optim.max_steps", "eval.", "log.", "system.checkpoint_interval",
                     "system.threads", "system.device", "system.compile", "system.run_dir", "data.path",
                     "data.build", "optim.lr", "optim.lr_warmup_steps", "optim.lr_min_ratio", "optim.weight_decay",
                     "optim.puzzle_emb_lr", "optim.puzzle_emb_weight_decay", "optim.max_bad_steps")
# Keys that never make two configs "different" for automatic resumption.
RUNTIME_KEYS = ("log.progress", "system.threads", "system.run_dir", "system.device", "data.path")


def resume_decision(stored: TrainConfig, cfg: TrainConfig, resume: bool, run_dir: Path) -> list[str]:
    """The changes ("optim.lr 0.1 -> 0.001") if the checkpoint in `run_dir` may be resumed with `cfg`;
    raise when it belongs to another config."""
    diffs = [k for k in diff_configs(stored, cfg) if not k.startswith(RUNTIME_KEYS)]
    if not diffs:
        return []
    if not resume:
        raise TrainError(f"{run_dir} holds a run with another config (differs in {', '.join(diffs)}); "
                         f"pass --resume to continue it, or choose another system.run_dir")
    fixed = [k for k in diffs if not k.startswith(RESUMABLE_CHANGES)]
    if fixed:
        raise TrainError(f"cannot resume {run_dir} with a changed {', '.join(fixed)}; only training length, "
                         f"optimiser rates, evaluation, logging and system keys may change")
    old, new = config_leaves(stored), config_leaves(cfg)
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in diffs]
